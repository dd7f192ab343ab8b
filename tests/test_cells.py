"""Each cell's hand-written backward pass against centred finite differences in float64."""
import numpy as np
import pytest

from charrnn.cells import CELLS, _input
from charrnn.cells._activations import sigmoid
from gradcheck import numeric_grad, rel_error

T, N, D, H, V = 4, 3, 5, 6, 7
TOL = 1e-7


def _setup(cell, rng, ids):
    x = rng.integers(0, V, size=(T, N)) if ids else rng.standard_normal((T, N, D))
    p = cell.init(rng, V if ids else D, H, np.float64)
    for k in p:  # larger weights than init so every nonlinearity is exercised
        p[k] = rng.standard_normal(p[k].shape) * 0.5
    state = tuple(rng.standard_normal((N, H)) for _ in cell.STATE_NAMES)
    dhs = rng.standard_normal((T, N, H))
    dstate = tuple(rng.standard_normal((N, H)) for _ in cell.STATE_NAMES)
    return x, p, state, dhs, dstate


def _loss(cell, p, x, state, dhs, dstate):
    hs, final, _ = cell.forward(p, x, state)
    return float(np.sum(hs * dhs) + sum(np.sum(s * d) for s, d in zip(final, dstate)))


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("ids", [True, False], ids=["ids", "dense"])
def test_cell_backward_matches_finite_differences(name, ids):
    cell = CELLS[name]
    rng = np.random.default_rng(0)
    x, p, state, dhs, dstate = _setup(cell, rng, ids)
    _, _, cache = cell.forward(p, x, state)
    grads, dx, dstate0 = cell.backward(p, cache, dhs, dstate)

    def f():
        return _loss(cell, p, x, state, dhs, dstate)

    assert set(grads) == set(p)
    for k in p:
        err = rel_error(grads[k], numeric_grad(f, p[k]))
        assert err < TOL, (name, k, err)
    for i, s in enumerate(state):
        err = rel_error(dstate0[i], numeric_grad(f, s))
        assert err < TOL, (name, cell.STATE_NAMES[i], err)
    if ids:
        assert dx is None
    else:
        assert rel_error(dx, numeric_grad(f, x)) < TOL


@pytest.mark.parametrize("name", sorted(CELLS))
def test_cell_step_matches_forward(name):
    """The generation step, on the weights step_params makes, reproduces the window forward pass
    one step at a time."""
    cell = CELLS[name]
    rng = np.random.default_rng(1)
    x, p, state, _, _ = _setup(cell, rng, ids=True)
    hs, final, _ = cell.forward(p, x, state)
    q, s = cell.step_params(p), state
    for t in range(T):
        s = cell.step(q, (q["Wx"] + q["b"])[x[t]], s)
        np.testing.assert_allclose(s[0], hs[t], rtol=1e-12, atol=1e-12)
    for a, b in zip(s, final):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_one_hot_lookup_equals_matrix_product():
    """The input lookup is exactly the one-hot matrix product it stands for."""
    from charrnn.cells._input import project
    rng = np.random.default_rng(2)
    Wx, b = rng.standard_normal((V, H)), rng.standard_normal(H)
    ids = rng.integers(0, V, size=(T, N))
    one_hot = np.eye(V)[ids]  # (T, N, V)
    np.testing.assert_allclose(project(Wx, b, ids), project(Wx, b, one_hot), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("bad", [V, -1])
def test_lookup_refuses_an_id_outside_the_table(bad):
    """The lookup takes rows unchecked for speed, so it checks the ids itself: an id past the
    table (or negative) raises instead of reading a clipped row."""
    from charrnn.cells._input import project
    rng = np.random.default_rng(3)
    Wx, b = rng.standard_normal((V, H)), rng.standard_normal(H)
    ids = rng.integers(0, V, size=(T, N))
    ids[1, 0] = bad
    with pytest.raises(IndexError):
        project(Wx, b, ids, out=np.empty((T, N, H)))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_two_windows_with_carried_state_equal_one(name):
    """A window of 2T run as two windows of T, the state carried from the first to the second,
    gives the same outputs; and backward through the second, its d(initial state) passed on as
    the first's gradient from after it, gives the same weight, input and initial-state
    gradients as backward through the whole (truncated BPTT cut nowhere)."""
    cell = CELLS[name]
    rng = np.random.default_rng(4)
    x, p, state, _, _ = _setup(cell, rng, ids=False)
    x = np.concatenate([x, rng.standard_normal(x.shape)])
    dhs = rng.standard_normal((2 * T, N, H))
    hs, final, cache = cell.forward(p, x, state)
    grads, dx, dstate0 = cell.backward(p, cache, dhs)

    hs1, mid, cache1 = cell.forward(p, x[:T], state)
    hs2, final2, cache2 = cell.forward(p, x[T:], mid)
    np.testing.assert_allclose(np.concatenate([hs1, hs2]), hs, rtol=1e-12, atol=1e-12)
    for a, b in zip(final2, final):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    g2, dx2, dmid = cell.backward(p, cache2, dhs[T:])
    g1, dx1, dstate1 = cell.backward(p, cache1, dhs[:T], dmid)
    for k in grads:
        np.testing.assert_allclose(g1[k] + g2[k], grads[k], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([dx1, dx2]), dx, rtol=1e-10, atol=1e-12)
    for a, b in zip(dstate1, dstate0):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("D", [_input.DENSE_MAX_V, _input.DENSE_MAX_V + 1, 3000])
def test_one_hot_transpose_product_is_the_scatter(D):
    """Both methods (dense below the threshold, sorted segment sums above) sum the right rows."""
    rng = np.random.default_rng(4)
    ids = rng.integers(0, D // 2, size=500) * 2  # half the ids never occur
    da2 = rng.standard_normal((500, 40))
    expected = np.zeros((D, 40))
    np.add.at(expected, ids, da2)
    np.testing.assert_allclose(_input.one_hot_transpose_product(ids, da2, D), expected,
                               rtol=1e-12, atol=1e-12)


def _plain_gru_step(p, x_t, state):
    """The textbook GRU step on unhalved weights, the sigmoid in the cells' tanh form: x_t (N, D),
    state (h,) -> the gates {r, z, n} and the new state (h,), each (N, H)."""
    (h,) = state
    H = h.shape[1]
    a = x_t @ p["Wx"] + p["b"]
    rec = h @ p["Wh"]
    rz = sigmoid(a[:, :2 * H] + rec[:, :2 * H], out=np.empty_like(a[:, :2 * H]))
    r, z = rz[:, :H], rz[:, H:]
    n = np.tanh(a[:, 2 * H:] + r * (rec[:, 2 * H:] + p["bhn"]))
    return {"r": r, "z": z, "n": n}, (n + z * (h - n),)


def _plain_lstm_step(p, x_t, state):
    """The textbook LSTM step on unhalved weights, the sigmoid in the cells' tanh form: x_t (N, D),
    state (h, c) -> the gates {i, f, o, g} and the new state (h, c), each (N, H)."""
    h, c = state
    H = h.shape[1]
    a = h @ p["Wh"] + (x_t @ p["Wx"] + p["b"])
    ifo = sigmoid(a[:, :3 * H], out=np.empty_like(a[:, :3 * H]))
    i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
    g = np.tanh(a[:, 3 * H:])
    c = f * c + i * g
    return {"i": i, "f": f, "o": o, "g": g}, (o * np.tanh(c), c)


PLAIN_STEPS = {"gru": _plain_gru_step, "lstm": _plain_lstm_step}


@pytest.mark.parametrize("name", sorted(PLAIN_STEPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_halved_gates_give_the_bits_of_the_plain_sigmoid(name, dtype):
    """The GRU and LSTM halve their sigmoid gates' columns of Wx, b and Wh to save a call per
    step (gate_scale); halving is exact, so the window's gates and states must equal the textbook
    sigmoid step bit for bit."""
    cell, plain_step = CELLS[name], PLAIN_STEPS[name]
    rng = np.random.default_rng(3)
    T, N, D, H = 4, 5, 6, 7
    p = cell.init(rng, D, H, dtype)
    x = rng.standard_normal((T, N, D)).astype(dtype)
    state = tuple(rng.standard_normal((N, H)).astype(dtype) for _ in cell.STATE_NAMES)
    _, _, cache = cell.forward(p, x, state)
    found = cell.activations(cache)
    for t in range(T):
        gates, state = plain_step(p, x[t], state)
        for k, want in (*gates.items(), *zip(cell.STATE_NAMES, state)):
            assert np.array_equal(found[k][t], want), (k, t)


@pytest.mark.parametrize("name", sorted(PLAIN_STEPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N", [1, 5], ids=["generation", "batch"])
def test_step_on_halved_weights_gives_the_bits_of_the_plain_sigmoid(name, dtype, N):
    """Generation's step reads weights whose sigmoid gates' columns step_params halved once (the
    GRU's r, z, the LSTM's i, f, o), where it used to halve each step's pre-activations itself.
    Halving is exact, so the products on the halved weights are exactly half the products and the
    step must still equal the textbook sigmoid step bit for bit: sampled text and per-step states
    keep their bits."""
    cell, plain_step = CELLS[name], PLAIN_STEPS[name]
    rng = np.random.default_rng(5)
    T, D, H = 4, 6, 7
    p = cell.init(rng, D, H, dtype)
    kept = {k: v.copy() for k, v in p.items()}
    q = cell.step_params(p)
    assert all(np.array_equal(p[k], kept[k]) for k in p)  # halved copies: p keeps its weights
    x = rng.standard_normal((T, N, D)).astype(dtype)
    state = want = tuple(rng.standard_normal((N, H)).astype(dtype) for _ in cell.STATE_NAMES)
    for t in range(T):
        a = x[t] @ q["Wx"]
        a += q["b"]
        state = cell.step(q, a, state)
        _, want = plain_step(p, x[t], want)
        for k, (got, expected) in enumerate(zip(state, want)):
            assert np.array_equal(got, expected), (cell.STATE_NAMES[k], t)


def test_lstm_gate_major_window_keeps_the_checkpoint_gate_order():
    """The LSTM keeps its gates gate-major inside a window, (4, T, N, H), while Wx, Wh and b keep
    i, f, o, g column blocks: activations() must name each gate the textbook step computes, for
    id input too."""
    from charrnn.cells import lstm
    rng = np.random.default_rng(4)
    T, N, D, H = 3, 4, 5, 6
    p = lstm.init(rng, D, H, np.float64)
    x = rng.integers(0, D, (T, N))
    state = (rng.standard_normal((N, H)), rng.standard_normal((N, H)))
    _, _, cache = lstm.forward(p, x, state)
    found = lstm.activations(cache)
    for t in range(T):
        gates, state = _plain_lstm_step(p, np.eye(D)[x[t]], state)
        for name, want in (*gates.items(), *zip(lstm.STATE_NAMES, state)):
            np.testing.assert_allclose(found[name][t], want, rtol=1e-12, atol=1e-14)
