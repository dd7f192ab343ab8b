"""The linear recurrence minGRU and minLSTM share, h_t = (1 - z_t) * h_{t-1} + z_t * n_t, and
its backward, a linear recurrence run the other way.

Shape letters: T time, n rows of the batch (one block of them), H hidden. z_t, n_t (n, H) are
known for the whole window before the scan starts (they depend on the input only), so the scan
is the only sequential part of these cells.

Why a loop over time of elementwise work, not a cumulative form: the closed form
h_t = A_t (h_0 + sum_{s<=t} z_s n_s / A_s), A_t = prod_{s<=t} (1 - z_s), under- and overflows
within a window (A_t falls below 1e-38 after 40 steps of z = 0.9), so it has to run in log
space, h_t = exp(log A_t + logcumsumexp(log(z_s n_s) - log A_s)), which needs n_s > 0 and costs
two transcendental passes plus np.logaddexp.accumulate. Measured with `python
benchmarks/bench_min.py scan` (one thread, float32, a quiet machine; T 100 x 64 rows at H 256
and 512, T 50 x 128 rows at H 512): the log-space form 71-91x slower than the loop, and the loop
4-7% of the time of the layer's own (T*N, H) x (H, 2H) input product. The loop is also exact,
the same operations as the textbook step, and a convex combination that cannot overflow.
"""
import numpy as np


def forward(z, n, hs_ext):
    """h_t = (1 - z_t) h_{t-1} + z_t n_t for t = 1..T.

    z, n (T, n, H); hs_ext (T+1, n, H) holds h_0 in slot 0 on entry, h_1 .. h_T after.
    """
    hs = hs_ext[1:]
    np.multiply(z, n, out=hs)  # the input part z_t n_t for the whole window at once
    keep = np.subtract(1.0, z)  # (T, n, H): 1 - z_t, the share of h_{t-1} kept
    carried = np.empty_like(hs_ext[0])
    for t in range(len(z)):
        np.multiply(keep[t], hs_ext[t], out=carried)
        hs[t] += carried


def backward(z, dhs, dh_last, dh_total):
    """The reverse scan: dh_total[t] = dLoss/dh_t = dhs[t] + (1 - z_{t+1}) dLoss/dh_{t+1}.

    z, dhs (T, n, H); dh_last (n, H) the gradient from after the window (or None for zero);
    dh_total (T, n, H) is written. Returns dLoss/dh_0 = (1 - z_1) dh_total[0].
    """
    keep = np.subtract(1.0, z)
    carried = np.zeros_like(dhs[0]) if dh_last is None else dh_last.copy()
    for t in range(len(z) - 1, -1, -1):
        np.add(dhs[t], carried, out=dh_total[t])
        np.multiply(keep[t], dh_total[t], out=carried)
    return carried


def gate_grads(z, n, h_prev, dh_total, dz, dn):
    """The gradients every step has once dh_total is known, for the whole window at once:
    dz = dh (n_t - h_{t-1}) and dn = dh z_t (all (T, n, H); dz and dn are written)."""
    np.subtract(n, h_prev, out=dz)
    dz *= dh_total
    np.multiply(dh_total, z, out=dn)


def candidate(n):
    """The candidate's activation, in place: n = tanh(x Wx[n] + b[n]).

    The paper's sequential form leaves the candidate linear and its parallel log-space form
    needs a positive one (x + 1/2 above 0, sigmoid below). Measured with
    benchmarks/min_quality.py (3 x 256 residual minGRU, 400 steps, two seeds): tanh 1.7387 and
    1.7529, linear 1.7484 and 1.7670, the positive one 1.7964 (seed 0) nats/char; tanh costs one
    more elementwise pass each way. It also keeps h in (-1, 1), a weighted mean of candidates.
    """
    np.tanh(n, out=n)


def candidate_backward(n, dn):
    """dn (a gradient w.r.t. the candidate) becomes the gradient w.r.t. its pre-activation:
    dn *= 1 - n^2, from the output n, in place."""
    slope = np.multiply(n, n)
    np.subtract(1.0, slope, out=slope)
    dn *= slope
