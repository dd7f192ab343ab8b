"""The position-wise pieces of the residual stack, written the plain textbook way: RMS
normalisation, the GELU activation and an affine map, each forward beside its backward.

Every function works on the last axis of an array of any leading shape, (T, N, H) here.
"""
import numpy as np

from .cells import tanh

NORM_EPS = 1e-5


def rms_norm_forward(x, g):
    """y = g * x / rms(x),  rms(x) = sqrt(mean over the last axis of x^2 + eps).

    x (..., H), g (H,). Returns y (..., H) and a cache.
    """
    rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + NORM_EPS)
    xhat = x / rms
    return g * xhat, (xhat, rms)


def rms_norm_backward(g, cache, dy):
    """dy = dLoss/dy -> dg (H,), dx (..., H).

    dxhat = dy * g
    dx = (dxhat - xhat * mean(dxhat * xhat)) / rms     the mean over the last axis: xhat's rms
                                                       is 1 whatever x's scale, which takes
                                                       out the gradient along x itself
    dg = sum over every position of dy * xhat
    """
    xhat, rms = cache
    dxhat = dy * g
    dx = (dxhat - xhat * np.mean(dxhat * xhat, axis=-1, keepdims=True)) / rms
    dg = np.sum(dy * xhat, axis=tuple(range(dy.ndim - 1)))
    return dg, dx


def gelu_forward(a):
    """gelu(a) = a/2 (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3))), the tanh form of a Phi(a)."""
    t = tanh(np.sqrt(2.0 / np.pi) * (a + 0.044715 * a ** 3))
    return 0.5 * a * (1.0 + t), (a, t)


def gelu_backward(cache, dout):
    """dout = dLoss/d gelu(a) -> dLoss/da.

    gelu'(a) = (1 + t) / 2 + a/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 a^2)
    """
    a, t = cache
    slope = 0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * np.sqrt(2.0 / np.pi) * (
        1.0 + 3 * 0.044715 * a * a)
    return dout * slope


def affine_forward(x, W, b):
    """y = x W + b: x (..., K), W (K, P), b (P,) -> y (..., P) and a cache."""
    return x @ W + b, x


def affine_backward(W, cache, dy):
    """dy (..., P) -> dW = sum over positions of x^T dy (K, P), db (P,), dx = dy W^T (..., K)."""
    x = cache
    K, P = W.shape
    dW = x.reshape(-1, K).T @ dy.reshape(-1, P)
    return dW, dy.reshape(-1, P).sum(axis=0), dy @ W.T
