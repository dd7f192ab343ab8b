"""What the training benchmarks share and that needs no PyTorch: the corpus, the model-size
arguments, one training step of charrnn's core and a busy core. (bench_train.py imports PyTorch when it is installed;
profile_step.py must not, so that a profile of charrnn's step sees only charrnn's libraries.)"""
import contextlib
import json
import os
import subprocess
import sys
import time

import numpy as np

from charrnn import data, model, optim, runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "data", "tinyshakespeare.txt")


LR, CLIP = 2e-3, 5.0  # Adam's rate and the clipping norm of every benchmark's steps


def trainer(spec, ids, N, T, seed=0, params=None, threads=runtime.ONE_THREAD):
    """A closure doing one training step of charrnn's core on batches of ids, as
    charrnn.run.Run does (Adam at LR, clipped at CLIP), from params or a fresh model, on the
    thread layout `threads`; it returns the step's loss."""
    params = params if params is not None else model.init_params(spec,
                                                                 np.random.default_rng(seed))
    opt = optim.init_state("adam", params)
    batches = data.Batches(ids, N, T)
    carried = [model.zero_state(spec, N)]

    def step():
        x, y, wrapped = batches.next()
        if wrapped:
            carried[0] = model.zero_state(spec, N)
        loss, carried[0], cache = model.forward(params, spec, x, y, carried[0], threads=threads)
        grads, _ = model.backward(params, spec, cache, threads=threads)
        optim.clip(grads, "norm", CLIP)
        optim.apply("adam", params, grads, opt, LR)
        return loss

    return step


def read_jsonl(path):
    """The JSON lines a resumable benchmark appended to path so far (none when it is absent)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def vocab_of(text):
    """The sorted characters of text: the vocabulary charrnn builds for it."""
    return "".join(sorted(set(text)))


def corpus_ids(path, vocab_size):
    """The corpus as ids, or random ids over vocab_size characters when the file is absent."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        vocab = vocab_of(text)
        return data.encode(text, vocab), len(vocab)
    return np.random.default_rng(0).integers(0, vocab_size, 1_000_000).astype(np.uint8), vocab_size


def add_model_args(ap):
    """The model and batch options of a training benchmark, on an argparse parser."""
    ap.add_argument("--cell", default="rnn", choices=["rnn", "lstm", "gru"])
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=100)


def seconds(text):
    """An argparse type: a finite, non-negative number of seconds."""
    import argparse
    import math
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"seconds must be finite and at least 0, got {text}")
    return value


@contextlib.contextmanager
def busy(on):
    """One CPU-bound process pinned to CPU 1 while the block runs, when on."""
    if not on:
        yield
        return
    hog = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        hog.kill()
        hog.wait()
