"""Vocabulary, encoding, train/validation split and contiguous (T, N) batches.

The corpus is held as one integer id per character (uint8 when the vocabulary fits), never as a
one-hot matrix, and may be an np.memmap: splitting and batching only take views of it. Batches
follow torch-rnn: the training split is cut into N contiguous streams and step k+1 takes the
window right after step k's in every stream, so carrying the hidden state from one window to the
next is meaningful (truncated backpropagation through time).
"""
import codecs

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


_ASCII = bytes(range(128))
_HIGH = bytes(range(128, 256))


class CharSet:
    """The distinct characters of a text read in pieces: the one vocabulary builder.

    Gathered without a per-character Python loop: ASCII characters by deleting the bytes already
    known from each piece with bytes.translate, others by decoding the stream of non-ASCII bytes
    alone, which is itself valid UTF-8 (multi-byte sequences are contiguous).
    """

    def __init__(self):
        self._ascii, self._other = set(), set()
        self._high = codecs.getincrementaldecoder("utf-8")()

    def add(self, raw, text=None):
        """raw: a piece's UTF-8 bytes; text: the piece decoded, or None when raw is ASCII."""
        self._ascii.update(raw.translate(None, bytes(sorted(self._ascii)) + _HIGH))
        if text is not None:
            self._other.update(self._high.decode(raw.translate(None, _ASCII)))

    def vocab(self):
        """The characters seen, sorted: their order is the id order."""
        return "".join(sorted({chr(b) for b in self._ascii} | self._other))


class Encoder:
    """Characters -> ids under a vocabulary: the one encoder, for a whole corpus in pieces and
    for a prime or a text to score alike.

    A table maps every code point up to the vocabulary's largest to its id (MISSING for a
    character outside the vocabulary); pure-ASCII bytes take a byte table, with one
    bytes.translate when the ids are bytes.
    """

    def __init__(self, vocab):
        self.vocab = vocab
        self.dtype = id_dtype(len(vocab))
        cps = codepoints(vocab)
        # code point -> id, in the ids' own type unless MISSING needs a wider one
        table_dtype = id_dtype(len(vocab) + 1)
        self.missing = np.iinfo(table_dtype).max  # an id no vocabulary of this size reaches
        self.table = np.full(max(int(cps.max()) + 2, 128), self.missing, dtype=table_dtype)
        self.table[cps] = np.arange(len(vocab))
        self.byte_table = self.table[:128]  # the ids of ASCII characters
        # below 256 characters an ASCII piece's ids are its bytes translated, with byte 255 (no
        # id) for a character outside the vocabulary, found by one memchr
        self._translate = None
        if len(vocab) < 256:
            known = self.byte_table != self.missing
            self._translate = (np.where(known, self.byte_table, 255).astype(np.uint8).tobytes()
                               + bytes([255]) * 128)

    def piece(self, raw, text=None):
        """The ids (1-D, of self.dtype) of one piece: raw its UTF-8 bytes, text its decoded str or
        None when raw is ASCII. A character outside the vocabulary is a CharrnnError listing it."""
        if text is None and self._translate is not None:
            ids = raw.translate(self._translate)
            if b"\xff" not in ids:
                return np.frombuffer(ids, dtype=np.uint8)
        if text is None:
            ids = self.byte_table[np.frombuffer(raw, dtype=np.uint8)]
            cps = None
        else:
            cps = codepoints(text)
            ids = self.table.take(cps, mode="clip")  # past the table: its last entry, MISSING
        bad = ids == self.missing
        if bad.any():
            found = np.frombuffer(raw, dtype=np.uint8)[bad] if cps is None else cps[bad]
            raise CharrnnError("characters not in the vocabulary: "
                               + describe_chars(chr(c) for c in np.unique(found)))
        return ids.astype(self.dtype, copy=False)

    def __call__(self, text):
        """str -> (L,) ids."""
        raw = text.encode("utf-8")
        return self.piece(raw, None if raw.isascii() else text)


def encode(text, vocab):
    """str -> (L,) ids in the smallest dtype; characters outside vocab are an error listing them."""
    return Encoder(vocab)(text)


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
    is next()'s only state (at() takes it as an argument instead); when the next window would run
    past the end the streams wrap to 0 and `wrapped` tells the caller to reset the carried
    hidden state.
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

    def at(self, position):
        """-> (x (T, N), y (T, N), wrapped, next position): the window at position, or at 0 when
        it would run past the end (wrapped: the carried state must restart)."""
        T = self.seq_len
        wrapped = position + T + 1 > self.streams.shape[1]
        p = 0 if wrapped else position
        x = np.ascontiguousarray(self.streams[:, p:p + T].T)
        y = np.ascontiguousarray(self.streams[:, p + 1:p + T + 1].T)
        return x, y, wrapped, p + T

    def next(self):
        """-> (x (T, N), y (T, N), wrapped): the window at `position`, which moves past it."""
        x, y, wrapped, self.position = self.at(self.position)
        return x, y, wrapped
