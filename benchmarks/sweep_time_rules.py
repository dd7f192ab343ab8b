"""The sweep that `--time`'s rules (charrnn/timeplan.py) are derived from: 2-layer GRUs of
several widths, with and without dropout, trained for a fixed number of *characters* on corpora
of different kinds, each scored with both protocols.

    python benchmarks/corpora.py /work/corpora
    python benchmarks/sweep_time_rules.py --corpora /work/corpora &    # two workers, a core
    python benchmarks/sweep_time_rules.py --corpora /work/corpora      # each (one thread a run)
    python benchmarks/sweep_time_rules.py --corpora /work/corpora --table

A budget is a number of training characters, not seconds, so a run's losses do not depend on
the machine or on what else it was doing (the same seed gives the same steps): the rules turn a
time into characters with the pace they measure on the user's machine. Each run appends one
JSON line to benchmarks/data/time-rules.jsonl (a stopped sweep resumes where it was): corpus,
its training characters and vocabulary, width, dropout, budget, the model's weights, best.npz's
stream loss (the run's own evaluation: the validation split as batch_size streams, state
carried), its window loss (1,000 random windows of 256 characters of the validation split,
seed 0, each from a zero state: nanoGPT's protocol), the last training loss, and the run's
chars/s (a record of the load, not a result).
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import charrnn  # noqa: E402
from common import read_jsonl  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "data", "time-rules.jsonl")
BATCH, SEQ = 32, 100
RECIPE = dict(cell="gru", layers=2, batch_size=BATCH, seq_len=SEQ, optimizer="adam", lr=3e-3,
              warmup_steps=50, lr_schedule="cosine", lr_min=5e-5, clip=5.0, val_frac=0.1,
              eval_chars=200_000, sample_length=0, threads=1, seed=0)
WINDOW, NUM_WINDOWS = 256, 1000

SMALL = ("tinyshakespeare", "verse", "code-1m", "cjk", "names", "prose")
LARGE = ("code", "c-100m")
# (corpus, budget in characters, width, dropout), most telling first
GRID = ([(c, 1_000_000, h, 0.0) for c in SMALL for h in (64, 128, 256, 384)
         if (c, h) != ("cjk", 384)]  # a 2 x 384 GRU with 6,174 outputs: too slow for the session
        + [(c, 4_000_000, h, 0.0) for c in ("tinyshakespeare", "code-1m", "verse")
           for h in (128, 256, 384) if (c, h) != ("code-1m", 384)]  # left out for time too
        + [(c, 4_000_000, 256, 0.3) for c in ("verse", "tinyshakespeare")]
        # the two large corpora (31 MB and 100 MB; added 2026-12-07): does the widest model
        # still win at a fixed budget, and dropout still cost, where a run sees its text once?
        + [(c, b, h, 0.0) for c in LARGE for b in (1_000_000, 4_000_000) for h in (128, 256, 384)]
        + [(c, 4_000_000, 256, 0.3) for c in LARGE])


def corpus_path(name, corpora):
    if name == "tinyshakespeare":
        return os.path.join(ROOT, "data", "tinyshakespeare.txt")
    return os.path.join(corpora, name + ".txt")


def validation_text(path, val_frac):
    """The corpus's validation split as text: its last val_frac (charrnn splits the ids so)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text[len(text) - int(len(text) * val_frac):], len(text), len(set(text))


def one_run(corpus, budget, width, dropout, corpora, out):
    path = corpus_path(corpus, corpora)
    steps = budget // (BATCH * SEQ)
    run_dir = os.path.join(out, f"{corpus}-{budget}-{width}-{dropout}")
    result = charrnn.train(path, progress=False, out=run_dir, overwrite=True, steps=steps,
                           eval_every=max(1, steps // 4), hidden_size=width, dropout=dropout,
                           cache_dir=os.path.join(out, "cache"), **RECIPE)
    model = charrnn.load(os.path.join(run_dir, "best.npz"))
    val, chars, vocab = validation_text(path, RECIPE["val_frac"])
    windows = model.score(val, windows=WINDOW, num_windows=NUM_WINDOWS)
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        last = [json.loads(line) for line in f][-1]
    return {"corpus": corpus, "train_chars": chars - len(val), "vocab": vocab, "budget": budget,
            "width": width, "dropout": dropout, "weights": int(sum(p.size for p in model.params.values())),
            "steps": steps, "stream": result.best_val, "window": windows["loss_nats"],
            "train_last": last.get("train_loss"),
            "chars_per_s": round(last["chars"] / last["elapsed"])}


def table(rows):
    """Markdown: each (corpus, budget)'s runs, best stream loss first."""
    lines = ["| corpus | budget | width | dropout | weights | chars/weight | epochs | stream | "
             "window | train (last) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- "
             "| --- |"]
    for corpus, budget in dict.fromkeys((r["corpus"], r["budget"]) for r in rows):
        got = sorted((r for r in rows if (r["corpus"], r["budget"]) == (corpus, budget)),
                     key=lambda r: r["stream"])
        for r in got:
            lines.append(f"| {corpus} | {budget / 1e6:g}M | {r['width']} | {r['dropout']:g} | "
                         f"{r['weights']:,} | {budget / r['weights']:.1f} | "
                         f"{budget / r['train_chars']:.1f} | {r['stream']:.4f} | "
                         f"{r['window']:.4f} | {r['train_last'] or float('nan'):.4f} |")
    lines += ["", "Against time (each run's seconds at its own pace, chars/s, both workers "
              "busy): the runs no faster run beat, per corpus (dropout 0)", "",
              "| corpus | seconds | width | budget | chars/weight | stream |",
              "| --- | --- | --- | --- | --- | --- |"]
    for corpus in dict.fromkeys(r["corpus"] for r in rows):
        got = sorted((r for r in rows if r["corpus"] == corpus and r["dropout"] == 0),
                     key=lambda r: r["budget"] / r["chars_per_s"])
        best = float("inf")
        for r in got:
            if r["stream"] < best:
                best = r["stream"]
                lines.append(f"| {corpus} | {r['budget'] / r['chars_per_s']:,.0f} | "
                             f"{r['width']} | {r['budget'] / 1e6:g}M | "
                             f"{r['budget'] / r['weights']:.1f} | {r['stream']:.4f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", required=True, help="the folder benchmarks/corpora.py wrote")
    ap.add_argument("--out", default="/tmp/time-rules")
    ap.add_argument("--table", action="store_true", help="only print the table of the results")
    args = ap.parse_args()
    done = read_jsonl(RESULTS)
    if args.table:
        print(table(done))
        return
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    os.makedirs(os.path.join(args.out, "claims"), exist_ok=True)
    for job in GRID:
        if any((r["corpus"], r["budget"], r["width"], r["dropout"]) == job for r in done):
            continue
        try:  # each worker takes the next job no other has taken
            os.close(os.open(os.path.join(args.out, "claims", "-".join(map(str, job))),
                             os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        row = one_run(*job, args.corpora, args.out)
        print(json.dumps(row), flush=True)
        with open(RESULTS, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
