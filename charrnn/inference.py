"""A trained model run over a text outside training, batch 1 and no dropout: its logits, its
activations for inspection (trace, trace_windows), its state after a prime (advance) and one
generation step (stepper). Shape letters: L text length, V vocabulary, H the cells' width."""
import numpy as np

from . import blas, residual, runtime
from .model import OUTPUT_CHUNK_BYTES, layer_params, output_layer, stack_forward, zero_state

# characters a window of trace_windows and advance reads at most: its caches are a few times
# this by the layers' width, whatever the length of the text
TEXT_WINDOW = 2048


def logits(params, spec, x, state, threads=runtime.ONE_THREAD):
    """Forward without dropout: x (T, N) ids -> logits (T*N, V) and the new state. threads: the
    layout the loops and products run on (runtime.Threads), as in model.forward."""
    top, new_state, _ = stack_forward(params, spec, x, state, threads)
    return output_layer(params, top, threads), new_state


def trace(params, spec, ids, threads=runtime.ONE_THREAD):
    """One pass over ids (L,) from a zero state: -> (logits (L, V), layers), layers[k] a dict of
    layer k's activations by name ("h", "c", gates), each (L, H)."""
    logits, layers, _ = _trace_window(params, spec, ids, zero_state(spec, 1), threads)
    return logits, layers


def _trace_window(params, spec, ids, state, threads):
    """trace() of ids (w,) from state -> (logits (w, V), layers, the state after them)."""
    x = np.asarray(ids).reshape(-1, 1)
    top, new_state, caches = stack_forward(params, spec, x, state, threads)
    if spec.stack == "residual":
        caches = [layer.cell for layer in caches.layers]
    layers = [{name: a[:, 0].copy() for name, a in spec.cell_module.activations(c).items()}
              for c in caches]
    return output_layer(params, top, threads), layers, new_state


def text_window(spec):
    """Characters per window of trace_windows: at most TEXT_WINDOW, and few enough that the
    window's (w, V) logits take at most OUTPUT_CHUNK_BYTES (one row at the least)."""
    itemsize = np.dtype(spec.dtype).itemsize
    return max(1, min(TEXT_WINDOW, OUTPUT_CHUNK_BYTES // (spec.vocab_size * itemsize)))


def trace_windows(params, spec, ids, threads=runtime.ONE_THREAD):
    """trace() of ids (L,) one window of text_window(spec) characters at a time, the state
    carried: yields (logits (w, V), layers) of consecutive windows, so that no (L, V) array
    and no cache of the whole text ever exists. The same numbers as trace() to rounding (the
    products run on fewer rows)."""
    state = zero_state(spec, 1)
    w = text_window(spec)
    for start in range(0, len(ids), w):
        logits, layers, state = _trace_window(params, spec, ids[start:start + w], state, threads)
        yield logits, layers


def advance(params, spec, ids, state, threads=runtime.ONE_THREAD):
    """The state after reading ids (L,) at batch 1 from state (as zero_state(spec, 1) gives
    it): the state logits() returns, without the output layer and one window of TEXT_WINDOW
    characters at a time, so a long prime needs no (L, V) logits."""
    for start in range(0, len(ids), TEXT_WINDOW):
        x = np.asarray(ids[start:start + TEXT_WINDOW]).reshape(-1, 1)
        _, state, _ = stack_forward(params, spec, x, state, threads)
    return state


def stepper(params, spec):
    """A generation step at batch 1 with its per-character work cut to the arithmetic.

    Returns step(id, state) -> (logits (V,), new state), id an int and state as
    zero_state(spec, 1) gives it. It computes one step of what logits() does for x = [[id]], but
    the input table and each layer's weights (cell.step_params) are made once here instead of on
    every character, and the BLAS runs on one thread: a (1, H) product is too small to share.
    """
    one_thread = blas.one_blas_thread()
    if spec.stack == "residual":
        return residual.stepper(params, spec, one_thread)
    cell = spec.cell_module
    # the weights step reads (the LSTM's and GRU's sigmoid columns halved), made once, not per step
    layers = [cell.step_params(layer_params(params, layer)) for layer in range(spec.layers)]
    upper = [(p, p["Wx"], p["b"]) for p in layers[1:]]
    first = layers[0]
    table = first["Wx"] + first["b"]  # (V, G): input_table of the step's weights
    Wy, by = params["Wy"], params["by"]

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
