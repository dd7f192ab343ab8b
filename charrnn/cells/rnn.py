"""Vanilla tanh RNN layer over a whole window: h_t = tanh(x_t Wx + h_{t-1} Wh + b).

Arrays are time-major so that each step's slice is contiguous: x (T, N) ids or (T, N, D),
hidden states hs (T, N, H), state (h,) with h (N, H). Parameters: Wx (D, H), Wh (H, H), b (H,).
"""
from typing import NamedTuple

import numpy as np

from .. import runtime
from ._input import project, project_backward

STATE_NAMES = ("h",)
GATES = 1


class Cache(NamedTuple):
    """What backward needs from forward."""
    x: object  # the input, ids (T, N) or (T, N, D)
    hs_ext: np.ndarray  # (T+1, N, H): h0, then h_1 .. h_T


def param_shapes(D, H):
    return {"Wx": (D, H), "Wh": (H, H), "b": (H,)}


def init(rng, D, H, dtype):
    """Uniform(-1/sqrt(H), 1/sqrt(H)) for every parameter, as PyTorch's nn.RNN."""
    k = 1.0 / np.sqrt(H)
    return {name: rng.uniform(-k, k, size=shape).astype(dtype)
            for name, shape in param_shapes(D, H).items()}


def forward(p, x, state, threads=runtime.ONE_THREAD):
    """Run the window. Returns hs (T, N, H), the final state (hT,) and a cache for backward."""
    (h0,) = state
    T, (N, H), Wh = x.shape[0], h0.shape, p["Wh"]
    # hs_ext (T+1, N, H) holds h0 in slot 0, so step t reads slot t and backward gets
    # dWh = sum_t h_{t-1}^T da_t as one product; slots 1.. first hold a_t = x_t Wx + b
    hs_ext = np.empty((T + 1, N, H), dtype=np.result_type(p["Wx"], h0))
    hs_ext[0] = h0
    project(p["Wx"], p["b"], x, out=hs_ext[1:], threads=threads)

    def loop(rows):
        rec = np.empty((rows.stop - rows.start, H), dtype=hs_ext.dtype)
        for t in range(T):
            np.matmul(hs_ext[t, rows], Wh, out=rec)
            a = hs_ext[t + 1, rows]
            a += rec
            np.tanh(a, out=a)

    threads.each_block(loop, N)
    hs = hs_ext[1:]
    return hs, (hs[-1].copy(),), Cache(x, hs_ext)


def backward(p, cache, dhs, dstate=None, threads=runtime.ONE_THREAD):
    """Backward through the window.

    dhs (T, N, H): gradient of the loss w.r.t. every output h_t (from above);
    dstate: gradient w.r.t. the final state, or None for zero.
    Returns grads {Wx, Wh, b}, dx ((T, N, D) or None for ids) and (dh0,).
    """
    x, hs_ext = cache
    T, N, H = dhs.shape
    # a contiguous copy: OpenBLAS runs the small products against a transposed view ~40% slower
    WhT = np.ascontiguousarray(p["Wh"].T)
    hs = hs_ext[1:]
    da = np.empty_like(hs)  # da_t = dLoss/d(pre-activation at t) = (1 - h_t^2) * dh_t
    dh0 = np.empty((N, H), dtype=da.dtype)

    def loop(rows):
        # the tanh' factor, from the stored outputs, needs nothing from the recurrence: one pass
        # over the window before the loop rather than two small ones per step
        np.multiply(hs[:, rows], hs[:, rows], out=da[:, rows])
        np.subtract(1.0, da[:, rows], out=da[:, rows])
        dh = np.zeros_like(dh0[rows]) if dstate is None else dstate[0][rows].copy()
        for t in range(T - 1, -1, -1):
            dh += dhs[t, rows]
            d = da[t, rows]
            d *= dh
            np.matmul(d, WhT, out=dh)
        dh0[rows] = dh

    threads.each_block(loop, N)
    dWh = threads.matmul(hs_ext[:-1].reshape(T * N, H).T, da.reshape(T * N, H))
    dWx, db, dx = project_backward(p["Wx"], x, da, threads=threads)
    return {"Wx": dWx, "Wh": dWh, "b": db}, dx, (dh0,)


def activations(cache):
    """What a unit computed at each step, by name: {"h": (T, N, H)}, views into the cache."""
    return {"h": cache.hs_ext[1:]}


def step_params(p):
    """The weights step reads, made once before generation: p as it is, nothing to fold in."""
    return p


def step(p, a, state):
    """One step for generation. a (N, H) = x Wx + b already looked up; returns (h,)."""
    (h,) = state
    out = h @ p["Wh"]
    out += a
    return (np.tanh(out, out=out),)
