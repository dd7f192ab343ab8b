"""charrnn against PyTorch over the issue-33 matrix: each cell at 2 x 256, 1 x 512 and 3 x 512,
on 1 and 2 threads, with same-run ratios and each trainer's fraction of the GEMM-only bound.

    python benchmarks/bench_torch.py                          # LSTM and GRU, the full matrix
    python benchmarks/bench_torch.py --cells lstm gru rnn --threads 2 --shapes 2x256
    python benchmarks/bench_torch.py --rounds 6 --min-seconds 2  # longer, less noisy

Every (cell, shape, threads) point is one child process running benchmarks/bench_train.py, which
times charrnn's training step, the GEMM-only bound (the step's matrix products alone, on
preallocated arrays, the faster of the BLAS's threads and charrnn's cut) and PyTorch's
nn.RNN/LSTM/GRU step with the same batches, Adam and clipping, alternating in rounds inside that
child; a child per point gives each its own BLAS and intra-op thread count. Each round of each
trainer runs at least --steps steps and --min-seconds seconds, so a fast shape's round is not
mostly the wake-up after the pause between rounds. The ratios are of the best rounds, medians
in brackets. Without PyTorch installed the ratio columns say so and the bound fractions are
still printed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_train import machine_line  # noqa: E402
from common import seconds  # noqa: E402


def point(cell, layers, hidden, threads, args):
    """One bench_train.py child; returns {runner: [chars/s per round]}."""
    cmd = [sys.executable, os.path.join(HERE, "bench_train.py"), "--cell", cell,
           "--layers", str(layers), "--hidden-size", str(hidden), "--threads", str(threads),
           "--rounds", str(args.rounds), "--steps", str(args.steps), "--min-seconds",
           str(args.min_seconds), "--warmup",
           str(args.warmup), "--batch-size", str(args.batch_size), "--seq-len",
           str(args.seq_len), "--json"]
    if args.no_torch:
        cmd.append("--no-torch")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    if args.verbose:
        print(done.stdout, flush=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("json: "))
    return json.loads(line[len("json: "):])


def summary(found):
    """best and median of charrnn / pytorch and of each trainer against the bound."""
    best = {k: max(v) for k, v in found.items()}
    med = {k: statistics.median(v) for k, v in found.items()}
    bound = max(v for k, v in best.items() if k.startswith("gemm"))
    bound_med = max(v for k, v in med.items() if k.startswith("gemm"))
    out = {"charrnn": best["charrnn"], "bound_charrnn": best["charrnn"] / bound,
           "bound_charrnn_med": med["charrnn"] / bound_med}
    if "pytorch" in best:
        out.update(pytorch=best["pytorch"], ratio=best["charrnn"] / best["pytorch"],
                   ratio_med=med["charrnn"] / med["pytorch"],
                   bound_pytorch=best["pytorch"] / bound)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", nargs="+", default=["lstm", "gru"],
                    choices=["rnn", "lstm", "gru"])
    ap.add_argument("--shapes", nargs="+", default=["2x256", "1x512", "3x512"],
                    help="LAYERSxHIDDEN")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per round")
    ap.add_argument("--min-seconds", type=seconds, default=1.0,
                    help="each round runs at least this long (and at least --steps steps)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every child's output")
    args = ap.parse_args(argv)
    print(machine_line())
    print(f"batch {args.batch_size} x window {args.seq_len}, float32, Adam, clip 5; "
          f"{args.rounds} alternating rounds of {args.steps}+ steps and {args.min_seconds:g}+ s "
          "per point")
    print(f"{'cell':5s} {'shape':6s} {'thr':>3s} {'charrnn':>9s} {'pytorch':>9s} "
          f"{'ratio':>6s} {'(med)':>6s}  {'charrnn/bound':>13s} {'(med)':>6s} "
          f"{'pytorch/bound':>13s}", flush=True)
    for cell in args.cells:
        for shape in args.shapes:
            layers, hidden = (int(s) for s in shape.split("x"))
            for threads in args.threads:
                s = summary(point(cell, layers, hidden, threads, args))
                torch_cols = (f"{s['pytorch']:9,.0f} {s['ratio']:5.2f}x {s['ratio_med']:5.2f}x"
                              if "pytorch" in s else f"{'absent':>9s} {'-':>6s} {'-':>6s}")
                torch_bound = f"{s['bound_pytorch']:13.0%}" if "pytorch" in s else f"{'-':>13s}"
                print(f"{cell:5s} {shape:6s} {threads:3d} {s['charrnn']:9,.0f} {torch_cols}  "
                      f"{s['bound_charrnn']:13.0%} {s['bound_charrnn_med']:6.0%} {torch_bound}"
                      f"   load {open('/proc/loadavg').read().split()[0]}", flush=True)


if __name__ == "__main__":
    main()
