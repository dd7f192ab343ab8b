"""The corpus id cache: one file of ids per text and vocabulary, checked before every use.

A cache file is the ids' bytes followed by a 12-byte trailer: CACHE_MAGIC and the CRC-32 of the
id bytes. Opening one reads it through once to check that checksum (about a quarter of the
corpus's first pass, see benchmarks/RESULTS.md), so a damaged file is never trained on: it is
rebuilt, with a warning. CRC-32 is the fastest check zlib and hashlib offer here, and damage, not
an adversary, is what it guards against. Files are written atomically, so a run that dies midway
leaves no half-written cache behind.
"""
import hashlib
import os
import struct
import zlib

import numpy as np

from . import atomic, data
from .errors import CharrnnError

CACHE_MAGIC = b"charrnn\x01"  # ends every cache file, before the checksum
TRAILER = struct.Struct("<8sI")  # CACHE_MAGIC, CRC-32 of the id bytes
VERIFY_BYTES = 1 << 20  # read size of the check: one buffer, reused


def default_cache_dir():
    """$XDG_CACHE_HOME/charrnn, or ~/.cache/charrnn when XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "charrnn")


def cache_path(cache_dir, text_hash, vocab):
    """The cache file of the ids of the text with content hash text_hash under vocab: named by
    both hashes and the dtype."""
    vocab_hash = hashlib.sha256(vocab.encode("utf-8")).hexdigest()[:16]
    dtype = np.dtype(data.id_dtype(len(vocab))).name
    return os.path.join(cache_dir, f"{text_hash}-{vocab_hash}.{dtype}")


def _write(path, encode):
    """encode(sink) calls sink(ids) with the ids in order; they go into path, then the trailer."""
    folder = os.path.dirname(path)

    def write(f):
        crc = 0

        def sink(ids):
            nonlocal crc
            crc = zlib.crc32(ids, crc)
            f.write(ids)

        encode(sink)
        f.write(TRAILER.pack(CACHE_MAGIC, crc))

    try:
        os.makedirs(folder, exist_ok=True)
        atomic.write_atomic(path, write)
    except OSError as e:
        raise CharrnnError(f"cannot write to the corpus cache {folder}: {e.strerror or e}; "
                           f"choose another with --cache-dir") from None


def verify(path, nbytes):
    """None when path holds a cache of nbytes of ids whose checksum matches, else why not:
    "missing", or "damaged" (any other size, a wrong trailer or checksum, an unreadable file)."""
    try:
        f = open(path, "rb", buffering=0)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "damaged"
    with f:
        try:
            if os.fstat(f.fileno()).st_size != nbytes + TRAILER.size:
                return "damaged"
            buf = bytearray(VERIFY_BYTES)
            view = memoryview(buf)
            crc, left = 0, nbytes
            while left:
                n = f.readinto(view[:min(left, VERIFY_BYTES)])
                if not n:
                    return "damaged"  # shortened while being read
                crc = zlib.crc32(view[:n], crc)
                left -= n
            magic, stored = TRAILER.unpack(f.read(TRAILER.size))
        except (OSError, struct.error):
            return "damaged"
    return None if (magic, stored) == (CACHE_MAGIC, crc) else "damaged"


def ids(cache_dir, text_hash, vocab, n, encode, warn):
    """The n ids of a text (content hash text_hash) under vocab, memory-mapped from the cache in
    cache_dir (default_cache_dir() when None): encode(sink) fills a missing or damaged file, and
    warn(line) hears of a damaged one."""
    path = cache_path(os.path.expanduser(cache_dir or default_cache_dir()), text_hash, vocab)
    dtype = data.id_dtype(len(vocab))
    problem = verify(path, n * np.dtype(dtype).itemsize)
    if problem is not None:
        _write(path, encode)
        if problem == "damaged":
            warn(f"Warning: corpus cache {path} did not match its checksum; rebuilt")
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,))
