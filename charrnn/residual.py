"""The residual stack (`stack: residual`): an embedding, pre-norm residual blocks around each
recurrent layer (and an optional MLP), and a final norm, as in the language models of Feng et
al. (2024) and of transformers. model.py calls it in place of its plain stack of cells.

Shape letters: T time, N batch, H the stream's width (hidden_size), E = expand * H the cell's
width, M = mlp * H the MLP's, V vocabulary. With x (T, N, H) the residual stream:

    x = embed[ids]                                      (T, N, H)
    for each layer k:
        x = x + drop(cell_k(rms_norm(x; l{k}.norm)) Wo + bo)         cell from its carried state
        x = x + drop(gelu(rms_norm(x; l{k}.mlp_norm) W1 + b1) W2 + b2)        when mlp > 0
    top = rms_norm(x; norm)                            -> the output layer, top Wy + by

Each branch reads a normalised copy of the stream and adds to it, so a deep stack starts close to
the identity and gradients reach the embedding through the sums unchanged. Parameters: `embed`
(V, H), `norm` (H,), and per layer `l{k}.norm` (H,), the cell's own `l{k}.Wx` (H, G) ..., `l{k}.Wo`
(E, H), `l{k}.bo` (H,), with an MLP `l{k}.mlp_norm` (H,), `l{k}.W1` (H, M), `l{k}.b1` (M,),
`l{k}.W2` (M, H), `l{k}.b2` (H,).
"""
from typing import NamedTuple

import numpy as np

from . import positionwise, runtime
from .cells._input import one_hot_transpose_product
from .dropconnect import drop_weights, drop_weights_grads


class LayerCache(NamedTuple):
    norm: object  # the cell branch's input norm
    cell: object  # the cell's cache
    hs: np.ndarray  # (T*N, E): the cell's output
    mask: object  # (T*N, H) dropout mask of the cell branch, or None
    mlp: object  # MlpCache, or None
    recurrent: object  # the cell's weight_drop mask (the shape of its Wh), or None


class MlpCache(NamedTuple):
    norm: object
    v: np.ndarray  # (T*N, H): the normalised stream the MLP reads
    a1: np.ndarray  # (T*N, M): v W1 + b1
    t: np.ndarray  # (T*N, M): gelu's tanh
    m: np.ndarray  # (T*N, M): gelu(a1)
    mask: object


class StackCache(NamedTuple):
    ids: np.ndarray  # (T, N)
    layers: list  # LayerCache per layer
    norm: object  # the final norm's cache


def cell_keys(spec):
    """The names of a layer's cell parameters (Wx, b, ...), the rest of l{k}.* the block's."""
    return tuple(spec.cell_module.param_shapes(1, 1))


def param_shapes(spec):
    """name -> shape of the stack's parameters, in a fixed order (the output layer's not
    included)."""
    cell, H, V = spec.cell_module, spec.hidden_size, spec.vocab_size
    E, M = spec.cell_size, spec.mlp * spec.hidden_size
    shapes = {"embed": (V, H)}
    for k in range(spec.layers):
        shapes[f"l{k}.norm"] = (H,)
        shapes.update({f"l{k}.{name}": s for name, s in cell.param_shapes(H, E).items()})
        shapes[f"l{k}.Wo"], shapes[f"l{k}.bo"] = (E, H), (H,)
        if M:
            shapes[f"l{k}.mlp_norm"] = (H,)
            shapes[f"l{k}.W1"], shapes[f"l{k}.b1"] = (H, M), (M,)
            shapes[f"l{k}.W2"], shapes[f"l{k}.b2"] = (M, H), (H,)
    shapes["norm"] = (H,)
    return shapes


def _uniform(rng, shape, dtype):
    """Uniform(-1/sqrt(fan in), 1/sqrt(fan in)), PyTorch's nn.Linear default."""
    k = 1.0 / np.sqrt(shape[0])
    return rng.uniform(-k, k, size=shape).astype(dtype)


def init_params(spec, rng):
    """The embedding N(0, 1), norm gains 1, each cell's own init, the products as nn.Linear,
    biases 0; drawn in the order of param_shapes."""
    cell, dt, H = spec.cell_module, spec.dtype, spec.hidden_size
    E, M = spec.cell_size, spec.mlp * spec.hidden_size
    params = {"embed": rng.standard_normal((spec.vocab_size, H)).astype(dt)}
    for k in range(spec.layers):
        params[f"l{k}.norm"] = np.ones(H, dtype=dt)
        params.update({f"l{k}.{name}": v for name, v in cell.init(rng, H, E, dt).items()})
        params[f"l{k}.Wo"], params[f"l{k}.bo"] = _uniform(rng, (E, H), dt), np.zeros(H, dt)
        if M:
            params[f"l{k}.mlp_norm"] = np.ones(H, dtype=dt)
            params[f"l{k}.W1"], params[f"l{k}.b1"] = _uniform(rng, (H, M), dt), np.zeros(M, dt)
            params[f"l{k}.W2"], params[f"l{k}.b2"] = _uniform(rng, (M, H), dt), np.zeros(H, dt)
    params["norm"] = np.ones(H, dtype=dt)
    return params


def _cell_params(params, spec, k, recurrent=None):
    """Layer k's cell parameters by their names in the cell, Wh times its weight_drop mask
    recurrent when there is one."""
    return drop_weights({name: params[f"l{k}.{name}"] for name in cell_keys(spec)}, recurrent)


def _affine(x, W, b, threads):
    """x (T*N, K) W (K, P) + b -> (T*N, P), the product on threads."""
    out = threads.matmul(x, W)
    out += b
    return out


def dropout_places(spec):
    """How many dropout masks a window takes (model.dropout_masks): each block's cell output,
    then its MLP's output when it has one."""
    return spec.layers * (2 if spec.mlp else 1)


def _dropped(a, mask):
    """a (T*N, H) times its dropout mask (T, N, H) -> (a * mask, mask as (T*N, H)), or (a, None)
    without one."""
    if mask is None:
        return a, None
    mask = mask.reshape(a.shape)
    return a * mask, mask


def forward(params, spec, ids, state, masks=None, threads=runtime.ONE_THREAD):
    """ids (T, N) -> top (T, N, H) (the final norm's output), the new state, a StackCache;
    masks the model.Masks of model.dropout_masks (None: no dropout)."""
    T, N = ids.shape
    H = spec.hidden_size
    cell = spec.cell_module
    drops = iter((masks and masks.layers) or [None] * dropout_places(spec))
    recurrent = (masks and masks.recurrent) or [None] * spec.layers
    x = np.take(params["embed"], ids.reshape(-1), axis=0)  # (T*N, H)
    caches, new_state = [], []
    for k in range(spec.layers):
        u, norm = positionwise.rms_norm(x, params[f"l{k}.norm"], threads)
        hs, final, ccache = cell.forward(_cell_params(params, spec, k, recurrent[k]),
                                         u.reshape(T, N, H), state[k], threads)
        hs = hs.reshape(T * N, -1)
        out, mask = _dropped(_affine(hs, params[f"l{k}.Wo"], params[f"l{k}.bo"], threads),
                             next(drops))
        x = x + out
        mlp = None
        if spec.mlp:
            v, mnorm = positionwise.rms_norm(x, params[f"l{k}.mlp_norm"], threads)
            a1 = _affine(v, params[f"l{k}.W1"], params[f"l{k}.b1"], threads)
            m, t = positionwise.gelu(a1, threads)
            out, mmask = _dropped(_affine(m, params[f"l{k}.W2"], params[f"l{k}.b2"], threads),
                                  next(drops))
            x = x + out
            mlp = MlpCache(mnorm, v, a1, t, m, mmask)
        caches.append(LayerCache(norm, ccache, hs, mask, mlp, recurrent[k]))
        new_state.append(final)
    top, norm = positionwise.rms_norm(x, params["norm"], threads)
    return top.reshape(T, N, H), new_state, StackCache(ids, caches, norm)


def _affine_backward(x, W, dout, threads):
    """Gradients of x W + b given dout (T*N, P): dW (K, P), db (P,), dx (T*N, K)."""
    dW = threads.matmul(x.T, dout)
    dx = threads.matmul(dout, np.ascontiguousarray(W.T))
    return dW, dout.sum(axis=0), dx


def backward(params, spec, cache, dtop, grads, threads=runtime.ONE_THREAD):
    """Gradients of the stack given dtop (T, N, H) = dLoss/dtop: written into grads (a dict);
    returns d(initial state), one tuple per layer."""
    ids, caches, norm = cache
    T, N = ids.shape
    H = spec.hidden_size
    cell = spec.cell_module
    dx = np.zeros((T * N, H), dtype=dtop.dtype)  # dLoss/dx of the stream, summed over its uses
    grads["norm"] = positionwise.rms_norm_backward(params["norm"], norm, dtop.reshape(T * N, H),
                                                    dx, threads)
    dstate0 = [None] * spec.layers
    for k in range(spec.layers - 1, -1, -1):
        c = caches[k]
        if c.mlp is not None:
            mc = c.mlp
            dout = dx if mc.mask is None else dx * mc.mask
            grads[f"l{k}.W2"], grads[f"l{k}.b2"], dm = _affine_backward(mc.m, params[f"l{k}.W2"],
                                                                       dout, threads)
            da1 = positionwise.gelu_backward(mc.a1, mc.t, dm, threads)
            grads[f"l{k}.W1"], grads[f"l{k}.b1"], dv = _affine_backward(mc.v, params[f"l{k}.W1"],
                                                                       da1, threads)
            grads[f"l{k}.mlp_norm"] = positionwise.rms_norm_backward(
                params[f"l{k}.mlp_norm"], mc.norm, dv, dx, threads)
        dout = dx if c.mask is None else dx * c.mask
        grads[f"l{k}.Wo"], grads[f"l{k}.bo"], dhs = _affine_backward(c.hs, params[f"l{k}.Wo"],
                                                                     dout, threads)
        g, du, dstate0[k] = cell.backward(_cell_params(params, spec, k, c.recurrent), c.cell,
                                          dhs.reshape(T, N, -1), threads=threads)
        for name, value in drop_weights_grads(g, c.recurrent).items():
            grads[f"l{k}.{name}"] = value
        grads[f"l{k}.norm"] = positionwise.rms_norm_backward(params[f"l{k}.norm"], c.norm,
                                                             du.reshape(T * N, H), dx, threads)
    grads["embed"] = one_hot_transpose_product(ids.reshape(-1), dx, spec.vocab_size, threads)
    return dstate0


def stepper(params, spec, one_thread):
    """inference.stepper for the residual stack: step(id, state) -> (logits (V,), new state), what
    forward and the output layer compute for x = [[id]], with each layer's parameters looked up
    once here; its products run inside one_thread (a context holding the BLAS at one thread)."""
    cell = spec.cell_module
    embed, final_norm = params["embed"], params["norm"]
    blocks = []
    for k in range(spec.layers):
        mlp = (tuple(params[f"l{k}.{n}"] for n in ("mlp_norm", "W1", "b1", "W2", "b2"))
               if spec.mlp else None)
        # the cell's weights in the form its step reads, made once, not per step
        blocks.append((params[f"l{k}.norm"], cell.step_params(_cell_params(params, spec, k)),
                       params[f"l{k}.Wo"], params[f"l{k}.bo"], mlp))

    Wy, by = params["Wy"], params["by"]

    def step(idx, state):
        with one_thread:
            top, new_state = layers_step(idx, state)
            out = top[0] @ Wy
        out += by
        return out, new_state

    def layers_step(idx, state):
        x = embed[idx:idx + 1]
        new_state = []
        for (g, p, Wo, bo, mlp), layer_state in zip(blocks, state):
            u, _ = positionwise.rms_norm(x, g, runtime.ONE_THREAD)
            a = u @ p["Wx"]
            a += p["b"]
            h = cell.step(p, a, layer_state)
            new_state.append(h)
            out = h[0] @ Wo
            out += bo
            x = x + out
            if mlp is not None:
                g2, W1, b1, W2, b2 = mlp
                v, _ = positionwise.rms_norm(x, g2, runtime.ONE_THREAD)
                a1 = v @ W1
                a1 += b1
                out = positionwise.gelu(a1, runtime.ONE_THREAD)[0] @ W2
                out += b2
                x = x + out
        return positionwise.rms_norm(x, final_norm, runtime.ONE_THREAD)[0], new_state

    return step
