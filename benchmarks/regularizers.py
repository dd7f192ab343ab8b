"""Runs with and without each regularizer (weight_drop, locked dropout, weight_decay, ema) on a
few corpora and seeds, scored with both protocols: what each does at a short budget and at a
long one, not a tuning of its rate.

    python benchmarks/corpora.py /tmp/corpora --only code-1m
    python benchmarks/regularizers.py --corpus data/tinyshakespeare.txt \
        --corpus /tmp/corpora/code-1m.txt --seeds 0 1 --steps 300 --out /tmp/reg-bench

A long budget, where a model memorises its text (100,000-character excerpts, some 34 passes,
at the dropout `--time` gives that many passes, best.npz the best of ten evaluations):

    python -c "open('/tmp/corpora/shakespeare-100k.txt', 'w').write(
        open('data/tinyshakespeare.txt').read()[:100000])"      # and code-100k from code-1m.txt
    python benchmarks/regularizers.py --corpus /tmp/corpora/shakespeare-100k.txt \
        --corpus /tmp/corpora/code-100k.txt --seeds 0 1 --steps 1500 --dropout 0.35 --evals 10

The model is configs/gru.yaml's (gru 2 x 256 unless --hidden-size, dropout 0.1 unless --dropout,
Adam at 3e-3 with a cosine down to 5e-5), with a batch of 32 x 64 characters so that a run takes
a minute or two on a shared core. A width whose run gives each weight fewer characters than
`--time`'s rules ever do (timeplan.CHARS_PER_WEIGHT) is still learning the language, not
memorising its text: pick the width so that the steps' characters are a few a weight.

Each run writes one JSON line to OUT/results.jsonl (appending, so a stopped sweep resumes where
it was): the corpus, the variant, the seed, best.npz's stream loss (the validation split as
batch_size streams, the training run's own evaluation; for ema the better of the two weights,
named) and its window loss (500 random windows of 256 characters of the validation split, seed
0: nanoGPT's protocol), and the run's chars/s. The table printed at the end is the mean over
the seeds of each, and its difference from the baseline.
"""
import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import charrnn  # noqa: E402

BASE = dict(cell="gru", hidden_size=256, layers=2, dropout=0.1, batch_size=32, seq_len=64,
            optimizer="adam", lr=3e-3, lr_schedule="cosine", lr_min=5e-5, clip=5.0,
            val_frac=0.1, eval_chars=100_000, sample_length=0, threads=1)
VARIANTS = {
    "baseline": {},
    "weight_drop 0.2": {"weight_drop": 0.2},
    "locked dropout": {"dropout_mode": "locked"},  # at the baseline's rate
    "weight_decay 0.1": {"weight_decay": 0.1},
    "ema 0.99": {"ema": 0.99},
    "weight_drop 0.2 + ema 0.99": {"weight_drop": 0.2, "ema": 0.99},
}
WINDOW, NUM_WINDOWS = 256, 500


def validation_text(path, val_frac):
    """The corpus's validation split as text: its last val_frac (charrnn splits the ids so)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text[len(text) - int(len(text) * val_frac):]


def one_run(corpus, variant, seed, steps, out, dropout=BASE["dropout"], evals=2,
            hidden_size=BASE["hidden_size"]):
    run_dir = os.path.join(out, f"{os.path.basename(corpus)}-{variant.replace(' ', '_')}-{seed}"
                                f"-{steps}-d{dropout:g}-h{hidden_size}")
    result = charrnn.train(corpus, progress=False, out=run_dir, overwrite=True, steps=steps,
                           eval_every=steps // evals, seed=seed,
                           cache_dir=os.path.join(out, "cache"),
                           **{**BASE, "dropout": dropout, "hidden_size": hidden_size},
                           **VARIANTS[variant])
    model = charrnn.load(os.path.join(run_dir, "best.npz"))
    windows = model.score(validation_text(corpus, BASE["val_frac"]), windows=WINDOW,
                          num_windows=NUM_WINDOWS)
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        last = json.loads(f.readlines()[-1])
    return {"corpus": os.path.basename(corpus), "variant": variant, "seed": seed, "steps": steps,
            "dropout": dropout, "hidden_size": hidden_size,
            "stream": result.best_val, "window": windows["loss_nats"],
            "weights": (model.checkpoint.record or {}).get("weights", "raw"),
            "chars_per_s": last["chars"] / last["elapsed"]}


def table(rows):
    """Markdown: per corpus and variant the mean (and spread) over seeds of both losses, and
    the difference of the means from the baseline's."""
    lines = ["| corpus | variant | seeds | stream (nats) | window (nats) | vs baseline stream | "
             "vs baseline window | best weights |", "| --- | --- | --- | --- | --- | --- | --- "
             "| --- |"]
    means = {}
    for corpus in dict.fromkeys(r["corpus"] for r in rows):
        for variant in VARIANTS:
            got = [r for r in rows if r["corpus"] == corpus and r["variant"] == variant]
            if not got:
                continue
            s, w = ([r[k] for r in got] for k in ("stream", "window"))
            means[corpus, variant] = statistics.mean(s), statistics.mean(w)
            base = means.get((corpus, "baseline"), (float("nan"),) * 2)
            lines.append(
                f"| {corpus} | {variant} | {len(got)} | {statistics.mean(s):.4f} "
                f"(±{(max(s) - min(s)) / 2:.4f}) | {statistics.mean(w):.4f} "
                f"(±{(max(w) - min(w)) / 2:.4f}) | {statistics.mean(s) - base[0]:+.4f} | "
                f"{statistics.mean(w) - base[1]:+.4f} | "
                f"{', '.join(sorted(set(r['weights'] for r in got)))} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", action="append", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--dropout", type=float, default=BASE["dropout"],
                    help="every variant's dropout (locked dropout's rate too)")
    ap.add_argument("--hidden-size", type=int, default=BASE["hidden_size"],
                    help="the width of both layers: a budget of a few characters a weight "
                         "or more is what `--time`'s rules choose")
    ap.add_argument("--evals", type=int, default=2,
                    help="evaluations a run makes; best.npz is the best of them")
    ap.add_argument("--out", default="/tmp/reg-bench")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = os.path.join(args.out, "results.jsonl")
    done = []
    if os.path.exists(results):
        with open(results, encoding="utf-8") as f:
            done = [json.loads(line) for line in f]
    for seed in args.seeds:
        for corpus in args.corpus:
            for variant in args.variants:
                key = (os.path.basename(corpus), variant, seed, args.steps, args.dropout,
                       args.hidden_size)
                if any(_key(r) == key for r in done):
                    continue
                row = one_run(corpus, variant, seed, args.steps, args.out, args.dropout,
                              args.evals, args.hidden_size)
                print(json.dumps(row), flush=True)
                done.append(row)
                with open(results, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
    print(table([r for r in done
                 if _key(r)[3:] == (args.steps, args.dropout, args.hidden_size)]))


def _key(row):
    """What makes a run: rows written before --dropout or --hidden-size existed ran at BASE's."""
    return (row["corpus"], row["variant"], row["seed"], row["steps"],
            row.get("dropout", BASE["dropout"]), row.get("hidden_size", BASE["hidden_size"]))


if __name__ == "__main__":
    main()
