"""The input projection every cell shares: x Wx + b for a whole window at once.

Shape letters: T time, N batch, D input width, G gate width (H for the RNN, 3H for the GRU,
4H for the LSTM). The first layer's input is one-hot: its product with Wx is a row lookup, so
the first layer takes integer ids (T, N) and never builds a one-hot matrix.
"""
import numpy as np


def is_ids(x):
    """True when x holds character ids (one-hot input) rather than dense activations."""
    return x.dtype.kind in "iu"


def project(Wx, b, x):
    """x Wx + b for every step of the window.

    Wx (D, G), b (G,), x ids (T, N) or floats (T, N, D) -> (T, N, G), a fresh array the cell may
    overwrite in place.
    """
    if is_ids(x):
        # one-hot row times Wx is row x of Wx; adding b to the (D, G) table first is cheaper
        # than adding it to all T*N rows
        return np.take(Wx + b, x, axis=0)
    T, N, D = x.shape
    out = x.reshape(T * N, D) @ Wx
    out += b
    return out.reshape(T, N, -1)


def project_backward(Wx, x, da):
    """Gradients of project given da = dLoss/d(x Wx + b), shape (T, N, G).

    Returns dWx (D, G), db (G,) and dx ((T, N, D), or None for id input).
    """
    T, N, G = da.shape
    da2 = da.reshape(T * N, G)
    db = da2.sum(axis=0)
    if is_ids(x):
        # the transpose of a row lookup is a scatter-add of the rows back onto the table
        dWx = np.zeros_like(Wx)
        np.add.at(dWx, x.reshape(-1), da2)
        return dWx, db, None
    D = x.shape[2]
    x2 = x.reshape(T * N, D)
    dWx = x2.T @ da2
    dx = (da2 @ Wx.T).reshape(T, N, D)
    return dWx, db, dx
