"""The language model: one-hot input -> stacked recurrent layers -> linear output -> softmax.

Parameters are one flat dict whose names double as checkpoint keys: `l{i}.{name}` for layer i's
cell parameters (see cells/) and `Wy` (H, V), `by` (V,) for the output layer. Shape letters:
T time, N batch, H hidden, V vocabulary. Logits y_t = h_t Wy + by on the last layer's output.
Dropout (inverted, rate `dropout`) is applied to each layer's output, i.e. between layers and
before the output layer, only when a dropout generator is passed (training).
"""
from dataclasses import dataclass

import numpy as np

from .cells import CELLS, _parallel
from .loss import nll_and_grad


@dataclass(frozen=True)
class ModelSpec:
    cell: str
    vocab_size: int
    hidden_size: int
    layers: int
    dropout: float = 0.0
    dtype: str = "float32"

    @property
    def cell_module(self):
        return CELLS[self.cell]


def param_shapes(spec):
    """name -> shape of every parameter, in a fixed order."""
    cell, H, V = spec.cell_module, spec.hidden_size, spec.vocab_size
    shapes = {}
    for layer in range(spec.layers):
        for name, shape in cell.param_shapes(V if layer == 0 else H, H).items():
            shapes[f"l{layer}.{name}"] = shape
    shapes["Wy"] = (H, V)
    shapes["by"] = (V,)
    return shapes


def init_params(spec, rng):
    cell, H, V = spec.cell_module, spec.hidden_size, spec.vocab_size
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
    """A list with one tuple of (N, H) zero arrays per layer (h, or h and c)."""
    shape, names = (N, spec.hidden_size), spec.cell_module.STATE_NAMES
    return [tuple(np.zeros(shape, dtype=spec.dtype) for _ in names) for _ in range(spec.layers)]


def _project_next(hs, mask, p, inp, a, steps):
    """The next layer's input at steps [t0, t1): inp = hs * mask (with dropout), a = inp Wx + b."""
    t0, t1 = steps
    src = hs[t0:t1]
    if mask is not None:
        src = np.multiply(src, mask[t0:t1], out=inp[t0:t1])
    out = a[t0:t1].reshape(-1, a.shape[2])
    np.matmul(src.reshape(-1, src.shape[2]), p["Wx"], out=out)
    out += p["b"]


def _layers_forward(params, spec, x, state, dropout_rng, helper, on_top_steps=None):
    """x (T, N) ids -> top (T, N, H), new state, per-layer caches and dropout masks.

    While a layer's loop runs, the helper thread computes the next layer's input projection a
    few steps behind it; on_top_steps(hs, mask, t0, t1) is called as the top layer's steps
    [t0, t1) become final (hs unmasked; mask None without dropout).
    """
    cell, L = spec.cell_module, spec.layers
    T, N = x.shape
    dtype = np.dtype(spec.dtype)
    masks = [None] * L
    if dropout_rng is not None and spec.dropout > 0:
        keep = 1.0 - spec.dropout
        for layer in range(L):
            mask = dropout_rng.random((T, N, spec.hidden_size), dtype=dtype) < keep
            masks[layer] = mask.astype(dtype) * dtype.type(1.0 / keep)
    caches, new_state = [], []
    inp, a = x, None
    for layer in range(L):
        mask = masks[layer]
        if layer < L - 1:
            above = layer_params(params, layer + 1)
            a_next = np.empty((T, N, above["Wx"].shape[1]), dtype=dtype)
            inp_next = None if mask is None else np.empty((T, N, spec.hidden_size), dtype=dtype)

            def on_steps(hs, t0, t1, mask=mask, above=above, inp_next=inp_next, a_next=a_next):
                helper.submit(_project_next, hs, mask, above, inp_next, a_next, (t0, t1))
        elif on_top_steps is not None:
            def on_steps(hs, t0, t1, mask=mask):
                on_top_steps(hs, mask, t0, t1)
        else:
            on_steps = None
        hs, final, cache = cell.forward(layer_params(params, layer), inp, state[layer], on_steps, a)
        caches.append(cache)
        new_state.append(final)
        if layer < L - 1:
            helper.wait_all()  # the next layer starts on its whole input
            inp, a = (hs if mask is None else inp_next), a_next
        else:
            inp = hs if mask is None else hs * mask
    return inp, new_state, caches, masks


def logits(params, spec, x, state):
    """Forward without dropout: x (T, N) ids -> logits (T*N, V) and the new state."""
    T, N = x.shape
    H, Wy, by = spec.hidden_size, params["Wy"], params["by"]
    out = np.empty((T, N, spec.vocab_size), dtype=np.result_type(Wy, spec.dtype))

    def output(hs, t0, t1):
        o = out[t0:t1].reshape(-1, out.shape[2])
        np.matmul(hs[t0:t1].reshape(-1, H), Wy, out=o)
        o += by

    # the output layer runs on the helper thread, a few steps behind the top layer's loop
    with _parallel.helper() as helper:
        _, new_state, _, _ = _layers_forward(
            params, spec, x, state, None, helper,
            lambda hs, mask, t0, t1: helper.submit(output, hs, t0, t1))
    return out.reshape(T * N, -1), new_state


def forward(params, spec, x, y, state, dropout_rng=None):
    """Loss of a window and what backward needs.

    x, y (T, N) ids (y is x shifted by one); state from zero_state or a previous window.
    Returns (loss in nats/char, new state, cache). Passing dropout_rng turns dropout on.

    The output layer, the softmax and the output layer's gradients (which need nothing but
    the top layer's output) run on the helper thread a few steps behind the top layer's loop.
    """
    T, N = x.shape
    H = spec.hidden_size
    Wy, by = params["Wy"], params["by"]
    WyT = np.ascontiguousarray(Wy.T)  # products run faster than against a .T view
    dtype = np.dtype(np.result_type(Wy, spec.dtype))
    grads = {"Wy": np.zeros_like(Wy), "by": np.zeros_like(by)}
    dtop = np.empty((T, N, H), dtype=dtype)  # dLoss/d(top layer output, after dropout)
    nll = [0.0] * T

    def output(hs, mask, t0, t1):
        top = hs[t0:t1] if mask is None else hs[t0:t1] * mask[t0:t1]
        top2 = top.reshape(-1, H)
        out = top2 @ Wy
        out += by
        nll[t0], dlogits = nll_and_grad(out, y[t0:t1].reshape(-1), T * N)
        grads["Wy"] += top2.T @ dlogits
        grads["by"] += dlogits.sum(axis=0)
        np.matmul(dlogits, WyT, out=dtop[t0:t1].reshape(-1, H))

    with _parallel.helper() as helper:
        _, new_state, caches, masks = _layers_forward(
            params, spec, x, state, dropout_rng, helper,
            lambda hs, mask, t0, t1: helper.submit(output, hs, mask, t0, t1))
    loss = float(np.asarray(nll, dtype=dtype).sum() / dtype.type(T * N))
    return loss, new_state, (grads, dtop, caches, masks)


def backward(params, spec, cache):
    """Gradients of forward's loss: a dict with the keys of params, and d(initial state)."""
    out_grads, dh, caches, masks = cache
    cell = spec.cell_module
    grads = dict(out_grads)
    dstate0 = [None] * spec.layers
    for layer in range(spec.layers - 1, -1, -1):
        if masks[layer] is not None:
            dh *= masks[layer]
        g, dh, dstate0[layer] = cell.backward(layer_params(params, layer), caches[layer], dh)
        for k, v in g.items():
            grads[f"l{layer}.{k}"] = v
    return grads, dstate0


def step(params, spec, tables, ids, state):
    """One generation step: ids (N,) -> logits (N, V), new state.

    tables: input_tables(params, spec), the first layer's Wx + b so the input is one row lookup.
    """
    cell = spec.cell_module
    a = tables[ids]
    new_state = []
    for layer in range(spec.layers):
        p = layer_params(params, layer)
        if layer > 0:
            a = new_state[-1][0] @ p["Wx"]
            a += p["b"]
        new_state.append(cell.step(p, a, state[layer]))
    out = new_state[-1][0] @ params["Wy"]
    out += params["by"]
    return out, new_state


def stepper(params, spec):
    """A generation step at batch 1 with its per-character work cut to the arithmetic.

    Returns step(id, state) -> (logits (V,), new state), id an int and state as zero_state(spec, 1)
    gives it. It computes what step() does for ids = [id], but the input table and each layer's
    parameter views are made once here instead of on every character, and the BLAS runs on one
    thread: a (1, H) product is too small to share.
    """
    cell = spec.cell_module
    table = input_table(params)
    layers = [layer_params(params, layer) for layer in range(spec.layers)]
    upper = [(p, p["Wx"], p["b"]) for p in layers[1:]]
    first = layers[0]
    Wy, by = params["Wy"], params["by"]
    one_thread = _parallel.one_blas_thread()

    def step(idx, state):
        with one_thread:
            h = cell.step(first, table[idx:idx + 1], state[0])  # (1, G) row: a view, no copy
            new_state = [h]
            for p, Wx, b in upper:
                a = h[0] @ Wx
                a += b
                h = cell.step(p, a, state[len(new_state)])
                new_state.append(h)
            out = h[0][0] @ Wy
        out += by
        return out, new_state

    return step


def input_table(params):
    """(V, G) table whose row v is the first layer's x Wx + b for the one-hot x of character v."""
    return params["l0.Wx"] + params["l0.b"]
