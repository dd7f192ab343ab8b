"""The position-wise pieces of the residual stack (residual.py), each forward beside its
backward: RMS normalisation and the two-layer MLP's activation.

Shape letters: M rows (T*N positions of a window, each on its own), H width. Each function works
row by row, so it runs on the threads it is given in row blocks (runtime.Threads.each_block),
and a row's result never depends on how the rows were cut.
"""
from typing import NamedTuple

import numpy as np

from . import runtime

NORM_EPS = 1e-5  # inside the square root, so that an all-zero row normalises to zero, not nan


class NormCache(NamedTuple):
    xhat: np.ndarray  # (M, H): x / rms(x)
    r: np.ndarray  # (M, 1): 1 / rms(x)


def rms_norm(x, g, threads=runtime.ONE_THREAD):
    """y = g * x / sqrt(mean(x^2) + eps) per row: x (M, H), g (H,) -> y (M, H), cache."""
    y, xhat = np.empty_like(x), np.empty_like(x)
    r = np.empty((len(x), 1), dtype=x.dtype)

    def rows_of(rows):
        np.multiply(x[rows], x[rows], out=xhat[rows])
        np.mean(xhat[rows], axis=1, keepdims=True, out=r[rows])
        r[rows] += NORM_EPS
        np.sqrt(r[rows], out=r[rows])
        np.divide(1.0, r[rows], out=r[rows])
        np.multiply(x[rows], r[rows], out=xhat[rows])
        np.multiply(xhat[rows], g, out=y[rows])

    threads.each_block(rows_of, len(x))
    return y, NormCache(xhat, r)


def rms_norm_backward(g, cache, dy, dx, threads=runtime.ONE_THREAD):
    """Gradients of rms_norm: returns dg (H,) and adds dLoss/dx to dx (M, H) in place.

    dxhat = dy * g;  dx = r (dxhat - xhat mean(dxhat * xhat)) per row;  dg = sum over rows of
    dy * xhat. Adding into dx is what a residual stream needs: x feeds both the norm and the
    stream above it.
    """
    xhat, r = cache
    dg_parts = {}

    def rows_of(rows):
        dxhat = dy[rows] * g
        dot = np.mean(dxhat * xhat[rows], axis=1, keepdims=True)
        dxhat -= xhat[rows] * dot
        dxhat *= r[rows]
        dx[rows] += dxhat
        dg_parts[rows.start] = np.sum(dy[rows] * xhat[rows], axis=0)

    threads.each_block(rows_of, len(dy))
    # summed in row order, so the result does not depend on which thread finished first
    return sum(dg_parts[k] for k in sorted(dg_parts))


GELU_C = np.sqrt(2.0 / np.pi)


def gelu(a, threads=runtime.ONE_THREAD):
    """The MLP's activation, GELU in its tanh form: 0.5 a (1 + tanh(c (a + 0.044715 a^3))),
    c = sqrt(2/pi), elementwise. a (M, K) -> (out (M, K), t = the tanh (M, K))."""
    out, t = np.empty_like(a), np.empty_like(a)

    def rows_of(rows):
        ar, tr = a[rows], t[rows]
        np.multiply(ar, ar, out=tr)
        tr *= 0.044715
        tr += 1.0
        tr *= ar
        tr *= GELU_C
        np.tanh(tr, out=tr)
        np.add(tr, 1.0, out=out[rows])
        out[rows] *= ar
        out[rows] *= 0.5

    threads.each_block(rows_of, len(a))
    return out, t


def gelu_backward(a, t, dout, threads=runtime.ONE_THREAD):
    """dLoss/da given dout = dLoss/d gelu(a), in place in dout:
    gelu'(a) = 0.5 (1 + t) + 0.5 a (1 - t^2) c (1 + 3 * 0.044715 a^2)."""

    def rows_of(rows):
        ar, tr = a[rows], t[rows]
        inner = np.multiply(ar, ar)
        inner *= 3 * 0.044715
        inner += 1.0
        inner *= GELU_C
        inner *= ar
        slope = np.multiply(tr, tr)
        np.subtract(1.0, slope, out=slope)
        slope *= inner
        slope += tr
        slope += 1.0
        slope *= 0.5
        dout[rows] *= slope

    threads.each_block(rows_of, len(a))
    return dout
