"""The input projection every cell shares: x Wx + b for a whole window at once.

Shape letters: T time, N batch, D input width, G gate width (H for the RNN, 3H for the GRU,
4H for the LSTM). The first layer's input is one-hot: its product with Wx is a row lookup, so
the first layer takes integer ids (T, N) and never builds a one-hot matrix in forward.
"""
import numpy as np

from .. import runtime


def is_ids(x):
    """True when x holds character ids (one-hot input) rather than dense activations."""
    return x.dtype.kind in "iu"


def project(Wx, b, x, out=None):
    """x Wx + b for every step of the window.

    Wx (D, G), b (G,), x ids (T, N) or floats (T, N, D) -> (T, N, G), written into out when
    given (C-contiguous), else a fresh array; either way the cell may overwrite it in place.
    """
    if is_ids(x):
        # one-hot row times Wx is row x of Wx; adding b to the (D, G) table first is cheaper
        # than adding it to all T*N rows
        table = Wx + b
        # take's default mode="raise" gathers into a temporary and copies it into out (4x
        # slower for a window than mode="clip"): check the ids once here and take unchecked
        if x.size and (x.max() >= len(table) or x.min() < 0):
            raise IndexError(f"character id out of range for an input of width {len(table)}")
        return np.take(table, x, axis=0, out=out, mode="clip")
    T, N, D = x.shape
    if out is None:
        out = np.empty((T, N, Wx.shape[1]), dtype=np.result_type(x, Wx))
    out2 = out.reshape(T * N, -1)
    runtime.matmul(x.reshape(T * N, D), Wx, out=out2)
    out2 += b
    return out


def one_hot_transpose_product(ids, da2, D):
    """one_hot(ids)^T da2: row v of the (D, G) result sums the rows of da2 (M, G) whose id is v.

    This is the gradient of a row lookup. It runs as a (D, M) x (M, G) product with an explicit
    0/1 matrix: for a character vocabulary (D in the tens or hundreds) the product, on two
    threads, is several times faster than np.add.at's row-by-row scatter.
    """
    M = ids.shape[0]
    one_hot = np.zeros((D, M), dtype=da2.dtype)
    one_hot[ids, np.arange(M)] = 1
    return runtime.matmul(one_hot, da2)


def project_backward(Wx, x, da):
    """Gradients of project given da = dLoss/d(x Wx + b), shape (T, N, G).

    Returns dWx (D, G), db (G,) and dx ((T, N, D), or None for id input).
    """
    T, N, G = da.shape
    da2 = da.reshape(T * N, G)
    if is_ids(x):
        dWx = one_hot_transpose_product(x.reshape(-1), da2, Wx.shape[0])
        # every row of da lands in exactly one row of dWx, so summing dWx's D rows gives db
        # without a second pass over the T*N rows
        return dWx, dWx.sum(axis=0), None
    D = x.shape[2]
    x2 = x.reshape(T * N, D)
    db = da2.sum(axis=0)
    dWx = runtime.matmul(x2.T, da2)
    dx = runtime.matmul(da2, np.ascontiguousarray(Wx.T)).reshape(T, N, D)
    return dWx, db, dx
