"""Training speed at 1 and 2 cores, charrnn and PyTorch, idle and beside a CPU-bound process:
bench_train.py run under taskset, one process per setting, in alternation.

    python benchmarks/bench_scaling.py                  # the four models, 3 repeats
    python benchmarks/bench_scaling.py --models rnn:256:1 --repeats 1

For each model and repeat it runs `taskset -c 0 bench_train.py --threads 1`, `taskset -c 0,1
... --threads 2` and the 2-core run with --busy (a `while True: pass` pinned to CPU 1), and
prints chars/s (best round) of each, the speed-up of the added core, the busy run against the
idle one, and charrnn / PyTorch in the same process.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS = (("1 core", "0", 1, False), ("2 cores", "0,1", 2, False),
            ("2 cores, busy", "0,1", 2, True))


def run(model, cpus, threads, busy, args):
    cell, hidden, layers = model.split(":")
    steps = args.steps if cell == "rnn" else max(1, args.steps // 3)
    cmd = ["taskset", "-c", cpus, sys.executable, os.path.join(HERE, "bench_train.py"),
           "--cell", cell, "--hidden-size", hidden, "--layers", layers, "--threads",
           str(threads), "--rounds", str(args.rounds), "--steps", str(steps), "--warmup", "1",
           "--no-gemm", "--json"] + (["--busy"] if busy else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("json: "))
    return {name: max(v) for name, v in json.loads(line[6:]).items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+",
                    default=["rnn:256:1", "rnn:512:1", "lstm:256:2", "gru:256:2"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    print(f"load before: {open('/proc/loadavg').read().split()[0]}")
    for model in args.models:
        print(f"\n{model} (cell:hidden:layers), chars/s of the best round")
        print(f"  {'':14s} " + " ".join(f"{s[0]:>28s}" for s in SETTINGS)
              + "   +core x   busy/idle x")
        rows = []
        for r in range(args.repeats):
            res = [run(model, cpus, n, busy, args) for _, cpus, n, busy in SETTINGS]
            rows.append(res)
            cells = " ".join(f"{x['charrnn']:>9,.0f} vs {x.get('pytorch', 0):>7,.0f} "
                             f"({x['charrnn'] / x['pytorch']:.2f}x)" for x in res)
            gain = {k: res[1][k] / res[0][k] for k in res[0]}
            hit = {k: res[2][k] / res[1][k] for k in res[0]}
            print(f"  run {r + 1} charrnn vs pt {cells}   {gain['charrnn']:.2f} / "
                  f"{gain['pytorch']:.2f}   {hit['charrnn']:.2f} / {hit['pytorch']:.2f}",
                  flush=True)
        for k in ("charrnn", "pytorch"):
            print(f"  median {k}: " + ", ".join(
                f"{s[0]} {statistics.median(r[i][k] for r in rows):,.0f}"
                for i, s in enumerate(SETTINGS)))
    print(f"load after: {open('/proc/loadavg').read().split()[0]}")


if __name__ == "__main__":
    main()
