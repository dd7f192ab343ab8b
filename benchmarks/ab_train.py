"""Paired runs of one `charrnn train` command in two checkouts, alternating A B A B, for the
speed and the peak memory of a change against its base on a machine whose load moves.

    python benchmarks/ab_train.py --base /work/main --base-python /work/venv/bin/python \
        --corpus cjk --steps 30 --rounds 5        # V = 5,000, the generated corpus
    python benchmarks/ab_train.py --base /work/main --base-python /work/venv/bin/python \
        --corpus shakespeare --steps 150 --rounds 5     # V = 65

Each run is `/usr/bin/time -v python -m charrnn train CORPUS --steps S --eval-every 10**6
--sample-length 0 --out TMP ...` in the checkout's folder (so that `python -m` imports that
checkout's charrnn), ending with one evaluation of the validation split. Per run: the training
steps' chars/s (chars / elapsed of the last metrics line, the steps' own time), the wall time
(start-up, steps, the evaluation, checkpoints), the CPU time (user + system, all threads: the
work done, which another process's load moves less than it moves the wall time) and the maximum
resident set size. Per round, B / A of each; the median and range over rounds. Extra arguments
after `--` go to both runs. One unrecorded one-step run of each side first builds the corpus
cache they share.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def corpus_path(name, folder):
    if name == "shakespeare":
        return os.path.join(ROOT, "data", "tinyshakespeare.txt")
    path = os.path.join(folder, "cjk.txt")
    if not os.path.exists(path):
        sys.path.insert(0, ROOT)
        from bench_vocab import cjk_corpus
        with open(path, "w", encoding="utf-8") as f:
            f.write(cjk_corpus(1_000_000))
    return path


def one_run(checkout, python, corpus, folder, steps, extra):
    out = os.path.join(folder, "run")
    cmd = ["/usr/bin/time", "-v", python, "-m", "charrnn", "train", corpus, "--steps", str(steps),
           "--eval-every", str(10**6), "--sample-length", "0", "--out", out, "--overwrite",
           "--cache-dir", os.path.join(folder, "cache"), *extra]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # leave the checkouts as they are
    done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed in {checkout}: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", done.stderr)
    wall = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.group(1).split(":"))))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): (\S+)", done.stderr).group(1))
              for kind in ("User", "System"))
    with open(os.path.join(out, "metrics.jsonl")) as f:
        last = json.loads(f.read().splitlines()[-1])
    return {"chars_per_s": last["chars"] / last["elapsed"], "wall": wall, "cpu": cpu,
            "rss_mb": rss / 1024, "val_loss": last["val_loss"]}


def spread(values):
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="checkout A (the base)")
    ap.add_argument("--base-python", required=True, help="A's Python (its venv)")
    ap.add_argument("--new", default=ROOT, help="checkout B (default: this one)")
    ap.add_argument("--new-python", default=sys.executable)
    ap.add_argument("--corpus", choices=["cjk", "shakespeare"], default="cjk")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("extra", nargs="*", help="more `charrnn train` arguments, after --")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ab-train-") as folder:
        corpus = corpus_path(args.corpus, folder)
        sides = {"A": (args.base, args.base_python), "B": (args.new, args.new_python)}
        found = {"A": [], "B": []}
        print(f"A = {args.base}, B = {args.new}; {corpus}, {args.steps} steps; load "
              f"{open('/proc/loadavg').read().split()[0]}", flush=True)
        for checkout, python in sides.values():  # the corpus cache, and a warm page cache
            one_run(checkout, python, corpus, folder, 1, args.extra)
        for r in range(args.rounds):
            for side, (checkout, python) in sides.items():
                res = one_run(checkout, python, corpus, folder, args.steps, args.extra)
                found[side].append(res)
                print(f"  round {r + 1} {side}: {res['chars_per_s']:9,.0f} chars/s in the steps, "
                      f"{res['wall']:6.1f} s wall, {res['cpu']:6.1f} s CPU, peak RSS "
                      f"{res['rss_mb']:6.1f} MB, val "
                      f"{res['val_loss']:.6f}; load {open('/proc/loadavg').read().split()[0]}",
                      flush=True)
        a, b = found["A"], found["B"]
        print(f"B / A, median (range) over {args.rounds} rounds: steps' chars/s "
              f"{spread([y['chars_per_s'] / x['chars_per_s'] for x, y in zip(a, b)])}; wall "
              f"{spread([y['wall'] / x['wall'] for x, y in zip(a, b)])}; CPU "
              f"{spread([y['cpu'] / x['cpu'] for x, y in zip(a, b)])}")
        for side, runs in found.items():
            print(f"{side}: chars/s median {statistics.median(r['chars_per_s'] for r in runs):,.0f}"
                  f", wall median {statistics.median(r['wall'] for r in runs):.1f} s, CPU median "
                  f"{statistics.median(r['cpu'] for r in runs):.1f} s, peak RSS "
                  f"{min(r['rss_mb'] for r in runs):.1f}-{max(r['rss_mb'] for r in runs):.1f} MB")


if __name__ == "__main__":
    main()
