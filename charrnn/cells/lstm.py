"""LSTM layer over a whole window, the four gates packed into one Wx and one Wh.

Gate order along the 4H columns of Wx, Wh and b is i, f, o, g (input, forget, output, cell
candidate); it is part of the checkpoint format. Inside a window the gates are kept gate-major,
(4, T, N, H), so that each gate of a step is a contiguous (N, H) block, and the three sigmoid
gates come first so that one call covers them:

    [i | f | o | g] = x_t Wx + h_{t-1} Wh + b            (N, 4H) pre-activations
    i, f, o = sigmoid(.), g = tanh(.)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

Arrays are time-major: x (T, N) ids or (T, N, D), hs (T, N, H), state (h, c) with each (N, H).
Parameters: Wx (D, 4H), Wh (H, 4H), b (4H,).
"""
import functools
from typing import NamedTuple

import numpy as np

from .. import runtime
from ._input import gate_major_weights, is_ids, project_backward, project_gate_major, scaled_gates
from ._window import BackwardBase, whole_backward, whole_forward

STATE_NAMES = ("h", "c")
GATES = 4
GATE_NAMES = ("i", "f", "o", "g")


class Cache(NamedTuple):
    """What backward needs from forward."""
    x: object  # the input, ids (T, N) or (T, N, D)
    acts: np.ndarray  # (4, T, N, H): the gates i, f, o, g after their activations, gate-major
    cs_ext: np.ndarray  # (T+1, N, H): c0, then c_1 .. c_T
    tanh_cs: np.ndarray  # (T, N, H): tanh(c_t)
    hs_ext: np.ndarray  # (T+1, N, H): h0, then h_1 .. h_T


def param_shapes(D, H):
    return {"Wx": (D, 4 * H), "Wh": (H, 4 * H), "b": (4 * H,)}


def init(rng, D, H, dtype):
    """Uniform(-1/sqrt(H), 1/sqrt(H)) as PyTorch's nn.LSTM, but forget bias 1.

    A forget bias of 1 keeps the cell state open at the start, so gradients flow back across
    many steps before training has learnt to remember anything.
    """
    k = 1.0 / np.sqrt(H)
    p = {name: rng.uniform(-k, k, size=shape).astype(dtype)
         for name, shape in param_shapes(D, H).items()}
    p["b"][H:2 * H] = 1.0
    return p


@functools.lru_cache(maxsize=None)
def gate_scale(H, dtype):
    """(4H,) read-only: 1/2 on the i, f, o columns, 1 on g.

    sigmoid(x) = (1 + tanh(x / 2)) / 2, so once the i, f, o columns of the pre-activations are
    halved, a single tanh over all four gates gives every gate's tanh, and `* 0.5 + 0.5` over
    the i, f, o block turns three of them into sigmoids. Halving is exact in floating point, so
    x Wx and h Wh with halved columns are exactly half the products.
    """
    scale = np.ones(4 * H, dtype=dtype)
    scale[:3 * H] = 0.5
    scale.flags.writeable = False
    return scale


def _activate(z, c_prev, c, tanh_c, h, tmp):
    """One step in place. z (4, N, H) holds the pre-activations, i, f, o halved, on entry and
    i, f, o, g on exit; c_prev (N, H) is read; c, tanh_c and h (N, H) are written; tmp (N, H) is
    scratch.

    Gate-major: each gate is its own (N, H) block, contiguous in the window's buffers, because
    NumPy runs an operation on a column block of an (N, 4H) row (a strided view) 2-3x slower
    than on a contiguous array of the same size.
    """
    np.tanh(z, out=z)
    ifo = z[:3]
    ifo *= 0.5
    ifo += 0.5
    i, f, o, g = z
    np.multiply(f, c_prev, out=c)
    np.multiply(i, g, out=tmp)
    c += tmp
    np.tanh(c, out=tanh_c)
    np.multiply(o, tanh_c, out=h)


class Forward:
    """The LSTM's forward pass of a window in pieces (cells/__init__.py). x (T, N) ids or
    (T, N, D), read by project only; state (h0, c0), each (N, H)."""

    def __init__(self, p, x, state):
        h0, c0 = state
        T, (N, H) = x.shape[0], h0.shape
        self.x = x
        scale = gate_scale(H, p["Wh"].dtype)
        # gate-major, i, f, o halved: the input side gate by gate, one product a step's (G, n, H)
        self.Wx, self.b, self.Wh = gate_major_weights(p, scale, GATES)
        dtype = self.Wx.dtype if is_ids(x) else np.result_type(x, self.Wx)
        # acts (G, T, N, H): x_t Wx + b, overwritten by the gates
        self.acts = np.empty((GATES, T, N, H), dtype=dtype)
        # hs_ext, cs_ext (T+1, N, H) hold h0, c0 in slot 0, so step t reads slot t and backward
        # gets dWh = sum_t h_{t-1}^T da_t as one product
        self.hs_ext = np.empty((T + 1, N, H), dtype=dtype)
        self.cs_ext = np.empty_like(self.hs_ext)
        self.hs_ext[0], self.cs_ext[0] = h0, c0
        self.tanh_cs = np.empty((T, N, H), dtype=dtype)  # kept so backward needs no second tanh
        self.hs = self.hs_ext[1:]

    def project(self, steps, threads=runtime.ONE_THREAD):
        """acts[:, steps] = x[steps] Wx + b, every row."""
        project_gate_major(self.Wx, self.b, self.x, self.acts, steps, threads)

    def loop(self, rows, steps=slice(None)):
        """The recurrence on rows (a slice of the batch) over steps (consecutive, in order);
        the steps before them must be done for these rows, and their input side projected."""
        acts, hs_ext, cs_ext, tanh_cs = self.acts, self.hs_ext, self.cs_ext, self.tanh_cs
        n, H = rows.stop - rows.start, hs_ext.shape[2]
        rec = np.empty((GATES, n, H), dtype=acts.dtype)
        tmp = np.empty((n, H), dtype=acts.dtype)
        for t in range(*steps.indices(len(tanh_cs))):
            np.matmul(hs_ext[t, rows], self.Wh, out=rec)
            z = acts[:, t, rows]
            z += rec
            _activate(z, cs_ext[t, rows], cs_ext[t + 1, rows], tanh_cs[t, rows],
                      hs_ext[t + 1, rows], tmp)

    def result(self):
        """hs (T, N, H), the final state (hT, cT) and the cache for backward."""
        return self.hs, (self.hs[-1].copy(), self.cs_ext[-1].copy()), Cache(
            self.x, self.acts, self.cs_ext, self.tanh_cs, self.hs_ext)


def forward(p, x, state, threads=runtime.ONE_THREAD):
    """Run the window. Returns hs (T, N, H), the final state (hT, cT) and a cache for backward."""
    return whole_forward(Forward, p, x, state, threads)


def _backward_step(acts, c_prev, tanh_c, dh, dc, da, tmp, work):
    """Gates at one step given dh, dc (N, H) = dLoss/d(h_t, c_t); acts, da (4, N, H).

    Writes da = dLoss/d(pre-activations) and turns dc into dLoss/dc_{t-1} in place; tmp (N, H)
    and work (4, N, H) are scratch. Derivatives come from the stored outputs:
    sigmoid' = (1 - s) s, tanh' = (1 - g)(1 + g).
    """
    i, f, o, g = acts
    di, df, do, dg = da
    # dLoss/d(gate outputs) first, gate by gate ...
    np.multiply(dh, tanh_c, out=do)
    # dc_t += dh * o * (1 - tanh(c_t)^2)
    np.multiply(tanh_c, tanh_c, out=tmp)
    np.subtract(1.0, tmp, out=tmp)
    tmp *= o
    tmp *= dh
    dc += tmp
    np.multiply(dc, g, out=di)
    np.multiply(dc, c_prev, out=df)
    np.multiply(dc, i, out=dg)
    # ... then every activation's derivative: (1 - a) for all four, a on i, f, o, (1 + g) on g
    np.subtract(1.0, acts, out=work)
    da *= work
    da[:3] *= acts[:3]
    np.add(g, 1.0, out=tmp)
    dg *= tmp
    dc *= f


class Backward(BackwardBase):
    """The LSTM's backward pass of a window in pieces (cells/__init__.py). cache from forward;
    dstate: the gradients (dhT, dcT) w.r.t. the final state, or None for zero."""

    def __init__(self, p, cache, dstate=None):
        super().__init__(p, cache)
        _, acts, _, tanh_cs, _ = cache
        T, N, H = tanh_cs.shape
        dtype = acts.dtype
        # (T, N, 4H): dLoss/d(pre-activations) in the parameters' column order, so that each
        # step's rows are one product's operand and the window's gradients one product each
        self.da = np.empty((T, N, GATES * H), dtype=dtype)
        # dLoss/d(h, c) at the step the loop has reached, per row: d(h0, c0) once all are done
        if dstate is None:
            self.dh, self.dc = np.zeros((N, H), dtype=dtype), np.zeros((N, H), dtype=dtype)
        else:
            self.dh, self.dc = dstate[0].copy(), dstate[1].copy()

    def loop(self, rows, dhs, steps=slice(None)):
        """The recurrence on rows over steps (consecutive, last first) given dhs (T, N, H), the
        gradient from above; the steps after them must be done for these rows."""
        _, acts, cs_ext, tanh_cs, _ = self.cache
        da, WhT, H = self.da, self.WhT, tanh_cs.shape[2]
        n = rows.stop - rows.start
        dh, dc = self.dh[rows], self.dc[rows]
        tmp = np.empty((n, H), dtype=dh.dtype)
        da_t, work = (np.empty((GATES, n, H), dtype=dh.dtype) for _ in range(2))
        for t in reversed(range(*steps.indices(len(tanh_cs)))):
            dh += dhs[t, rows]
            _backward_step(acts[:, t, rows], cs_ext[t, rows], tanh_cs[t, rows], dh, dc, da_t,
                           tmp, work)
            np.copyto(da[t, rows].reshape(n, GATES, H).transpose(1, 0, 2), da_t)
            np.matmul(da[t, rows], WhT, out=dh)

    def input_grad(self, steps, out):
        """out[steps] = dLoss/dx at those steps (dense input), once loop has done them."""
        da = self.da[steps]
        rows = da.shape[0] * da.shape[1]
        np.matmul(da.reshape(rows, GATES * self.WhT.shape[1]), self.WxT,
                  out=out[steps].reshape(rows, self.WxT.shape[1]))

    def result(self, threads=runtime.ONE_THREAD, dx=True):
        """grads {Wx, Wh, b}, dx ((T, N, D) or None for ids, and None when dx is False: the
        caller took it from input_grad) and (dh0, dc0)."""
        x, _, _, tanh_cs, hs_ext = self.cache
        T, N, H = tanh_cs.shape
        dWh = threads.matmul(hs_ext[:-1].reshape(T * N, H).T, self.da.reshape(T * N, GATES * H))
        dWx, db, dx = project_backward(self.p["Wx"], x, self.da, threads=threads, dx=dx)
        return {"Wx": dWx, "Wh": dWh, "b": db}, dx, (self.dh, self.dc)


def backward(p, cache, dhs, dstate=None, threads=runtime.ONE_THREAD):
    """Backward through the window.

    dhs (T, N, H): gradient of the loss w.r.t. every output h_t (from above);
    dstate: gradients (dhT, dcT) w.r.t. the final state, or None for zero.
    Returns grads {Wx, Wh, b}, dx ((T, N, D) or None for ids) and (dh0, dc0).
    """
    return whole_backward(Backward, p, cache, dhs, dstate, threads)


def activations(cache):
    """What a unit computed at each step, by name: h, c and the gates i, f, o, g, each (T, N, H),
    views into the cache."""
    found = {"h": cache.hs_ext[1:], "c": cache.cs_ext[1:]}
    for k, name in enumerate(GATE_NAMES):
        found[name] = cache.acts[k]
    return found


def step_params(p):
    """The weights step reads, made once before generation: p with the i, f, o columns of Wx
    (D, 4H), b (4H,) and Wh (H, 4H) halved (gate_scale, _input.scaled_gates), g's as they are.

    Halved once here, a step's x Wx + b and h_prev Wh come out with i, f, o already halved, and no
    step pays a multiply of its (N, 4H) row and a gate_scale lookup for it (4% of a generated
    character's instructions at 2 x 256), with the same bits.
    """
    return scaled_gates(p, gate_scale(p["Wh"].shape[0], p["Wh"].dtype))


def step(p, a, state):
    """One step for generation. p = step_params(the layer's parameters); a (N, 4H) = x p["Wx"] +
    p["b"] already looked up, so i, f, o come halved; returns (h, c), each (N, H)."""
    h, c_prev = state
    N, H = c_prev.shape
    z = h @ p["Wh"]
    z += a
    c, tanh_c, h_new, tmp = (np.empty_like(c_prev, dtype=z.dtype) for _ in range(4))
    # (4, N, H) gate-major view; one row's gate blocks are already consecutive, and NumPy runs a
    # contiguous view faster than the transposed one (generation is batch 1)
    gates = z.reshape(GATES, 1, H) if N == 1 else z.reshape(N, GATES, H).transpose(1, 0, 2)
    _activate(gates, c_prev, c, tanh_c, h_new, tmp)
    return h_new, c
