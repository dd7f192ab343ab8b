"""The measurements behind charrnn/runtime.py's thread layout, and a model of the step for
machines with more cores than this one.

    python benchmarks/bench_threads.py min-rows     # rows per block where a second block pays
    python benchmarks/bench_threads.py hold         # one BLAS hold/restore against a step
    python benchmarks/bench_threads.py products     # window-wide products: cut, or BLAS threads
    python benchmarks/bench_threads.py model        # predict a step at 4, 8, 16 cores
    python benchmarks/bench_threads.py bits         # which cuts of a product keep its bits

Each prints what it measured; ratios are from the same run. Add --busy to run beside one
CPU-bound process pinned to CPU 1 (a user's laptop is never idle).
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from charrnn import blas, model, optim, runtime  # noqa: E402
from charrnn.cells import CELLS  # noqa: E402
from common import CORPUS, busy, corpus_ids, trainer  # noqa: E402



def best_time(fn, repeat=7, number=1):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return min(times), float(np.median(times))


def cell_window(cell_name, N, H, T=100):
    """forward + backward of one layer over a window, on dense input (a second layer's)."""
    cell = CELLS[cell_name]
    rng = np.random.default_rng(0)
    p = cell.init(rng, H, H, np.float32)
    x = rng.standard_normal((T, N, H)).astype(np.float32)
    state = tuple(np.zeros((N, H), np.float32) for _ in cell.STATE_NAMES)
    dhs = rng.standard_normal((T, N, H)).astype(np.float32)

    def go(threads):
        _, _, cache = cell.forward(p, x, state, threads)
        cell.backward(p, cache, dhs, threads=threads)
    return go


def min_rows(args):
    """For each hidden size, time a window at batch 2r as 1 block and as 2 blocks of r rows:
    MIN_ROWS is the smallest r at which the 2 blocks win."""
    saved = runtime.MIN_ROWS
    runtime.MIN_ROWS = 1  # let use_threads(2) cut any batch in two
    try:
        print(f"{'cell':5s} {'H':>4s} {'rows/block':>10s} {'1 block ms':>10s} "
              f"{'2 blocks ms':>11s} {'speed-up':>8s}")
        for cell in args.cells:
            for H in args.hidden:
                for r in args.rows:
                    go = cell_window(cell, 2 * r, H, args.seq_len)
                    with runtime.use_threads(1) as threads:
                        one, _ = best_time(lambda: go(threads), args.repeat)
                    with runtime.use_threads(2) as threads:
                        two, _ = best_time(lambda: go(threads), args.repeat)
                    print(f"{cell:5s} {H:4d} {r:10d} {1e3 * one:10.2f} {1e3 * two:11.2f} "
                          f"{one / two:8.2f}x", flush=True)
    finally:
        runtime.MIN_ROWS = saved


def hold(args):
    lib = blas.get()
    n = 20000
    t = time.perf_counter()
    for _ in range(n):
        lib.restore(lib.hold(1), 1)
    per = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(n // 10):
        blas.Blas()
    scan = (time.perf_counter() - t) / (n // 10)
    ids, V = corpus_ids(CORPUS, 65)
    spec = model.ModelSpec("rnn", V, 256, 1, 0.0, "float32")
    step = trainer(spec, ids, 64, 100, threads=runtime.Threads(2))
    calls = [0]
    real_run = runtime.concurrently

    def counting(fn, slices):
        calls[0] += len(slices) > 1
        real_run(fn, slices)
    with runtime.use_threads(2):
        step_time, _ = best_time(step, 5)
        runtime.concurrently = counting
        step()
        runtime.concurrently = real_run
    print(f"BLAS hold + restore: {1e6 * per:.2f} us; "
          f"a new ThreadpoolController (a library scan): {1e6 * scan:.0f} us")
    print(f"RNN 1x256 step at batch 64 x 100 on 2 threads: {1e3 * step_time:.1f} ms, "
          f"{calls[0]} threaded windows a step: {calls[0] * per / step_time:.2%} of the step")


def products(args):
    """The window-wide products of a step, each cut into n one-thread pieces
    (runtime.Threads.matmul), against one product on the BLAS's n threads."""
    rng = np.random.default_rng(0)
    n, M, V = args.threads, 64 * 100, 65
    shapes = {}
    for H, G in ((256, 256), (512, 512), (256, 1024), (256, 768)):
        shapes[f"dWh ({H},{M})x({M},{G})"] = ((M, H), (M, G), True)
    for H in (256, 512):
        shapes[f"logits ({M},{H})x({H},{V})"] = ((M, H), (H, V), False)
        shapes[f"dtop ({M},{V})x({V},{H})"] = ((M, V), (V, H), False)
        shapes[f"dWy ({H},{M})x({M},{V})"] = ((M, H), (M, V), True)
    print(f"{'product':30s} {'cut ms':>8s} {'BLAS ms':>8s}  cut/BLAS time  ({n} threads)")
    for name, (sa, sb, transpose) in shapes.items():
        a = rng.standard_normal(sa).astype(np.float32)
        b = rng.standard_normal(sb).astype(np.float32)
        a = a.T if transpose else a
        out = np.empty((a.shape[0], b.shape[1]), np.float32)
        with runtime.use_threads(n) as threads:
            cut, _ = best_time(lambda: threads.matmul(a, b, out=out), args.repeat)
            whole, _ = best_time(lambda: np.matmul(a, b, out=out), args.repeat)
        print(f"{name:30s} {1e3 * cut:8.2f} {1e3 * whole:8.2f}  {cut / whole:.2f}", flush=True)


def gemm_time(M, K, P):
    """Seconds of one (M, K) x (K, P) float32 product on one thread (best of 5 x 200)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, P)).astype(np.float32)
    out = np.empty((M, P), np.float32)
    with runtime.use_threads(1):
        t, _ = best_time(lambda: np.matmul(a, b, out=out), 5, 200)
    return t


def loop_share(step, n):
    """(step time, time in the cells' time loops) of the fastest of n steps: the loops are the
    concurrently() calls of the closures named `loop`, timed inside the same step."""
    real_run, spent = runtime.concurrently, [0.0]

    def timed(fn, slices):
        t = time.perf_counter()
        real_run(fn, slices)
        if fn.__name__ == "loop":
            spent[0] += time.perf_counter() - t
    runtime.concurrently = timed
    try:
        step()
        runs = []
        for _ in range(n):
            spent[0] = 0.0
            t = time.perf_counter()
            step()
            runs.append((time.perf_counter() - t, spent[0]))
    finally:
        runtime.concurrently = real_run
    return min(runs)


def step_model(args):
    """A step on c cores, from parts measured on one thread:

    loops(c)  = T * layers * [t(N/k, H, G) + t(N/k, G, H)] + elementwise / k,
                k = min(c, N // MIN_ROWS) blocks (t: the measured one-thread time of that
                product; elementwise: the time loops of a one-thread step, timed inside it,
                minus their products)
                and at least k * serial: the GIL lets one block at a time through the Python
                and call overhead of its NumPy calls (serial: a one-row window, whose
                arithmetic is negligible, timed at one thread)
    step(c)   = loops(c) + (rest - fixed) / c + fixed
                (rest: the one-thread step minus its loops, i.e. window-wide products, softmax,
                input lookup, Adam; fixed: Adam and clipping, measured, taken not to shrink)
    """
    ids, V = corpus_ids(CORPUS, 65)
    N, T = 64, 100
    print("assumptions: blocks and product pieces run side by side without slowing each other "
          "(no shared-cache or memory-bandwidth limit, no SMT); a block's "
          "product runs at the one-thread speed measured for its (N/k, H) shape; the window-wide "
          "work splits evenly over c threads; the Python and call overhead of the blocks' NumPy "
          "calls is serial (the GIL); Adam and clipping stay serial.")
    for cell, H, layers in (("rnn", 256, 1), ("rnn", 512, 1), ("lstm", 256, 2), ("gru", 256, 2)):
        G = CELLS[cell].GATES * H
        spec = model.ModelSpec(cell, V, H, layers, 0.0, "float32")
        step = trainer(spec, ids, N, T)
        with runtime.use_threads(1):
            one, loops = loop_share(step, 4)
            rng = np.random.default_rng(0)
            params = model.init_params(spec, rng)
            grads = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}
            opt = optim.init_state("adam", params)
            fixed, _ = best_time(lambda: (optim.clip(grads, "norm", 5.0),
                                          optim.apply("adam", params, grads, opt, 1e-9)), 5)
        with runtime.use_threads(2) as threads:
            two, _ = best_time(trainer(spec, ids, N, T, threads=threads), 3)
        with runtime.use_threads(1) as threads:
            one_row = [cell_window(cell, 1, H, T) for _ in range(layers)]
            serial, _ = best_time(lambda: [w(threads) for w in one_row], 5)

        measured = {}

        def loop_products(k):
            if k not in measured:
                rows = max(N // k, 1)
                measured[k] = T * layers * (gemm_time(rows, H, G) + gemm_time(rows, G, H))
            return measured[k]
        products1 = loop_products(1)
        elementwise = max(loops - products1, 0.0)
        rest = one - loops

        def predict(c):
            k = max(1, min(c, N // runtime.MIN_ROWS))
            loops_c = max(loop_products(k) + elementwise / k, k * serial)
            return loops_c + (rest - fixed) / c + fixed
        print(f"\n{cell} {layers}x{H}, batch {N} x {T}: measured 1 thread {1e3 * one:.0f} ms, "
              f"2 threads {1e3 * two:.0f} ms ({one / two:.2f}x). One-thread parts: loop products "
              f"{1e3 * products1:.0f} ms, loop elementwise {1e3 * elementwise:.0f} ms, rest "
              f"{1e3 * rest:.0f} ms of which Adam + clipping {1e3 * fixed:.1f} ms; a one-row "
              f"window (the GIL-held part of a block) {1e3 * serial:.0f} ms")
        for c in (2, 4, 8, 16):
            t = predict(c)
            print(f"  {c:2d} cores: predicted {1e3 * t:6.0f} ms/step, {N * T / t:9,.0f} chars/s, "
                  f"{one / t:5.2f}x one thread" + (f"  (measured {one / two:.2f}x)" if c == 2
                                                    else ""), flush=True)


def bits(args):
    """Which cuts of a product keep its bits: for the shapes of a step, the row and column
    counts at which a (M, K) x (K, P) product cut in two equals the whole product, bit for bit,
    on one BLAS thread, and whether the BLAS's own threads change bits."""
    rng = np.random.default_rng(0)
    shapes = {"recurrent (64,32)x(32,32)": (64, 32, 32), "recurrent (64,256)x(256,1024)":
              (64, 256, 1024), "one-hot (65,1280)x(1280,32)": (65, 1280, 32),
              "dWh (256,6400)x(6400,256)": (256, 6400, 256), "logits (6400,256)x(256,65)":
              (6400, 256, 65)}
    for name, (M, K, P) in shapes.items():
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, P)).astype(np.float32)
        with runtime.use_threads(1):
            whole = a @ b
            rows = [m for m in range(1, min(M, 97)) if np.array_equal(a[:m] @ b, whole[:m])
                    and np.array_equal(a[m:] @ b, whole[m:])]
            cols = [p for p in range(1, min(P, 97)) if np.array_equal(a @ b[:, :p], whole[:, :p])
                    and np.array_equal(a @ b[:, p:], whole[:, p:])]
        with runtime.use_threads(args.threads):
            same = np.array_equal(a @ b, whole)
        print(f"{name:32s} row cuts keeping the bits: {rows[:8] or 'none'}; column cuts: "
              f"{cols[:8] or 'none'}; BLAS on {args.threads} threads gives the same bits: {same}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["min-rows", "hold", "products", "model", "bits"])
    ap.add_argument("--cells", nargs="+", default=["rnn", "lstm"])
    ap.add_argument("--hidden", nargs="+", type=int, default=[64, 256])
    ap.add_argument("--rows", nargs="+", type=int, default=[2, 4, 8, 12, 16, 24, 32])
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--busy", action="store_true", help="beside a CPU-bound process on CPU 1")
    args = ap.parse_args()
    runtime.keep_freed_memory()
    print(runtime.describe(args.threads, 64), f"; {runtime.available_cpus()} CPUs; load "
          f"{open('/proc/loadavg').read().split()[0]}" + ("; busy: a CPU-bound process on CPU 1"
                                                         if args.busy else ""))
    with busy(args.busy):
        {"min-rows": min_rows, "hold": hold, "products": products, "model": step_model,
         "bits": bits}[args.what](args)


if __name__ == "__main__":
    main()
