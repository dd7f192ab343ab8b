"""Paired runs of one `charrnn sample` command from two source trees, alternating A B, B A, for
the speed of a change to generation against its base on a machine whose load moves.

    git -C /work/main archive HEAD | tar -x -C /tmp/base
    python benchmarks/ab_sample.py --base /tmp/base --ckpt RUN/last.npz --length 20000 --rounds 9

Each run is `python -m charrnn sample --ckpt CKPT --length L --seed S > pipe` with PYTHONPATH
set to the tree, so each side imports its own charrnn (the same Python and NumPy for both). Per
run: the wall time and the CPU time (user + system of the child: the work done, which another
process's load moves less than it moves the wall time). Per round, B / A of each; the median and
range over rounds. Both sides must print the same text, else the comparison stops. One unrecorded
run of each side first warms the file cache. With --startup, `--length 0` runs measure start-up
and the checkpoint's loading, so the per-character figures leave them out.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_of(tree):
    """The environment a run from tree gets: PYTHONPATH the tree. Runs also start in the tree,
    because `python -m` puts the working folder first on sys.path, before PYTHONPATH."""
    return dict(os.environ, PYTHONPATH=tree, PYTHONDONTWRITEBYTECODE="1")


def check_imports(tree, python):
    """Stop unless a run from tree imports tree's own charrnn (not an installed copy)."""
    found = subprocess.run([python, "-c", "import charrnn; print(charrnn.__file__)"],
                           env=env_of(tree), cwd=tree, capture_output=True, text=True).stdout
    if not os.path.realpath(found.strip()).startswith(os.path.realpath(tree) + os.sep):
        sys.exit(f"a run from {tree} imports charrnn from {found.strip()!r}")
    return found.strip()


def one_run(tree, python, ckpt, length, seed):
    """(wall s, CPU s, stdout) of one `charrnn sample` importing charrnn from tree."""
    cmd = [python, "-m", "charrnn", "sample", "--ckpt", ckpt, "--length", str(length),
           "--seed", str(seed)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env_of(tree), cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"failed with PYTHONPATH={tree}: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def rounds(args, length):
    """{side: [(wall, cpu), ...]} over args.rounds alternating rounds of `--length length`."""
    sides = {"A": args.base, "B": args.new}
    for tree in sides.values():  # warm-up, unrecorded
        one_run(tree, args.python, args.ckpt, min(length, 100), args.seed)
    found = {"A": [], "B": []}
    for r in range(args.rounds):
        texts = {}
        for side in ("A", "B") if r % 2 == 0 else ("B", "A"):
            wall, cpu, texts[side] = one_run(sides[side], args.python, args.ckpt, length,
                                             args.seed)
            found[side].append((wall, cpu))
        if texts["A"] != texts["B"]:
            sys.exit(f"round {r}: A and B printed different text")
    return found


def spread(values):
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def report(runs, what):
    """Print each side's median (range) of the wall and CPU times and the ratios per round."""
    for k, kind in enumerate(("wall", "CPU")):
        a, b = [run[k] for run in runs["A"]], [run[k] for run in runs["B"]]
        ratios = spread([y / x for x, y in zip(a, b)])
        print(f"{kind}{what}: A {spread(a)} s, B {spread(b)} s; B / A per round {ratios}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="tree A (the base), holding charrnn/")
    ap.add_argument("--new", default=ROOT, help="tree B (default: this one)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--ckpt", required=True, type=os.path.abspath)
    ap.add_argument("--length", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--startup", action="store_true", help="also time --length 0 runs")
    args = ap.parse_args()
    for side, tree in (("A", args.base), ("B", args.new)):
        print(f"{side} imports {check_imports(tree, args.python)}")
    print(f"load average at start {os.getloadavg()}")
    runs = rounds(args, args.length)
    report(runs, "")
    if args.startup:
        zero = rounds(args, 0)
        # the median start-up of each side taken off each of its runs: the characters' own time
        less = {side: [tuple(run[k] - statistics.median(z[k] for z in zero[side])
                             for k in range(2)) for run in runs[side]] for side in runs}
        report(less, " less start-up (each side's median --length 0 run)")
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
