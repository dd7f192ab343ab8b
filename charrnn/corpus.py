"""Reading a corpus from disk into ids and its vocabulary."""
import os
from dataclasses import dataclass

import numpy as np

from . import data
from .errors import CharrnnError


@dataclass
class Corpus:
    ids: np.ndarray  # (L,) ids in the smallest unsigned dtype
    vocab: str       # sorted distinct characters; id i is vocab[i]
    hash: str        # content hash of the text, recorded in checkpoints
    source: str

    def __len__(self):
        return len(self.ids)


def read_text(path):
    """The UTF-8 text of one file; errors name the file and the problem."""
    if not os.path.exists(path):
        raise CharrnnError(f"corpus {path} does not exist")
    if os.path.isdir(path):
        raise CharrnnError(f"corpus {path} is a directory")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CharrnnError(f"cannot read corpus {path}: {e.strerror}") from None
    if not raw:
        raise CharrnnError(f"corpus {path} is empty")
    if b"\x00" in raw[:65536]:
        raise CharrnnError(f"corpus {path} looks like a binary file (it holds NUL bytes), not text")
    return data.decode_utf8(raw, name=f"corpus {path}")


def load(path, vocab=None):
    """Read path; build its vocabulary unless one is given (then every character must be in it)."""
    text = read_text(path)
    vocab = vocab if vocab is not None else data.build_vocab(text)
    ids = data.encode(text, vocab)
    return Corpus(ids=ids, vocab=vocab, hash=data.content_hash(ids), source=str(path))
