"""Vocabulary, encoding, train/validation split and contiguous (T, N) batches.

The corpus is held as one integer id per character (uint8 when the vocabulary fits), never as a
one-hot matrix, and may be an np.memmap: splitting and batching only take views of it. Batches
follow torch-rnn: the training split is cut into N contiguous streams and step k+1 takes the
window right after step k's in every stream, so carrying the hidden state from one window to the
next is meaningful (truncated backpropagation through time).
"""
import numpy as np

from .errors import CharrnnError


def id_dtype(vocab_size):
    """The smallest unsigned integer type that holds every id."""
    if vocab_size <= 256:
        return np.uint8
    return np.uint16 if vocab_size <= 65536 else np.uint32


def codepoints(text):
    """str -> (L,) uint32 array of Unicode code points, without a Python loop."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def build_vocab(text):
    """The sorted set of characters of text, as a str (its order is the id order)."""
    return "".join(chr(c) for c in np.unique(codepoints(text)))


def encode(text, vocab):
    """str -> (L,) ids in the smallest dtype; characters outside vocab are an error listing them."""
    cps = codepoints(text)
    vocab_cps = codepoints(vocab)
    pos = np.searchsorted(vocab_cps, cps)
    pos[pos == len(vocab_cps)] = 0
    bad = vocab_cps[pos] != cps
    if bad.any():
        raise CharrnnError("characters not in the vocabulary: "
                           + describe_chars(chr(c) for c in np.unique(cps[bad])))
    return pos.astype(id_dtype(len(vocab)))


def decode(ids, vocab):
    return "".join(vocab[i] for i in ids)


def describe_chars(chars):
    """A printable, comma-separated list of characters (repr, so control characters show)."""
    chars = sorted(set(chars))
    shown = ", ".join(repr(c) for c in chars[:20])
    return shown + (f" and {len(chars) - 20} more" if len(chars) > 20 else "")


def split_sizes(n, val_frac):
    """-> (training, validation) lengths of a corpus of n characters."""
    n_val = int(n * val_frac)
    return n - n_val, n_val


def split(ids, val_frac):
    """The first 1 - val_frac of the ids train, the last val_frac validate; both are views, so a
    memory-mapped corpus stays on disk."""
    n_train, _ = split_sizes(len(ids), val_frac)
    return ids[:n_train], ids[n_train:]


def windows_per_epoch(n_train, batch_size, seq_len):
    """Windows of seq_len in each of batch_size streams over n_train characters (0: not one)."""
    S = n_train // batch_size
    return (S - 1) // seq_len if S >= seq_len + 1 else 0


def block(n, k, K):
    """The k-th of K contiguous blocks of n rows (streams), as equal as integers allow: a slice
    (empty when n < K leaves block k nothing)."""
    return slice(k * n // K, (k + 1) * n // K)


class Batches:
    """N contiguous streams over the training ids, walked window by window.

    streams (N, S): stream k is ids[k*S:(k+1)*S]. A window at position p gives inputs
    streams[:, p:p+T] and targets shifted by one, both returned time-major (T, N). `position`
    is the only state; when the next window would run past the end the streams wrap to 0 and
    `wrapped` tells the caller to reset the carried hidden state.
    """

    def __init__(self, ids, batch_size, seq_len, position=0):
        S = len(ids) // batch_size
        if S < seq_len + 1:
            raise CharrnnError(
                f"the training split has {len(ids)} characters, fewer than one batch needs: "
                f"batch_size * (seq_len + 1) = {batch_size * (seq_len + 1)}; use a longer corpus "
                f"or smaller --batch-size / --seq-len")
        # a reshape of a contiguous slice: a view, never a copy of a memory-mapped corpus
        self.streams = ids[:batch_size * S].reshape(batch_size, S)
        self.seq_len = seq_len
        self.windows_per_epoch = windows_per_epoch(len(ids), batch_size, seq_len)
        self.position = position

    def next(self):
        """-> (x (T, N), y (T, N), wrapped): the next window and whether state must restart."""
        T = self.seq_len
        wrapped = self.position + T + 1 > self.streams.shape[1]
        if wrapped:
            self.position = 0
        p = self.position
        x = np.ascontiguousarray(self.streams[:, p:p + T].T)
        y = np.ascontiguousarray(self.streams[:, p + 1:p + T + 1].T)
        self.position = p + T
        return x, y, wrapped
