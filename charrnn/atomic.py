"""The one atomic writer: every checkpoint, config.yaml, rewrite of metrics.jsonl, corpus cache
file and sweep file goes through write_atomic, so a crash or a full disk never leaves a file half
written: the old file stays whole, or the new one is complete."""
import contextlib
import os
import re
import tempfile

from .errors import CharrnnError

TEMPORARY_PREFIX = ".tmp-"  # write_atomic's files before their rename; a killed writer leaves one
# mkstemp adds 8 characters of this alphabet to the prefix: a user's own ".tmp-notes" never matches
_TEMPORARY_NAME = re.compile(re.escape(TEMPORARY_PREFIX) + r"[a-z0-9_]{8}")


def is_temporary(name):
    """Whether a file name (no folder) is one of write_atomic's temporary files."""
    return _TEMPORARY_NAME.fullmatch(name) is not None


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_folder(folder):
    """Make a rename in folder durable: without it a crash right after a save can lose the new
    name even though the file's data reached the disk. A no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows, where a folder cannot be opened as a file
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself has happened
    finally:
        os.close(fd)


def write_atomic(path, write):
    """Replace path with what write(f) writes into a binary file object, all or nothing.

    A temporary file in the same folder is filled, flushed and fsynced, renamed over path, and
    the folder is fsynced. On any failure the temporary file is removed, whatever was at path is
    left untouched, and the OSError propagates for the caller to word.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, dir=folder)
    try:
        # mkstemp makes the file private (0600); a saved file gets the usual umask-based mode
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            fd = None
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_folder(folder)
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None:
            with contextlib.suppress(OSError):  # already gone, or the folder went read-only
                os.unlink(tmp)


def write_text_atomic(path, text):
    """write_atomic for UTF-8 text; a failure is a CharrnnError naming the file."""
    try:
        write_atomic(path, lambda f: f.write(text.encode("utf-8")))
    except OSError as e:
        raise CharrnnError(f"could not write {path}: {e.strerror or e}") from None
