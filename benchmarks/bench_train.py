"""Training speed: charrnn's core against PyTorch in the same process, and against the time the
matrix products of one step take on their own.

Both trainers see the same batches (contiguous windows of the corpus, time-major (T, N) ids), the
same one-hot input, cell, sizes, Adam at lr 2e-3 and gradient-norm clipping at 5, with the BLAS
(NumPy) and intra-op (PyTorch) pools set to the same thread count. They run in alternating rounds
so that a load change on a shared machine hits both alike; each figure is the median over rounds.

The GEMM-only bound replays, on preallocated arrays, exactly the products one charrnn step must
do: per layer T recurrent products forward ((N, H) x (H, G)) and T backward ((N, G) x (G, H)), the
window-wide dWh (and for layers above the first the input projection, dWx and dx), and the output
layer's three (T*N, H) x (H, V)-sized products. Everything else a step does (nonlinearities, the
softmax, the one-hot scatter, Adam, Python) is what separates it from the bound.

    python benchmarks/bench_train.py --cell rnn --hidden-size 256
    python benchmarks/bench_train.py --cell rnn --hidden-size 512
    python benchmarks/bench_train.py --cell lstm --hidden-size 256 --layers 2
    python benchmarks/bench_train.py --cell gru --hidden-size 256 --layers 2
    python benchmarks/bench_train.py --cell rnn --hidden-size 256 --cli --cli-steps 200

Scaling with cores: run under `taskset -c 0 ... --threads 1` and `taskset -c 0,1 ... --threads 2`.
On a busy machine: add --busy (one CPU-bound process pinned to CPU 1 while the rounds run).

Without PyTorch installed only charrnn's figures are printed. charrnn's step runs inside
the layout of --threads (runtime.Threads), inside runtime.use_threads(--threads), which sets
the BLAS pool to that many threads.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from charrnn import blas, data, model, runtime, wavefront  # noqa: E402
from common import (CLIP, CORPUS, LR, add_model_args, busy, corpus_ids, seconds,  # noqa: E402
                    trainer)


try:
    import torch
except ImportError:
    torch = None


def blas_setup(threads, N):
    """Hold the BLAS pool and charrnn's layout at `threads` for the rest of the process;
    returns the line `charrnn train` prints about it."""
    blas_setup.keep = runtime.use_threads(threads)
    blas_setup.keep.__enter__()
    return runtime.describe(threads, N)



def machine_line():
    """The CPU (lscpu's model name, family and model), Python, NumPy, the BLAS and its kernels,
    with any OPENBLAS_CORETYPE the environment forces (blas.describe): a forced kernel set can
    halve the BLAS's speed (AVX2 kernels on an AVX-512 CPU), which PyTorch's oneDNN does not
    follow."""
    model_name, family = platform.processor() or "?", ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        model_name = fields.get("Model name", model_name)
        if "CPU family" in fields:
            family = f" (family {fields['CPU family']}, model {fields.get('Model', '?')})"
    except OSError:
        pass
    return (f"{model_name}{family}, {os.cpu_count()} CPUs ({runtime.available_cpus()} usable); "
            f"Python {platform.python_version()}, numpy {np.__version__}; "
            f"{blas.describe()}; load {open('/proc/loadavg').read().split()[0]}")


# ---------------------------------------------------------------- charrnn

def gemm_only_step(spec, N, T, threads=None, seed=0, pairs=False):
    """A closure doing only the matrix products of one charrnn step, into preallocated arrays.

    threads None: each product on the BLAS's own threads. threads a runtime.Threads: the
    recurrent products of its batch blocks on their threads and each large product cut into
    pieces (charrnn/runtime.py), the BLAS at one thread; with pairs, the layers' recurrent
    products two layers at a time, one layer and the whole batch per thread, as charrnn's
    wavefront runs them (charrnn/wavefront.py). The bound is the fastest of these.
    """
    split = threads is not None
    rng = np.random.default_rng(seed)
    dt = np.dtype(spec.dtype)
    H, V, G = spec.hidden_size, spec.vocab_size, spec.cell_module.GATES * spec.hidden_size
    mm = threads.matmul if split else np.matmul
    blocks = threads.blocks(N) if split else [slice(0, N)]
    run = runtime.concurrently if split else (lambda fn, slices: [fn(rows) for rows in slices])

    def arr(*shape):
        return rng.standard_normal(shape).astype(dt) * dt.type(0.1)

    layers = []
    for _ in range(spec.layers):
        layers.append(dict(Wh=arr(H, G), Wx=arr(H, G), hs=arr(T, N, H), acts=arr(T, N, G),
                           da=arr(T, N, G), rec=arr(N, G), dh=arr(N, H), dW=arr(H, G),
                           dx=arr(T, N, H), below=arr(T, N, H)))
    Wy, top, logits, dlogits = arr(H, V), arr(T * N, H), arr(T * N, V), arr(T * N, V)
    WyT = np.ascontiguousarray(Wy.T)
    dtop, dWy = arr(T * N, H), arr(H, V)

    def whole_batch(loop):
        return lambda: loop(slice(0, N))

    def paired(each):
        """each(a) for the layers in pairs at once, one layer per thread, whole batch."""
        def run_pairs(group):
            runtime.together(*(whole_batch(each(a)) for a in group))
        return run_pairs

    def forward_loop(a):
        def loop(rows):
            for t in range(T):
                np.matmul(a["hs"][t - 1, rows], a["Wh"], out=a["rec"][rows])
        return loop

    def backward_loop(a):
        WhT = np.ascontiguousarray(a["Wh"].T)  # as the cells do: faster than a transposed view

        def loop(rows):
            for t in range(T - 1, -1, -1):
                np.matmul(a["da"][t, rows], WhT, out=a["dh"][rows])
        return loop

    # (layer index, arrays) in the order forward runs them: pairs, or one at a time
    numbered = list(enumerate(layers))
    groups = ([numbered[k:k + 2] for k in range(0, len(numbered), 2)] if pairs
              else [[one] for one in numbered])

    def recurrent(each, group):
        if len(group) == 2:
            paired(each)([a for _, a in group])
        else:
            run(each(group[0][1]), blocks)

    def step():
        for group in groups:
            for layer, a in group:
                if layer > 0:
                    mm(a["below"].reshape(T * N, H), a["Wx"], out=a["acts"].reshape(T * N, G))
            recurrent(forward_loop, group)
        mm(top, Wy, out=logits)
        mm(dlogits, WyT, out=dtop)
        mm(top.T, dlogits, out=dWy)
        for group in reversed(groups):
            recurrent(backward_loop, group)
            for layer, a in group:
                mm(a["hs"].reshape(T * N, H).T, a["da"].reshape(T * N, G), out=a["dW"])
                if layer > 0:
                    mm(a["below"].reshape(T * N, H).T, a["da"].reshape(T * N, G), out=a["dW"])
                    mm(a["da"].reshape(T * N, G), a["Wx"].T, out=a["dx"].reshape(T * N, H))

    return step


# ---------------------------------------------------------------- PyTorch

def torch_trainer(spec, ids, N, T, seed=0):
    """The same model in PyTorch: one-hot (T, N, V) float input -> nn.RNN/LSTM/GRU -> Linear."""
    nn, F = torch.nn, torch.nn.functional
    torch.manual_seed(seed)
    dtype = getattr(torch, spec.dtype)
    cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[spec.cell]
    V, H = spec.vocab_size, spec.hidden_size
    rnn = cls(V, H, num_layers=spec.layers).to(dtype)
    head = nn.Linear(H, V).to(dtype)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=LR)
    eye = torch.eye(V, dtype=dtype)
    batches = data.Batches(ids, N, T)
    carried = [None]

    def step():
        x, y, wrapped = batches.next()
        if wrapped:
            carried[0] = None
        inp = eye[torch.from_numpy(x.astype(np.int64))]  # (T, N, V) one-hot
        target = torch.from_numpy(y.astype(np.int64)).reshape(-1)
        out, state = rnn(inp, carried[0])
        loss = F.cross_entropy(head(out.reshape(T * N, H)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        detached = [s.detach() for s in (state if isinstance(state, tuple) else (state,))]
        carried[0] = tuple(detached) if isinstance(state, tuple) else detached[0]
        return loss.item()

    return step


# ---------------------------------------------------------------- timing

def time_steps(step, n, min_seconds=0.0):
    """Seconds per step over at least n steps and at least min_seconds (after the caller's
    warm-up). A round of a few fast steps measures the wake-up after the rounds' pause more than
    the step: at RNN 1 x 256 on two threads, rounds of 5 steps gave 21.7 ms a step and rounds of
    30 steps 15.7 ms (RESULTS.md, 2026-12-07 evening)."""
    t0 = time.perf_counter()
    done = 0
    while done < n or time.perf_counter() - t0 < min_seconds:
        step()
        done += 1
    return (time.perf_counter() - t0) / done


def bench_core(args, ids, V):
    spec = model.ModelSpec(args.cell, V, args.hidden_size, args.layers, 0.0, args.dtype)
    N, T = args.batch_size, args.seq_len
    threads = runtime.Threads(args.threads)
    runners = {"charrnn": trainer(spec, ids, N, T, threads=threads)}
    if args.compare_products:
        # the same trainer with the window-wide products left to the BLAS's threads
        blas_step = trainer(spec, ids, N, T, threads=threads)

        def with_blas_products():
            runtime.PRODUCTS = "blas"
            try:
                return blas_step()
            finally:
                runtime.PRODUCTS = "cut"
        runners["charrnn-blas"] = with_blas_products
    if not args.no_gemm:
        runners["gemm-blas"] = gemm_only_step(spec, N, T)
        runners["gemm-split"] = gemm_only_step(spec, N, T, threads)
        if wavefront.applies(spec, threads):
            runners["gemm-pairs"] = gemm_only_step(spec, N, T, threads, pairs=True)
    if torch is not None and not args.no_torch:
        runners["pytorch"] = torch_trainer(spec, ids, N, T)
    for step in runners.values():  # warm-up: allocator, BLAS pool, code paths
        for _ in range(args.warmup):
            step()
    times = {name: [] for name in runners}
    with busy(args.busy):
        for _ in range(args.rounds):
            for name, step in runners.items():
                # idle BLAS and OpenMP threads spin for a while after their last call: let the
                # previous runner's go to sleep so that they do not take a core from this one
                time.sleep(0.3)
                times[name].append(time_steps(step, args.steps, args.min_seconds))
    print(f"\n{args.cell} {args.layers}x{args.hidden_size}, V={V}, batch {N}, window {T}, "
          f"{args.dtype}, {args.threads} threads; {args.rounds} alternating rounds of "
          f"{args.steps}+ steps and {args.min_seconds:g}+ s"
          + (", beside a CPU-bound process on CPU 1" if args.busy else "") + ":")
    report(times, N * T, "charrnn")
    if args.json:
        print("json:", json.dumps({name: [N * T / t for t in ts] for name, ts in times.items()}))


def report(times, chars, ours):
    """Print chars/s per runner, best and median over rounds, and the ratios.

    On a shared machine the best round is the one least disturbed by other processes, so the
    ratios are given from the best rounds; the medians show how noisy the run was.
    """
    best = {name: min(ts) for name, ts in times.items()}
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"  {'':10s} {'best':>10s} {'median':>10s}  chars/s   (ms/step, best)")
    for name in times:
        print(f"  {name:10s} {chars / best[name]:10,.0f} {chars / med[name]:10,.0f}"
              f"            ({1e3 * best[name]:.1f})")
    if "gemm-blas" in best:
        bound = min(t for name, t in best.items() if name.startswith("gemm"))
        bound_med = min(t for name, t in med.items() if name.startswith("gemm"))
        print(f"  GEMM-only bound (the faster way): {chars / bound:,.0f} chars/s")
        for name in times:
            if not name.startswith("gemm"):
                print(f"  {name} reaches {bound / best[name]:.0%} of the GEMM-only bound "
                      f"(medians {bound_med / med[name]:.0%})")
    if "pytorch" in best:
        print(f"  {ours} / pytorch: {best['pytorch'] / best[ours]:.2f}x "
              f"(medians {med['pytorch'] / med[ours]:.2f}x)")
    else:
        print("  no PyTorch run (not installed, or --no-torch): no comparison")


def bench_cli(args):
    """`charrnn train` itself in a subprocess: chars/elapsed from metrics.jsonl and wall time."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "charrnn", "train", args.corpus, "--cell", args.cell,
               "--hidden-size", str(args.hidden_size), "--layers", str(args.layers),
               "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
               "--dtype", args.dtype, "--steps", str(args.cli_steps),
               "--eval-every", str(args.cli_steps), "--sample-length", "0", "--out", out]
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads))
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        with open(os.path.join(out, "metrics.jsonl")) as f:
            rec = [json.loads(line) for line in f][-1]
    print(f"\n$ {' '.join(cmd[1:-1])} <tmpdir>")
    print(f"  metrics.jsonl: {rec['chars']:,} chars in {rec['elapsed']:.2f} s of steps = "
          f"{rec['chars'] / rec['elapsed']:,.0f} chars/s; whole command {wall:.2f} s wall "
          f"(start-up, validation and checkpoint included)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(ap)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--min-seconds", type=seconds, default=1.0,
                    help="each round runs at least this long (and at least --steps steps)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--corpus", default=CORPUS)
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--cli", action="store_true", help="also time `charrnn train` end to end")
    ap.add_argument("--cli-steps", type=int, default=200)
    ap.add_argument("--cli-only", action="store_true", help="time only `charrnn train`")
    ap.add_argument("--no-gemm", action="store_true", help="skip the GEMM-only bound")
    ap.add_argument("--compare-products", action="store_true",
                    help="also time charrnn with runtime.PRODUCTS = 'blas' (charrnn-blas)")
    ap.add_argument("--json", action="store_true", help="also print chars/s of every round")
    ap.add_argument("--busy", action="store_true",
                    help="run the rounds beside a CPU-bound process pinned to CPU 1")
    args = ap.parse_args(argv)

    print(machine_line())
    print(blas_setup(args.threads, args.batch_size))
    # what `charrnn train` does first; it speeds up both trainers' allocations alike
    print("malloc: freed memory kept for reuse (charrnn.runtime)" if runtime.keep_freed_memory()
          else "malloc: defaults (no glibc)")
    if torch is not None and not args.no_torch:
        torch.set_num_threads(args.threads)
        print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    ids, V = corpus_ids(args.corpus, 65)
    if not args.cli_only:
        bench_core(args, ids, V)
    if args.cli or args.cli_only:
        bench_cli(args)


if __name__ == "__main__":
    main()
