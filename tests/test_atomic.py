"""charrnn/atomic.py, the one atomic writer: a file is replaced whole or not at all, with the
usual mode, its folder fsynced after the rename; its temporary files are recognised by name and
a user's look-alikes are not."""
import os
import stat
import tempfile

import pytest

from charrnn import atomic
from charrnn.errors import CharrnnError


def test_write_atomic_replaces_the_file_whole_with_the_usual_mode(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    atomic.write_atomic(path, lambda f: f.write(b"new contents"))
    assert path.read_bytes() == b"new contents"
    assert os.listdir(tmp_path) == ["f.bin"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's private 0600


def test_a_failing_writer_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def write(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic.write_atomic(path, write)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

    def record_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        events.append(("open", os.fspath(path), fd))
        return fd

    monkeypatch.setattr(os, "open", record_open)
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", fd)) or real_fsync(fd))
    monkeypatch.setattr(os, "replace",
                        lambda a, b: events.append(("replace",)) or real_replace(a, b))
    atomic.write_atomic(tmp_path / "f.bin", lambda f: f.write(b"x"))
    monkeypatch.undo()
    replaced = events.index(("replace",))
    opened = [e[2] for e in events[replaced:] if e[0] == "open" and e[1] == str(tmp_path)]
    assert opened and ("fsync", opened[0]) in events[replaced:]
    assert any(e[0] == "fsync" for e in events[:replaced])  # the file's data, before its name


def test_temporary_names_are_write_atomics_own():
    folder = tempfile.mkdtemp()
    try:
        fd, name = tempfile.mkstemp(prefix=atomic.TEMPORARY_PREFIX, dir=folder)
        os.close(fd)
        assert atomic.is_temporary(os.path.basename(name))
    finally:
        os.unlink(name)
        os.rmdir(folder)
    for users in (".tmp-notes.txt", ".tmp-abc", ".tmpfile-of-the-user", "notes.txt",
                  "x.tmp-abcdefgh"):
        assert not atomic.is_temporary(users), users


def test_write_text_atomic_writes_utf8_and_words_a_failure(tmp_path):
    path = tmp_path / "t.txt"
    atomic.write_text_atomic(path, "naïve ✓\n")
    assert path.read_bytes() == "naïve ✓\n".encode("utf-8")
    missing = tmp_path / "no-such-folder" / "t.txt"
    with pytest.raises(CharrnnError, match=f"could not write {missing}"):
        atomic.write_text_atomic(missing, "x")
