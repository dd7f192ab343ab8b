"""The classic cells, the RNN, the LSTM and the GRU, written the plain textbook way, and the
textbook functions the other reference modules share (sigmoid, tanh, one_hot).

A cell's state is a tuple: (h,) for the RNN and GRU, (h, c) for the LSTM, each (N, H).
"""
import numpy as np


def sigmoid(a):
    """sigmoid(a) = 1 / (1 + e^-a), elementwise, in (0, 1)."""
    return 1.0 / (1.0 + np.exp(-a))


def tanh(a):
    """tanh(a) = (e^a - e^-a) / (e^a + e^-a) = 2 sigmoid(2a) - 1, in (-1, 1).

    Computed in the second form, which gives -1 or 1 where the first would give inf / inf.
    """
    return 2.0 * sigmoid(2.0 * a) - 1.0


def one_hot(ids, V):
    """ids (T, N) integers in [0, V) -> (T, N, V) floats, 1 at each id's column and 0 elsewhere."""
    return np.eye(V)[ids]


def _zero_grads(p):
    return {name: np.zeros_like(value) for name, value in p.items()}


# ---- vanilla RNN -----------------------------------------------------------------------------

def rnn_step_forward(p, x, h_prev):
    """h = tanh(x Wx + h_prev Wh + b).

    x (N, D), h_prev (N, H); p: Wx (D, H), Wh (H, H), b (H,). Returns h (N, H) and a cache.
    """
    h = tanh(x @ p["Wx"] + h_prev @ p["Wh"] + p["b"])
    return h, (x, h_prev, h)


def rnn_step_backward(p, cache, dh):
    """dh (N, H) = dLoss/dh -> grads {Wx, Wh, b}, dx (N, D), dh_prev (N, H).

    da = dh * (1 - h^2)                     tanh'(a) = 1 - tanh(a)^2, a the pre-activation
    dx = da Wx^T,  dh_prev = da Wh^T,  dWx = x^T da,  dWh = h_prev^T da,  db = sum over N of da
    """
    x, h_prev, h = cache
    da = dh * (1.0 - h * h)
    grads = {"Wx": x.T @ da, "Wh": h_prev.T @ da, "b": da.sum(axis=0)}
    return grads, da @ p["Wx"].T, da @ p["Wh"].T


def rnn_forward(p, x, state):
    """x (T, N, D), state (h0,) -> hs (T, N, H), final state (h_T,), cache."""
    (h,) = state
    hs, steps = [], []
    for t in range(x.shape[0]):
        h, step = rnn_step_forward(p, x[t], h)
        hs.append(h)
        steps.append(step)
    return np.stack(hs), (h,), steps


def rnn_backward(p, cache, dhs, dstate):
    """dhs (T, N, H) = dLoss/dh_t from above, dstate (dh_T,) from after the window.

    Returns grads {Wx, Wh, b} summed over the steps, dx (T, N, D) and (dh0,).
    """
    steps = cache
    (dh_next,) = dstate  # the gradient reaching h_t through h_{t+1}
    dx, grads = [None] * len(steps), _zero_grads(p)
    for t in reversed(range(len(steps))):
        g, dx[t], dh_next = rnn_step_backward(p, steps[t], dhs[t] + dh_next)
        for name in grads:
            grads[name] += g[name]
    return grads, np.stack(dx), (dh_next,)


# ---- LSTM ------------------------------------------------------------------------------------

def lstm_step_forward(p, x, h_prev, c_prev):
    """One step; the 4H columns of Wx, Wh and b hold the gates in the order i, f, o, g.

    a = x Wx + h_prev Wh + b                (N, 4H), split into four (N, H) blocks
    i = sigmoid(a_i)   input gate           f = sigmoid(a_f)   forget gate
    o = sigmoid(a_o)   output gate          g = tanh(a_g)      candidate cell
    c = f * c_prev + i * g
    h = o * tanh(c)

    x (N, D), h_prev and c_prev (N, H); p: Wx (D, 4H), Wh (H, 4H), b (4H,).
    Returns h (N, H), c (N, H) and a cache.
    """
    a = x @ p["Wx"] + h_prev @ p["Wh"] + p["b"]
    a_i, a_f, a_o, a_g = np.split(a, 4, axis=1)
    i, f, o, g = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o), tanh(a_g)
    c = f * c_prev + i * g
    tanh_c = tanh(c)
    h = o * tanh_c
    return h, c, (x, h_prev, c_prev, i, f, o, g, tanh_c)


def lstm_step_backward(p, cache, dh, dc):
    """dh, dc (N, H) = dLoss/dh and dLoss/dc -> grads, dx (N, D), dh_prev, dc_prev (N, H).

    dc_all = dc + dh * o * (1 - tanh(c)^2)  c reaches the loss directly and through h
    do = dh * tanh(c),  di = dc_all * g,  df = dc_all * c_prev,  dg = dc_all * i
    dc_prev = dc_all * f
    da = [di i(1-i) | df f(1-f) | do o(1-o) | dg (1-g^2)]     (N, 4H), sigmoid' = s (1 - s)
    dx = da Wx^T,  dh_prev = da Wh^T,  dWx = x^T da,  dWh = h_prev^T da,  db = sum over N of da
    """
    x, h_prev, c_prev, i, f, o, g, tanh_c = cache
    dc_all = dc + dh * o * (1.0 - tanh_c * tanh_c)
    do = dh * tanh_c
    di = dc_all * g
    df = dc_all * c_prev
    dg = dc_all * i
    da = np.concatenate([di * i * (1.0 - i), df * f * (1.0 - f), do * o * (1.0 - o),
                         dg * (1.0 - g * g)], axis=1)
    grads = {"Wx": x.T @ da, "Wh": h_prev.T @ da, "b": da.sum(axis=0)}
    return grads, da @ p["Wx"].T, da @ p["Wh"].T, dc_all * f


def lstm_forward(p, x, state):
    """x (T, N, D), state (h0, c0) -> hs (T, N, H), final state (h_T, c_T), cache."""
    h, c = state
    hs, steps = [], []
    for t in range(x.shape[0]):
        h, c, step = lstm_step_forward(p, x[t], h, c)
        hs.append(h)
        steps.append(step)
    return np.stack(hs), (h, c), steps


def lstm_backward(p, cache, dhs, dstate):
    """dhs (T, N, H) = dLoss/dh_t from above, dstate (dh_T, dc_T) from after the window.

    Returns grads {Wx, Wh, b} summed over the steps, dx (T, N, D) and (dh0, dc0).
    """
    steps = cache
    dh_next, dc_next = dstate
    dx, grads = [None] * len(steps), _zero_grads(p)
    for t in reversed(range(len(steps))):
        g, dx[t], dh_next, dc_next = lstm_step_backward(p, steps[t], dhs[t] + dh_next, dc_next)
        for name in grads:
            grads[name] += g[name]
    return grads, np.stack(dx), (dh_next, dc_next)


# ---- GRU (the PyTorch / cuDNN variant) -------------------------------------------------------

def gru_step_forward(p, x, h_prev):
    """One step; the 3H columns of Wx, Wh and b hold the gates in the order r, z, n.

    ax = x Wx + b,  ah = h_prev Wh          (N, 3H) each, split into [r | z | n] blocks
    r = sigmoid(ax_r + ah_r)                reset gate
    z = sigmoid(ax_z + ah_z)                update gate
    hn = ah_n + bhn                         the recurrent part of the candidate
    n = tanh(ax_n + r * hn)                 candidate: the reset gate scales hn only
    h = (1 - z) * n + z * h_prev

    x (N, D), h_prev (N, H); p: Wx (D, 3H), Wh (H, 3H), b (3H,), bhn (H,).
    Returns h (N, H) and a cache.
    """
    ax_r, ax_z, ax_n = np.split(x @ p["Wx"] + p["b"], 3, axis=1)
    ah_r, ah_z, ah_n = np.split(h_prev @ p["Wh"], 3, axis=1)
    r = sigmoid(ax_r + ah_r)
    z = sigmoid(ax_z + ah_z)
    hn = ah_n + p["bhn"]
    n = tanh(ax_n + r * hn)
    h = (1.0 - z) * n + z * h_prev
    return h, (x, h_prev, r, z, hn, n)


def gru_step_backward(p, cache, dh):
    """dh (N, H) = dLoss/dh -> grads {Wx, Wh, b, bhn}, dx (N, D), dh_prev (N, H).

    dn = dh * (1 - z),  dz = dh * (h_prev - n)
    dn_pre = dn * (1 - n^2)                 n's pre-activation ax_n + r * hn
    dr = dn_pre * hn,  dhn = dn_pre * r
    dr_pre = dr r(1-r),  dz_pre = dz z(1-z)
    dax = [dr_pre | dz_pre | dn_pre],  dah = [dr_pre | dz_pre | dhn]          (N, 3H) each
    dx = dax Wx^T,  dh_prev = dh * z + dah Wh^T
    dWx = x^T dax,  db = sum over N of dax,  dWh = h_prev^T dah,  dbhn = sum over N of dhn
    """
    x, h_prev, r, z, hn, n = cache
    dn = dh * (1.0 - z)
    dz = dh * (h_prev - n)
    dn_pre = dn * (1.0 - n * n)
    dr = dn_pre * hn
    dhn = dn_pre * r
    dr_pre = dr * r * (1.0 - r)
    dz_pre = dz * z * (1.0 - z)
    dax = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
    dah = np.concatenate([dr_pre, dz_pre, dhn], axis=1)
    dh_prev = dh * z + dah @ p["Wh"].T
    grads = {"Wx": x.T @ dax, "Wh": h_prev.T @ dah, "b": dax.sum(axis=0),
             "bhn": dhn.sum(axis=0)}
    return grads, dax @ p["Wx"].T, dh_prev


def gru_forward(p, x, state):
    """x (T, N, D), state (h0,) -> hs (T, N, H), final state (h_T,), cache."""
    (h,) = state
    hs, steps = [], []
    for t in range(x.shape[0]):
        h, step = gru_step_forward(p, x[t], h)
        hs.append(h)
        steps.append(step)
    return np.stack(hs), (h,), steps


def gru_backward(p, cache, dhs, dstate):
    """dhs (T, N, H) = dLoss/dh_t from above, dstate (dh_T,) from after the window.

    Returns grads {Wx, Wh, b, bhn} summed over the steps, dx (T, N, D) and (dh0,).
    """
    steps = cache
    (dh_next,) = dstate
    dx, grads = [None] * len(steps), _zero_grads(p)
    for t in reversed(range(len(steps))):
        g, dx[t], dh_next = gru_step_backward(p, steps[t], dhs[t] + dh_next)
        for name in grads:
            grads[name] += g[name]
    return grads, np.stack(dx), (dh_next,)
