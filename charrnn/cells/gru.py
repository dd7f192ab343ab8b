"""GRU layer over a whole window, the PyTorch/cuDNN variant: the reset gate multiplies the
recurrent product of the candidate, not h_{t-1} before it.

Gate order along the 3H columns of Wx, Wh and b is r, z, n (reset, update, candidate), as in
PyTorch; it is part of the checkpoint format. Inside a window the gates are kept gate-major,
(3, T, N, H), so that each gate of a step is a contiguous (N, H) block. Slices [r], [z], [n]
below are column blocks:

    r = sigmoid(x_t Wx[r] + b[r] + h_{t-1} Wh[r])
    z = sigmoid(x_t Wx[z] + b[z] + h_{t-1} Wh[z])
    n = tanh(x_t Wx[n] + b[n] + r * (h_{t-1} Wh[n] + bhn))
    h_t = (1 - z) * n + z * h_{t-1}

bhn is a separate recurrent bias for n: it sits inside the reset product, so it cannot be
folded into b. Arrays are time-major: x (T, N) ids or (T, N, D), hs (T, N, H), state (h,)
with h (N, H). Parameters: Wx (D, 3H), Wh (H, 3H), b (3H,), bhn (H,).
"""
import functools
from typing import NamedTuple

import numpy as np

from .. import runtime
from ._input import gate_major_weights, is_ids, project_backward, project_gate_major, scaled_gates
from ._window import BackwardBase, whole_backward, whole_forward

STATE_NAMES = ("h",)
GATES = 3
GATE_NAMES = ("r", "z", "n")


class Cache(NamedTuple):
    """What backward needs from forward."""
    x: object  # the input, ids (T, N) or (T, N, D)
    acts: np.ndarray  # (3, T, N, H): the gates r, z, n after their activations, gate-major
    hns: np.ndarray  # (T, N, H): h_{t-1} Wh[n] + bhn, what the reset gate scales
    hs_ext: np.ndarray  # (T+1, N, H): h0, then h_1 .. h_T


def param_shapes(D, H):
    return {"Wx": (D, 3 * H), "Wh": (H, 3 * H), "b": (3 * H,), "bhn": (H,)}


def init(rng, D, H, dtype):
    """Uniform(-1/sqrt(H), 1/sqrt(H)) for every parameter, as PyTorch's nn.GRU."""
    k = 1.0 / np.sqrt(H)
    return {name: rng.uniform(-k, k, size=shape).astype(dtype)
            for name, shape in param_shapes(D, H).items()}


@functools.lru_cache(maxsize=None)
def gate_scale(H, dtype):
    """(3H,) read-only: 1/2 on the r, z columns, 1 on n.

    sigmoid(x) = (1 + tanh(x / 2)) / 2, so with the r, z columns of Wx, b and Wh halved before
    the window the sigmoid of a step is three calls instead of four. Halving is exact in floating
    point, so the products and sums with halved columns are exactly half the unhalved ones and
    the gates come out with the same bits.
    """
    scale = np.ones(3 * H, dtype=dtype)
    scale[:2 * H] = 0.5
    scale.flags.writeable = False
    return scale


def _activate(a, rec, bhn, h_prev, h, hn, tmp):
    """One step in place. a (3, N, H) holds x_t Wx + b and rec (3, N, H) h_prev Wh, gate-major
    with r, z halved (gate_scale), on entry; a holds r, z, n on exit. h_prev (N, H) is read; h and
    hn = h_prev Wh[n] + bhn (N, H) are written (backward needs hn); tmp (N, H) is scratch.

    Gate-major: each gate is its own (N, H) block, contiguous in the window's buffers, because
    NumPy runs an operation on a column block of an (N, 3H) row (a strided view) 2-3x slower
    than on a contiguous array of the same size.
    """
    np.add(rec[2], bhn, out=hn)
    rz = a[:2]
    rz += rec[:2]
    np.tanh(rz, out=rz)  # sigmoid of the unhalved pre-activation, as _activations.sigmoid
    rz += 1.0
    rz *= 0.5
    r, z, n = a
    np.multiply(r, hn, out=tmp)
    n += tmp
    np.tanh(n, out=n)
    # h = n + z * (h_prev - n), one multiply fewer than (1 - z) * n + z * h_prev
    np.subtract(h_prev, n, out=h)
    h *= z
    h += n


class Forward:
    """The GRU's forward pass of a window in pieces (cells/__init__.py). x (T, N) ids or
    (T, N, D), read by project only; state (h0,) with h0 (N, H)."""

    def __init__(self, p, x, state):
        (h0,) = state
        T, (N, H) = x.shape[0], h0.shape
        self.x, self.bhn = x, p["bhn"]
        scale = gate_scale(H, p["Wh"].dtype)
        # gate-major, r, z halved: the input side gate by gate, one product a step's (G, n, H)
        self.Wx, self.b, self.Wh = gate_major_weights(p, scale, GATES)
        dtype = self.Wx.dtype if is_ids(x) else np.result_type(x, self.Wx)
        # acts (G, T, N, H): x_t Wx + b, overwritten by the gates
        self.acts = np.empty((GATES, T, N, H), dtype=dtype)
        # hs_ext (T+1, N, H) holds h0 in slot 0, so step t reads slot t and backward gets
        # dWh = sum_t h_{t-1}^T drec_t as one product
        self.hs_ext = np.empty((T + 1, N, H), dtype=dtype)
        self.hs_ext[0] = h0
        self.hns = np.empty((T, N, H), dtype=dtype)  # h_{t-1} Wh[n] + bhn
        self.hs = self.hs_ext[1:]

    def project(self, steps, threads=runtime.ONE_THREAD):
        """acts[:, steps] = x[steps] Wx + b, every row."""
        project_gate_major(self.Wx, self.b, self.x, self.acts, steps, threads)

    def loop(self, rows, steps=slice(None)):
        """The recurrence on rows (a slice of the batch) over steps (consecutive, in order);
        the steps before them must be done for these rows, and their input side projected."""
        acts, hs_ext, hns, H = self.acts, self.hs_ext, self.hns, self.hs_ext.shape[2]
        n = rows.stop - rows.start
        rec = np.empty((GATES, n, H), dtype=acts.dtype)
        tmp = np.empty((n, H), dtype=acts.dtype)
        for t in range(*steps.indices(len(hns))):
            np.matmul(hs_ext[t, rows], self.Wh, out=rec)
            _activate(acts[:, t, rows], rec, self.bhn, hs_ext[t, rows], hs_ext[t + 1, rows],
                      hns[t, rows], tmp)

    def result(self):
        """hs (T, N, H), the final state (hT,) and the cache for backward."""
        return self.hs, (self.hs[-1].copy(),), Cache(self.x, self.acts, self.hns, self.hs_ext)


def forward(p, x, state, threads=runtime.ONE_THREAD):
    """Run the window. Returns hs (T, N, H), the final state (hT,) and a cache for backward."""
    return whole_forward(Forward, p, x, state, threads)


def _backward_step(acts, hn, h_prev, dh, drec, dn, tmp, tmp2):
    """Gates at one step given dh (N, H) = dLoss/dh_t from above and from step t+1; acts (3, N, H)
    gate-major.

    Writes drec (3, N, H) = dLoss/d(h_{t-1} Wh + [0, 0, bhn]) and dn (N, H) = dLoss/d(n's
    pre-activation); the r, z blocks of drec are also the input-side gradients. Then
    dLoss/dh_{t-1} = dh * z + drec Wh^T, of which this adds the first term (dh *= z).
    tmp (N, H) and tmp2 (2, N, H) are scratch. Derivatives come from the stored outputs.
    """
    r, z, n = acts
    dr, dz, dhn = drec
    # dn = dh * (1 - z) * (1 - n^2)
    np.multiply(n, n, out=dn)
    np.subtract(1.0, dn, out=dn)
    np.subtract(1.0, z, out=tmp)
    tmp *= dh
    dn *= tmp
    np.subtract(h_prev, n, out=dz)
    dz *= dh
    np.multiply(dn, hn, out=dr)
    # one sigmoid' pass over the r, z block
    np.subtract(1.0, acts[:2], out=tmp2)
    tmp2 *= acts[:2]
    drec[:2] *= tmp2
    np.multiply(dn, r, out=dhn)
    dh *= z


class Backward(BackwardBase):
    """The GRU's backward pass of a window in pieces (cells/__init__.py). cache from forward;
    dstate: the gradient w.r.t. the final state, or None for zero."""

    def __init__(self, p, cache, dstate=None):
        super().__init__(p, cache)
        _, acts, hns, _ = cache
        T, N, H = hns.shape
        dtype = acts.dtype
        # (T, N, 3H): dLoss/d(h_{t-1} Wh + [0, 0, bhn]) in the parameters' column order, so
        # that each step's rows are one product's operand and the window's gradients one
        # product each
        self.drec = np.empty((T, N, GATES * H), dtype=dtype)
        self.dns = np.empty((T, N, H), dtype=dtype)  # dLoss/d(n's pre-activation)
        # dLoss/dh at the step the loop has reached, per row: dh0 once every step is done
        self.dh = np.zeros((N, H), dtype=dtype) if dstate is None else dstate[0].copy()

    def loop(self, rows, dhs, steps=slice(None)):
        """The recurrence on rows over steps (consecutive, last first) given dhs (T, N, H), the
        gradient from above; the steps after them must be done for these rows."""
        _, acts, hns, hs_ext = self.cache
        drec, dns, WhT, H = self.drec, self.dns, self.WhT, hns.shape[2]
        n = rows.stop - rows.start
        dh = self.dh[rows]
        tmp, mm = np.empty((n, H), dtype=dh.dtype), np.empty((n, H), dtype=dh.dtype)
        tmp2 = np.empty((2, n, H), dtype=dh.dtype)
        drec_t = np.empty((GATES, n, H), dtype=dh.dtype)
        for t in reversed(range(*steps.indices(len(hns)))):
            dh += dhs[t, rows]
            _backward_step(acts[:, t, rows], hns[t, rows], hs_ext[t, rows], dh, drec_t,
                           dns[t, rows], tmp, tmp2)
            np.copyto(drec[t, rows].reshape(n, GATES, H).transpose(1, 0, 2), drec_t)
            np.matmul(drec[t, rows], WhT, out=mm)
            dh += mm

    def input_grad(self, steps, out):
        """out[steps] = dLoss/dx at those steps (dense input), once loop has done them: the
        input side shares r and z with the recurrent side but sees n before the reset gate."""
        H = self.dns.shape[2]
        drec, dns = self.drec[steps], self.dns[steps]
        rows = drec.shape[0] * drec.shape[1]
        dx = out[steps].reshape(rows, self.WxT.shape[1])
        np.matmul(drec.reshape(rows, 3 * H)[:, :2 * H], self.WxT[:2 * H], out=dx)
        dx += dns.reshape(rows, H) @ self.WxT[2 * H:]

    def result(self, threads=runtime.ONE_THREAD, dx=True):
        """grads {Wx, Wh, b, bhn}, dx ((T, N, D) or None for ids, and None when dx is False:
        the caller took it from input_grad) and (dh0,)."""
        x, _, hns, hs_ext = self.cache
        T, N, H = hns.shape
        drec = self.drec
        dWh = threads.matmul(hs_ext[:-1].reshape(T * N, H).T, drec.reshape(T * N, 3 * H))
        dbhn = drec[:, :, 2 * H:].sum(axis=(0, 1))
        # the input side shares r and z with the recurrent side but sees n before the reset
        # gate
        drec[:, :, 2 * H:] = self.dns
        dWx, db, dx = project_backward(self.p["Wx"], x, drec, threads=threads, dx=dx)
        return {"Wx": dWx, "Wh": dWh, "b": db, "bhn": dbhn}, dx, (self.dh,)


def backward(p, cache, dhs, dstate=None, threads=runtime.ONE_THREAD):
    """Backward through the window.

    dhs (T, N, H): gradient of the loss w.r.t. every output h_t (from above);
    dstate: gradient w.r.t. the final state, or None for zero.
    Returns grads {Wx, Wh, b, bhn}, dx ((T, N, D) or None for ids) and (dh0,).
    """
    return whole_backward(Backward, p, cache, dhs, dstate, threads)


def activations(cache):
    """What a unit computed at each step, by name: h and the gates r, z, n, each (T, N, H),
    views into the cache."""
    found = {"h": cache.hs_ext[1:]}
    for k, name in enumerate(GATE_NAMES):
        found[name] = cache.acts[k]
    return found


def step_params(p):
    """The weights step reads, made once before generation: p with the r, z columns of Wx (D, 3H),
    b (3H,) and Wh (H, 3H) halved (gate_scale, _input.scaled_gates), bhn (H,) as it is.

    Halved once here, a step's x Wx + b and h_prev Wh come out with r, z already halved, and no
    step pays two multiplies and a gate_scale lookup for it (6% of a generated character's
    instructions at 2 x 256), with the same bits.
    """
    return scaled_gates(p, gate_scale(p["Wh"].shape[0], p["Wh"].dtype))


def step(p, a, state):
    """One step for generation. p = step_params(the layer's parameters); a (N, 3H) = x p["Wx"] +
    p["b"] already looked up, so r, z come halved; returns (h,) with h (N, H)."""
    (h_prev,) = state
    a = a.copy()  # _activate overwrites its input with the gates
    rec = h_prev @ p["Wh"]
    N, H = h_prev.shape
    h, hn, tmp = (np.empty_like(h_prev, dtype=a.dtype) for _ in range(3))
    _activate(_gates_of_rows(a, N, H), _gates_of_rows(rec, N, H), p["bhn"], h_prev, h, hn, tmp)
    return (h,)


def _gates_of_rows(a, N, H):
    """a (N, 3H) as a (3, N, H) gate-major view; one row's gate blocks are already consecutive,
    and NumPy runs that contiguous view faster than the transposed one (generation is batch 1)."""
    return a.reshape(GATES, 1, H) if N == 1 else a.reshape(N, GATES, H).transpose(1, 0, 2)
