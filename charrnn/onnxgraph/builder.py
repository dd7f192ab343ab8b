"""A small writer of ONNX graphs on top of onnx.helper: nodes named as the model names its
values (l0.h, l1.c, logits), weights held once for a graph and the subgraphs inside it."""
import numpy as np
from onnx import helper, numpy_helper

OPSET = 17  # the oldest opset with every operator used here: runtimes from 2022 on read it


class Weights:
    """The initializers of a model: the checkpoint's arrays under their own names (l0.Wx, Wy),
    stored when a node first reads them, and the constants the equations use, each once."""

    def __init__(self, params, dtype):
        self.params = params
        self.dtype = np.dtype(dtype)
        self.tensors = {}

    def param(self, name):
        """The checkpoint's parameter `name` (l0.Wh, Wy, ...) -> name."""
        if name not in self.tensors:
            self.add(name, self.params[name])
        return name

    def add(self, name, array):
        """array under name -> name; floats are stored in the model's dtype."""
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(self.dtype)
        self.tensors[name] = numpy_helper.from_array(array, name)
        return name

    def scalar(self, value):
        """A float constant of the model's dtype, named by its value."""
        value = float(value)
        name = f"const.{value!r}"
        if name not in self.tensors:
            self.add(name, np.array(value, dtype=self.dtype))
        return name

    def ints(self, *values):
        """An int64 vector constant (axes, indices), named by its values."""
        name = "const.int64." + ".".join(map(str, values))
        if name not in self.tensors:
            self.add(name, np.array(values, dtype=np.int64))
        return name

    def index(self, value):
        """An int64 scalar constant: Gather along an axis with it drops that axis."""
        name = f"const.index.{value}"
        if name not in self.tensors:
            self.add(name, np.array(value, dtype=np.int64))
        return name


class Graph:
    """The nodes of one graph (the model's, or a Scan's body), written in order, each output
    named `scope.what` and numbered where a name repeats."""

    def __init__(self, weights):
        self.weights = weights
        self.nodes = []
        self._names = set()
        self.scope = ""

    def _fresh(self, what):
        base = f"{self.scope}.{what}" if self.scope else what
        name, k = base, 1
        while name in self._names or name in self.weights.tensors:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def at(self, what):
        """The name `scope.what` (l0.i: layer 0's input gate), numbered if it is taken."""
        return self._fresh(what)

    def op(self, op_type, *inputs, out=None, n_out=1, **attrs):
        """Append one node -> its output's name, or a list of n_out names. out names a single
        output; by default outputs are `scope.op_type`, numbered where the name repeats."""
        outputs = [out] if out else [self._fresh(op_type.lower()) for _ in range(n_out)]
        self._names.update(outputs)
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs,
                                           name=f"{outputs[0]}:{op_type}", **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def add(self, a, b, out=None):
        return self.op("Add", a, b, out=out)

    def mul(self, a, b, out=None):
        return self.op("Mul", a, b, out=out)

    def sub(self, a, b, out=None):
        return self.op("Sub", a, b, out=out)

    def matmul(self, x, W, out=None):
        return self.op("MatMul", x, W, out=out)

    def affine(self, x, W, b, out=None):
        """x W + b: x (N, K), W (K, P), b (P,) -> (N, P)."""
        return self.add(self.matmul(x, W), b, out=out)

    def split(self, x, k):
        """x (N, k*P) -> k arrays (N, P), its column blocks in order."""
        return self.op("Split", x, n_out=k, axis=1)

    def scalar(self, value):
        return self.weights.scalar(value)
