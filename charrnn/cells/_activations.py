"""Activation functions the cells share."""
import numpy as np


def sigmoid(x, out):
    """Logistic function written through tanh, which never overflows (exp(-x) does for x << 0)."""
    np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out
