"""minLSTM layer over a whole window (Feng et al., 2024, "Were RNNs All We Needed?"): an LSTM
whose gates and candidate see the input only, with the forget and input gates normalised to sum
to one, so that the state is a weighted mean of the old state and the candidate.

Column blocks of Wx (D, 3H) and b (3H,) are f, i, n (forget, input, candidate); the order is
part of the checkpoint format:

    f_t = sigmoid(x_t Wx[f] + b[f]),  i_t = sigmoid(x_t Wx[i] + b[i])
    n_t = x_t Wx[n] + b[n]                      (linear, as in the paper's sequential form)
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
from ._input import project, project_backward

STATE_NAMES = ("h",)
GATES = 3
GATE_NAMES = ("f", "i", "n")


class Cache(NamedTuple):
    """What backward needs from forward."""
    x: object  # the input, ids (T, N) or (T, N, D)
    acts: np.ndarray  # (T, N, 3H): 1 - f, 1 - i (the raw gates' complements) and n
    z: np.ndarray  # (T, N, H): i' = i / (f + i), the share of the candidate
    hs_ext: np.ndarray  # (T+1, N, H): h0, then h_1 .. h_T


def param_shapes(D, H):
    return {"Wx": (D, 3 * H), "b": (3 * H,)}


def init(rng, D, H, dtype):
    """Uniform(-1/sqrt(D), 1/sqrt(D)) for Wx, PyTorch's nn.Linear default, and b = 0."""
    k = 1.0 / np.sqrt(D)
    return {"Wx": rng.uniform(-k, k, size=(D, 3 * H)).astype(dtype),
            "b": np.zeros(3 * H, dtype=dtype)}


def _gates(a, z):
    """a (T, n, 3H) pre-activations -> z = i' (written), and a's f, i blocks become 1 - f and
    1 - i, what backward needs: d(log sigmoid(x))/dx = 1 - sigmoid(x) = sigmoid(-x)."""
    H = z.shape[-1]
    af, ai = a[..., :H], a[..., H:2 * H]
    log_sigmoid(ai, out=z)
    z -= log_sigmoid(af, out=np.empty_like(z))
    sigmoid(z, out=z)
    np.negative(a[..., :2 * H], out=a[..., :2 * H])
    sigmoid(a[..., :2 * H], out=a[..., :2 * H])


def forward(p, x, state):
    """Run the window. Returns hs (T, N, H), the final state (hT,) and a cache for backward."""
    (h0,) = state
    acts = project(p["Wx"], p["b"], x)  # (T, N, 3H): the pre-activations, overwritten
    T, N, G = acts.shape
    H = G // 3
    z = np.empty((T, N, H), dtype=acts.dtype)
    hs_ext = np.empty((T + 1, N, H), dtype=acts.dtype)
    hs_ext[0] = h0

    def block(rows):
        _gates(acts[:, rows], z[:, rows])
        _scan.forward(z[:, rows], acts[:, rows, 2 * H:], hs_ext[:, rows])

    runtime.run(block, runtime.blocks(N))
    hs = hs_ext[1:]
    return hs, (hs[-1].copy(),), Cache(x, acts, z, hs_ext)


def backward(p, cache, dhs, dstate=None):
    """Backward through the window.

    dhs (T, N, H): gradient of the loss w.r.t. every output h_t (from above);
    dstate: gradient w.r.t. the final state, or None for zero.
    Returns grads {Wx, b}, dx ((T, N, D) or None for ids) and (dh0,).

    With i' = sigmoid(d), d = log sigmoid(a_i) - log sigmoid(a_f):
    dd = di' i' (1 - i'),  da_f = -dd (1 - f),  da_i = dd (1 - i).
    """
    x, acts, z, hs_ext = cache
    T, N, H = dhs.shape
    da = np.empty_like(acts)  # (T, N, 3H): dLoss/d(x Wx + b)
    dh0 = np.empty((N, H), dtype=acts.dtype)

    def block(rows):
        zr = z[:, rows]
        dh = np.empty_like(dhs[:, rows])
        dh0[rows] = _scan.backward(zr, dhs[:, rows], None if dstate is None else dstate[0][rows],
                                   dh)
        dd = np.empty_like(dh)
        _scan.gate_grads(zr, acts[:, rows, 2 * H:], hs_ext[:-1, rows], dh, dd, da[:, rows, 2 * H:])
        np.subtract(1.0, zr, out=dh)  # sigmoid' = i' (1 - i'), dh reused as scratch
        dh *= zr
        dd *= dh
        np.multiply(dd, acts[:, rows, H:2 * H], out=da[:, rows, H:2 * H])
        np.multiply(dd, acts[:, rows, :H], out=da[:, rows, :H])
        np.negative(da[:, rows, :H], out=da[:, rows, :H])

    runtime.run(block, runtime.blocks(N))
    dWx, db, dx = project_backward(p["Wx"], x, da)
    return {"Wx": dWx, "b": db}, dx, (dh0,)


def activations(cache):
    """What a unit computed at each step, by name, each (T, N, H): h, the normalised gates
    f' = 1 - i' (the share of h_{t-1} kept) and i' (the share of the candidate written), and
    the candidate n."""
    H = cache.z.shape[2]
    return {"h": cache.hs_ext[1:], "f": 1.0 - cache.z, "i": cache.z,
            "n": cache.acts[:, :, 2 * H:]}


def step(p, a, state):
    """One step for generation. a (N, 3H) = x Wx + b already looked up; returns (h,)."""
    (h_prev,) = state
    H = h_prev.shape[1]
    a = a[None].copy()  # _gates overwrites its input
    z = np.empty((1,) + h_prev.shape, dtype=a.dtype)
    _gates(a, z)
    hs_ext = np.empty((2,) + h_prev.shape, dtype=a.dtype)
    hs_ext[0] = h_prev
    _scan.forward(z, a[:, :, 2 * H:], hs_ext)
    return (hs_ext[1],)
