"""The language model: one-hot input -> stacked recurrent layers -> linear output -> softmax.

Parameters are one flat dict whose names double as checkpoint keys: `l{i}.{name}` for layer i's
cell parameters (see cells/) and `Wy` (H, V), `by` (V,) for the output layer. Shape letters:
T time, N batch, H hidden, V vocabulary. Logits y_t = h_t Wy + by on the last layer's output.
Dropout (inverted, rate `dropout`) is applied to each layer's output, i.e. between layers and
before the output layer, only when the masks of dropout_masks are passed (training): a new mask
at every step (`dropout_mode: step`) or one per stream for the whole window (`locked`,
variational dropout). `weight_drop` (recurrent DropConnect, AWD-LSTM) runs each cell on
Wh * M, M one mask of 0 and 1 / (1 - weight_drop) per window, drawn there too; the cells never
see it (dWh = dWh' * M).

Two stacks: "plain" (above), and "residual" (residual.py: an embedding, pre-norm residual blocks
around each cell with an optional MLP, a final norm), chosen by ModelSpec.stack; the output layer
and the loss are the same for both. On two threads the plain stack runs its layers two at a time,
one per thread (wavefront.py, layer_groups).
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import residual, runtime, wavefront
from .cells import CELLS
from .dropconnect import drop_weights, drop_weights_grads
from .loss import nll_sum, softmax_cross_entropy_rows

# The output layer and the softmax run on chunks of the window's T*N rows whose (rows, V) logits
# take at most this many bytes, and each chunk's gradients are taken at once, so that a window
# never holds (T*N, V) logits or their gradient: at V = 5,000, batch 64 x 100, float32 those
# are 128 MB each (benchmarks/RESULTS.md, "Big vocabularies in bounded memory"). Small
# vocabularies fit in one chunk (V = 65 at 64 x 100: 1.7 MB): one product each, unchunked.
OUTPUT_CHUNK_BYTES = 16 * 2**20


# the config keys a ModelSpec is made of, besides the vocabulary's size. SHAPE_KEYS give the
# weights their shapes and meaning (a fine-tuning run must keep them); the dropouts only train
# them.
SHAPE_KEYS = ("cell", "hidden_size", "layers", "dtype", "stack", "expand", "mlp")
MODEL_KEYS = SHAPE_KEYS + ("dropout", "dropout_mode", "weight_drop")


@dataclass(frozen=True)
class ModelSpec:
    cell: str
    vocab_size: int
    hidden_size: int
    layers: int
    dropout: float = 0.0
    dtype: str = "float32"
    stack: str = "plain"  # or "residual" (residual.py)
    expand: int = 1  # residual: the cell's width is expand * hidden_size
    mlp: int = 0  # residual: an MLP of width mlp * hidden_size after each cell (0: none)
    dropout_mode: str = "step"  # a dropout mask per step, or "locked": one per window
    weight_drop: float = 0.0  # recurrent DropConnect's rate on each cell's Wh

    @property
    def cell_module(self):
        return CELLS[self.cell]

    @property
    def cell_size(self):
        """The width of each cell's state: hidden_size, times expand in the residual stack."""
        return self.hidden_size * self.expand

    def __str__(self):
        """'gru 2 x 256': the cell, its layers and their width, as every log and page names it;
        'mingru 3 x 256 residual (cell x2, mlp x4)' for the residual stack."""
        name = f"{self.cell} {self.layers} x {self.hidden_size}"
        if self.stack == "residual":
            name += f" residual (cell x{self.expand}, mlp x{self.mlp})"
        return name


def spec_of(cfg, vocab_size):
    """The ModelSpec of a TrainConfig (or anything with its model keys) over a vocabulary."""
    return ModelSpec(vocab_size=vocab_size, **{k: getattr(cfg, k) for k in MODEL_KEYS})


class Masks(NamedTuple):
    """A training window's masks (dropout_masks), each holding 0 and 1 / (1 - rate)."""
    layers: object  # per dropout place a (T, N, H) array (locked: broadcast over T), or None
    recurrent: object  # per layer a mask of its Wh's shape (weight_drop), or None

    def rows(self, rows):
        """The masks of rows (a slice) of the batch: the activation masks cut to them, the
        recurrent ones, shared by every stream, whole."""
        return Masks(None if self.layers is None else [m[:, rows] for m in self.layers],
                     self.recurrent)

    def layer(self, k):
        """Layer k's recurrent mask, or None."""
        return None if self.recurrent is None else self.recurrent[k]


NO_MASKS = Masks(None, None)


class WindowCache(NamedTuple):
    """What backward needs from forward over a window."""
    dtop: np.ndarray  # (T*N, H): d(mean loss)/d(the last layer's output, after dropout)
    output_grads: dict  # {"Wy": (H, V), "by": (V,)}: the output layer's, taken in forward
    layers: object  # each layer's cell cache (plain), or residual.StackCache
    masks: object  # the window's Masks (residual: its cache has the activation masks)
    shape: tuple  # (T, N)


def param_shapes(spec):
    """name -> shape of every parameter, in a fixed order."""
    cell, H, V = spec.cell_module, spec.hidden_size, spec.vocab_size
    if spec.stack == "residual":
        shapes = residual.param_shapes(spec)
    else:
        shapes = {}
        for layer in range(spec.layers):
            for name, shape in cell.param_shapes(V if layer == 0 else H, H).items():
                shapes[f"l{layer}.{name}"] = shape
    shapes["Wy"] = (H, V)
    shapes["by"] = (V,)
    return shapes


def init_params(spec, rng):
    cell, H, V = spec.cell_module, spec.hidden_size, spec.vocab_size
    if spec.stack == "residual":
        params = residual.init_params(spec, rng)
    else:
        params = {}
        for layer in range(spec.layers):
            for name, value in cell.init(rng, V if layer == 0 else H, H, spec.dtype).items():
                params[f"l{layer}.{name}"] = value
    k = 1.0 / np.sqrt(H)
    params["Wy"] = rng.uniform(-k, k, size=(H, V)).astype(spec.dtype)
    params["by"] = np.zeros(V, dtype=spec.dtype)
    return params


def layer_params(params, layer):
    prefix = f"l{layer}."
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def zero_state(spec, N):
    """A list with one tuple of (N, H) zero arrays per layer (h, or h and c); (N, E) in the
    residual stack, E = spec.cell_size."""
    shape, names = (N, spec.cell_size), spec.cell_module.STATE_NAMES
    return [tuple(np.zeros(shape, dtype=spec.dtype) for _ in names) for _ in range(spec.layers)]


def dropout_masks(spec, T, N, rng):
    """The masks of a training window of N streams, drawn from rng -> Masks, or None when spec
    has neither dropout nor weight_drop. Activation masks: one (T, N, H) array of 0 and
    1 / (1 - dropout) per place the stack applies dropout, in the order it applies them (each
    layer's output; residual.dropout_places); `locked` draws an (N, H) mask and repeats it over
    the window (a read-only broadcast view). Then, with weight_drop, one mask per layer of the
    shape of its Wh, the same for every stream.

    The one place masks are drawn: a data-parallel run draws the whole batch's and gives each
    process its rows (Masks.rows), so the random numbers do not depend on how the batch is
    shared out."""
    if spec.dropout <= 0 and spec.weight_drop <= 0:
        return None
    layers = recurrent = None
    if spec.dropout > 0:
        places = residual.dropout_places(spec) if spec.stack == "residual" else spec.layers
        shape = (N, spec.hidden_size) if spec.dropout_mode == "locked" else (T, N,
                                                                              spec.hidden_size)
        layers = [np.broadcast_to(m, (T, N, spec.hidden_size))
                  for m in _bernoulli(spec, spec.dropout, [shape] * places, rng)]
    if spec.weight_drop > 0:
        E = spec.cell_size
        D = spec.vocab_size if spec.stack == "plain" else spec.hidden_size
        wh = spec.cell_module.param_shapes(D, E)["Wh"]
        recurrent = _bernoulli(spec, spec.weight_drop, [wh] * spec.layers, rng)
    return Masks(layers, recurrent)


def _bernoulli(spec, rate, shapes, rng):
    """One array of each shape, 1 / (1 - rate) with probability 1 - rate and 0 otherwise, in
    spec's dtype, drawn in order from rng."""
    keep, dtype = 1.0 - rate, np.dtype(spec.dtype)
    masks = []
    for shape in shapes:
        mask = rng.random(shape, dtype=dtype) < keep
        masks.append(mask.astype(dtype) * dtype.type(1.0 / keep))
    return masks


def _layers_forward(params, spec, x, state, masks=None, threads=runtime.ONE_THREAD):
    """x (T, N) ids -> top (T, N, H), new state, per-layer caches and the Masks used; masks as
    dropout_masks gives them (None: none); threads as in forward."""
    masks = masks or NO_MASKS
    if spec.stack == "residual":
        top, new_state, cache = residual.forward(params, spec, x, state, masks, threads)
        return top, new_state, cache, masks
    cell, inp = spec.cell_module, x
    drops = masks.layers or [None] * spec.layers
    caches, new_state = [], []
    for group in layer_groups(spec, threads):
        p = [drop_weights(layer_params(params, k), masks.layer(k)) for k in group]
        if len(group) == 2:  # the wavefront: both layers at once, one per thread
            a, b = group
            outputs = wavefront.forward(cell, *p, inp, state[a], state[b], drops[a], threads)
        else:
            outputs = [cell.forward(p[0], inp, state[group[0]], threads)]
        for layer, (hs, final, cache) in zip(group, outputs):
            caches.append(cache)
            new_state.append(final)
            inp = hs
        if drops[group[-1]] is not None:
            inp = inp * drops[group[-1]]
    return inp, new_state, caches, masks


def layer_groups(spec, threads):
    """The plain stack's layers in the order forward runs them, as tuples of layer indices:
    pairs of consecutive layers where the wavefront applies (wavefront.py; the last layer of an
    odd count alone), else one at a time."""
    L = spec.layers
    if not wavefront.applies(spec, threads):
        return [(k,) for k in range(L)]
    return [tuple(range(k, min(k + 2, L))) for k in range(0, L, 2)]


def output_layer(params, top, threads=runtime.ONE_THREAD):
    """top (..., H), the last layer's output -> logits (rows, V) = top Wy + by, one row per
    position (T*N rows for a window's (T, N, H))."""
    out = threads.matmul(top.reshape(-1, top.shape[-1]), params["Wy"])
    out += params["by"]
    return out


def output_chunks(rows, V, itemsize):
    """The slices of rows whose logits a pass makes at a time: as few equal chunks as keep each
    (chunk, V) array within OUTPUT_CHUNK_BYTES, one for small vocabularies."""
    k = max(1, min(rows, -(-rows * V * itemsize // OUTPUT_CHUNK_BYTES)))
    return [slice(i * rows // k, (i + 1) * rows // k) for i in range(k)]


def stack_forward(params, spec, x, state, threads=runtime.ONE_THREAD):
    """Forward without dropout through the stack: x (T, N) ids -> top (T, N, H), the last
    layer's output; the new state; the layers' caches (a list of cell caches, or
    residual.StackCache), whose activations inference.trace reads."""
    top, new_state, caches, _ = _layers_forward(params, spec, x, state, None, threads=threads)
    return top, new_state, caches


def window_nll(params, spec, x, y, state, threads=runtime.ONE_THREAD):
    """Forward without dropout, scored: x, y (T, N) ids -> (summed NLL of y in nats (float64),
    new state), the logits made one chunk of rows at a time (output_chunks)."""
    top, new_state, _ = stack_forward(params, spec, x, state, threads)
    top2, targets = top.reshape(-1, spec.hidden_size), y.reshape(-1)
    total = 0.0
    for rows in output_chunks(len(targets), spec.vocab_size, top.itemsize):
        total += nll_sum(output_layer(params, top2[rows], threads), targets[rows])
    return total, new_state


def output_forward_backward(params, top2, targets, M, threads=runtime.ONE_THREAD):
    """The output layer, the softmax cross-entropy and their gradients, one chunk of rows at a
    time (output_chunks), so that only one chunk's logits exist at once.

    top2 (R, H), targets (R,) ids, M the count the loss's mean is over. Returns nll (R,) each
    row's loss, dtop (R, H) = dlogits Wy^T, and {"Wy": top2^T dlogits, "by": dlogits summed over
    rows}, where dlogits = (softmax - one_hot) / M. Over several chunks dWy and dby are sums of
    the chunks' products, so they differ from one product's in rounding only.
    """
    R, H = top2.shape
    Wy = params["Wy"]
    WyT = np.ascontiguousarray(Wy.T)  # products run faster than against a .T view
    nll, dtop = np.empty(R, dtype=top2.dtype), np.empty((R, H), dtype=top2.dtype)
    dWy = dby = None
    for rows in output_chunks(R, Wy.shape[1], top2.itemsize):
        top_c, targets_c, nll_c = top2[rows], targets[rows], nll[rows]
        d = output_layer(params, top_c, threads)  # (rows, V) logits, then dlogits in place
        threads.each_block(lambda b: softmax_cross_entropy_rows(d[b], targets_c[b], M, nll_c[b]),
                           len(d))
        if dWy is None:
            dWy, dby = threads.matmul(top_c.T, d), d.sum(axis=0)
        else:
            dWy += threads.matmul(top_c.T, d)
            dby += d.sum(axis=0)
        threads.matmul(d, WyT, out=dtop[rows])
    return nll, dtop, {"Wy": dWy, "by": dby}


def forward(params, spec, x, y, state, masks=None, mean_over=None, threads=runtime.ONE_THREAD):
    """Loss of a window and what backward needs.

    x, y (T, N) ids (y is x shifted by one); state from zero_state or a previous window.
    Returns (loss in nats/char, new state, cache). masks: the window's dropout masks
    (dropout_masks: Masks, or None for none). threads: the layout the loops and products run on
    (runtime.Threads); backward takes the same. One layout always gives the same bits; two
    layouts agree to rounding. The output layer's gradients are taken here, chunk by
    chunk, and kept in the cache instead of the (T*N, V) logits' (output_forward_backward).

    mean_over: the number of characters the loss is the mean over, T*N when None. Rows of a
    larger batch (one process's share in data-parallel training) pass the batch's count: the
    loss and gradients are then these rows' share of the batch's mean, and the shares add up
    to it.
    """
    top, new_state, caches, masks = _layers_forward(params, spec, x, state, masks,
                                                    threads)
    T, N, H = top.shape
    M = mean_over or T * N
    nll, dtop, output_grads = output_forward_backward(params, top.reshape(T * N, H),
                                                      y.reshape(-1), M, threads)
    cache = WindowCache(dtop, output_grads, caches, masks, (T, N))
    # np.sum then / M: the bits of np.mean when M = T*N (one division, correctly rounded)
    return float(np.sum(nll) / M), new_state, cache


def backward(params, spec, cache, threads=runtime.ONE_THREAD):
    """Gradients of forward's loss: a dict with the keys of params, and d(initial state)."""
    dtop, output_grads, caches, masks, (T, N) = cache
    # copies, so that the cache stays as forward left it whatever is done to the gradients (the
    # top layer's dropout mask below scales dh in place; clipping scales grads in place)
    grads = {k: v.copy() for k, v in output_grads.items()}
    dh = dtop.reshape(T, N, spec.hidden_size)
    return grads, _layers_backward(params, spec, caches, masks, dh, grads, threads)


def _layers_backward(params, spec, caches, masks, dh, grads, threads):
    """Backward through the stack given dh (T, N, H) = dLoss/d(top), which it leaves as it
    was: the layers' gradients go into grads; returns d(initial state), one tuple per layer."""
    if spec.stack == "residual":
        return residual.backward(params, spec, caches, dh, grads, threads)
    cell = spec.cell_module
    drops = masks.layers or [None] * spec.layers
    if drops[-1] is not None:
        dh = dh.copy()
    dstate0 = [None] * spec.layers
    for group in reversed(layer_groups(spec, threads)):
        if drops[group[-1]] is not None:
            dh *= drops[group[-1]]
        p = [drop_weights(layer_params(params, k), masks.layer(k)) for k in group]
        if len(group) == 2:
            a, b = group
            *results, dh = wavefront.backward(cell, *p, caches[a], caches[b], dh, drops[a])
        else:
            g, dh, d0 = cell.backward(p[0], caches[group[0]], dh, threads=threads)
            results = [(g, d0)]
        for layer, (g, dstate0[layer]) in zip(group, results):
            for k, v in drop_weights_grads(g, masks.layer(layer)).items():
                grads[f"l{layer}.{k}"] = v
    return dstate0
