"""A trained model as an ONNX file that ONNX Runtime runs in any language: the graph (stacks.py,
cells.py), its description in the metadata, the check and the atomic write.

The onnx package is the optional `export` extra, imported only once a model is exported
(to_onnx), so the rest of charrnn works without it.
"""
import json
import math
import os
from importlib import metadata
from typing import NamedTuple

from ..atomic import write_atomic
from ..errors import CharrnnError

INSTALL_HINT = ("charrnn export needs the onnx package, an optional extra: "
                "pip install 'charrnn[export]'")


def _version():
    try:
        return metadata.version("charrnn")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def describe(ck, window):
    """The metadata_props of ck's model: str -> str, the vocabulary as a JSON list of the
    characters in id order."""
    spec, vocab = ck.spec, ck.vocab
    props = {
        "vocab": json.dumps(list(vocab), ensure_ascii=False),
        "start_id": str(vocab.find("\n") if "\n" in vocab else 0),
        "graph": "window" if window else "step",
        "model": str(spec), "cell": spec.cell, "stack": spec.stack, "layers": str(spec.layers),
        "hidden_size": str(spec.hidden_size), "cell_size": str(spec.cell_size),
        "vocab_size": str(spec.vocab_size), "dtype": spec.dtype,
        "state": ",".join(spec.cell_module.STATE_NAMES),
        "step": str(ck.step), "charrnn_version": _version(),
    }
    if spec.stack == "residual":
        props.update(expand=str(spec.expand), mlp=str(spec.mlp))
    if math.isfinite(ck.best_val):
        props["validation_loss"] = repr(ck.best_val)  # nats/char, on the held-out text
    return props


def to_onnx(ck, window=False):
    """The checked onnx.ModelProto of a Checkpoint's model: the step graph, or with window the
    window graph (docs/export.md)."""
    try:
        import onnx
    except ImportError:
        raise CharrnnError(INSTALL_HINT) from None
    from . import builder, stacks
    weights = sum(a.nbytes for a in ck.params.values())  # the same shapes as ck.weights
    if weights >= 2**31 - 2**20:
        raise CharrnnError(f"the model's {weights / 2**30:.1f} GB of weights are more than the "
                           f"2 GB an ONNX file holds in one piece")
    make = stacks.window_graph if window else stacks.step_graph
    opsets = [onnx.helper.make_opsetid("", builder.OPSET)]
    model = onnx.helper.make_model(
        make(ck.weights, ck.spec), opset_imports=opsets, producer_name="charrnn",
        producer_version=_version(),
        # the oldest IR version that carries the opset, so older runtimes read the file too
        ir_version=onnx.helper.find_min_ir_version_for(opsets),
        doc_string=f"charrnn {ck.spec} character-level language model: next-character logits "
                   f"and the new state from one character id per stream and the state")
    onnx.helper.set_model_props(model, describe(ck, window))
    onnx.checker.check_model(model, full_check=True)
    return model


class Exported(NamedTuple):
    """What export wrote: the file, its size in bytes, which graph, and each input's and
    output's shape by name ({"ids": ["N"], "h0": [2, "N", 128], ...})."""
    path: str
    size: int
    graph: str
    inputs: dict
    outputs: dict


def _shapes(values):
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in values}


def export(ck, output, window=False):
    """Write ck's model to the ONNX file output, whole or not at all -> Exported. The graph is
    built and checked before anything is written."""
    output = os.fspath(output)
    model = to_onnx(ck, window)
    data = model.SerializeToString()
    if os.path.isdir(output):
        raise CharrnnError(f"could not write {output}: it is a directory")
    try:
        write_atomic(output, lambda f: f.write(data))
    except OSError as e:
        raise CharrnnError(f"could not write {output}: {e.strerror or e}") from None
    return Exported(output, len(data), "window" if window else "step",
                    _shapes(model.graph.input), _shapes(model.graph.output))
