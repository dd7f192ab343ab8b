"""Reading a corpus from disk: files and folders -> vocabulary, content hash and ids.

A corpus is one file, several files, or folders of text files, streamed in chunks so that its
size is bounded by the disk, not by memory. The first pass validates the UTF-8, counts the
characters, finds the vocabulary and hashes the content; the second writes one id per character
to a cache file keyed by that hash and the vocabulary, and training reads the ids back through
`np.memmap`. Later runs on the same text skip the second pass.

The cache and its checks are idcache's.

When a corpus is made of several files (more than one path, or a folder) each file is followed by
SEPARATOR, U+001C (the ASCII "file separator" control character), so the model sees where one
document ends and the next begins. A single file is read as it is.

Besides the training loop this is the one module that uses tqdm: both passes show a byte-count
progress bar on stderr when asked to and stderr is a terminal.
"""
import codecs
import hashlib
import os
import sys
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from . import data, idcache, runtime
from .errors import CharrnnError

SEPARATOR = "\x1c"
# Small chunks keep each pass's buffers near malloc's mmap threshold: 1 MiB chunks left glibc's
# heap fragmented, growing to ~170 MB over a 200 MB corpus against ~45 MB now, and were slower.
CHUNK_BYTES = 64 << 10
SNIFF_BYTES = 65536  # a NUL byte in a file's first SNIFF_BYTES marks it as binary


@dataclass
class Corpus:
    ids: np.ndarray  # (L,) ids in the smallest unsigned dtype; an np.memmap when cached
    vocab: str       # sorted distinct characters; id i is vocab[i]
    hash: str        # content hash of the text, recorded in checkpoints
    source: str

    def __len__(self):
        return len(self.ids)


@dataclass
class Scan:
    """What the first pass learns about a corpus, without holding its text."""
    files: list      # the files read, in order
    separated: bool  # whether each file is followed by SEPARATOR
    hash: str        # first 16 hex digits of the SHA-256 of the bytes read, separators included
    vocab: str       # sorted distinct characters
    chars: int       # characters, separators included
    nbytes: int      # UTF-8 bytes, separators included
    skipped: int     # binary files left out of folders
    source: str      # a short description for logs


def _is_binary(path):
    try:
        with open(path, "rb") as f:
            return b"\x00" in f.read(SNIFF_BYTES)
    except OSError as e:
        raise CharrnnError(f"cannot read corpus {path}: {e.strerror}") from None


def as_paths(corpus):
    """The public API's corpus argument, one path or a list of them -> a list of paths."""
    return [corpus] if isinstance(corpus, (str, os.PathLike)) else list(corpus)


def list_files(paths):
    """paths (files or folders) -> (files in reading order, separated?, binary files skipped).

    A folder contributes every non-empty, non-binary file under it whose path has no component
    starting with "." (so .git is left out), in sorted order of their paths.
    """
    if not paths:
        raise CharrnnError("no corpus given")
    files, skipped = [], 0
    for path in map(os.fspath, paths):
        if not os.path.exists(path):
            raise CharrnnError(f"corpus {path} does not exist")
        if not os.path.isdir(path):
            if os.path.getsize(path) == 0:
                raise CharrnnError(f"corpus {path} is empty")
            if _is_binary(path):
                raise CharrnnError(f"corpus {path} looks like a binary file (it holds NUL "
                                   f"bytes), not text")
            files.append(path)
            continue
        found = []
        for root, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [os.path.join(root, n) for n in names if not n.startswith(".")]
        before = len(files)
        for f in sorted(found):
            if os.path.isfile(f) and os.path.getsize(f) > 0:
                if _is_binary(f):
                    skipped += 1
                else:
                    files.append(f)
        if len(files) == before:
            raise CharrnnError(f"corpus folder {path} holds no text files")
    separated = len(paths) > 1 or os.path.isdir(os.fspath(paths[0]))
    return files, separated, skipped


def _pieces(files, separated, what="corpus"):
    """Yield (raw bytes, text or None) for the whole corpus in order; text is None when raw is
    ASCII (then raw is the text). The UTF-8 is checked with an incremental decoder, so a
    character split between two chunks is joined, and an error names the file's byte offset."""
    sep = SEPARATOR.encode("utf-8")
    for path in files:
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0  # bytes of this file read before the current chunk
        try:
            f = open(path, "rb")
        except OSError as e:
            raise CharrnnError(f"cannot read {what} {path}: {e.strerror}") from None
        with f:
            while True:
                try:
                    raw = f.read(CHUNK_BYTES)
                except OSError as e:
                    raise CharrnnError(f"cannot read {what} {path}: {e.strerror}") from None
                pending = len(decoder.getstate()[0])  # bytes of a character the last chunk began
                try:
                    if pending == 0 and raw.isascii():
                        text = None
                    else:
                        text = decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as e:
                    at = offset - pending + e.start
                    raise CharrnnError(
                        f"{what} {path} is not valid UTF-8: byte 0x{e.object[e.start]:02x} at byte "
                        f"offset {at} ({e.reason})") from None
                if not raw:
                    break
                offset += len(raw)
                yield raw, text
        if separated:
            yield sep, None


def _bar(progress, total, desc):
    # only on a terminal (disable=None), and only for a pass that takes more than a second
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                file=sys.stderr, disable=None if progress else True, delay=1.0, leave=False,
                dynamic_ncols=True)


def _describe(paths, files, skipped):
    if len(files) == 1 and len(paths) == 1 and files[0] == os.fspath(paths[0]):
        return files[0]
    where = ", ".join(map(os.fspath, paths[:3])) + (" ..." if len(paths) > 3 else "")
    extra = f", {skipped} binary file{'s' * (skipped != 1)} skipped" if skipped else ""
    return f"{len(files)} files from {where}{extra}"


def scan(paths, progress=False):
    """First pass over the corpus at paths (a list): -> Scan (vocabulary, length, hash)."""
    files, separated, skipped = list_files(list(paths))
    total = sum(os.path.getsize(f) for f in files) + (len(files) if separated else 0)
    sha = hashlib.sha256()
    seen = data.CharSet()
    chars = nbytes = 0
    with _bar(progress, total, "vocabulary") as bar:
        for raw, text in _pieces(files, separated):
            sha.update(raw)
            nbytes += len(raw)
            chars += len(raw) if text is None else len(text)
            seen.add(raw, text)
            bar.update(len(raw))
    return Scan(files=files, separated=separated, hash=sha.hexdigest()[:16], vocab=seen.vocab(),
                chars=chars, nbytes=nbytes, skipped=skipped,
                source=_describe(list(paths), files, skipped))


def check_vocab(sc, vocab):
    """Every character of the scanned corpus must be in vocab (e.g. a checkpoint's)."""
    missing = set(sc.vocab) - set(vocab)
    if missing:
        raise CharrnnError(f"corpus {sc.source} has characters not in the vocabulary: "
                           + data.describe_chars(missing))


def encode_ids(sc, vocab, sink, progress=False):
    """Second pass: call sink(ids) with each chunk's ids (1-D, id_dtype(len(vocab))), in order.

    Every character must be in vocab (check_vocab); data.Encoder maps them.
    """
    encoder = data.Encoder(vocab)
    sha = hashlib.sha256()
    with _bar(progress, sc.nbytes, "ids") as bar:
        for raw, text in _pieces(sc.files, sc.separated):
            sha.update(raw)
            ids = encoder.piece(raw, text)
            sink(ids)
            bar.update(len(raw))
    if sha.hexdigest()[:16] != sc.hash:
        raise CharrnnError(f"corpus {sc.source} changed while it was being read; run again")


def _warn_stderr(line):
    # tqdm.write, like the progress bars, so that a bar on the terminal stays intact
    tqdm.write(line, file=sys.stderr)


def open_corpus(paths, cache_dir=None, vocab=None, progress=False, sc=None, warn=None):
    """The corpus at paths with its ids memory-mapped from the cache, encoding them if needed.

    vocab: use this vocabulary (every character must be in it) instead of the corpus's own.
    cache_dir: where id files live (idcache.default_cache_dir() when None). sc: a Scan already
    made.
    A cache file that fails its checksum is rebuilt, and warn(line) then receives one line
    "Warning: corpus cache FILE did not match its checksum; rebuilt" (by default it goes to
    stderr).
    """
    sc = sc or scan(paths, progress)
    if vocab is None:
        vocab = sc.vocab
    else:
        check_vocab(sc, vocab)
    ids = idcache.ids(cache_dir, sc.hash, vocab, sc.chars,
                      encode=lambda sink: encode_ids(sc, vocab, sink, progress),
                      warn=warn or _warn_stderr)
    return Corpus(ids=ids, vocab=vocab, hash=sc.hash, source=sc.source)


def load(path, vocab=None, progress=False):
    """The corpus at path (a file, a folder or a list of them) with its ids in memory.

    For scoring text that is not worth caching (`charrnn eval`); vocab as in open_corpus.
    """
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    sc = scan(paths, progress)
    if vocab is None:
        vocab = sc.vocab
    else:
        check_vocab(sc, vocab)
    dtype = data.id_dtype(len(vocab))
    # the one array that grows with the text: refused before it is made, not after the kernel
    # lent it and then ended the process for it
    runtime.check_memory(sc.chars * np.dtype(dtype).itemsize, f"the {sc.chars:,} characters "
                         f"of {sc.source}", "score a part of the text at a time")
    ids = np.empty(sc.chars, dtype=dtype)
    filled = 0

    def sink(chunk):
        nonlocal filled
        if filled + len(chunk) > len(ids):
            raise CharrnnError(f"corpus {sc.source} changed while it was being read; run again")
        ids[filled:filled + len(chunk)] = chunk
        filled += len(chunk)

    encode_ids(sc, vocab, sink, progress)
    return Corpus(ids=ids, vocab=vocab, hash=sc.hash, source=sc.source)


def read_text(path, what="prime file"):
    """The UTF-8 text of one small file (a prime); errors call it `what`."""
    if not os.path.isfile(path):
        raise CharrnnError(f"{what} {path} does not exist or is not a file")
    return "".join(raw.decode("ascii") if text is None else text
                   for raw, text in _pieces([path], separated=False, what=what))
