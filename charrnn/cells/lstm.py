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
import numpy as np

from . import _parallel
from ._input import accumulate_backward, input_gradient, is_ids, project

STATE_NAMES = ("h", "c")
GATES = 4


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


def sigmoid(x, out):
    """Logistic function written through tanh, which never overflows (exp(-x) does for x << 0)."""
    np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def _activate(z, c_prev, c, tanh_c, h, tmp):
    """One step in place. z (N, 4H) holds the pre-activations on entry and i, f, o, g on exit;
    c_prev (N, H) is read; c, tanh_c and h (N, H) are written; tmp (N, H) is scratch."""
    H = c.shape[1]
    sigmoid(z[:, :3 * H], out=z[:, :3 * H])
    np.tanh(z[:, 3 * H:], out=z[:, 3 * H:])
    i, f, o, g = (z[:, k * H:(k + 1) * H] for k in range(4))
    np.multiply(f, c_prev, out=c)
    np.multiply(i, g, out=tmp)
    c += tmp
    np.tanh(c, out=tanh_c)
    np.multiply(o, tanh_c, out=h)


def forward(p, x, state, on_steps=None, a=None):
    """Run the window. Returns hs (T, N, H), the final state (hT, cT) and a cache for backward.

    on_steps(hs, t0, t1), when given, is called as soon as hs[t0:t1] are final, a few steps at
    a time, so the caller can hand work on them to the helper thread while the loop goes on.
    a (T, N, 4H), when given, is x Wx + b already computed (it is overwritten).
    """
    h0, c0 = state
    acts = project(p["Wx"], p["b"], x) if a is None else a  # overwritten by the gates
    T, N, G = acts.shape
    H = G // 4
    Wh = p["Wh"]
    # hs_ext, cs_ext (T+1, N, H) hold h0, c0 in slot 0, so step t reads slot t and backward
    # gets dWh = sum_t h_{t-1}^T da_t from slices
    hs_ext = np.empty((T + 1, N, H), dtype=acts.dtype)
    cs_ext = np.empty_like(hs_ext)
    hs_ext[0], cs_ext[0] = h0, c0
    tanh_cs = np.empty((T, N, H), dtype=acts.dtype)  # kept so backward needs no second tanh
    rec = np.empty((N, G), dtype=acts.dtype)
    tmp = np.empty((N, H), dtype=acts.dtype)
    for t0, t1 in _parallel.chunks(T):
        for t in range(t0, t1):
            np.matmul(hs_ext[t], Wh, out=rec)
            z = acts[t]
            z += rec
            _activate(z, cs_ext[t], cs_ext[t + 1], tanh_cs[t], hs_ext[t + 1], tmp)
        if on_steps is not None:
            on_steps(hs_ext[1:], t0, t1)
    hs = hs_ext[1:]
    return hs, (hs[-1].copy(), cs_ext[-1].copy()), (x, acts, cs_ext, tanh_cs, hs_ext)


def _factors(acts, cs_ext, tanh_cs, da, kc, steps):
    """Everything of the gate gradients at steps [t0, t1) that does not depend on dh or dc,
    from the stored outputs (sigmoid' = s (1 - s), tanh' = 1 - y^2):

        da[i] = g i(1-i),  da[f] = c_{t-1} f(1-f),  da[o] = tanh(c_t) o(1-o),  da[g] = i (1-g^2)
        kc    = o (1 - tanh(c_t)^2)

    so that one step of the loop only multiplies them by dh or dc.
    """
    t0, t1 = steps
    H = kc.shape[2]
    a, d, tc, k = acts[t0:t1], da[t0:t1], tanh_cs[t0:t1], kc[t0:t1]
    i, f, o, g = (a[..., j * H:(j + 1) * H] for j in range(4))
    di, df, do, dg = (d[..., j * H:(j + 1) * H] for j in range(4))
    np.subtract(1.0, a[..., :3 * H], out=d[..., :3 * H])
    d[..., :3 * H] *= a[..., :3 * H]
    di *= g
    df *= cs_ext[t0:t1]
    do *= tc
    np.multiply(g, g, out=dg)
    np.subtract(1.0, dg, out=dg)
    dg *= i
    np.multiply(tc, tc, out=k)
    np.subtract(1.0, k, out=k)
    k *= o


def _weight_grads(p, x, hs_ext, da, steps, grads):
    """The steps [t0, t1)'s share of dWh = sum_t h_{t-1}^T da_t, dWx and db."""
    t0, t1 = steps
    H, G = hs_ext.shape[2], da.shape[2]
    grads["Wh"] += hs_ext[t0:t1].reshape(-1, H).T @ da[t0:t1].reshape(-1, G)
    accumulate_backward(p["Wx"], x, da, steps, grads["Wx"], grads["b"])


def backward(p, cache, dhs, dstate=None):
    """Backward through the window.

    dhs (T, N, H): gradient of the loss w.r.t. every output h_t (from above);
    dstate: gradients (dhT, dcT) w.r.t. the final state, or None for zero.
    Returns grads {Wx, Wh, b}, dx ((T, N, D) or None for ids) and (dh0, dc0).

    The loop runs on the calling thread; the helper thread computes the gate factors ahead of
    it and, a few steps behind it, the weight gradients of the steps it has done.
    """
    x, acts, cs_ext, tanh_cs, hs_ext = cache
    T, N, H = dhs.shape
    # a contiguous copy: OpenBLAS runs the small products against a transposed view ~40% slower
    WhT = np.ascontiguousarray(p["Wh"].T)
    da = np.empty_like(acts)  # (T, N, 4H): dLoss/d(pre-activations), first the factors
    kc = np.empty_like(tanh_cs)  # o (1 - tanh(c_t)^2): how dh reaches dc
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    if dstate is None:
        dh, dc = np.zeros((N, H), dtype=acts.dtype), np.zeros((N, H), dtype=acts.dtype)
    else:
        dh, dc = dstate[0].copy(), dstate[1].copy()
    tmp = np.empty((N, H), dtype=acts.dtype)
    dc2 = dc[:, None, :]  # broadcasts over the adjacent i and f blocks
    pieces = _parallel.chunks(T, descending=True)
    with _parallel.helper() as helper:
        ready = [helper.submit(_factors, acts, cs_ext, tanh_cs, da, kc, steps) for steps in pieces]
        for (t0, t1), factors in zip(pieces, ready):
            helper.wait(factors)
            for t in range(t1 - 1, t0 - 1, -1):
                dh += dhs[t]
                d = da[t]
                np.multiply(dh, kc[t], out=tmp)
                dc += tmp  # now dLoss/dc_t
                d[:, 2 * H:3 * H] *= dh
                d[:, :2 * H].reshape(N, 2, H)[...] *= dc2
                d[:, 3 * H:] *= dc
                dc *= acts[t, :, H:2 * H]  # dLoss/dc_{t-1} through the forget gate
                np.matmul(d, WhT, out=dh)
            helper.submit(_weight_grads, p, x, hs_ext, da, (t0, t1), grads)
        dx = input_gradient(p["Wx"], x, da, helper)
    if is_ids(x):
        grads["b"] = grads["Wx"].sum(axis=0)  # every row of da lands in one row of dWx
    return grads, dx, (dh, dc)


def step(p, a, state):
    """One step for generation. a (N, 4H) = x Wx + b already looked up; returns (h, c)."""
    h, c_prev = state
    z = h @ p["Wh"]
    z += a
    c, tanh_c, h_new, tmp = (np.empty_like(c_prev, dtype=z.dtype) for _ in range(4))
    _activate(z, c_prev, c, tanh_c, h_new, tmp)
    return h_new, c
