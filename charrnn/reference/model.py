"""The whole language model written the plain textbook way, in its two stacks:

    plain     one_hot(ids) -> cell 0 -> cell 1 -> ... -> logits
    residual  x = one_hot(ids) embed;  per layer x = x + cell(rms_norm(x)) Wo + bo, then (with
              an MLP) x = x + gelu(rms_norm(x) W1 + b1) W2 + b2;  rms_norm(x) -> logits

and WINDOWS, every cell's window forward and backward by name.
"""
import numpy as np

from .blocks import (affine_backward, affine_forward, gelu_backward, gelu_forward,
                     rms_norm_backward, rms_norm_forward)
from .cells import gru_backward, gru_forward, lstm_backward, lstm_forward, one_hot, \
    rnn_backward, rnn_forward
from .min_cells import mingru_backward, mingru_forward, minlstm_backward, minlstm_forward

WINDOWS = {"rnn": (rnn_forward, rnn_backward), "lstm": (lstm_forward, lstm_backward),
           "gru": (gru_forward, gru_backward), "mingru": (mingru_forward, mingru_backward),
           "minlstm": (minlstm_forward, minlstm_backward)}
"""cell name -> (window forward, window backward)."""

BLOCK_KEYS = ("norm", "Wo", "bo", "mlp_norm", "W1", "b1", "W2", "b2")
"""A residual layer's own parameters; the rest of l{k}.* are its cell's."""


def _layer(params, k):
    """Layer k's cell parameters out of the flat dict: "l{k}.Wx" -> "Wx" and so on."""
    prefix = f"l{k}."
    return {name[len(prefix):]: value for name, value in params.items()
            if name.startswith(prefix) and name[len(prefix):] not in BLOCK_KEYS}


def model_forward(params, cell, layers, ids_x, ids_y, state, stack="plain", drops=None,
                  weight_masks=None):
    """Mean cross-entropy of a window, in nats per character.

    x_top = the stack's output (below)      (T, N, H)
    logits = x_top Wy + by                  (T, N, V)
    loss = -(1 / TN) sum over t, n of log softmax(logits[t, n])[ids_y[t, n]]

    params: flat dict, l{k}.Wx etc. per layer and Wy (H, V), by (V,); cell a name of WINDOWS;
    ids_x, ids_y (T, N) integers; state: a list of one state tuple per layer; stack "plain" or
    "residual" (with an MLP when params has l0.W1).
    drops: dropout masks (T, N, H), one per place (plain: each layer's output; residual: each
    branch's output), each output multiplied by its mask; weight_masks: one per layer, of the
    shape of its Wh, the layer's cell run on Wh * mask (recurrent DropConnect).
    Returns (loss, new state as a list of tuples, cache).
    """
    V = params["Wy"].shape[1]
    stack_forward = _plain_forward if stack == "plain" else _residual_forward
    masks = (drops, weight_masks)
    x, new_state, caches = stack_forward(params, cell, layers, one_hot(ids_x, V), state, masks)
    T, N, _ = x.shape
    logits = x @ params["Wy"] + params["by"]
    shifted = logits - logits.max(axis=2, keepdims=True)  # exp cannot overflow; softmax unchanged
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))
    targets = one_hot(ids_y, V)
    loss = -np.sum(targets * log_probs) / (T * N)
    return float(loss), new_state, (params, cell, stack, state, x, log_probs, targets, caches)


def model_backward(cache):
    """Gradients of model_forward's loss.

    dlogits = (softmax(logits) - one_hot(ids_y)) / TN                     (T, N, V)
    dWy = sum over t, n of x_top^T dlogits,  dby = sum of dlogits,  dx_top = dlogits Wy^T
    then back through the stack, with no gradient from after the window.
    Returns grads (a dict with the keys of params) and dstate0, one tuple per layer.
    """
    params, cell, stack, state, x_top, log_probs, targets, caches = cache
    T, N, H = x_top.shape
    dlogits = (np.exp(log_probs) - targets) / (T * N)
    grads = {"Wy": x_top.reshape(T * N, H).T @ dlogits.reshape(T * N, -1),
             "by": dlogits.sum(axis=(0, 1))}
    stack_backward = _plain_backward if stack == "plain" else _residual_backward
    dstate0 = stack_backward(params, cell, state, caches, dlogits @ params["Wy"].T, grads)
    return grads, dstate0


# ---- the plain stack -------------------------------------------------------------------------

def _cell_params(params, k, weight_masks):
    """Layer k's cell parameters, with Wh * weight_masks[k] in place of Wh when given."""
    p = _layer(params, k)
    if weight_masks is not None:
        p["Wh"] = p["Wh"] * weight_masks[k]
    return p


def _masked_grads(g, k, weight_masks):
    """The gradients for Wh * mask -> those for Wh: d(Wh * M)/dWh = M, elementwise."""
    if weight_masks is not None:
        g["Wh"] = g["Wh"] * weight_masks[k]
    return g


def _plain_forward(params, cell, layers, x, state, masks):
    """x_0 = one_hot(ids) (T, N, V); x_{k+1} = hs of layer k, run from its carried state
    state[k] (T, N, H), times drops[k]. Returns the top layer's output, the new state and each
    layer's cache."""
    forward = WINDOWS[cell][0]
    drops, weight_masks = masks
    caches, new_state = [], []
    for k in range(layers):
        x, final, cache = forward(_cell_params(params, k, weight_masks), x, state[k])
        if drops is not None:
            x = x * drops[k]
        caches.append(cache)
        new_state.append(final)
    return x, new_state, (caches, masks)


def _plain_backward(params, cell, state, caches, dhs, grads):
    """Each layer's window backward, top to bottom; its dx is the gradient into the hs of the
    layer below. Adds the layers' gradients to grads; returns dstate0."""
    backward = WINDOWS[cell][1]
    caches, (drops, weight_masks) = caches
    dstate0 = [None] * len(caches)
    for k in reversed(range(len(caches))):
        if drops is not None:
            dhs = dhs * drops[k]  # d(hs * mask)/d hs = mask
        nothing_after = tuple(np.zeros_like(s) for s in state[k])
        g, dhs, dstate0[k] = backward(_cell_params(params, k, weight_masks), caches[k], dhs,
                                      nothing_after)
        for name, value in _masked_grads(g, k, weight_masks).items():
            grads[f"l{k}.{name}"] = value
    return dstate0


# ---- the residual stack ----------------------------------------------------------------------

def _residual_forward(params, cell, layers, ids_one_hot, state, masks):
    """x = one_hot(ids) embed                                 (T, N, H), the residual stream
    per layer k:
        u = rms_norm(x; l{k}.norm)
        hs = the cell's window over u from state[k]          (T, N, E)
        x = x + (hs Wo + bo) * drop                          drop: the next of drops, or 1
        with an MLP: x = x + (gelu(rms_norm(x; l{k}.mlp_norm) W1 + b1) W2 + b2) * drop
    x_top = rms_norm(x; norm)
    Returns x_top, the new state and a cache."""
    forward = WINDOWS[cell][0]
    drops, weight_masks = masks
    drops = list(drops) if drops is not None else [1.0] * (2 * layers)
    x = ids_one_hot @ params["embed"]
    caches, new_state = [], []
    for k in range(layers):
        p = {name: params[f"l{k}.{name}"] for name in BLOCK_KEYS if f"l{k}.{name}" in params}
        u, cell_norm = rms_norm_forward(x, p["norm"])
        hs, final, cell_cache = forward(_cell_params(params, k, weight_masks), u, state[k])
        out, proj = affine_forward(hs, p["Wo"], p["bo"])
        cell_drop = drops.pop(0)
        x = x + out * cell_drop
        mlp = None
        if "W1" in p:
            v, mlp_norm = rms_norm_forward(x, p["mlp_norm"])
            a1, first = affine_forward(v, p["W1"], p["b1"])
            m, act = gelu_forward(a1)
            out, second = affine_forward(m, p["W2"], p["b2"])
            mlp_drop = drops.pop(0)
            x = x + out * mlp_drop
            mlp = (mlp_norm, first, act, second, mlp_drop)
        caches.append((p, cell_norm, cell_cache, proj, mlp, cell_drop))
        new_state.append(final)
    x_top, norm = rms_norm_forward(x, params["norm"])
    return x_top, new_state, (ids_one_hot, caches, norm, weight_masks)


def _residual_backward(params, cell, state, caches, dx_top, grads):
    """Top to bottom; dx, the gradient of the stream, is the sum of what reaches it through the
    identity and through each branch that read it. Adds to grads; returns dstate0."""
    backward = WINDOWS[cell][1]
    ids_one_hot, layer_caches, norm, weight_masks = caches
    grads["norm"], dx = rms_norm_backward(params["norm"], norm, dx_top)
    dstate0 = [None] * len(layer_caches)
    for k in reversed(range(len(layer_caches))):
        p, cell_norm, cell_cache, proj, mlp, cell_drop = layer_caches[k]
        if mlp is not None:
            mlp_norm, first, act, second, mlp_drop = mlp
            grads[f"l{k}.W2"], grads[f"l{k}.b2"], dm = affine_backward(p["W2"], second,
                                                                       dx * mlp_drop)
            da1 = gelu_backward(act, dm)
            grads[f"l{k}.W1"], grads[f"l{k}.b1"], dv = affine_backward(p["W1"], first, da1)
            grads[f"l{k}.mlp_norm"], dx_mlp = rms_norm_backward(p["mlp_norm"], mlp_norm, dv)
            dx = dx + dx_mlp
        grads[f"l{k}.Wo"], grads[f"l{k}.bo"], dhs = affine_backward(p["Wo"], proj,
                                                                    dx * cell_drop)
        nothing_after = tuple(np.zeros_like(s) for s in state[k])
        g, du, dstate0[k] = backward(_cell_params(params, k, weight_masks), cell_cache, dhs,
                                     nothing_after)
        for name, value in _masked_grads(g, k, weight_masks).items():
            grads[f"l{k}.{name}"] = value
        grads[f"l{k}.norm"], dx_cell = rms_norm_backward(p["norm"], cell_norm, du)
        dx = dx + dx_cell
    V, H = params["embed"].shape
    grads["embed"] = ids_one_hot.reshape(-1, V).T @ dx.reshape(-1, H)
    return dstate0
