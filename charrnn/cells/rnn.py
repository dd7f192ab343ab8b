"""Vanilla tanh RNN layer over a whole window: h_t = tanh(x_t Wx + h_{t-1} Wh + b).

Arrays are time-major so that each step's slice is contiguous: x (T, N) ids or (T, N, D),
hidden states hs (T, N, H), state (h,) with h (N, H). Parameters: Wx (D, H), Wh (H, H), b (H,).
"""
from typing import NamedTuple

import numpy as np

from .. import runtime
from ._input import project, project_backward
from ._window import BackwardBase, whole_backward, whole_forward

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


class Forward:
    """The RNN's forward pass of a window in pieces (cells/__init__.py). x (T, N) ids or
    (T, N, D), read by project only; state (h0,) with h0 (N, H)."""

    def __init__(self, p, x, state):
        (h0,) = state
        T, (N, H) = x.shape[0], h0.shape
        self.p, self.x = p, x
        # hs_ext (T+1, N, H) holds h0 in slot 0, so step t reads slot t and backward gets
        # dWh = sum_t h_{t-1}^T da_t as one product; slots 1.. first hold a_t = x_t Wx + b
        self.hs_ext = np.empty((T + 1, N, H), dtype=np.result_type(p["Wx"], h0))
        self.hs_ext[0] = h0
        self.hs = self.hs_ext[1:]

    def project(self, steps, threads=runtime.ONE_THREAD):
        """hs[steps] = x[steps] Wx + b, every row, for the loop to turn into h."""
        project(self.p["Wx"], self.p["b"], self.x[steps], out=self.hs[steps], threads=threads)

    def loop(self, rows, steps=slice(None)):
        """The recurrence on rows (a slice of the batch) over steps (consecutive, in order);
        the steps before them must be done for these rows, and their input side projected."""
        hs_ext, Wh = self.hs_ext, self.p["Wh"]
        rec = np.empty((rows.stop - rows.start, Wh.shape[1]), dtype=hs_ext.dtype)
        for t in range(*steps.indices(len(self.hs))):
            np.matmul(hs_ext[t, rows], Wh, out=rec)
            a = hs_ext[t + 1, rows]
            a += rec
            np.tanh(a, out=a)

    def result(self):
        """hs (T, N, H), the final state (hT,) and the cache for backward."""
        return self.hs, (self.hs[-1].copy(),), Cache(self.x, self.hs_ext)


def forward(p, x, state, threads=runtime.ONE_THREAD):
    """Run the window. Returns hs (T, N, H), the final state (hT,) and a cache for backward."""
    return whole_forward(Forward, p, x, state, threads)


class Backward(BackwardBase):
    """The RNN's backward pass of a window in pieces (cells/__init__.py). cache from forward;
    dstate: the gradient w.r.t. the final state, or None for zero."""

    def __init__(self, p, cache, dstate=None):
        super().__init__(p, cache)
        hs = cache.hs_ext[1:]
        # da_t = dLoss/d(pre-activation at t) = (1 - h_t^2) * dh_t; loop writes tanh' first
        self.da = np.empty_like(hs)
        # dLoss/dh at the step the loop has reached, per row: dh0 once every step is done
        self.dh = np.zeros_like(hs[0]) if dstate is None else dstate[0].copy()

    def loop(self, rows, dhs, steps=slice(None)):
        """The recurrence on rows over steps (consecutive, last first) given dhs (T, N, H), the
        gradient from above; the steps after them must be done for these rows."""
        hs, da, WhT, dh = self.cache.hs_ext[1:], self.da, self.WhT, self.dh[rows]
        steps = slice(*steps.indices(len(hs)))
        # the tanh' factor, from the stored outputs, needs nothing from the recurrence: one pass
        # over the steps before the loop rather than two small ones per step
        np.multiply(hs[steps, rows], hs[steps, rows], out=da[steps, rows])
        np.subtract(1.0, da[steps, rows], out=da[steps, rows])
        for t in reversed(range(steps.start, steps.stop)):
            dh += dhs[t, rows]
            d = da[t, rows]
            d *= dh
            np.matmul(d, WhT, out=dh)

    def input_grad(self, steps, out):
        """out[steps] = dLoss/dx at those steps (dense input), once loop has done them."""
        da = self.da[steps]
        rows = da.shape[0] * da.shape[1]
        np.matmul(da.reshape(rows, self.WhT.shape[1]), self.WxT,
                  out=out[steps].reshape(rows, self.WxT.shape[1]))

    def result(self, threads=runtime.ONE_THREAD, dx=True):
        """grads {Wx, Wh, b}, dx ((T, N, D) or None for ids, and None when dx is False: the
        caller took it from input_grad) and (dh0,)."""
        x, hs_ext = self.cache
        T, N, H = self.da.shape
        dWh = threads.matmul(hs_ext[:-1].reshape(T * N, H).T, self.da.reshape(T * N, H))
        dWx, db, dx = project_backward(self.p["Wx"], x, self.da, threads=threads, dx=dx)
        return {"Wx": dWx, "Wh": dWh, "b": db}, dx, (self.dh,)


def backward(p, cache, dhs, dstate=None, threads=runtime.ONE_THREAD):
    """Backward through the window.

    dhs (T, N, H): gradient of the loss w.r.t. every output h_t (from above);
    dstate: gradient w.r.t. the final state, or None for zero.
    Returns grads {Wx, Wh, b}, dx ((T, N, D) or None for ids) and (dh0,).
    """
    return whole_backward(Backward, p, cache, dhs, dstate, threads)


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
