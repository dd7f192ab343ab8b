"""What is particular to mingru and minlstm: hand-picked gates whose outputs are known, the
normalised minLSTM gates at pre-activations where the textbook quotient is 0 / 0 in float32, and
the scan's bound. (Their gradients, the reference equality and the one-step generation are
checked with every cell's in test_cells.py, test_reference.py and test_model.py.)"""
import numpy as np
from hypothesis import given, settings, strategies as st

from charrnn import reference
from charrnn.cells import CELLS, minlstm

T, N, H, V = 6, 3, 4, 7


def _state(rng, n=N):
    return (rng.standard_normal((n, H)),)


def _both(name, p, x, state):
    """hs and final h of the fast cell and of the reference (id input)."""
    hs, (hT,), _ = CELLS[name].forward(p, x, state)
    forward = reference.WINDOWS[name][0]
    ref_hs, (ref_hT,), _ = forward(p, reference.one_hot(x, V), state)
    return [(hs, hT), (ref_hs, ref_hT)]


def test_mingru_shut_gate_keeps_h_and_open_gate_takes_the_candidate():
    """b[z] = -40: z = 0 (to float64), so h_t = h_0; b[z] = +40: z = 1, so h_t = n_t =
    tanh(x_t Wx[n] + b[n]), whatever came before."""
    rng = np.random.default_rng(0)
    p = {"Wx": rng.standard_normal((V, 2 * H)), "b": rng.standard_normal(2 * H)}
    p["Wx"][:, :H] = 0.0
    x, state = rng.integers(0, V, size=(T, N)), _state(rng)
    p["b"][:H] = -40.0
    for hs, _ in _both("mingru", p, x, state):
        np.testing.assert_allclose(hs, np.broadcast_to(state[0], hs.shape), atol=1e-15)
    p["b"][:H] = 40.0
    for hs, _ in _both("mingru", p, x, state):
        np.testing.assert_allclose(hs, np.tanh((p["Wx"] + p["b"])[x][:, :, H:]), atol=1e-15)


def test_minlstm_equal_gates_average_the_state_and_the_candidate():
    """Zero weights, zero gate biases: f = i = 1/2, so f' = i' = 1/2 and with the candidate
    bias b_n, c = tanh(b_n), h_t = (h_{t-1} + c) / 2, i.e. h_t = c + (h_0 - c) / 2^t, in both
    implementations."""
    rng = np.random.default_rng(1)
    b_n = rng.standard_normal(H)
    c = np.tanh(b_n)
    p = {"Wx": np.zeros((V, 3 * H)), "b": np.concatenate([np.zeros(2 * H), b_n])}
    x, state = rng.integers(0, V, size=(T, N)), _state(rng)
    expected = np.stack([c + (state[0] - c) / 2 ** (t + 1) for t in range(T)])
    for hs, hT in _both("minlstm", p, x, state):
        np.testing.assert_allclose(hs, expected, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(hT, expected[-1], rtol=1e-14, atol=1e-14)


def test_minlstm_gates_stay_finite_where_the_quotient_is_zero_over_zero():
    """Both gate pre-activations near -100 (and near +100): in float32 sigmoid rounds both to 0
    (to 1), and the textbook i / (f + i) is 0 / 0 (or loses the difference). The fast cell's
    i' = sigmoid(log sigmoid(a_i) - log sigmoid(a_f)) in float32 agrees with the float64
    textbook value."""
    rng = np.random.default_rng(2)
    for level in (-100.0, 100.0, -30.0):
        b = np.concatenate([level + rng.standard_normal(2 * H), rng.standard_normal(H)])
        p64 = {"Wx": np.zeros((V, 3 * H)), "b": b}
        p32 = {k: v.astype(np.float32) for k, v in p64.items()}
        x, state = rng.integers(0, V, size=(T, N)), _state(rng)
        hs32, _, _ = minlstm.forward(p32, x, (state[0].astype(np.float32),))
        ref_hs, _, _ = reference.minlstm_forward(p64, reference.one_hot(x, V), state)
        assert np.all(np.isfinite(hs32))
        np.testing.assert_allclose(hs32, ref_hs, rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, width=32), min_size=2 * H, max_size=2 * H),
       st.sampled_from(["float32", "float64"]))
def test_minlstm_normalised_gates_are_a_split_of_one(gate_pre, dtype):
    """For any finite pre-activations, i' is in [0, 1] and the backward's 1 - f, 1 - i are
    too: never nan, never outside, in either precision."""
    af, ai = (np.array(gate_pre[k * H:(k + 1) * H], dtype=dtype) for k in range(2))
    z = np.empty(H, dtype=dtype)
    minlstm._gates(af, ai, z)
    assert np.all((z >= 0) & (z <= 1)), z
    assert np.all((af >= 0) & (af <= 1) & (ai >= 0) & (ai <= 1))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["mingru", "minlstm"]))
def test_scan_stays_within_its_inputs(seed, name):
    """h_t is a weighted mean of h_{t-1} and n_t, so no h ever leaves [min, max] of h_0 and the
    candidates, for any weights (with a tanh candidate, (-1, 1) from a state inside it): the
    scan cannot blow up, however long the window."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-2, 2)
    p = {k: rng.standard_normal(v.shape) * scale
         for k, v in CELLS[name].init(rng, V, H, "float64").items()}
    x, state = rng.integers(0, V, size=(50, N)), _state(rng)
    hs, _, cache = CELLS[name].forward(p, x, state)
    n = CELLS[name].activations(cache)["n"]
    low = np.minimum(state[0], n.min(axis=0))
    high = np.maximum(state[0], n.max(axis=0))
    assert np.all(hs >= low - 1e-9) and np.all(hs <= high + 1e-9)
