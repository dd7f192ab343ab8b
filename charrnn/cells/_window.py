"""What the pieces of rnn, lstm and gru share (cells/__init__.py): running them over a whole
window, which is what each cell's forward and backward are, and the start of every Backward."""
import functools

import numpy as np


def whole_forward(Forward, p, x, state, threads):
    """Forward's pieces over the window, the batch in the layout's row blocks."""
    window = Forward(p, x, state)
    window.project(slice(None), threads)
    threads.each_block(window.loop, x.shape[1])
    return window.result()


def whole_backward(Backward, p, cache, dhs, dstate, threads):
    """Backward's pieces over the window, the batch in the layout's row blocks; dx from the
    window-wide input side (result)."""
    window = Backward(p, cache, dstate)
    threads.each_block(functools.partial(window.loop, dhs=dhs), dhs.shape[1])
    return window.result(threads)


class BackwardBase:
    """p and the cache, and the transposed weights of the step's product and of input_grad."""

    def __init__(self, p, cache):
        self.p, self.cache = p, cache
        # a contiguous copy: OpenBLAS runs the small products against a transposed view ~40%
        # slower
        self.WhT = np.ascontiguousarray(p["Wh"].T)

    @functools.cached_property
    def WxT(self):
        """Wx^T, contiguous, made on input_grad's first call: a whole-window backward takes dx
        in result's window-wide product instead and never needs it."""
        return np.ascontiguousarray(self.p["Wx"].T)
