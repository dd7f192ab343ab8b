"""Training speed of mingru and minlstm (in the residual stack) against the GRU at an equal
parameter count (and the GRU itself in the residual stack), on 1 and 2 threads, each as chars/s
and as a share of its own GEMM-only bound; the scan measurement behind charrnn/cells/_scan.py;
and the CPU time a step takes.

    python benchmarks/bench_min.py                      # GRU 2 x 256 and its equal-size peers
    python benchmarks/bench_min.py --gru 2x384 --rounds 3 --steps 5
    python benchmarks/bench_min.py scan                 # the loop against the log-space form
    python benchmarks/bench_min.py cpu --steps 6        # CPU seconds a step, one thread

The GEMM-only bound of a model replays, on preallocated arrays, exactly the matrix products one
training step of it must do: for the GRU those of bench_train.py (recurrent products step by
step, the window-wide ones once); for the residual stack every weight's three window-wide
products (x W forward, dW and dx backward; the embedding is a lookup). Each product runs both on
the BLAS's own threads and cut into one-thread pieces (charrnn/runtime.py), and the faster of the
two is the bound. Everything else a step does (nonlinearities, the scan, norms, softmax, Adam,
Python) is what separates a step from its bound. Runners alternate round by round, so a load
change on a shared machine hits each alike; the best round of each is reported (and the median).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from charrnn import model, report, runtime  # noqa: E402
from bench_train import gemm_only_step, machine_line, time_steps  # noqa: E402
from common import CORPUS, corpus_ids, trainer  # noqa: E402
from min_quality import flops_per_char  # noqa: E402


def residual_gemm_step(spec, N, T, threads=None, seed=0):
    """A closure doing only the window-wide products of one step of a residual-stack model, on
    the BLAS's threads (threads None) or cut on a runtime.Threads."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(spec.dtype)
    mm = np.matmul if threads is None else threads.matmul
    M = T * N
    work = []
    for name, shape in model.param_shapes(spec).items():
        if len(shape) != 2 or name == "embed":
            continue
        K, P = shape
        W = rng.standard_normal((K, P)).astype(dt)
        work.append((W, np.ascontiguousarray(W.T), rng.standard_normal((M, K)).astype(dt),
                     rng.standard_normal((M, P)).astype(dt), np.empty((M, P), dt),
                     np.empty((K, P), dt), np.empty((M, K), dt)))

    def step():
        for W, WT, x, dout, out, dW, dx in work:
            mm(x, W, out=out)
        for W, WT, x, dout, out, dW, dx in reversed(work):
            mm(x.T, dout, out=dW)
            mm(dout, WT, out=dx)

    return step


def matched_size(cell, target, layers, stack_kw):
    """The hidden size (a multiple of 32) whose model of `layers` layers has the parameter
    count nearest to target."""
    def count(H):
        return report.n_params(model.ModelSpec(cell, 65, H, layers, 0.0, "float32", **stack_kw))
    return min(range(32, 2049, 32), key=lambda H: abs(count(H) - target))


def models(args, V):
    L, H = (int(v) for v in args.gru.split("x"))
    gru = model.ModelSpec("gru", V, H, L, 0.0, "float32")
    target = report.n_params(gru)
    found = [gru]
    for cell in ("mingru", "minlstm"):
        kw = dict(stack="residual", expand=args.expand, mlp=args.mlp)
        width = matched_size(cell, target, args.min_layers, kw)
        found.append(model.ModelSpec(cell, V, width, args.min_layers, 0.0, "float32", **kw))
    # the GRU itself in the residual stack, at the GRU's size (more parameters: the embedding,
    # the dense first-layer input, Wo): the structure the quality runs favour
    found.append(model.ModelSpec("gru", V, H, L, 0.0, "float32", stack="residual"))
    return found


def speed(args):
    print(machine_line())
    print("malloc: freed memory kept for reuse (charrnn.runtime)" if runtime.keep_freed_memory()
          else "malloc: defaults (no glibc)")
    ids, V = corpus_ids(CORPUS, 65)
    N, T = args.batch_size, args.seq_len
    specs = models(args, V)
    for spec in specs:
        print(f"  {str(spec):45s} {report.n_params(spec):>9,} parameters, "
              f"{flops_per_char(spec) / 1e6:.2f} MFLOP/char in products")
    for threads in args.threads:
        runners = {}
        with runtime.use_threads(threads) as layout:
            for spec in specs:
                gemm = gemm_only_step if spec.stack == "plain" else residual_gemm_step
                runners[str(spec)] = (trainer(spec, ids, N, T, threads=layout),
                                      gemm(spec, N, T), gemm(spec, N, T, layout))
            for fns in runners.values():
                for fn in fns:
                    for _ in range(args.warmup):
                        fn()
            times = {name: ([], [], []) for name in runners}
            for _ in range(args.rounds):
                for name, fns in runners.items():
                    for fn, ts in zip(fns, times[name]):
                        time.sleep(0.2)  # let the previous runner's idle BLAS threads sleep
                        ts.append(time_steps(fn, args.steps))
        print(f"\n{threads} thread(s), batch {N} x window {T}, float32; best (median) of "
              f"{args.rounds} rounds of {args.steps} steps:")
        print(f"  {'model':45s} {'chars/s':>17s} {'GEMM-only bound':>17s} {'share':>11s}")
        for name, (step, blas, cut) in times.items():
            bound = [min(a, b) for a, b in zip(blas, cut)]
            best, med = min(step), statistics.median(step)
            print(f"  {name:45s} {N * T / best:8,.0f} ({N * T / med:6,.0f}) "
                  f"{N * T / min(bound):8,.0f} ({N * T / statistics.median(bound):6,.0f}) "
                  f"{min(bound) / best:5.0%} ({statistics.median(bound) / med:3.0%})")


def scan(args):
    """The two scans of _scan.py's docstring on one thread: h_t = (1 - z_t) h_{t-1} + z_t n_t
    as a loop of two elementwise calls per step, and in log space (positive n), against the
    layer's one (T*N, H) x (H, 2H) input product."""
    from charrnn.cells import _scan
    rng = np.random.default_rng(0)
    with runtime.use_threads(1):
        for T, N, H in ((100, 64, 256), (100, 64, 512), (50, 128, 512)):
            z = rng.uniform(0.05, 0.95, (T, N, H)).astype(np.float32)
            n = rng.uniform(0.1, 1.0, (T, N, H)).astype(np.float32)
            hs_ext = np.empty((T + 1, N, H), np.float32)
            hs_ext[0] = rng.uniform(0.1, 1.0, (N, H))
            x = rng.standard_normal((T * N, H)).astype(np.float32)
            W = rng.standard_normal((H, 2 * H)).astype(np.float32)

            def log_space():
                log_keep = np.cumsum(np.log1p(-z), axis=0)  # log A_t
                terms = np.concatenate([np.log(hs_ext[:1]), np.log(z * n) - log_keep])
                return np.exp(log_keep + np.logaddexp.accumulate(terms, axis=0)[1:])

            loop = best_of(lambda: _scan.forward(z, n, hs_ext), args.steps)
            logs = best_of(log_space, max(1, args.steps // 5))
            product = best_of(lambda: np.matmul(x, W), args.steps)
            err = np.abs(log_space() - hs_ext[1:]).max() / np.abs(hs_ext[1:]).max()
            print(f"T {T}, {N} rows, H {H}: loop {loop * 1e3:.2f} ms, log space "
                  f"{logs * 1e3:.1f} ms ({logs / loop:.0f}x), the input product "
                  f"{product * 1e3:.1f} ms; log space differs by {err:.1e} (relative)")


def cpu(args):
    """CPU seconds of one training step (time.process_time, best of --steps after two warm-up
    steps) of each model in --models, one at a time on one thread: a figure that other
    processes on the machine move far less than wall time. Models as CELL:LAYERSxHIDDEN with
    :residual and :mlpM appended as wanted, e.g. gru:2x256 mingru:3x256:residual."""
    ids, V = corpus_ids(CORPUS, 65)
    N, T = args.batch_size, args.seq_len
    with runtime.use_threads(1):
        for name in args.models:
            cell, size, *more = name.split(":")
            L, H = (int(v) for v in size.split("x"))
            kw = {"stack": "residual"} if "residual" in more else {}
            kw.update({"mlp": int(m[3:]) for m in more if m.startswith("mlp")})
            spec = model.ModelSpec(cell, V, H, L, 0.1, "float32", **kw)
            step = trainer(spec, ids, N, T)
            step(), step()
            times = []
            for _ in range(args.steps):
                t0 = time.process_time()
                step()
                times.append(time.process_time() - t0)
            print(f"{str(spec):45s} {min(times):.3f} CPU s/step (batch {N} x {T}, one thread)")


def best_of(fn, n):
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="?", default="speed", choices=["speed", "scan", "cpu"])
    ap.add_argument("--models", nargs="+", default=["gru:2x256", "gru:2x256:residual",
                                                    "mingru:3x256:residual",
                                                    "minlstm:3x256:residual"],
                    help="cpu: the models, CELL:LAYERSxHIDDEN[:residual][:mlpM]")
    ap.add_argument("--gru", default="2x256", help="the GRU, LAYERSxHIDDEN")
    ap.add_argument("--min-layers", type=int, default=3)
    ap.add_argument("--expand", type=int, default=1)
    ap.add_argument("--mlp", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=50)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    {"speed": speed, "scan": scan, "cpu": cpu}[args.what](args)


if __name__ == "__main__":
    main()
