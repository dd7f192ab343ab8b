"""minLSTM layer over a whole window (Feng et al., 2024, "Were RNNs All We Needed?"): an LSTM
whose gates and candidate see the input only, with the forget and input gates normalised to sum
to one, so that the state is a weighted mean of the old state and the candidate.

Column blocks of Wx (D, 3H) and b (3H,) are f, i, n (forget, input, candidate); the order is
part of the checkpoint format:

    f_t = sigmoid(x_t Wx[f] + b[f]),  i_t = sigmoid(x_t Wx[i] + b[i])
    n_t = tanh(x_t Wx[n] + b[n])                (tanh: see _scan.candidate)
    f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t) = 1 - f'_t
    h_t = f'_t * h_{t-1} + i'_t * n_t

which is minGRU's scan (_scan.py) with z_t = i'_t. i' is computed as
sigmoid(log sigmoid(a_i) - log sigmoid(a_f)), the same number: i / (f + i) itself is 0 / 0 in
float32 once both pre-activations are below about -17 (both sigmoids round to 0), and loses its
digits well before that. Arrays are time-major: x (T, N) ids or (T, N, D), hs (T, N, H), state
(h,) with h (N, H).
"""
from typing import NamedTuple

import numpy as np

from .. import runtime
from . import _scan
from ._activations import log_sigmoid, sigmoid
from ._input import init_input, project_blocks, project_blocks_backward

STATE_NAMES = ("h",)
GATES = 3
GATE_NAMES = ("f", "i", "n")


class Cache(NamedTuple):
    """What backward needs from forward."""
    x: object  # the input, ids (T, N) or (T, N, D)
    qf: np.ndarray  # (T, N, H): 1 - f, the raw forget gate's complement
    qi: np.ndarray  # (T, N, H): 1 - i
    n: np.ndarray  # (T, N, H): the candidate
    z: np.ndarray  # (T, N, H): i' = i / (f + i), the share of the candidate
    hs_ext: np.ndarray  # (T+1, N, H): h0, then h_1 .. h_T


def param_shapes(D, H):
    return {"Wx": (D, 3 * H), "b": (3 * H,)}


def init(rng, D, H, dtype):
    return init_input(rng, D, 3 * H, dtype)


def _gates(af, ai, z):
    """The pre-activations af, ai -> z = i' (written); af and ai become 1 - f and 1 - i, what
    backward needs: d(log sigmoid(a))/da = 1 - sigmoid(a) = sigmoid(-a)."""
    log_sigmoid(ai, out=z)
    z -= log_sigmoid(af, out=np.empty_like(z))
    sigmoid(z, out=z)
    for a in (af, ai):
        np.negative(a, out=a)
        sigmoid(a, out=a)


def forward(p, x, state, threads=runtime.ONE_THREAD):
    """Run the window. Returns hs (T, N, H), the final state (hT,) and a cache for backward."""
    (h0,) = state
    # (T, N, H) each; qf, qi overwritten
    qf, qi, n = project_blocks(p["Wx"], p["b"], x, 3, threads=threads)
    T, N, H = n.shape
    z = np.empty_like(n)
    hs_ext = np.empty((T + 1, N, H), dtype=n.dtype)
    hs_ext[0] = h0

    def block(rows):
        _gates(qf[:, rows], qi[:, rows], z[:, rows])
        _scan.candidate(n[:, rows])
        _scan.forward(z[:, rows], n[:, rows], hs_ext[:, rows])

    threads.each_block(block, N)
    hs = hs_ext[1:]
    return hs, (hs[-1].copy(),), Cache(x, qf, qi, n, z, hs_ext)


def backward(p, cache, dhs, dstate=None, threads=runtime.ONE_THREAD):
    """Backward through the window.

    dhs (T, N, H): gradient of the loss w.r.t. every output h_t (from above);
    dstate: gradient w.r.t. the final state, or None for zero.
    Returns grads {Wx, b}, dx ((T, N, D) or None for ids) and (dh0,).

    With i' = sigmoid(d), d = log sigmoid(a_i) - log sigmoid(a_f):
    dd = di' i' (1 - i'),  da_f = -dd (1 - f),  da_i = dd (1 - i).
    """
    x, qf, qi, n, z, hs_ext = cache
    T, N, H = dhs.shape
    daf, dai, dn = (np.empty_like(n) for _ in range(3))  # dLoss/d(pre-activations)
    dh0 = np.empty((N, H), dtype=n.dtype)

    def block(rows):
        zr = z[:, rows]
        dh = np.empty_like(dhs[:, rows])
        dh0[rows] = _scan.backward(zr, dhs[:, rows], None if dstate is None else dstate[0][rows],
                                   dh)
        dd = dai[:, rows]  # di', then dd, then da_i
        _scan.gate_grads(zr, n[:, rows], hs_ext[:-1, rows], dh, dd, dn[:, rows])
        _scan.candidate_backward(n[:, rows], dn[:, rows])
        np.subtract(1.0, zr, out=dh)  # sigmoid' = i' (1 - i'), dh reused as scratch
        dh *= zr
        dd *= dh
        np.multiply(dd, qf[:, rows], out=daf[:, rows])
        np.negative(daf[:, rows], out=daf[:, rows])
        dd *= qi[:, rows]

    threads.each_block(block, N)
    dWx, db, dx = project_blocks_backward(p["Wx"], x, [daf, dai, dn], threads=threads)
    return {"Wx": dWx, "b": db}, dx, (dh0,)


def activations(cache):
    """What a unit computed at each step, by name, each (T, N, H), views into the cache: h, the
    normalised input gate i' (the share of the candidate written; the share of h_{t-1} kept is
    f' = 1 - i', not listed again) and the candidate n."""
    return {"h": cache.hs_ext[1:], "i": cache.z, "n": cache.n}


def step_params(p):
    """The weights step reads, made once before generation: p as it is, nothing to fold in."""
    return p


def step(p, a, state):
    """One step for generation. a (N, 3H) = x Wx + b already looked up; returns (h,)."""
    (h_prev,) = state
    H = h_prev.shape[1]
    af, ai = a[None, :, :H].copy(), a[None, :, H:2 * H].copy()  # _gates overwrites them
    z = np.empty((1,) + h_prev.shape, dtype=a.dtype)
    _gates(af, ai, z)
    n = a[None, :, 2 * H:].copy()
    _scan.candidate(n)
    hs_ext = np.empty((2,) + h_prev.shape, dtype=a.dtype)
    hs_ext[0] = h_prev
    _scan.forward(z, n, hs_ext)
    return (hs_ext[1],)
