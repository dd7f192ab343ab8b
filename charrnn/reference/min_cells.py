"""minGRU and minLSTM (Feng et al., 2024, "Were RNNs All We Needed?") written the plain
textbook way: one step at a time, h_{t-1} read only where the state is mixed, never by a gate.

The fast cells (charrnn/cells/mingru.py, minlstm.py) compute the same numbers as one product
over the window and an elementwise scan; this is what they must equal.
"""
import numpy as np

from .cells import _zero_grads, sigmoid, tanh


# ---- minGRU ----------------------------------------------------------------------------------

def mingru_step_forward(p, x, h_prev):
    """One step; the 2H columns of Wx and b hold the update gate and the candidate, z then n.

    z = sigmoid(x Wx[z] + b[z])             update gate, from the input only
    n = tanh(x Wx[n] + b[n])                candidate, from the input only
    h = (1 - z) * h_prev + z * n

    x (N, D), h_prev (N, H); p: Wx (D, 2H), b (2H,). Returns h (N, H) and a cache.
    """
    a_z, a_n = np.split(x @ p["Wx"] + p["b"], 2, axis=1)
    z = sigmoid(a_z)
    n = tanh(a_n)
    h = (1.0 - z) * h_prev + z * n
    return h, (x, h_prev, z, n)


def mingru_step_backward(p, cache, dh):
    """dh (N, H) = dLoss/dh -> grads {Wx, b}, dx (N, D), dh_prev (N, H).

    dz = dh * (n - h_prev),  dn = dh * z,  dh_prev = dh * (1 - z)
    da = [dz z (1 - z) | dn (1 - n^2)]      (N, 2H)
    dx = da Wx^T,  dWx = x^T da,  db = sum over N of da
    """
    x, h_prev, z, n = cache
    dz = dh * (n - h_prev)
    dn = dh * z
    da = np.concatenate([dz * z * (1.0 - z), dn * (1.0 - n * n)], axis=1)
    grads = {"Wx": x.T @ da, "b": da.sum(axis=0)}
    return grads, da @ p["Wx"].T, dh * (1.0 - z)


# ---- minLSTM ---------------------------------------------------------------------------------

def minlstm_step_forward(p, x, h_prev):
    """One step; the 3H columns of Wx and b hold forget gate, input gate, candidate: f, i, n.

    f = sigmoid(x Wx[f] + b[f]),  i = sigmoid(x Wx[i] + b[i])      from the input only
    n = tanh(x Wx[n] + b[n])                candidate, from the input only
    f' = f / (f + i),  i' = i / (f + i)     normalised: f' + i' = 1
    h = f' * h_prev + i' * n

    x (N, D), h_prev (N, H); p: Wx (D, 3H), b (3H,). Returns h (N, H) and a cache.
    """
    a_f, a_i, a_n = np.split(x @ p["Wx"] + p["b"], 3, axis=1)
    f, i = sigmoid(a_f), sigmoid(a_i)
    n = tanh(a_n)
    s = f + i
    h = (f / s) * h_prev + (i / s) * n
    return h, (x, h_prev, f, i, n)


def minlstm_step_backward(p, cache, dh):
    """dh (N, H) = dLoss/dh -> grads {Wx, b}, dx (N, D), dh_prev (N, H).

    with s = f + i:
    df' = dh * h_prev,  di' = dh * n,  dn = dh * i / s,  dh_prev = dh * f / s
    df = (df' - di') i / s^2                d(f/s)/df = i/s^2, d(i/s)/df = -i/s^2
    di = (di' - df') f / s^2                d(f/s)/di = -f/s^2, d(i/s)/di = f/s^2
    da = [df f (1 - f) | di i (1 - i) | dn (1 - n^2)]                       (N, 3H)
    dx = da Wx^T,  dWx = x^T da,  db = sum over N of da
    """
    x, h_prev, f, i, n = cache
    s = f + i
    dfn = dh * h_prev
    din = dh * n
    df = (dfn - din) * i / (s * s)
    di = (din - dfn) * f / (s * s)
    da = np.concatenate([df * f * (1.0 - f), di * i * (1.0 - i), dh * i / s * (1.0 - n * n)],
                        axis=1)
    grads = {"Wx": x.T @ da, "b": da.sum(axis=0)}
    return grads, da @ p["Wx"].T, dh * f / s


# ---- windows ---------------------------------------------------------------------------------

def _window_forward(step_forward):
    def forward(p, x, state):
        """x (T, N, D), state (h0,) -> hs (T, N, H), final state (h_T,), cache."""
        (h,) = state
        hs, steps = [], []
        for t in range(x.shape[0]):
            h, step = step_forward(p, x[t], h)
            hs.append(h)
            steps.append(step)
        return np.stack(hs), (h,), steps
    return forward


def _window_backward(step_backward):
    def backward(p, cache, dhs, dstate):
        """dhs (T, N, H) = dLoss/dh_t from above, dstate (dh_T,) from after the window.

        Returns grads {Wx, b} summed over the steps, dx (T, N, D) and (dh0,).
        """
        steps = cache
        (dh_next,) = dstate
        dx, grads = [None] * len(steps), _zero_grads(p)
        for t in reversed(range(len(steps))):
            g, dx[t], dh_next = step_backward(p, steps[t], dhs[t] + dh_next)
            for name in grads:
                grads[name] += g[name]
        return grads, np.stack(dx), (dh_next,)
    return backward


mingru_forward = _window_forward(mingru_step_forward)
mingru_backward = _window_backward(mingru_step_backward)
minlstm_forward = _window_forward(minlstm_step_forward)
minlstm_backward = _window_backward(minlstm_step_backward)
