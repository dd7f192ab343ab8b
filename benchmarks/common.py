"""What the training benchmarks share and that needs no PyTorch: the corpus, the model-size
arguments and a busy core. (bench_train.py imports PyTorch when it is installed;
profile_step.py must not, so that a profile of charrnn's step sees only charrnn's libraries.)"""
import contextlib
import os
import subprocess
import sys
import time

import numpy as np

from charrnn import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "data", "tinyshakespeare.txt")


def corpus_ids(path, vocab_size):
    """The corpus as ids, or random ids over vocab_size characters when the file is absent."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        vocab = data.build_vocab(text)
        return data.encode(text, vocab), len(vocab)
    return np.random.default_rng(0).integers(0, vocab_size, 1_000_000).astype(np.uint8), vocab_size


def add_model_args(ap):
    """The model and batch options of a training benchmark, on an argparse parser."""
    ap.add_argument("--cell", default="rnn", choices=["rnn", "lstm", "gru"])
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=100)


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
