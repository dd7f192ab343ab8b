"""The plain reference (charrnn/reference/): its own backward passes against finite differences,
then the fast cells and the fast model against it, in float64."""
import numpy as np
import pytest

from charrnn import model, reference
from charrnn.cells import CELLS
from gradcheck import numeric_grad, rel_error

T, N, D, H, V = 4, 3, 6, 5, 7
FD_TOL = 1e-7  # finite differences against an analytic gradient
EXACT = 1e-10  # two analytic computations of the same float64 numbers
BIG_N = 40  # at N >= 32 the fast cells run the batch in two halves on two threads


def _params(name, width, rng):
    """Weights larger than init (0.5 standard normal) so every nonlinearity is exercised."""
    return {k: rng.standard_normal(shape) * 0.5
            for k, shape in CELLS[name].param_shapes(width, H).items()}


def _state(name, n, rng):
    return tuple(rng.standard_normal((n, H)) for _ in CELLS[name].STATE_NAMES)


def _model_case(name, n, rng, stack="plain", expand=1, mlp=0):
    spec = model.ModelSpec(name, V, H, layers=2, dtype="float64", stack=stack, expand=expand,
                           mlp=mlp)
    params = {k: rng.standard_normal(v.shape) * 0.5
              for k, v in model.init_params(spec, rng).items()}
    x, y = rng.integers(0, V, size=(T, n)), rng.integers(0, V, size=(T, n))
    state = [tuple(rng.standard_normal(s.shape) for s in layer)
             for layer in model.zero_state(spec, n)]
    return spec, params, x, y, state


# the residual stack as the tests see it: plain cells in it, one wider with an MLP
STACKS = {"plain": {}, "residual": {"stack": "residual"},
          "residual-x2-mlp3": {"stack": "residual", "expand": 2, "mlp": 3}}


def _assert_same(fast, ref, what):
    """max |fast - ref| relative to the reference's scale (floor 1) is at most EXACT."""
    assert np.shape(fast) == np.shape(ref), (what, np.shape(fast), np.shape(ref))
    err = np.max(np.abs(np.asarray(fast) - ref)) / max(1.0, np.max(np.abs(ref)))
    assert err <= EXACT, (what, err)


# ---- (a) the reference's own gradients ---------------------------------------------------------

@pytest.mark.parametrize("name", sorted(reference.WINDOWS))
def test_reference_cell_backward_matches_finite_differences(name):
    """Every weight, dx for dense input and every initial-state array, contracted with a random
    upstream gradient on the outputs and on the final state."""
    forward, backward = reference.WINDOWS[name]
    rng = np.random.default_rng(0)
    p, x, state = _params(name, D, rng), rng.standard_normal((T, N, D)), _state(name, N, rng)
    dhs, dstate = rng.standard_normal((T, N, H)), _state(name, N, rng)

    def f():
        hs, final, _ = forward(p, x, state)
        return float(np.sum(hs * dhs) + sum(np.sum(s * d) for s, d in zip(final, dstate)))

    grads, dx, dstate0 = backward(p, forward(p, x, state)[2], dhs, dstate)
    assert set(grads) == set(p)
    for k in p:
        assert rel_error(grads[k], numeric_grad(f, p[k])) < FD_TOL, (name, k)
    assert rel_error(dx, numeric_grad(f, x)) < FD_TOL, (name, "dx")
    for s_name, s, ds in zip(CELLS[name].STATE_NAMES, state, dstate0):
        assert rel_error(ds, numeric_grad(f, s)) < FD_TOL, (name, s_name + "0")


@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("name", sorted(reference.WINDOWS))
def test_reference_model_backward_matches_finite_differences(name, stack):
    """Every parameter of a 2-layer model and every layer's initial state."""
    rng = np.random.default_rng(1)
    spec, params, x, y, state = _model_case(name, N, rng, **STACKS[stack])

    def loss():
        return reference.model_forward(params, name, spec.layers, x, y, state, spec.stack)[0]

    grads, dstate0 = reference.model_backward(
        reference.model_forward(params, name, spec.layers, x, y, state, spec.stack)[2])
    assert set(grads) == set(params)
    for k in params:
        assert rel_error(grads[k], numeric_grad(loss, params[k])) < FD_TOL, (name, k)
    for layer, (st, dst) in enumerate(zip(state, dstate0)):
        for s_name, s, ds in zip(CELLS[name].STATE_NAMES, st, dst):
            assert rel_error(ds, numeric_grad(loss, s)) < FD_TOL, (name, layer, s_name + "0")


# ---- (b), (c) the fast code equals the reference -----------------------------------------------

@pytest.mark.parametrize("n", [N, BIG_N], ids=["N3", "N40"])
@pytest.mark.parametrize("ids", [True, False], ids=["ids", "dense"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_fast_cell_equals_reference(name, ids, n):
    """Outputs, final state, every parameter gradient, dx and d(initial state), from a carried
    nonzero state and with a nonzero gradient into the final state. Id input goes to the
    reference as explicit one-hot vectors."""
    cell, (forward, backward) = CELLS[name], reference.WINDOWS[name]
    rng = np.random.default_rng(2)
    p = _params(name, V if ids else D, rng)
    x = rng.integers(0, V, size=(T, n)) if ids else rng.standard_normal((T, n, D))
    state, dhs, dstate = _state(name, n, rng), rng.standard_normal((T, n, H)), _state(name, n, rng)

    ref_hs, ref_final, ref_cache = forward(p, reference.one_hot(x, V) if ids else x, state)
    ref_grads, ref_dx, ref_dstate0 = backward(p, ref_cache, dhs, dstate)
    hs, final, cache = cell.forward(p, x, state)
    grads, dx, dstate0 = cell.backward(p, cache, dhs, dstate)

    _assert_same(hs, ref_hs, "hs")
    assert set(grads) == set(ref_grads)
    for k in ref_grads:
        _assert_same(grads[k], ref_grads[k], "d" + k)
    for s_name, a, b, da, db in zip(cell.STATE_NAMES, final, ref_final, dstate0, ref_dstate0):
        _assert_same(a, b, s_name + "T")
        _assert_same(da, db, "d" + s_name + "0")
    if ids:
        assert dx is None  # the reference's dx is w.r.t. the one-hot vectors, a constant
    else:
        _assert_same(dx, ref_dx, "dx")


@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("n", [N, BIG_N], ids=["N3", "N40"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_fast_model_equals_reference(name, n, stack):
    """Loss, new state, every gradient and every layer's d(initial state), 2 layers, carried
    nonzero state."""
    spec, params, x, y, state = _model_case(name, n, np.random.default_rng(3), **STACKS[stack])
    ref_loss, ref_state, ref_cache = reference.model_forward(params, name, spec.layers, x, y, state,
                                                             spec.stack)
    ref_grads, ref_dstate0 = reference.model_backward(ref_cache)
    loss, new_state, cache = model.forward(params, spec, x, y, state)
    grads, dstate0 = model.backward(params, spec, cache)

    _assert_same(loss, ref_loss, "loss")
    assert set(grads) == set(ref_grads) == set(params)
    for k in params:
        _assert_same(grads[k], ref_grads[k], "d" + k)
    for layer in range(spec.layers):
        for i, s_name in enumerate(spec.cell_module.STATE_NAMES):
            _assert_same(new_state[layer][i], ref_state[layer][i], (layer, s_name + "T"))
            _assert_same(dstate0[layer][i], ref_dstate0[layer][i], (layer, "d" + s_name + "0"))


# ---- (d) the comparison sees the gate order ----------------------------------------------------

def _swap_blocks(p, gates, a, b):
    """p with gate blocks a and b (each H columns of Wx, Wh and b) exchanged."""
    order = list(range(gates))
    order[a], order[b] = order[b], order[a]
    cols = np.concatenate([np.arange(k * H, (k + 1) * H) for k in order])
    return {k: (v[..., cols] if k in ("Wx", "Wh", "b") else v) for k, v in p.items()}


@pytest.mark.parametrize("name, a, b", [
    (name, a, b) for name in ("lstm", "gru", "mingru", "minlstm")
    for a in range(CELLS[name].GATES) for b in range(a + 1, CELLS[name].GATES)])
def test_swapped_gate_blocks_do_not_match(name, a, b):
    """A reference that read two gate blocks in each other's place would differ from the fast
    cell by far more than EXACT, so the equality tests above pin the gate order."""
    cell, forward = CELLS[name], reference.WINDOWS[name][0]
    rng = np.random.default_rng(4)
    p, x, state = _params(name, V, rng), rng.integers(0, V, size=(T, N)), _state(name, N, rng)
    hs, _, _ = cell.forward(p, x, state)
    swapped_hs, _, _ = forward(_swap_blocks(p, cell.GATES, a, b), reference.one_hot(x, V), state)
    assert np.max(np.abs(hs - swapped_hs)) > 1e-2


def test_lstm_open_forget_gate_carries_the_cell():
    """Hand-picked: zero weights, bias +30 on the forget block only, so f = 1, i = o = 1/2 and
    g = 0: c_t = c0 and h_t = tanh(c0) / 2 at every step, in both implementations. Had either
    taken the bias for the input gate, c_t would fall to 0 through f = 1/2."""
    rng = np.random.default_rng(5)
    p = {"Wx": np.zeros((V, 4 * H)), "Wh": np.zeros((H, 4 * H)), "b": np.zeros(4 * H)}
    p["b"][H:2 * H] = 30.0
    x, state = rng.integers(0, V, size=(T, N)), _state("lstm", N, rng)
    expected_hs = np.broadcast_to(np.tanh(state[1]) / 2, (T, N, H))
    fast_hs, fast_final, _ = CELLS["lstm"].forward(p, x, state)
    ref_hs, ref_final, _ = reference.lstm_forward(p, reference.one_hot(x, V), state)
    for hs, (_, c) in [(fast_hs, fast_final), (ref_hs, ref_final)]:
        np.testing.assert_allclose(c, state[1], rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(hs, expected_hs, rtol=1e-11, atol=1e-11)


def test_gru_closed_update_gate_keeps_h():
    """Hand-picked: bias +30 on the update block, other weights random, so z = 1 and
    h_t = h0 at every step, in both implementations, whatever r and n are."""
    rng = np.random.default_rng(6)
    p = _params("gru", V, rng)
    p["Wx"][:, H:2 * H] = p["Wh"][:, H:2 * H] = 0.0
    p["b"][H:2 * H] = 30.0
    x, state = rng.integers(0, V, size=(T, N)), _state("gru", N, rng)
    expected_hs = np.broadcast_to(state[0], (T, N, H))
    fast_hs, _, _ = CELLS["gru"].forward(p, x, state)
    ref_hs, _, _ = reference.gru_forward(p, reference.one_hot(x, V), state)
    for hs in (fast_hs, ref_hs):
        np.testing.assert_allclose(hs, expected_hs, rtol=1e-11, atol=1e-11)
