"""Two stacked recurrent layers on two threads at once: the lower layer's time loop on one, the
upper's on the other a chunk of steps behind it (a wavefront), instead of both threads taking
half of the batch through one layer and then the next.

Why: a step's recurrent product h_{t-1} Wh repacks Wh inside the BLAS on every call, so its
cost per row falls with the rows a call has. Halving the batch between two threads halves the
rows of every product and doubles the packing; each layer on its own thread keeps the whole
batch in each product and halves the NumPy calls per thread per step. Measured on a 2-vCPU AMD
EPYC, Zen 5 (benchmarks/RESULTS.md, 2026-12-07): two GRU 2 x 256 forward loops at batch 64 ran
1.2-1.4x faster one layer per thread than in batch halves; a whole LSTM 2 x 256 training step
took 11-14% less time with OpenBLAS's own kernels, and about the same with the AVX2 kernels an
OPENBLAS_CORETYPE=Haswell setting forces, where the products take twice as long.

What stays balanced: the upper layer's input side (x Wx + b from the lower layer's output) is
a window-wide product in the plain schedule; here each chunk's is cut between the two threads
by steps, and likewise backward's dLoss/dx of the upper layer, which the lower one needs. The
weight gradients that end backward are cut into pieces that either thread takes
(runtime.SharedProducts), since the upper layer's are twice the lower one's.

Shape letters: T time, N batch, H hidden. The cells' Forward and Backward pieces do the work;
this module only orders them. The same thread count gives the same bits whatever the timing.
"""
import numpy as np

from . import runtime

STEPS = 8  # steps per chunk: the upper layer starts a chunk behind, so both threads idle for
# about one chunk per window; 8 of 100 keeps that small and each chunk's input-side product
# at 4 x batch rows a thread


def applies(spec, threads):
    """True when the model of spec (a model.ModelSpec) runs its layers two at a time on these
    threads: a plain stack of two or more layers of a cell with Forward and Backward pieces
    (rnn, lstm, gru; the min cells' scans have no per-step product to gain on), on exactly two
    threads (more would want row blocks inside each layer as well, not built)."""
    return (threads.n == 2 and spec.stack == "plain" and spec.layers >= 2
            and hasattr(spec.cell_module, "Forward"))


def _chunks(T):
    return [slice(t, min(t + STEPS, T)) for t in range(0, T, STEPS)]


def _halves(steps):
    mid = (steps.start + steps.stop) // 2
    return slice(steps.start, mid), slice(mid, steps.stop)


def forward(cell, lower_p, upper_p, x, lower_state, upper_state, lower_drop, threads):
    """Layers a (lower, input x: ids (T, N) or (T, N, D)) and b above it.

    lower_drop: the dropout mask on a's output, (T, N, H) or None. Returns for each layer, a
    first, (hs (T, N, H), final state, cache), b's input (a's output after its mask) being what
    b's cache holds, as cell.forward would give them one after the other."""
    T, N = x.shape[:2]
    a = cell.Forward(lower_p, x, lower_state)
    a.project(slice(None), threads)  # a's input side at once, on both threads
    inp = a.hs if lower_drop is None else np.empty_like(a.hs)
    b = cell.Forward(upper_p, inp, upper_state)
    chunks, every = _chunks(T), slice(0, N)
    h_ready, x_ready = runtime.Relay(len(chunks)), runtime.Relay(len(chunks))

    def lower():
        for c, steps in enumerate(chunks):
            a.loop(every, steps)
            if lower_drop is not None:
                np.multiply(a.hs[steps], lower_drop[steps], out=inp[steps])
            h_ready.ready(c)
            b.project(_halves(steps)[0])
            x_ready.ready(c)

    def upper():
        for c, steps in enumerate(chunks):
            h_ready.wait(c)
            b.project(_halves(steps)[1])
            x_ready.wait(c)
            b.loop(every, steps)

    runtime.pipeline((h_ready, x_ready), lower, upper)
    return a.result(), b.result()


def backward(cell, lower_p, upper_p, lower_cache, upper_cache, dhs, lower_drop):
    """Backward through layers a (lower) and b above it, given dhs (T, N, H) = dLoss/d(b's
    output) (any mask on it applied). lower_drop: the dropout mask on a's output, or None.

    Returns for each layer, a first, (grads, dstate0), and dLoss/d(a's input) ((T, N, D), or
    None for ids), as cell.backward would give them one after the other."""
    T, N = dhs.shape[:2]
    b = cell.Backward(upper_p, upper_cache)
    a = cell.Backward(lower_p, lower_cache)
    dhs_a = np.empty_like(dhs)  # dLoss/d(a's output): b's dLoss/dx, masked
    chunks, every = _chunks(T)[::-1], slice(0, N)
    d_ready, dx_ready = runtime.Relay(len(chunks)), runtime.Relay(len(chunks))

    def input_grad(steps):
        b.input_grad(steps, dhs_a)
        if lower_drop is not None:
            dhs_a[steps] *= lower_drop[steps]

    out = {}
    # each layer's weight gradients start on its thread as soon as its loop ends, b's while a
    # does its last chunk, in pieces that either thread takes (runtime.SharedProducts): b has
    # dense input, so two large products (dWh, dWx) against a's one and a lookup's gradient,
    # and with each layer's on its own thread the lower one idled for 12-33 ms at the end of a
    # 120-310 ms backward (RESULTS.md, 2026-12-07)
    shared = runtime.SharedProducts(2)

    def upper():
        for c, steps in enumerate(chunks):
            b.loop(every, dhs, steps)
            d_ready.ready(c)
            input_grad(_halves(steps)[1])
            dx_ready.ready(c)
        out["b"] = b.result(shared, dx=False)
        shared.finish()

    def lower():
        for c, steps in enumerate(chunks):
            d_ready.wait(c)
            input_grad(_halves(steps)[0])
            dx_ready.wait(c)
            a.loop(every, dhs_a, steps)
        out["a"] = a.result(shared)
        shared.finish()

    runtime.pipeline((d_ready, dx_ready, shared), upper, lower)
    (grads_b, _, dstate_b), (grads_a, dx, dstate_a) = out["b"], out["a"]
    return (grads_a, dstate_a), (grads_b, dstate_b), dx
