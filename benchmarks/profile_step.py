"""Where a training step of charrnn's core spends its time, by phase.

Runs training steps of the model on tiny Shakespeare as charrnn.training does (heap settings, Adam,
norm clipping, dropout when asked, a thread per usable CPU) and times, per step: the per-step
time loops of the cells (forward and backward), the window-wide products (input projection of
upper layers, output layer, dWh, dWx, dx, the one-hot transpose), the softmax, clipping and
Adam; with two threads and two or more layers of rnn, lstm or gru, the wavefront's passes
(charrnn/wavefront.py) instead of the loops and the products they hold. The rest is "other"
(the input lookup, dropout masks, reshapes, Python). Timing wraps the functions in place, so it
adds a few microseconds per call and nothing per time step.

    python benchmarks/profile_step.py --cell lstm --hidden-size 256 --layers 2
    perf record -g python benchmarks/profile_step.py --cell lstm --layers 2   # native view

The shares are what one machine did in one run: compare phases, not runs.
"""
import argparse
import os
import sys
import time
from collections import defaultdict

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from charrnn import data, model, optim, runtime, wavefront  # noqa: E402
from common import CORPUS, add_model_args, corpus_ids  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(ap)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=20, help="timed steps (after 5 warm-up steps)")
    args = ap.parse_args(argv)

    runtime.keep_freed_memory()
    threads = runtime.Threads(runtime.available_cpus())  # `threads: none`, training's default
    ids, V = corpus_ids(CORPUS, 65)
    spec = model.ModelSpec(args.cell, V, args.hidden_size, args.layers, args.dropout)
    rng = np.random.default_rng(0)
    params = model.init_params(spec, rng)
    opt = optim.init_state("adam", params)
    batches = data.Batches(ids, args.batch_size, args.seq_len)
    dropout_rng = np.random.default_rng(1) if args.dropout > 0 else None
    state = [model.zero_state(spec, args.batch_size)]

    spent = defaultdict(float)
    run = runtime.concurrently
    inside = []  # a phase being timed as a whole (the wavefront): what it sends is not counted

    def timed_run(fn, slices):
        # the cells' time loops are methods named `loop` (backward's with its dhs bound by a
        # functools.partial); everything else sent to the two threads is a cut window-wide
        # product or the softmax's row blocks
        named = getattr(fn, "func", fn)
        kind = {"loop": f"time loop, {named.__qualname__.split('.')[0].lower()}"}.get(
            named.__name__)
        if kind is None:
            kind = "softmax" if "forward" in named.__qualname__ else "window-wide products"
        t = time.perf_counter()
        run(fn, slices)
        if not inside:
            spent[kind] += time.perf_counter() - t

    def timed(label, fn):
        def wrapper(*a, **k):
            inside.append(label)
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[label] += time.perf_counter() - t
                inside.pop()
        return wrapper

    # two layers at a time on two threads (charrnn/wavefront.py): each pass's loops, the upper
    # layer's input side and (backward) both layers' weight gradients run interleaved, timed
    # as one phase each
    wavefront.forward = timed("wavefront forward", wavefront.forward)
    wavefront.backward = timed("wavefront backward", wavefront.backward)
    runtime.concurrently = timed_run
    clip, apply = timed("clip", optim.clip), timed("Adam", optim.apply)

    def step():
        x, y, wrapped = batches.next()
        if wrapped:
            state[0] = model.zero_state(spec, args.batch_size)
        masks = model.dropout_masks(spec, *x.shape, dropout_rng) if dropout_rng else None
        loss, state[0], cache = model.forward(params, spec, x, y, state[0], masks, threads=threads)
        grads, _ = model.backward(params, spec, cache, threads=threads)
        clip(grads, "norm", 5.0)
        apply("adam", params, grads, opt, 2e-3)

    for _ in range(5):
        step()
    spent.clear()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    total = (time.perf_counter() - t0) / args.steps
    spent = {k: v / args.steps for k, v in spent.items()}
    spent["other"] = total - sum(spent.values())
    chars = args.batch_size * args.seq_len
    print(f"{args.cell} {args.layers}x{args.hidden_size}, batch {args.batch_size}, window "
          f"{args.seq_len}, dropout {args.dropout}: {total * 1e3:.1f} ms/step, "
          f"{chars / total:,.0f} chars/s over {args.steps} steps")
    for label, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {label:28s} {seconds * 1e3:7.1f} ms  {seconds / total:5.1%}")


if __name__ == "__main__":
    main()
