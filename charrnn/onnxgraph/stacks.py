"""The model's step as ONNX nodes, both stacks: ids (N,) and each layer's state in, the
next-character logits and the new state out; and the step and window graphs made of it.

The equations are model.py's and residual.py's (their plain versions: charrnn/reference/).
Shape letters: N batch, T time, V vocabulary, H hidden_size, E the cells' width (H, or expand *
H in the residual stack), L layers. The state travels as one (L, N, E) array per state name
(h, and c for the LSTM): h0 in, h1 out.
"""
import numpy as np
from onnx import TensorProto, helper

from .. import inference
from ..reference.blocks import NORM_EPS
from . import cells
from .builder import Graph, Weights


def _recurrent_keys(spec):
    """The names of a cell's parameters besides its input projection's Wx and b (Wh, bhn)."""
    return [n for n in spec.cell_module.param_shapes(1, 1) if n not in ("Wx", "b")]


def _plain(g, spec, ids, state):
    """One-hot input (a row lookup of x Wx + b) -> stacked cells -> top (N, H), new state."""
    step, recurrent, W = cells.STEPS[spec.cell], _recurrent_keys(spec), g.weights
    if "l0.table" not in W.tensors:  # one row per character: x Wx + b for the one-hot x
        W.add("l0.table", inference.input_table(W.params))
    inp, new_state = None, []
    for k in range(spec.layers):
        g.scope = f"l{k}"
        a = (g.op("Gather", "l0.table", ids, axis=0, out="l0.a") if k == 0 else
             g.affine(inp, W.param(f"l{k}.Wx"), W.param(f"l{k}.b"), out=g.at("a")))
        new = step(g, {n: W.param(f"l{k}.{n}") for n in recurrent}, a, state[k])
        new_state.append(new)
        inp = new[0]
    g.scope = ""
    return inp, new_state


def _rms_norm(g, x, gain, out=None):
    """gain * x / sqrt(mean(x^2) + eps), the mean over the last axis."""
    mean_square = g.op("ReduceMean", g.mul(x, x), axes=[-1], keepdims=1)
    r = g.op("Reciprocal", g.op("Sqrt", g.add(mean_square, g.scalar(NORM_EPS))))
    return g.mul(g.mul(x, r), gain, out=out)


def _gelu(g, a):
    """0.5 a (1 + tanh(sqrt(2/pi) a (1 + 0.044715 a^2))), the MLP's activation."""
    inner = g.mul(a, g.add(g.mul(g.mul(a, a), g.scalar(0.044715)), g.scalar(1.0)))
    t = g.op("Tanh", g.mul(inner, g.scalar(np.sqrt(2.0 / np.pi))))
    return g.mul(g.mul(g.add(t, g.scalar(1.0)), a), g.scalar(0.5))


def _residual(g, spec, ids, state):
    """embed[ids] -> per layer x += cell(norm(x)) Wo + bo, and x += mlp(norm(x)) -> top (N, H),
    new state."""
    step, recurrent, W = cells.STEPS[spec.cell], _recurrent_keys(spec), g.weights
    x = g.op("Gather", W.param("embed"), ids, axis=0, out="embed.x")
    new_state = []
    for k in range(spec.layers):
        g.scope = f"l{k}"

        def P(name, k=k):  # layer k's parameter `name`
            return W.param(f"l{k}.{name}")
        a = g.affine(_rms_norm(g, x, P("norm"), out=g.at("u")), P("Wx"), P("b"), out=g.at("a"))
        new = step(g, {n: P(n) for n in recurrent}, a, state[k])
        new_state.append(new)
        x = g.add(x, g.affine(new[0], P("Wo"), P("bo")), out=f"l{k}.x")
        if spec.mlp:
            v = _rms_norm(g, x, P("mlp_norm"), out=g.at("mlp.v"))
            m = _gelu(g, g.affine(v, P("W1"), P("b1"), out=g.at("mlp.a1")))
            x = g.add(x, g.affine(m, P("W2"), P("b2")), out=f"l{k}.mlp.x")
    g.scope = ""
    return _rms_norm(g, x, W.param("norm"), out="top"), new_state


def step_nodes(g, spec, ids, states_in, logits, states_out):
    """The nodes of one step into g: ids (N,) and states_in (one (L, N, E) value per state name)
    -> the values named logits (N, V) and states_out (like states_in)."""
    names = spec.cell_module.STATE_NAMES
    state = [tuple(g.op("Gather", s, g.weights.index(k), axis=0, out=f"l{k}.{n}_prev")
                   for s, n in zip(states_in, names)) for k in range(spec.layers)]
    stack = _residual if spec.stack == "residual" else _plain
    top, new_state = stack(g, spec, ids, state)
    g.affine(top, g.weights.param("Wy"), g.weights.param("by"), out=logits)
    for j, out in enumerate(states_out):
        parts = [g.op("Unsqueeze", layer[j], g.weights.ints(0)) for layer in new_state]
        g.op("Concat", *parts, axis=0, out=out)


def _value(name, elem, shape, doc):
    return helper.make_tensor_value_info(name, elem, shape, doc_string=doc)


def _state_values(spec, suffix, elem, doc):
    shape = [spec.layers, "N", spec.cell_size]
    return [_value(f"{n}{suffix}", elem, shape, doc.format(n=n))
            for n in spec.cell_module.STATE_NAMES]


def step_graph(params, spec):
    """The step graph: ids [N], h0 [L, N, E] (and c0) -> logits [N, V], h1 (and c1)."""
    W = Weights(params, spec.dtype)
    g = Graph(W)
    elem = helper.np_dtype_to_tensor_dtype(W.dtype)
    names = spec.cell_module.STATE_NAMES
    step_nodes(g, spec, "ids", [f"{n}0" for n in names], "logits", [f"{n}1" for n in names])
    inputs = [_value("ids", TensorProto.INT64, ["N"], "one character id per stream, in [0, V)"),
              *_state_values(spec, "0", elem, "every layer's {n} before this character; "
                                              "zeros at the start of a text")]
    outputs = [_value("logits", elem, ["N", spec.vocab_size],
                      "the scores of the next character; softmax gives its probabilities"),
               *_state_values(spec, "1", elem, "every layer's {n} after this character")]
    return helper.make_graph(g.nodes, "charrnn_step", inputs, outputs,
                             initializer=list(W.tensors.values()))


def window_graph(params, spec):
    """The window graph: ids [T, N], h0 [L, N, E] (and c0) -> logits [T, N, V] and the state
    after the last character, h1 (and c1): the step graph run by a Scan over T."""
    W = Weights(params, spec.dtype)
    elem = helper.np_dtype_to_tensor_dtype(W.dtype)
    names = spec.cell_module.STATE_NAMES
    body = Graph(W)
    body_in = [f"step.{n}0" for n in names]
    body_out = [f"step.{n}1" for n in names]
    step_nodes(body, spec, "step.ids", body_in, "step.logits", body_out)
    state_shape = [spec.layers, "N", spec.cell_size]
    body_graph = helper.make_graph(
        body.nodes, "charrnn_step",
        [helper.make_tensor_value_info(n, elem, state_shape) for n in body_in]
        + [helper.make_tensor_value_info("step.ids", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info(n, elem, state_shape) for n in body_out]
        + [helper.make_tensor_value_info("step.logits", elem, ["N", spec.vocab_size])])
    scan = helper.make_node("Scan", [f"{n}0" for n in names] + ["ids"],
                            [f"{n}1" for n in names] + ["logits"], name="window:Scan",
                            body=body_graph, num_scan_inputs=1)
    inputs = [_value("ids", TensorProto.INT64, ["T", "N"],
                     "T character ids of each of N streams, time first, in [0, V)"),
              *_state_values(spec, "0", elem, "every layer's {n} before the window; "
                                              "zeros at the start of a text")]
    outputs = [_value("logits", elem, ["T", "N", spec.vocab_size],
                      "the scores of the character after each position"),
               *_state_values(spec, "1", elem, "every layer's {n} after the window's last "
                                               "character")]
    return helper.make_graph([scan], "charrnn_window", inputs, outputs,
                             initializer=list(W.tensors.values()))
