"""The split path of the cells (batch large enough to be cut into blocks on two threads): the
same gradients as finite differences, the same numbers as one thread, and the same bits every
run."""
import numpy as np
import pytest

from charrnn import runtime
from charrnn.cells import CELLS
from gradcheck import numeric_grad, rel_error

T, D, H, V = 3, 4, 5, 6
N = 2 * runtime.MIN_ROWS  # the smallest batch cut in two blocks


def _setup(cell, rng, ids):
    x = rng.integers(0, V, size=(T, N)) if ids else rng.standard_normal((T, N, D))
    p = cell.init(rng, V if ids else D, H, np.float64)
    for k in p:
        p[k] = rng.standard_normal(p[k].shape) * 0.5
    state = tuple(rng.standard_normal((N, H)) for _ in cell.STATE_NAMES)
    dhs = rng.standard_normal((T, N, H))
    dstate = tuple(rng.standard_normal((N, H)) for _ in cell.STATE_NAMES)
    return x, p, state, dhs, dstate


def _run(cell, p, x, state, dhs, dstate):
    hs, final, cache = cell.forward(p, x, state)
    grads, dx, dstate0 = cell.backward(p, cache, dhs, dstate)
    return hs.copy(), final, grads, dx, dstate0


def _flat(result):
    hs, final, grads, dx, dstate0 = result
    parts = [hs, *final, *(grads[k] for k in sorted(grads)), *dstate0]
    return parts + ([dx] if dx is not None else [])


@pytest.mark.parametrize("name", sorted(CELLS))
def test_split_batch_gradients_match_finite_differences(name):
    cell = CELLS[name]
    rng = np.random.default_rng(0)
    x, p, state, dhs, dstate = _setup(cell, rng, ids=True)
    _, _, grads, _, dstate0 = _run(cell, p, x, state, dhs, dstate)

    def f():
        hs, final, _ = cell.forward(p, x, state)
        return float(np.sum(hs * dhs) + sum(np.sum(s * d) for s, d in zip(final, dstate)))

    for k in p:
        assert rel_error(grads[k], numeric_grad(f, p[k])) < 1e-7, k
    for i, s in enumerate(state):
        assert rel_error(dstate0[i], numeric_grad(f, s)) < 1e-7, cell.STATE_NAMES[i]


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_threads_give_the_numbers_of_one(name, dtype):
    cell = CELLS[name]
    x, p, state, dhs, dstate = _setup(cell, np.random.default_rng(1), ids=False)
    p = {k: v.astype(dtype) for k, v in p.items()}
    x, dhs = x.astype(dtype), dhs.astype(dtype)
    state = tuple(s.astype(dtype) for s in state)
    dstate = tuple(s.astype(dtype) for s in dstate)
    with runtime.use_threads(2):
        threaded = [_run(cell, p, x, state, dhs, dstate) for _ in range(2)]
    with runtime.use_threads(1):
        single = _run(cell, p, x, state, dhs, dstate)
    for a, b in zip(_flat(threaded[0]), _flat(threaded[1])):
        np.testing.assert_array_equal(a, b)  # bit for bit, whatever the thread timing
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(_flat(threaded[0]), _flat(single)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(600, 40, 30), (30, 600, 400), (64, 64, 64)],
                         ids=["rows", "columns", "square"])
@pytest.mark.parametrize("threads", [2, 3])
def test_split_product(shape, threads):
    """A product cut into pieces by rows or columns of the result: the product, the same bits on
    every call, and into out when given. (Not always the one-piece product's bits: OpenBLAS may
    pick another kernel for the smaller pieces.)"""
    M, K, P = shape
    rng = np.random.default_rng(3)
    a = rng.standard_normal((K, M)).astype(np.float32).T  # a transposed view, as dWh's
    b = rng.standard_normal((K, P)).astype(np.float32)
    with runtime.use_threads(threads):
        first = runtime.matmul(a, b)
        out = np.empty((M, P), dtype=np.float32)
        assert runtime.matmul(a, b, out=out) is out
    np.testing.assert_allclose(first, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out, first)


def test_split_softmax_gives_the_bits_of_one():
    """model.forward runs the softmax and its gradient on blocks of the rows: the loss, and the
    output layer's gradients it takes from dlogits, must be exactly those of the whole-array
    function."""
    from charrnn import model
    from gradcheck import softmax_cross_entropy
    spec = model.ModelSpec("rnn", V, H, 1, 0.0, "float32")
    rng = np.random.default_rng(3)
    params = model.init_params(spec, rng)
    x, y = rng.integers(0, V, size=(T, N)), rng.integers(0, V, size=(T, N))
    state = model.zero_state(spec, N)
    logits, _ = model.logits(params, spec, x, state)
    whole_loss, whole_dlogits = softmax_cross_entropy(logits, y.reshape(-1))
    with runtime.use_threads(2):
        loss, _, cache = model.forward(params, spec, x, y, state)
        dtop = runtime.matmul(whole_dlogits, np.ascontiguousarray(params["Wy"].T))
    assert loss == whole_loss
    np.testing.assert_array_equal(cache.output_grads["by"], whole_dlogits.sum(axis=0))
    np.testing.assert_array_equal(cache.dtop, dtop)
