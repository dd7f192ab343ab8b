"""What the thread layout (runtime.Threads) may and may not change in the numbers: a batch cut
into row blocks gives the same gradients as finite differences, the numbers of one thread to
rounding, and the same bits on every run of the same layout; a bare call runs on one thread; a
whole run records its thread count."""
import numpy as np
import pytest

from charrnn import inference, model, optim, runtime
from charrnn.cells import CELLS, _input
from gradcheck import numeric_grad, rel_error

T, D, H, V = 3, 4, 5, 6
N = 2 * runtime.MIN_ROWS  # the smallest batch cut in two blocks
WIN_T, WIN_N, WIN_H = 20, 64, 32  # configs/tiny.yaml's hidden size and window; a batch of 4 blocks


def _setup(cell, rng, ids):
    x = rng.integers(0, V, size=(T, N)) if ids else rng.standard_normal((T, N, D))
    p = cell.init(rng, V if ids else D, H, np.float64)
    for k in p:
        p[k] = rng.standard_normal(p[k].shape) * 0.5
    state = tuple(rng.standard_normal((N, H)) for _ in cell.STATE_NAMES)
    dhs = rng.standard_normal((T, N, H))
    dstate = tuple(rng.standard_normal((N, H)) for _ in cell.STATE_NAMES)
    return x, p, state, dhs, dstate


def _run(cell, p, x, state, dhs, dstate, threads):
    hs, final, cache = cell.forward(p, x, state, threads=threads)
    grads, dx, dstate0 = cell.backward(p, cache, dhs, dstate, threads=threads)
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
    _, _, grads, _, dstate0 = _run(cell, p, x, state, dhs, dstate, runtime.Threads(2))

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
    threaded = [_run(cell, p, x, state, dhs, dstate, runtime.Threads(2)) for _ in range(2)]
    single = _run(cell, p, x, state, dhs, dstate, runtime.ONE_THREAD)
    for a, b in zip(_flat(threaded[0]), _flat(threaded[1])):
        np.testing.assert_array_equal(a, b)  # bit for bit, whatever the thread timing
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(_flat(threaded[0]), _flat(single)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_split_softmax_gives_the_bits_of_one():
    """model.forward runs the softmax and its gradient on blocks of the rows: the loss, and the
    output layer's gradients it takes from dlogits, must be exactly those of the whole-array
    function."""
    from gradcheck import softmax_cross_entropy
    spec = model.ModelSpec("rnn", V, H, 1, 0.0, "float32")
    rng = np.random.default_rng(3)
    params = model.init_params(spec, rng)
    x, y = rng.integers(0, V, size=(T, N)), rng.integers(0, V, size=(T, N))
    state = model.zero_state(spec, N)
    logits, _ = inference.logits(params, spec, x, state)
    whole_loss, whole_dlogits = softmax_cross_entropy(logits, y.reshape(-1))
    with runtime.use_threads(2) as threads:
        loss, _, cache = model.forward(params, spec, x, y, state, threads=threads)
        dtop = threads.matmul(whole_dlogits, np.ascontiguousarray(params["Wy"].T))
    assert loss == whole_loss
    np.testing.assert_array_equal(cache.output_grads["by"], whole_dlogits.sum(axis=0))
    np.testing.assert_array_equal(cache.dtop, dtop)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_a_bare_call_runs_on_one_thread_inside_use_threads_too(name):
    """cell.forward/backward without a layout compute what they compute on runtime.ONE_THREAD,
    inside use_threads(2) as outside: use_threads holds the BLAS, the caller passes the layout."""
    cell = CELLS[name]
    x, p, state, dhs, dstate = _setup(cell, np.random.default_rng(5), ids=False)
    one = _run(cell, p, x, state, dhs, dstate, runtime.ONE_THREAD)
    with runtime.use_threads(2):
        hs, final, cache = cell.forward(p, x, state)
        grads, dx, dstate0 = cell.backward(p, cache, dhs, dstate)
    for a, b in zip(_flat(one), _flat((hs, final, grads, dx, dstate0))):
        np.testing.assert_array_equal(a, b)


def test_a_model_step_hands_its_layout_down():
    """model.forward and backward hand their layout down to the cells, the output layer and the
    softmax: Threads(3) passed in repeats its bits, use_threads(3) changes nothing of them, and
    it differs from one thread (a bare call's layout) only in rounding."""
    spec = model.ModelSpec("gru", V, H, 2, 0.0, "float32", "residual", 2, 2)
    rng = np.random.default_rng(6)
    params = model.init_params(spec, rng)
    n = 3 * runtime.MIN_ROWS
    x, y = rng.integers(0, V, size=(T, n)), rng.integers(0, V, size=(T, n))

    def step(*threads):
        kw = {"threads": threads[0]} if threads else {}
        loss, _, cache = model.forward(params, spec, x, y, model.zero_state(spec, n), **kw)
        grads, _ = model.backward(params, spec, cache, **kw)
        return loss, grads

    with runtime.use_threads(3) as threads:
        loss, grads = step(threads)
    loss3, grads3 = step(runtime.Threads(3))
    loss1, grads1 = step(runtime.ONE_THREAD)
    bare_loss, bare_grads = step()
    assert loss3 == loss and bare_loss == loss1 and loss1 == pytest.approx(loss, rel=1e-6)
    for k in grads:
        np.testing.assert_array_equal(grads3[k], grads[k], err_msg=k)
        np.testing.assert_array_equal(bare_grads[k], grads1[k], err_msg=k)
        np.testing.assert_allclose(grads1[k], grads[k], rtol=1e-4, atol=1e-6, err_msg=k)


def _train(cell, V, threads, steps=5, **stack):
    """Weights after `steps` Adam updates of a 2-layer model with dropout, on `threads`."""
    spec = model.ModelSpec(cell, V, WIN_H, 2, 0.1, "float32", **stack)
    rng = np.random.default_rng(1)
    params = model.init_params(spec, rng)
    opt = optim.init_state("adam", params)
    ids = rng.integers(0, V, size=(steps, WIN_T + 1, WIN_N))
    drop = np.random.default_rng(2)
    state = model.zero_state(spec, WIN_N)
    with runtime.use_threads(threads) as layout:
        for x in ids:
            loss, state, cache = model.forward(params, spec, x[:-1], x[1:], state,
                                               model.dropout_masks(spec, WIN_T, WIN_N, drop),
                                               threads=layout)
            grads, _ = model.backward(params, spec, cache, threads=layout)
            optim.clip(grads, "norm", 5.0)
            optim.apply("adam", params, grads, opt, 5e-3)
    return params


RESIDUAL = dict(stack="residual", expand=2, mlp=2)


@pytest.mark.parametrize("cell, V, stack", [
    ("rnn", 65, {}), ("lstm", 65, {}), ("gru", 65, {}), ("rnn", 2 * _input.DENSE_MAX_V, {}),
    ("mingru", 65, {}), ("minlstm", 65, {}), ("mingru", 65, RESIDUAL), ("gru", 65, RESIDUAL)],
    ids=["rnn", "lstm", "gru", "rnn-large-vocab", "mingru", "minlstm", "mingru-residual",
         "gru-residual"])
def test_thread_counts_agree_and_each_repeats_its_bits(cell, V, stack):
    """The same thread count gives the same bits on every run. Different counts agree to a few
    float32 ulps of the gradients, not to the bit: OpenBLAS's sgemm computes the rows in the
    last, partial tile of its kernel (12 rows for its Haswell kernels) and the columns near a
    piece's edge with other code than the same rows of a larger product, so cutting a product
    (or a batch) into pieces moves the last bit of some rows; 5 Adam steps at lr 5e-3 turn that
    into weight differences of about 1e-5 (measured: RESULTS.md, 2026-12-01)."""
    runs = {n: _train(cell, V, n, **stack) for n in (1, 2, 3, 4)}
    again = _train(cell, V, 3, **stack)
    for k, v in runs[3].items():
        np.testing.assert_array_equal(again[k], v, err_msg=k)
    for n in (2, 3, 4):
        for k, v in runs[1].items():
            np.testing.assert_allclose(runs[n][k], v, rtol=0, atol=1e-4,
                                       err_msg=f"{k} at {n} threads")


def test_train_fixes_and_records_its_thread_count(tmp_path):
    """charrnn.train on tiny.yaml with a batch of 4 blocks: the thread count it used is in
    config.yaml, the checkpoint and every metrics line, and the same count repeats the bits."""
    import json
    import os

    import charrnn
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    corpus = os.path.join(root, "data", "tinyshakespeare.txt")
    tiny = os.path.join(root, "configs", "tiny.yaml")
    runs = {}
    for name, threads in (("a", 3), ("b", 3), ("default", None)):
        out = tmp_path / name
        charrnn.train(corpus, tiny, out=out, batch_size=WIN_N, steps=5, eval_every=5,
                      sample_length=0, threads=threads, progress=False)
        runs[name] = charrnn.load(out / "last.npz")
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        expect = threads or runtime.available_cpus()
        assert runs[name].config.threads == expect
        assert [rec["threads"] for rec in lines] == [expect]
    for k, v in runs["a"].params.items():
        np.testing.assert_array_equal(v, runs["b"].params[k], err_msg=k)
