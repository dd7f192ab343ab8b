"""What the two same-machine PyTorch anchors share (anchor_nanogpt.py, anchor_torch_gru.py): the
corpus split as charrnn splits it, training for a wall-time budget, scoring under both of
charrnn's protocols, and the one JSON line each prints.

The protocols are charrnn's own (docs/sampling.md): the stream score reads the validation split
once, every character predicted from all before it (a recurrent model carries its state; a
transformer, which has no state, sees the last `context` characters at most, read in windows
that overlap by half); the window score is nanoGPT's, the mean over random windows each read
from a zero state, drawn by charrnn.evaluate.window_starts so that `charrnn eval --windows` with
the same seed scores the very same windows.
"""
import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from charrnn import corpus as corpus_mod, data, evaluate  # noqa: E402

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

CORPUS = os.path.join(ROOT, "data", "tinyshakespeare.txt")
PROBE_WARMUP, PROBE_STEPS = 3, 10  # untimed steps, then the steps whose pace sizes the schedule
SPARE = 0.02  # share of the budget left unplanned, as charrnn's steps: auto leaves
SCORE_BATCH = 64  # windows scored side by side


def seconds(text):
    """'30s', '10m', '1.5h' or a plain number of seconds -> seconds (float)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 10m, 1.5h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def add_common_args(ap):
    """The options both anchors take, on an argparse parser."""
    ap.add_argument("--corpus", default=CORPUS, help="text file  [default: tiny Shakespeare]")
    ap.add_argument("--time", type=seconds, required=True,
                    help="training wall time (30s, 10m, 1h); the scoring after it is extra")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch's threads")
    ap.add_argument("--val-frac", type=float, default=0.1, help="as charrnn's val_frac")
    ap.add_argument("--seed", type=int, default=0, help="the model's and the batches' seed")
    ap.add_argument("--window", type=int, default=evaluate.WINDOW,
                    help="the window protocol's window length")
    ap.add_argument("--num-windows", type=int, default=evaluate.NUM_WINDOWS,
                    help="the window protocol's number of windows")
    ap.add_argument("--window-seed", type=int, default=0,
                    help="the window protocol's seed (charrnn eval --windows --seed)")


def splits(path, val_frac):
    """(training ids, validation ids, vocabulary) of the corpus at path, exactly as charrnn reads
    and splits it (its vocabulary, its ids, the last val_frac validating)."""
    text = corpus_mod.open_corpus([path])
    train_ids, val_ids = data.split(np.asarray(text.ids), val_frac)
    return train_ids.astype(np.int64), val_ids.astype(np.int64), text.vocab


def train_for(budget, step, lr_at):
    """Run step(lr) until `budget` seconds have passed, the learning rate lr_at(i, total) of a
    schedule of `total` steps, total sized to the budget at the pace of the first steps (as
    charrnn's steps: auto sizes its cosine; None until then). Returns (steps taken, total
    planned or None when the budget ended first, seconds)."""
    start = time.perf_counter()
    i, total = 0, None
    while time.perf_counter() - start < budget and (total is None or i < total):
        step(lr_at(i, total))
        i += 1
        if i == PROBE_WARMUP:
            probe_start = time.perf_counter()
        elif i == PROBE_WARMUP + PROBE_STEPS:
            now = time.perf_counter()
            pace = (now - probe_start) / PROBE_STEPS
            total = i + max(1, int((budget * (1 - SPARE) - (now - start)) / pace))
    return i, total, time.perf_counter() - start


def warmup_cosine(i, total, lr, lr_min, warmup):
    """The rate of step i (0-based): linear warm-up over `warmup` steps, then a cosine from lr
    to lr_min at step `total`; total None (not known yet) holds lr after the warm-up."""
    if i < warmup:
        return lr * (i + 1) / warmup
    if total is None:
        return lr
    progress = min((i - warmup) / max(total - warmup, 1), 1.0)
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * progress))


def nll_sum(logits, y):
    """Summed cross-entropy (nats, float) of logits (..., V) against ids y (...)."""
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(),
                                 y.reshape(-1), reduction="sum"))


@torch.no_grad()
def score_windows(window_nll, ids, window, num_windows, seed):
    """nanoGPT's protocol, charrnn's windows: mean nats per character over num_windows random
    windows of ids, each from a zero state. window_nll(x, y) sums the NLL of a (N, T) batch."""
    starts = evaluate.window_starts(len(ids), window, num_windows, seed)
    positions = np.arange(window)
    total = 0.0
    for i in range(0, num_windows, SCORE_BATCH):
        first = starts[i:i + SCORE_BATCH, None] + positions  # (N, T)
        total += window_nll(torch.from_numpy(ids[first]), torch.from_numpy(ids[first + 1]))
    return total / (num_windows * window)


def _context_jobs(L, context):
    """The windows that read a sequence of L ids with at most `context` inputs each: windows of
    T = min(context, L - 1) inputs advancing by context // 2, the last ending at the sequence's
    end. Returns ([(first input, targets the windows before it scored already)], T)."""
    stride = max(1, context // 2)
    ends = list(range(min(context, L - 1), L, stride))
    if ends[-1] != L - 1:
        ends.append(L - 1)
    jobs, previous = [], 0
    for end in ends:
        first = max(0, end - context)
        jobs.append((first, previous - first))
        previous = end
    return jobs, min(context, L - 1)


@torch.no_grad()
def context_nll_sum(logits_of, seqs, context):
    """Summed NLL (nats) of every id of each row of seqs (N, L) after the row's first, each
    predicted from the last `context` ids of its own row at most (nothing before the row): the
    windows of _context_jobs, each scoring only the targets the windows before it did not.
    logits_of(x) maps (n, T) ids to (n, T, V) logits."""
    N, L = seqs.shape
    jobs, T = _context_jobs(L, context)
    work = [(row, first, skip) for row in range(N) for first, skip in jobs]
    total = 0.0
    for i in range(0, len(work), SCORE_BATCH):
        batch = work[i:i + SCORE_BATCH]
        rows = np.array([r for r, _, _ in batch])[:, None]
        idx = np.array([f for _, f, _ in batch])[:, None] + np.arange(T)  # (n, T)
        logp = torch.log_softmax(logits_of(torch.from_numpy(seqs[rows, idx])).double(), dim=-1)
        nll = -logp.gather(2, torch.from_numpy(seqs[rows, idx + 1])[..., None])[..., 0]  # (n, T)
        for row, (_, _, skip) in enumerate(batch):
            total += float(nll[row, skip:].sum())
    return total


def score_context_stream(logits_of, ids, context):
    """The stream protocol for a model of a bounded context: every character of ids after the
    first, predicted from the last `context` characters at most (from context - context // 2 of
    them, once past the opening), the mean in nats."""
    return context_nll_sum(logits_of, ids[None, :], context) / (len(ids) - 1)


def context_window_nll(logits_of, context):
    """window_nll for score_windows from a model of a bounded context: a window longer than
    the context is read as its own short stream from a zero state (nothing before the window),
    one no longer than the context in one pass, as nanoGPT reads it."""
    def window_nll(x, y):  # x, y (N, T) ids, y the next characters of x
        seqs = torch.cat([x[:, :1], y], dim=1).numpy()  # (N, T + 1)
        return context_nll_sum(logits_of, seqs, context)
    return window_nll


def report(name, args, steps, planned, train_seconds, chars, stream, windows, extra):
    """Print the anchor's one JSON line (stdout) and return it as a dict."""
    line = {"anchor": name, **extra, "steps": steps, "steps_planned": planned,
            "train_seconds": round(train_seconds, 1), "chars_trained": chars,
            "chars_per_s": round(chars / train_seconds), "stream_loss": round(stream, 4),
            "window_loss": round(windows, 4), "window": args.window,
            "num_windows": args.num_windows, "window_seed": args.window_seed,
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "corpus": os.path.basename(args.corpus)}
    print(json.dumps(line), flush=True)
    return line
