"""minGRU layer over a whole window (Feng et al., 2024, "Were RNNs All We Needed?"): a GRU whose
gate and candidate see the input only, never h_{t-1}.

Column blocks of Wx (D, 2H) and b (2H,) are z, n (update gate, candidate); the order is part of
the checkpoint format:

    z_t = sigmoid(x_t Wx[z] + b[z])
    n_t = tanh(x_t Wx[n] + b[n])                (tanh: see _scan.candidate)
    h_t = (1 - z_t) * h_{t-1} + z_t * n_t

With h_{t-1} gone from the right-hand sides, x Wx for the whole window is one (T*N, D) x (D, 2H)
product, and what is left in time is the elementwise linear scan of _scan.py. Arrays are
time-major: x (T, N) ids or (T, N, D), hs (T, N, H), state (h,) with h (N, H).
"""
from typing import NamedTuple

import numpy as np

from .. import runtime
from . import _scan
from ._activations import sigmoid
from ._input import init_input, project_blocks, project_blocks_backward

STATE_NAMES = ("h",)
GATES = 2
GATE_NAMES = ("z", "n")


class Cache(NamedTuple):
    """What backward needs from forward."""
    x: object  # the input, ids (T, N) or (T, N, D)
    z: np.ndarray  # (T, N, H): the update gate
    n: np.ndarray  # (T, N, H): the candidate
    hs_ext: np.ndarray  # (T+1, N, H): h0, then h_1 .. h_T


def param_shapes(D, H):
    return {"Wx": (D, 2 * H), "b": (2 * H,)}


def init(rng, D, H, dtype):
    return init_input(rng, D, 2 * H, dtype)


def forward(p, x, state, threads=runtime.ONE_THREAD):
    """Run the window. Returns hs (T, N, H), the final state (hT,) and a cache for backward."""
    (h0,) = state
    # (T, N, H) each; z's becomes the gate
    z, n = project_blocks(p["Wx"], p["b"], x, 2, threads=threads)
    T, N, H = z.shape
    hs_ext = np.empty((T + 1, N, H), dtype=z.dtype)
    hs_ext[0] = h0

    def block(rows):
        sigmoid(z[:, rows], out=z[:, rows])
        _scan.candidate(n[:, rows])
        _scan.forward(z[:, rows], n[:, rows], hs_ext[:, rows])

    threads.each_block(block, N)
    hs = hs_ext[1:]
    return hs, (hs[-1].copy(),), Cache(x, z, n, hs_ext)


def backward(p, cache, dhs, dstate=None, threads=runtime.ONE_THREAD):
    """Backward through the window.

    dhs (T, N, H): gradient of the loss w.r.t. every output h_t (from above);
    dstate: gradient w.r.t. the final state, or None for zero.
    Returns grads {Wx, b}, dx ((T, N, D) or None for ids) and (dh0,).
    """
    x, z, n, hs_ext = cache
    T, N, H = dhs.shape
    dz, dn = np.empty_like(z), np.empty_like(n)  # dLoss/d(pre-activations)
    dh0 = np.empty((N, H), dtype=z.dtype)

    def block(rows):
        zr, dzr = z[:, rows], dz[:, rows]
        dh = np.empty_like(dhs[:, rows])
        dh0[rows] = _scan.backward(zr, dhs[:, rows], None if dstate is None else dstate[0][rows],
                                   dh)
        _scan.gate_grads(zr, n[:, rows], hs_ext[:-1, rows], dh, dzr, dn[:, rows])
        _scan.candidate_backward(n[:, rows], dn[:, rows])
        np.subtract(1.0, zr, out=dh)  # sigmoid' = z (1 - z), dh reused as scratch
        dh *= zr
        dzr *= dh

    threads.each_block(block, N)
    dWx, db, dx = project_blocks_backward(p["Wx"], x, [dz, dn], threads=threads)
    return {"Wx": dWx, "b": db}, dx, (dh0,)


def activations(cache):
    """What a unit computed at each step, by name: h, the gate z and the candidate n, each
    (T, N, H), views into the cache."""
    return {"h": cache.hs_ext[1:], "z": cache.z, "n": cache.n}


def step_params(p):
    """The weights step reads, made once before generation: p as it is, nothing to fold in."""
    return p


def step(p, a, state):
    """One step for generation. a (N, 2H) = x Wx + b already looked up; returns (h,)."""
    (h_prev,) = state
    H = h_prev.shape[1]
    z = sigmoid(a[:, :H], out=np.empty_like(h_prev, dtype=a.dtype))
    n = a[None, :, H:].copy()
    _scan.candidate(n)
    # the scan's own step, so that generation gives the training pass's bits
    hs_ext = np.empty((2,) + h_prev.shape, dtype=a.dtype)
    hs_ext[0] = h_prev
    _scan.forward(z[None], n, hs_ext)
    return (hs_ext[1],)
