"""Activation functions the cells share."""
import numpy as np


def sigmoid(x, out):
    """Logistic function written through tanh, which never overflows (exp(-x) does for x << 0)."""
    np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def log_sigmoid(x, out):
    """log sigmoid(x) = min(x, 0) - log(1 + exp(-|x|)), finite for every finite x (the direct
    log(sigmoid(x)) is log 0 = -inf once sigmoid(x) underflows). out may be x."""
    low = np.minimum(x, 0.0)
    np.abs(x, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    np.subtract(low, out, out=out)
    return out
