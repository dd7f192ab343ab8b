"""Vanilla tanh RNN layer over a whole window: h_t = tanh(x_t Wx + h_{t-1} Wh + b).

Arrays are time-major so that each step's slice is contiguous: x (T, N) ids or (T, N, D),
hidden states hs (T, N, H), state (h,) with h (N, H). Parameters: Wx (D, H), Wh (H, H), b (H,).
"""
import numpy as np

from . import _parallel
from ._input import accumulate_backward, input_gradient, is_ids, project

STATE_NAMES = ("h",)
GATES = 1


def param_shapes(D, H):
    return {"Wx": (D, H), "Wh": (H, H), "b": (H,)}


def init(rng, D, H, dtype):
    """Uniform(-1/sqrt(H), 1/sqrt(H)) for every parameter, as PyTorch's nn.RNN."""
    k = 1.0 / np.sqrt(H)
    return {name: rng.uniform(-k, k, size=shape).astype(dtype)
            for name, shape in param_shapes(D, H).items()}


def forward(p, x, state, on_steps=None, a=None):
    """Run the window. Returns hs (T, N, H), the final state (hT,) and a cache for backward.

    on_steps(hs, t0, t1), when given, is called as soon as hs[t0:t1] are final, a few steps at
    a time, so the caller can hand work on them to the helper thread while the loop goes on.
    a (T, N, H), when given, is x Wx + b already computed.
    """
    (h0,) = state
    T, (N, H), Wh = x.shape[0], h0.shape, p["Wh"]
    # hs_ext (T+1, N, H) holds h0 in slot 0, so step t reads slot t and backward gets
    # dWh = sum_t h_{t-1}^T da_t from slices; slots 1.. first hold a_t = x_t Wx + b
    hs_ext = np.empty((T + 1, N, H), dtype=np.result_type(p["Wx"], h0))
    hs_ext[0] = h0
    if a is None:
        project(p["Wx"], p["b"], x, out=hs_ext[1:])
    else:
        hs_ext[1:] = a
    rec = np.empty((N, H), dtype=hs_ext.dtype)
    for t0, t1 in _parallel.chunks(T):
        for t in range(t0, t1):
            np.matmul(hs_ext[t], Wh, out=rec)
            a = hs_ext[t + 1]
            a += rec
            np.tanh(a, out=a)
        if on_steps is not None:
            on_steps(hs_ext[1:], t0, t1)
    hs = hs_ext[1:]
    return hs, (hs[-1].copy(),), (x, hs_ext)


def _tanh_grad(hs, da, steps):
    """da[t0:t1] = 1 - hs[t0:t1]^2: the tanh' factor, from the stored outputs."""
    t0, t1 = steps
    np.multiply(hs[t0:t1], hs[t0:t1], out=da[t0:t1])
    np.subtract(1.0, da[t0:t1], out=da[t0:t1])


def _weight_grads(p, x, hs_ext, da, steps, grads):
    """The steps [t0, t1)'s share of dWh = sum_t h_{t-1}^T da_t, dWx and db."""
    t0, t1 = steps
    H = da.shape[2]
    grads["Wh"] += hs_ext[t0:t1].reshape(-1, H).T @ da[t0:t1].reshape(-1, H)
    accumulate_backward(p["Wx"], x, da, steps, grads["Wx"], grads["b"])


def backward(p, cache, dhs, dstate=None):
    """Backward through the window.

    dhs (T, N, H): gradient of the loss w.r.t. every output h_t (from above);
    dstate: gradient w.r.t. the final state, or None for zero.
    Returns grads {Wx, Wh, b}, dx ((T, N, D) or None for ids) and (dh0,).

    The loop runs on the calling thread; the helper thread first computes the tanh' factors
    ahead of it and then, a few steps behind it, the weight gradients of the steps it has done.
    """
    x, hs_ext = cache
    T, N, H = dhs.shape
    # a contiguous copy: OpenBLAS runs the small products against a transposed view ~40% slower
    WhT = np.ascontiguousarray(p["Wh"].T)
    hs = hs_ext[1:]
    da = np.empty_like(hs)  # da_t = dLoss/d(pre-activation at t) = (1 - h_t^2) * dh_t
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dh = np.zeros((N, H), dtype=da.dtype) if dstate is None else dstate[0].copy()
    pieces = _parallel.chunks(T, descending=True)
    with _parallel.helper() as helper:
        factors = [helper.submit(_tanh_grad, hs, da, steps) for steps in pieces]
        for (t0, t1), ready in zip(pieces, factors):
            helper.wait(ready)
            for t in range(t1 - 1, t0 - 1, -1):
                dh += dhs[t]
                d = da[t]
                d *= dh
                np.matmul(d, WhT, out=dh)
            helper.submit(_weight_grads, p, x, hs_ext, da, (t0, t1), grads)
        dx = input_gradient(p["Wx"], x, da, helper)
    if is_ids(x):
        grads["b"] = grads["Wx"].sum(axis=0)  # every row of da lands in one row of dWx
    return grads, dx, (dh,)


def step(p, a, state):
    """One step for generation. a (N, H) = x Wx + b already looked up; returns (h,)."""
    (h,) = state
    out = h @ p["Wh"]
    out += a
    return (np.tanh(out, out=out),)
