"""Data-parallel training on MPI against the threads of one process: measured speed, the
Allreduce's share of a step, and a model of more ranks.

    python benchmarks/bench_mpi.py speed            # chars/s: P=1 x 1 and 2 threads, P=2 x 1
    python benchmarks/bench_mpi.py speed --busy     # the same beside a CPU-bound process on CPU 1
    python benchmarks/bench_mpi.py speed --base /tmp/main   # and today's threads from a checkout
    python benchmarks/bench_mpi.py share            # the Allreduce's share of a P=2 step
    python benchmarks/bench_mpi.py model            # predicted steps at P = 1..16
    python benchmarks/bench_mpi.py link             # Allreduce between two hosts (as root)
    python benchmarks/bench_mpi.py model --bandwidth B --latency A   # with link's figures
    python benchmarks/bench_mpi.py all --busy       # everything, as markdown (RESULTS.md)
    python benchmarks/bench_mpi.py all --small --steps 5 --rounds 1   # a check that it runs

Models: RNN 1 x 384 (configs/rnn.yaml), GRU 2 x 256 (configs/gru.yaml), LSTM 2 x 256
(configs/lstm.yaml), each with its own batch and window; --small shrinks them to H = 32, batch 16,
window 20 for a quick check. Needs charrnn[mpi] (mpi4py and an mpiexec).

speed: whole `charrnn train` runs of --steps steps from the command line (no evaluation but a
closing one on 2,000 characters; chars/s is the run's chars over its training time, as its
log reports), in alternating rounds so that a load change hits every layout alike; the median
of --rounds. P=1 runs at 1 and at 2 threads (the thread design of one process); P=2 runs two
ranks of one thread each. --base DIR adds P=1 at 2 threads with the charrnn of another checkout
(PYTHONPATH=DIR): today's threads before this code, to show a group of one costs nothing.

share: two ranks train --steps steps in one Run each (rank 0 reports); the time inside the
step's Allreduce (which includes waiting for the slower rank) against the step's, and the same
Allreduce alone, after a barrier, averaged over 50 calls: what the wire costs without waiting.

model: the step time of P ranks of one thread, predicted as
    t(P) = t_rows(N / P) + t_update + t_allreduce(P)
where t_rows(n) is forward and backward over n of the batch's N rows, measured here on one
thread (with the dropout masks of all N rows drawn, as every rank draws them), t_update the
clip and Adam update of all the weights (every rank does it whole), and t_allreduce the sum of
the gradients (4 or 8 bytes per parameter). On one machine, t_allreduce(P) scales the Allreduce
measured alone at P = 2 by 2 (P - 1) / P, the bytes a ring or reduce-scatter moves per rank; on
several machines, one rank each, it is 2 (P - 1) / P * bytes / B + 2 (P - 1) * a for a network of
--bandwidth B bytes/s and --latency a s (defaults: 10 Gbit/s and 30 us, an ordinary Ethernet).
`link` measures B and a for real: the Allreduce of two ranks on two "hosts", network namespaces
joined by a veth pair (tests/twohosts.py; needs root), at sizes from 8 bytes to the models'
gradients, fitted as t = 2 a + bytes / B (the P = 2 case of the formula: a from 8 bytes, B from
the gradients' sizes); a veth pair is a
kernel's copy, so it is an upper bound for a real wire's B and a lower bound for its a.
Assumptions, for a bigger machine to check: every rank has a core of its own at this core's
speed; memory bandwidth and caches are not shared out (they are, so t_rows is a lower bound at
large P); the Allreduce's bandwidth term dominates its latency at these sizes (1-4 MB); the
ranks are balanced (N / P rows each, and N divisible by P); evaluations are left out (they are
split over the ranks as well). chars/s = T N / t(P).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from charrnn import blas, config, corpus as corpus_mod, distributed, model, optim, \
    runtime, training  # noqa: E402
from common import CORPUS, busy  # noqa: E402

CONFIGS = {"rnn 1 x 384": "rnn.yaml", "gru 2 x 256": "gru.yaml", "lstm 2 x 256": "lstm.yaml"}
SMALL = {"hidden_size": 32, "batch_size": 16, "seq_len": 20}


def mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


def overrides(args):
    return dict(SMALL) if args.small else {}


def flags(values):
    out = []
    for key, value in values.items():
        out += ["--" + key.replace("_", "-"), str(value)]
    return out


def run_chars_per_s(config_file, ranks, threads, args, tmp, pythonpath=None):
    """chars/s of one `charrnn train` run of args.steps steps (its log's training speed)."""
    out = os.path.join(tmp, f"run-{ranks}-{threads}")
    launcher = [mpiexec(), "-n", str(ranks)] if ranks > 1 else []
    env = {**os.environ, "PYTHONPATH": pythonpath or ROOT}
    cmd = launcher + [sys.executable, "-m", "charrnn", "train", CORPUS, "--config",
                      os.path.join(ROOT, "configs", config_file), "--out", out, "--overwrite",
                      *flags({"steps": args.steps, "eval_every": 10**6, "eval_chars": 2000,
                              "sample_length": 0, "threads": threads,
                              "cache_dir": os.path.join(tmp, "cache"), **overrides(args)})]
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=tmp)
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        last = json.loads(f.read().splitlines()[-1])
    return last["chars"] / last["elapsed"]


def speed(args):
    layouts = [("P=1 x 1 thread", 1, 1, None), ("P=1 x 2 threads", 1, 2, None),
               ("P=2 x 1 thread", 2, 1, None)]
    if args.base:
        layouts.append((f"P=1 x 2 threads ({args.base})", 1, 2, args.base))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, busy(args.busy):
        for name, config_file in CONFIGS.items():
            seen = {layout[0]: [] for layout in layouts}
            for _ in range(args.rounds):
                for label, ranks, threads, path in layouts:
                    seen[label].append(run_chars_per_s(config_file, ranks, threads, args, tmp,
                                                       path))
            rows.append((name, {k: statistics.median(v) for k, v in seen.items()}))
    labels = [layout[0] for layout in layouts]
    print(f"\n### chars/s, median of {args.rounds} rounds of {args.steps} steps"
          + (" (busy: a CPU-bound process on CPU 1)" if args.busy else ""))
    print("| model | " + " | ".join(labels) + " | P=2 / P=1 x 2 threads |")
    print("|---" * (len(labels) + 2) + "|")
    for name, found in rows:
        ratio = found["P=2 x 1 thread"] / found["P=1 x 2 threads"]
        print(f"| {name} | " + " | ".join(f"{found[k]:,.0f}" for k in labels)
              + f" | {ratio:.2f} |")


class TimedComm:
    """MPI_COMM_WORLD with the time spent in Allreduce added up."""

    def __init__(self, comm):
        self.comm, self.inside = comm, 0.0

    def Allreduce(self, *args, **kwargs):
        t0 = time.perf_counter()
        self.comm.Allreduce(*args, **kwargs)
        self.inside += time.perf_counter() - t0

    def __getattr__(self, name):
        return getattr(self.comm, name)


def share_worker(args):
    """Under mpiexec: each model's Run on this rank, its steps timed with the Allreduce inside
    them, then the same Allreduce alone; rank 0 writes the figures to args.report."""
    group = distributed.world()
    comm = group.comm = TimedComm(group.comm)
    text = corpus_mod.open_corpus([CORPUS], cache_dir=args.cache)
    found = {}
    for name, config_file in CONFIGS.items():
        cfg = config.load(os.path.join(ROOT, "configs", config_file),
                          {"steps": 10**6, "threads": 1, **overrides(args)})
        run = training.Run(cfg, text, group=group)
        with runtime.use_threads(1):
            for _ in range(3):
                run.train_step(cfg.lr)
            t0, comm.inside = time.perf_counter(), 0.0
            for _ in range(args.steps):
                run.train_step(cfg.lr)
            step = (time.perf_counter() - t0) / args.steps
            inside = comm.inside / args.steps
        buf = group._buffer[0]
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(50):
            comm.comm.Allreduce(group.MPI.IN_PLACE, buf, op=group.MPI.SUM)
        found[name] = {"step": step, "allreduce_in_step": inside, "bytes": buf.nbytes,
                       "allreduce_alone": (time.perf_counter() - t0) / 50}
    if group.leader:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(found, f)


def share(args):
    """The Allreduce's share of a P=2 step, per model -> {name: figures}."""
    with tempfile.TemporaryDirectory() as tmp, busy(args.busy):
        report = os.path.join(tmp, "share.json")
        cmd = [mpiexec(), "-n", "2", sys.executable, os.path.abspath(__file__), "share-worker",
               "--steps", str(args.steps), "--report", report, "--cache", tmp] + (
                   ["--small"] if args.small else [])
        subprocess.run(cmd, check=True, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT})
        with open(report, encoding="utf-8") as f:
            found = json.load(f)
    print(f"\n### The Allreduce in a P=2 step (1 thread per rank), mean of {args.steps} steps"
          + (" (busy)" if args.busy else ""))
    print("| model | gradient MB | step ms | Allreduce in the step ms (share) | "
          "Allreduce alone ms (share) |")
    print("|---|---|---|---|---|")
    for name, f in found.items():
        print(f"| {name} | {f['bytes'] / 1e6:.2f} | {f['step'] * 1e3:.1f} | "
              f"{f['allreduce_in_step'] * 1e3:.2f} ({f['allreduce_in_step'] / f['step']:.1%}) | "
              f"{f['allreduce_alone'] * 1e3:.2f} ({f['allreduce_alone'] / f['step']:.1%}) |")
    return found


def time_rows(spec, params, cfg, n, repeats):
    """Seconds of forward + backward over n of the batch's rows (all N rows' masks drawn)."""
    T, N = cfg.seq_len, cfg.batch_size
    rng = np.random.default_rng(0)
    x = rng.integers(0, spec.vocab_size, size=(T + 1, N))
    rows, drop = slice(0, n), np.random.default_rng(1)
    state = model.zero_state(spec, n)
    best = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        masks = model.dropout_masks(spec, T, N, drop)
        _, _, cache = model.forward(params, spec, np.ascontiguousarray(x[:-1, rows]),
                                    np.ascontiguousarray(x[1:, rows]), state,
                                    masks and masks.rows(rows), T * N)
        model.backward(params, spec, cache)
        best.append(time.perf_counter() - t0)
    return statistics.median(best[1:])  # the first pays for page faults


def time_update(params, grads, cfg, repeats):
    opt = optim.init_state(cfg.optimizer, params)
    found = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        optim.clip(grads, cfg.clip_mode, cfg.clip)
        optim.apply(cfg.optimizer, params, grads, opt, 1e-9)
        found.append(time.perf_counter() - t0)
    return statistics.median(found[1:])


def predict(args, shares):
    """The model of the docstring, from this machine's one-thread products."""
    print(f"\n### Predicted steps at P ranks of one thread (model in bench_mpi.py's docstring; "
          f"network {args.bandwidth * 8 / 1e9:g} Gbit/s, {args.latency * 1e6:g} us)")
    print("| model | P | rows per rank | t_rows ms | t_update ms | one machine: step ms, "
          "chars/s, speed-up | machines: step ms, chars/s, speed-up |")
    print("|---|---|---|---|---|---|---|")
    with runtime.use_threads(1):
        for name, config_file in CONFIGS.items():
            cfg = config.load(os.path.join(ROOT, "configs", config_file),
                              {"steps": 1, **overrides(args)})
            spec = model.ModelSpec(cfg.cell, 65, cfg.hidden_size, cfg.layers, cfg.dropout,
                                   cfg.dtype)
            params = model.init_params(spec, np.random.default_rng(0))
            grads = {k: np.full_like(v, 1e-3) for k, v in params.items()}
            t_update = time_update(params, grads, cfg, args.repeats)
            nbytes = sum(v.nbytes for v in params.values())
            ar2 = shares[name]["allreduce_alone"] if shares else None
            base = None
            for P in (1, 2, 4, 8, 16):
                n = cfg.batch_size // P
                t_rows = time_rows(spec, params, cfg, n, args.repeats)
                ring = 2 * (P - 1) / P
                local = t_rows + t_update + (ar2 * ring if ar2 else 0.0)
                net = (t_rows + t_update + ring * nbytes / args.bandwidth
                       + 2 * (P - 1) * args.latency)
                base = base or local
                chars = cfg.seq_len * cfg.batch_size
                print(f"| {name} | {P} | {n} | {t_rows * 1e3:.1f} | {t_update * 1e3:.2f} | "
                      f"{local * 1e3:.1f}, {chars / local:,.0f}, {base / local:.1f}x | "
                      f"{net * 1e3:.1f}, {chars / net:,.0f}, {base / net:.1f}x |")


LINK_SIZES = [8, 2**16, 790_000, 2_630_000, 3_490_000]  # bytes: tiny, and the 3 gradients


def link_worker(args):
    """Under mpiexec on two hosts: each size's Allreduce, median of 30 after a barrier each."""
    from mpi4py import MPI
    comm, found = MPI.COMM_WORLD, {}
    for size in LINK_SIZES:
        buf = np.ones(size // 4, dtype=np.float32)
        times = []
        for _ in range(33):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t0)
        found[size] = statistics.median(times[3:])
    if comm.rank == 0:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(found, f)


def link(args):
    """The Allreduce between two hosts -> (bandwidth bytes/s, latency s), fitted."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import twohosts
    why = twohosts.refused()
    if why:
        sys.exit(f"link: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        hosts = twohosts.Hosts(tmp)
        try:
            report = os.path.join(tmp, "link.json")
            worker = [sys.executable, os.path.abspath(__file__), "link-worker", "--report",
                      report]
            subprocess.run(hosts.mpiexec(mpiexec(), [worker, worker]), check=True,
                           capture_output=True, text=True, env=twohosts.env(ROOT, 60))
            with open(report, encoding="utf-8") as f:
                found = {int(k): v for k, v in json.load(f).items()}
        finally:
            hosts.close()
    # a from the smallest message (two of them, one each way); B from the gradients' sizes, a
    # least-squares line through 2 a
    latency = found[LINK_SIZES[0]] / 2
    sizes = np.array(LINK_SIZES[2:], dtype=np.float64)
    wire = np.array([found[s] for s in LINK_SIZES[2:]]) - 2 * latency
    bandwidth = float(sizes @ sizes / (sizes @ wire))
    print("\n### The Allreduce of 2 ranks on 2 hosts (network namespaces on a veth pair, TCP), "
          "median of 30")
    print("| bytes | ms | fitted 2 a + bytes / B, ms |")
    print("|---|---|---|")
    for size in sorted(found):
        print(f"| {size:,} | {found[size] * 1e3:.3f} | "
              f"{(2 * latency + size / bandwidth) * 1e3:.3f} |")
    print(f"\nfitted: B = {bandwidth * 8 / 1e9:.2f} Gbit/s ({bandwidth / 1e6:,.0f} MB/s), "
          f"a = {latency * 1e6:.0f} us; the scaling model with them: bench_mpi.py model "
          f"--bandwidth {bandwidth:.4g} --latency {latency:.3g}")
    return bandwidth, latency


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["speed", "share", "model", "all", "link", "share-worker",
                                         "link-worker"])
    ap.add_argument("--steps", type=int, default=100, help="steps per timed run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (speed)")
    ap.add_argument("--repeats", type=int, default=5, help="timings per figure (model)")
    ap.add_argument("--busy", action="store_true", help="beside a CPU-bound process on CPU 1")
    ap.add_argument("--base", help="a checkout whose charrnn runs 'today's threads' (speed)")
    ap.add_argument("--small", action="store_true", help="H 32, batch 16, window 20: a check")
    ap.add_argument("--bandwidth", type=float, default=10e9 / 8, help="bytes/s between machines")
    ap.add_argument("--latency", type=float, default=30e-6, help="seconds per message")
    ap.add_argument("--report", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.what == "share-worker":
        return share_worker(args)
    if args.what == "link-worker":
        return link_worker(args)
    if mpiexec() is None:
        sys.exit("needs mpiexec: pip install 'charrnn[mpi]'")
    print(f"# bench_mpi {' '.join(sys.argv[1:])}: {os.cpu_count()} CPUs, load "
          f"{open('/proc/loadavg').read().split()[0]}, {blas.describe()}"
          + ("; --small: every model at H 32, batch 16, window 20, whatever its name" if
             args.small else ""))
    if args.what == "link":
        return link(args)
    if args.what in ("speed", "all"):
        speed(args)
    shares = share(args) if args.what in ("share", "all") else None
    if args.what == "model":
        shares = share(args)
    if args.what in ("model", "all"):
        predict(args, shares)


if __name__ == "__main__":
    main()
