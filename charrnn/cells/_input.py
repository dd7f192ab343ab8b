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


def project(Wx, b, x, out=None, threads=runtime.ONE_THREAD):
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
    out2 = out.reshape(T * N, Wx.shape[1])
    threads.matmul(x.reshape(T * N, D), Wx, out=out2)
    out2 += b
    return out


def init_input(rng, D, G, dtype):
    """The parameters of a cell that is only an input projection (minGRU, minLSTM): Wx (D, G)
    uniform in +-1/sqrt(D), PyTorch's nn.Linear default, and b (G,) zero."""
    k = 1.0 / np.sqrt(D)
    return {"Wx": rng.uniform(-k, k, size=(D, G)).astype(dtype), "b": np.zeros(G, dtype=dtype)}


# vocabularies above this many characters take the sorted segment sums, up to it the dense 0/1
# product, faster there: measured by benchmarks/bench_vocab.py --onehot
DENSE_MAX_V = 128
SEGMENT_COLUMNS = 32  # columns per reduceat pass: a (M, 32) float32 gather stays in cache


def one_hot_transpose_product(ids, da2, D, threads=runtime.ONE_THREAD):
    """one_hot(ids)^T da2: row v of the (D, G) result sums the rows of da2 (M, G) whose id is v.

    This is the gradient of a row lookup. For a small vocabulary it runs as a (D, M) x (M, G)
    product with an explicit 0/1 matrix, which is faster than any scatter there; its cost grows
    with D (at D = 5,000 a 128 MB matrix and tens of GFLOP), so above DENSE_MAX_V the rows are
    sorted by id and summed segment by segment instead, a cost that hardly depends on D.
    """
    if D <= DENSE_MAX_V:
        M = ids.shape[0]
        one_hot = np.zeros((D, M), dtype=da2.dtype)
        one_hot[ids, np.arange(M)] = 1
        return threads.matmul(one_hot, da2)
    return segment_sums(ids, da2, D, threads)


def segment_sums(ids, da2, D, threads=runtime.ONE_THREAD):
    """one_hot(ids)^T da2 by sorting: the rows of each id are gathered next to each other and
    summed with np.add.reduceat, a few columns at a time (reduceat walks each column of a
    segment at the row stride, which a narrow gathered copy keeps short), on the step's threads.
    """
    order = np.argsort(ids, kind="stable")
    ranked = ids[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    present = ranked[starts]
    out = np.zeros((D, da2.shape[1]), dtype=da2.dtype)

    def columns(cols):
        for c in range(cols.start, cols.stop, SEGMENT_COLUMNS):
            part = slice(c, min(c + SEGMENT_COLUMNS, cols.stop))
            out[present, part] = np.add.reduceat(np.take(da2[:, part], order, axis=0), starts,
                                                 axis=0)

    threads.each_block(columns, da2.shape[1])
    return out


def gate_major(W, gates):
    """W (K, gates*H) -> (gates, K, H), contiguous: the gates' column blocks stacked, so each
    gate's arithmetic in a step runs on a contiguous (N, H) block (column slices of (N, gates*H)
    rows ran 2-3x slower)."""
    K, G = W.shape
    return np.ascontiguousarray(W.reshape(K, gates, G // gates).transpose(1, 0, 2))


def gate_major_weights(p, scale, gates):
    """A gated cell's window weights, gate-major and scaled by its gate_scale (G = gates*H,):
    Wx (gates, D, H), b (gates, H) and Wh (gates, H, H), so that one lookup or product per gate
    gives a step's input side (project_gate_major) and one batched product its recurrent side
    (gates, n, H)."""
    H = p["Wh"].shape[0]
    return (gate_major(p["Wx"] * scale, gates), (p["b"] * scale).reshape(gates, H),
            gate_major(p["Wh"] * scale, gates))


def project_gate_major(Wx, b, x, acts, steps, threads=runtime.ONE_THREAD):
    """acts[:, steps] = x[steps] Wx + b gate by gate, every row: Wx (G, D, H) and b (G, H) from
    gate_major_weights, x (T, N) ids or (T, N, D), acts (G, T, N, H)."""
    for k in range(len(Wx)):
        project(Wx[k], b[k], x[steps], out=acts[k, steps], threads=threads)


def scaled_gates(p, scale):
    """p with the columns of Wx (D, G), b (G,) and Wh (H, G) multiplied by the cell's gate_scale
    (G,), new arrays (p keeps its own), any other parameter as it is: the weights a gated cell's
    generation step reads (step_params), made once, so that a step's x Wx + b and h_prev Wh come
    out scaled with no multiply of their own. The scale is 1/2 or 1, exact above the subnormal
    range, so the products and sums on the scaled weights are exactly the scaled ones: the same
    bits as scaling each step's pre-activations."""
    return {**p, "Wx": p["Wx"] * scale, "b": p["b"] * scale, "Wh": p["Wh"] * scale}


def project_backward(Wx, x, da, threads=runtime.ONE_THREAD, dx=True):
    """Gradients of project given da = dLoss/d(x Wx + b), shape (T, N, G).

    Returns dWx (D, G), db (G,) and dx ((T, N, D), or None for id input or when dx is False).
    """
    T, N, G = da.shape
    da2 = da.reshape(T * N, G)
    if is_ids(x):
        dWx = one_hot_transpose_product(x.reshape(-1), da2, Wx.shape[0], threads)
        # every row of da lands in exactly one row of dWx, so summing dWx's D rows gives db
        # without a second pass over the T*N rows
        return dWx, dWx.sum(axis=0), None
    D = x.shape[2]
    x2 = x.reshape(T * N, D)
    db = da2.sum(axis=0)
    dWx = threads.matmul(x2.T, da2)
    if not dx:
        return dWx, db, None
    return dWx, db, threads.matmul(da2, np.ascontiguousarray(Wx.T)).reshape(T, N, D)


def project_blocks(Wx, b, x, k, threads=runtime.ONE_THREAD):
    """x Wx + b cut into the k column blocks of Wx, each a contiguous (T, N, G/k) array, one
    product (or lookup) per block.

    NumPy runs elementwise work on a column block of a (T, N, G) array, a strided view, several
    times slower than on a contiguous array (measured: 5x for an add at T*N = 6,400, H = 256);
    cells that work on whole windows of each gate (the min cells) take their gates this way.
    """
    P = Wx.shape[1] // k
    return [project(Wx[:, i * P:(i + 1) * P], b[i * P:(i + 1) * P], x, threads=threads)
            for i in range(k)]


def project_blocks_backward(Wx, x, das, threads=runtime.ONE_THREAD):
    """Gradients of project_blocks given das, each block's dLoss/d(x Wx + b), (T, N, G/k) each.

    Returns dWx (D, G), db (G,) and dx ((T, N, D) or None for id input).
    """
    P = das[0].shape[-1]
    parts = [project_backward(Wx[:, i * P:(i + 1) * P], x, da, threads)
             for i, da in enumerate(das)]
    dWx = np.concatenate([dW for dW, _, _ in parts], axis=1)
    db = np.concatenate([d for _, d, _ in parts])
    if is_ids(x):
        return dWx, db, None
    dx = parts[0][2]
    for _, _, more in parts[1:]:
        dx += more
    return dWx, db, dx
