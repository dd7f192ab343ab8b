"""Vanilla tanh RNN layer over a whole window: h_t = tanh(x_t Wx + h_{t-1} Wh + b).

Arrays are time-major so that each step's slice is contiguous: x (T, N) ids or (T, N, D),
hidden states hs (T, N, H), state (h,) with h (N, H). Parameters: Wx (D, H), Wh (H, H), b (H,).
"""
import numpy as np

from ._input import project, project_backward

STATE_NAMES = ("h",)
GATES = 1


def param_shapes(D, H):
    return {"Wx": (D, H), "Wh": (H, H), "b": (H,)}


def init(rng, D, H, dtype):
    """Uniform(-1/sqrt(H), 1/sqrt(H)) for every parameter, as PyTorch's nn.RNN."""
    k = 1.0 / np.sqrt(H)
    return {name: rng.uniform(-k, k, size=shape).astype(dtype)
            for name, shape in param_shapes(D, H).items()}


def forward(p, x, state):
    """Run the window. Returns hs (T, N, H), the final state (hT,) and a cache for backward."""
    (h0,) = state
    hs = project(p["Wx"], p["b"], x)  # (T, N, H): holds a_t = x_t Wx + b, overwritten by h_t
    Wh = p["Wh"]
    rec = np.empty_like(h0)
    h = h0
    for t in range(hs.shape[0]):
        np.matmul(h, Wh, out=rec)
        rec += hs[t]
        h = np.tanh(rec, out=hs[t])
    return hs, (hs[-1].copy(),), (x, h0, hs)


def backward(p, cache, dhs, dstate=None):
    """Backward through the window.

    dhs (T, N, H): gradient of the loss w.r.t. every output h_t (from above);
    dstate: gradient w.r.t. the final state, or None for zero.
    Returns grads {Wx, Wh, b}, dx ((T, N, D) or None for ids) and (dh0,).
    """
    x, h0, hs = cache
    T = hs.shape[0]
    WhT = p["Wh"].T
    dh = np.zeros_like(h0) if dstate is None else dstate[0].copy()
    da = np.empty_like(hs)  # da_t = dLoss/d(pre-activation at t)
    for t in range(T - 1, -1, -1):
        dh += dhs[t]
        # tanh' from the stored output: 1 - h_t^2
        np.multiply(hs[t], hs[t], out=da[t])
        np.subtract(1.0, da[t], out=da[t])
        da[t] *= dh
        dh = da[t] @ WhT
    H = hs.shape[2]
    # dWh = sum_t h_{t-1}^T da_t as one product over the window, plus the first step's h0
    dWh = h0.T @ da[0]
    if T > 1:
        dWh += hs[:-1].reshape(-1, H).T @ da[1:].reshape(-1, H)
    dWx, db, dx = project_backward(p["Wx"], x, da)
    return {"Wx": dWx, "Wh": dWh, "b": db}, dx, (dh,)


def step(p, a, state):
    """One step for generation. a (N, H) = x Wx + b already looked up; returns (h,)."""
    (h,) = state
    out = h @ p["Wh"]
    out += a
    return (np.tanh(out, out=out),)
