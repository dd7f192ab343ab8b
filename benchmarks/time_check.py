"""The check of `--time` on corpora no rule was derived from (issue 30): on each corpus,
`charrnn train CORPUS --time 3m` for two seeds, configs/rnn.yaml given the same 3 minutes, and
a 12-trial `charrnn tune` sweep at 3 minutes a trial over the keys `--time` chooses
(benchmarks/space-time-3m.yaml), every run on one thread, scored with both protocols.

    python benchmarks/corpora.py /work/corpora --only pydoc words
    python benchmarks/time_check.py --corpora /work/corpora --shard 0/2 &
    python benchmarks/time_check.py --corpora /work/corpora --shard 1/2
    python benchmarks/time_check.py --corpora /work/corpora --table

`--seeds 0,1,2,3` adds seeds to the runs already recorded (a job on record is not run again).
`--results FILE` records to another file, so every job runs again (machines differ by a third
in pace from one session to the next: a comparison is only fair within one):

    python benchmarks/time_check.py --corpora /work/corpora --seeds 0,1,2,3 \
        --results benchmarks/data/time-check-one-session.jsonl --shard 0/2 &

The jobs are ordered so that two shards run one corpus each, side by side, one core each: every
run of a corpus then had the same machine (a core, its neighbour busy with the same kind of
work). Each job appends a JSON line to benchmarks/data/time-check.jsonl: corpus, what ran, the
model, best.npz's stream loss (the run's own evaluation) and window loss (1,000 random windows
of 256 characters of the validation split from seed 0, `charrnn eval --val --windows 256`),
the steps and characters it trained; for the sweep, its best trial's.
"""
import argparse
import glob
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common import read_jsonl  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "data", "time-check.jsonl")
SPACE = os.path.join(ROOT, "benchmarks", "space-time-3m.yaml")
CORPORA = ("pydoc", "words")
SECONDS = 180
CHARRNN = [sys.executable, "-m", "charrnn"]


def jobs(seeds):
    """(corpus, what), interleaved so that shard k of 2 holds corpus k's jobs."""
    kinds = ["tune"] + [f"time-{seed}" for seed in seeds] + ["rnn"]
    return [(corpus, kind) for kind in kinds for corpus in CORPORA]


def command(kind, path, out):
    if kind == "tune":
        return CHARRNN + ["tune", path, "--space", SPACE, "--trials", "12", "--seed", "0",
                          "--out", out]
    if kind == "rnn":
        return CHARRNN + ["train", path, "--config", os.path.join(ROOT, "configs", "rnn.yaml"),
                          "--time-limit", str(SECONDS), "--threads", "1", "--sample-length", "0",
                          "--out", out, "--overwrite"]
    seed = kind.split("-")[1]
    return CHARRNN + ["train", path, "--time", f"{SECONDS}s", "--threads", "1", "--seed", seed,
                      "--sample-length", "0", "--out", out, "--overwrite"]


def best_run(kind, out):
    """The run folder whose best.npz the job is judged by (a sweep: its best complete trial)."""
    if kind != "tune":
        return out
    trials = []
    for path in glob.glob(os.path.join(out, "trial-*", "trial.json")):
        with open(path, encoding="utf-8") as f:
            trial = json.load(f)
        if trial.get("state") == "COMPLETE" and trial.get("best_val") is not None:
            trials.append((trial["best_val"], os.path.dirname(path)))
    return min(trials)[1]


def score(path, run_dir):
    """-> dict of the run's best.npz: stream and window losses, its model and training."""
    ckpt = os.path.join(run_dir, "best.npz")
    info = json.loads(subprocess.run(CHARRNN + ["info", ckpt, "--json"], check=True,
                                     capture_output=True, text=True).stdout)
    window = json.loads(subprocess.run(
        CHARRNN + ["eval", "--ckpt", ckpt, path, "--val", "--windows", "256", "--num-windows",
                   "1000", "--seed", "0", "--json"], check=True, capture_output=True,
        text=True).stdout)
    with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as f:
        config = f.read()
    return {"stream": info["best_val_loss"], "window": window["loss_nats"],
            "model": info["model"], "dropout": info["dropout"], "step": info["step"],
            "chars": info["chars"], "config": config}


def seed_list(text):
    """--seeds: "0,1,2,3" -> [0, 1, 2, 3], or argparse's one-line error."""
    try:
        seeds = [int(seed) for seed in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated integers: {text!r}") from None
    if any(seed < 0 for seed in seeds):
        raise argparse.ArgumentTypeError(f"a seed is negative: {text!r}")
    return seeds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", required=True, help="the folder benchmarks/corpora.py wrote")
    ap.add_argument("--shard", default="0/1", help="K/N: run every Nth job from the Kth")
    ap.add_argument("--seeds", type=seed_list, default=[0, 1],
                    help="the seeds of `--time 3m`, comma-separated  [default: 0,1]")
    ap.add_argument("--out", default="/tmp/time-check")
    ap.add_argument("--results", default=RESULTS,
                    help="the JSON lines to read and append to  [default: %(default)s]")
    ap.add_argument("--table", action="store_true", help="only print the results")
    args = ap.parse_args()
    done = read_jsonl(args.results)
    if args.table:
        for r in done:
            print(f"| {r['corpus']} | {r['kind']} | {r['model']}, dropout {r['dropout']:g} | "
                  f"{r['step']:,} | {r['chars'] / 1e6:.1f}M | {r['stream']:.4f} | "
                  f"{r['window']:.4f} |")
        return
    k, n = (int(x) for x in args.shard.split("/"))
    for corpus, kind in jobs(args.seeds)[k::n]:
        if any((r["corpus"], r["kind"]) == (corpus, kind) for r in done):
            continue
        path = os.path.join(args.corpora, corpus + ".txt")
        out = os.path.join(args.out, f"{corpus}-{kind}")
        subprocess.run(command(kind, path, out), check=True, stdout=subprocess.DEVNULL)
        row = {"corpus": corpus, "kind": kind, **score(path, best_run(kind, out))}
        print(json.dumps(row), flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
        with open(args.results, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
