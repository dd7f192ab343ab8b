"""LSTM layer over a whole window, the four gates packed into one Wx and one Wh.

Gate order along the 4H columns of Wx, Wh and b is i, f, o, g (input, forget, output, cell
candidate); it is part of the checkpoint format. The three sigmoid gates come first so one
sigmoid call covers a contiguous (N, 3H) block:

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
from ._input import project, project_backward

STATE_NAMES = ("h", "c")
GATES = 4
GATE_NAMES = ("i", "f", "o", "g")


class Cache(NamedTuple):
    """What backward needs from forward."""
    x: object  # the input, ids (T, N) or (T, N, D)
    acts: np.ndarray  # (T, N, 4H): the gates i, f, o, g after their activations
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
def gate_constants(H, dtype):
    """(scale, offset), each (4H,) and read-only: scale is 1/2 on i, f, o and 1 on g, offset
    1/2 on i, f, o and 0 on g.

    sigmoid(x) = (1 + tanh(x / 2)) / 2, so once the i, f, o columns of the pre-activations are
    scaled, a single tanh over the whole contiguous (N, 4H) row block gives every gate's tanh,
    and `* scale + offset` over the same block turns three of them into sigmoids. Column slices
    of a row block are strided, and NumPy runs a strided (N, H) slice several times slower than a
    contiguous array of the same size, so whole-row operations are what keep the per-step work
    small. Halving is exact in floating point, so x Wx and h Wh with halved columns are exactly
    half the products.
    """
    scale = np.ones(4 * H, dtype=dtype)
    scale[:3 * H] = 0.5
    offset = np.where(scale == 1, 0, 0.5).astype(dtype)
    scale.flags.writeable = offset.flags.writeable = False
    return scale, offset


def _rows(row, n):
    """row (G,) repeated into a contiguous (n, G) array: a full operand runs faster than a
    broadcast one."""
    return np.repeat(row[None, :], n, axis=0)


def _activate(z, c_prev, c, tanh_c, h, tmp, half, offset):
    """One step in place. z (N, 4H) holds the pre-activations, i, f, o columns halved, on entry
    and i, f, o, g on exit; c_prev (N, H) is read; c, tanh_c and h (N, H) are written; tmp (N, H)
    is scratch; half and offset, (N, 4H) or broadcast (4H,), are gate_constants'."""
    H = c.shape[1]
    np.tanh(z, out=z)
    z *= half
    z += offset
    i, f, o, g = (z[:, k * H:(k + 1) * H] for k in range(4))
    np.multiply(f, c_prev, out=c)
    np.multiply(i, g, out=tmp)
    c += tmp
    np.tanh(c, out=tanh_c)
    np.multiply(o, tanh_c, out=h)


def forward(p, x, state, threads=runtime.CURRENT):
    """Run the window. Returns hs (T, N, H), the final state (hT, cT) and a cache for backward."""
    h0, c0 = state
    H = p["Wh"].shape[0]
    scale, offset = gate_constants(H, p["Wh"].dtype)
    # (T, N, 4H): x_t Wx + b with i, f, o halved, overwritten by the gates
    acts = project(p["Wx"] * scale, p["b"] * scale, x, threads=threads)
    T, N, G = acts.shape
    Wh = p["Wh"] * scale
    # hs_ext, cs_ext (T+1, N, H) hold h0, c0 in slot 0, so step t reads slot t and backward gets
    # dWh = sum_t h_{t-1}^T da_t as one product
    hs_ext = np.empty((T + 1, N, H), dtype=acts.dtype)
    cs_ext = np.empty_like(hs_ext)
    hs_ext[0], cs_ext[0] = h0, c0
    tanh_cs = np.empty((T, N, H), dtype=acts.dtype)  # kept so backward needs no second tanh

    def loop(rows):
        n = rows.stop - rows.start
        rec = np.empty((n, G), dtype=acts.dtype)
        tmp = np.empty((n, H), dtype=acts.dtype)
        half, off = _rows(scale, n), _rows(offset, n)
        for t in range(T):
            np.matmul(hs_ext[t, rows], Wh, out=rec)
            z = acts[t, rows]
            z += rec
            _activate(z, cs_ext[t, rows], cs_ext[t + 1, rows], tanh_cs[t, rows],
                      hs_ext[t + 1, rows], tmp, half, off)

    threads.each_block(loop, N)
    hs = hs_ext[1:]
    return hs, (hs[-1].copy(), cs_ext[-1].copy()), Cache(x, acts, cs_ext, tanh_cs, hs_ext)


def _backward_step(acts, c_prev, tanh_c, dh, dc, da, tmp, work, shift):
    """Gates at one step given dh, dc (N, H) = dLoss/d(h_t, c_t).

    Writes da (N, 4H) = dLoss/d(pre-activations) and turns dc into dLoss/dc_{t-1} in place;
    tmp (N, H) and work (N, 4H) are scratch, shift (N, 4H) is 0 on i, f, o and 1 on g.
    Derivatives come from the stored outputs: sigmoid' = s (1 - s), tanh' = (1 - g)(1 + g).
    """
    H = dh.shape[1]
    i, f, o, g = (acts[:, k * H:(k + 1) * H] for k in range(4))
    di, df, do, dg = (da[:, k * H:(k + 1) * H] for k in range(4))
    # dLoss/d(gate outputs) first, block by block ...
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
    # ... then every activation's derivative over the whole row at once: (1 - a) (a + shift)
    np.subtract(1.0, acts, out=work)
    da *= work
    np.add(acts, shift, out=work)
    da *= work
    dc *= f


def backward(p, cache, dhs, dstate=None, threads=runtime.CURRENT):
    """Backward through the window.

    dhs (T, N, H): gradient of the loss w.r.t. every output h_t (from above);
    dstate: gradients (dhT, dcT) w.r.t. the final state, or None for zero.
    Returns grads {Wx, Wh, b}, dx ((T, N, D) or None for ids) and (dh0, dc0).
    """
    x, acts, cs_ext, tanh_cs, hs_ext = cache
    T, N, H = dhs.shape
    # a contiguous copy: OpenBLAS runs the small products against a transposed view ~40% slower
    WhT = np.ascontiguousarray(p["Wh"].T)
    da = np.empty_like(acts)  # (T, N, 4H): dLoss/d(pre-activations)
    dh0, dc0 = np.empty((N, H), dtype=acts.dtype), np.empty((N, H), dtype=acts.dtype)
    shift = np.zeros((N, 4 * H), dtype=acts.dtype)  # rows enough for any slice of rows
    shift[:, 3 * H:] = 1.0

    def loop(rows):
        n = rows.stop - rows.start
        if dstate is None:
            dh, dc = np.zeros((n, H), dtype=acts.dtype), np.zeros((n, H), dtype=acts.dtype)
        else:
            dh, dc = dstate[0][rows].copy(), dstate[1][rows].copy()
        tmp = np.empty((n, H), dtype=acts.dtype)
        work = np.empty((n, 4 * H), dtype=acts.dtype)
        for t in range(T - 1, -1, -1):
            dh += dhs[t, rows]
            _backward_step(acts[t, rows], cs_ext[t, rows], tanh_cs[t, rows], dh, dc, da[t, rows],
                           tmp, work, shift[:n])
            np.matmul(da[t, rows], WhT, out=dh)
        dh0[rows], dc0[rows] = dh, dc

    threads.each_block(loop, N)
    dWh = threads.matmul(hs_ext[:-1].reshape(T * N, H).T, da.reshape(T * N, 4 * H))
    dWx, db, dx = project_backward(p["Wx"], x, da, threads=threads)
    return {"Wx": dWx, "Wh": dWh, "b": db}, dx, (dh0, dc0)


def activations(cache):
    """What a unit computed at each step, by name: h, c and the gates i, f, o, g, each (T, N, H),
    views into the cache."""
    H = cache.cs_ext.shape[2]
    found = {"h": cache.hs_ext[1:], "c": cache.cs_ext[1:]}
    for k, name in enumerate(GATE_NAMES):
        found[name] = cache.acts[:, :, k * H:(k + 1) * H]
    return found


def step(p, a, state):
    """One step for generation. a (N, 4H) = x Wx + b already looked up; returns (h, c)."""
    h, c_prev = state
    scale, offset = gate_constants(c_prev.shape[1], a.dtype)
    z = h @ p["Wh"]
    z += a
    z *= scale
    c, tanh_c, h_new, tmp = (np.empty_like(c_prev, dtype=z.dtype) for _ in range(4))
    _activate(z, c_prev, c, tanh_c, h_new, tmp, scale, offset)
    return h_new, c
