"""Corpora from files and folders: streaming passes, UTF-8 checks across chunks,
memory-mapped views and memory that does not grow with the corpus; the corpora `train` refuses in
one line, and characters (a BOM, CRLF) it keeps as they are."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from charrnn import checkpoint, corpus, data
from charrnn.errors import CharrnnError
from clihelp import TEN_STEPS, assert_one_line_error, run_overwriting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = "Grüße, wörld ✓ 😀 naïve café\n\tend.\n" * 7  # 1-, 2-, 3- and 4-byte characters


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def short_hash(raw):
    return hashlib.sha256(raw).hexdigest()[:16]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64, 1 << 20])
def test_streaming_matches_whole_text_at_any_chunk_size(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(corpus, "CHUNK_BYTES", chunk)
    path = write(tmp_path / "t.txt", TEXT)
    c = corpus.load(path)
    assert c.vocab == "".join(sorted(set(TEXT)))
    np.testing.assert_array_equal(c.ids, data.encode(TEXT, c.vocab))
    assert c.hash == short_hash(TEXT.encode("utf-8"))  # the hash is of the bytes, streamed


def test_wide_vocabulary_uses_wider_ids(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 100)
    text = "".join(chr(0x4E00 + i) for i in range(300)) + "abc\n"
    c = corpus.load(write(tmp_path / "cjk.txt", text))
    assert c.ids.dtype == np.uint16 and data.decode(c.ids, c.vocab) == text


def _expected_offset(raw):
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start
    raise AssertionError("valid")


@pytest.mark.parametrize("raw", [
    b"hello\xc3\x28 world",          # a lead byte followed by ASCII
    "ab✓".encode() + b"\xff" + b"xyz",  # an invalid byte after a 3-byte character
    b"abcdef" + "✓".encode()[:2],     # a character cut short by the end of the file
    b"ab" + "😀".encode()[:3] + b"cd",  # a 4-byte character missing its last byte
    b"\x80abc",                       # a continuation byte with no lead byte
])
@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 6, 1 << 20])
def test_invalid_utf8_names_the_byte_offset_across_chunks(tmp_path, monkeypatch, raw, chunk):
    monkeypatch.setattr(corpus, "CHUNK_BYTES", chunk)
    path = write(tmp_path / "bad.txt", raw)
    with pytest.raises(CharrnnError, match=f"at byte offset {_expected_offset(raw)} ") as e:
        corpus.scan([path])
    assert str(path) in str(e.value)


def test_folder_is_read_in_sorted_order_with_separators(tmp_path):
    root = tmp_path / "books"
    write(root / "b.txt", "second\n")
    write(root / "a" / "z.txt", "first")
    write(root / "c" / "d.md", "third\n")
    write(root / ".git" / "config", "hidden folder\n")
    write(root / ".notes.txt", "hidden file\n")
    write(root / "image.png", b"\x89PNG\r\n\x1a\n\x00\x00binary")
    write(root / "empty.txt", "")
    sc = corpus.scan([root])
    assert [os.path.relpath(f, root) for f in sc.files] == ["a/z.txt", "b.txt", "c/d.md"]
    assert sc.skipped == 1 and sc.separated
    c = corpus.load(root)
    sep = corpus.SEPARATOR
    assert data.decode(c.ids, c.vocab) == f"first{sep}second\n{sep}third\n{sep}"
    assert c.hash == short_hash(f"first{sep}second\n{sep}third\n{sep}".encode())


def test_several_files_are_separated_and_one_file_is_not(tmp_path):
    a = write(tmp_path / "a.txt", "one\n")
    b = write(tmp_path / "b.txt", "two\n")
    both = corpus.load([b, a])  # in the order given
    assert data.decode(both.ids, both.vocab) == f"two\n{corpus.SEPARATOR}one\n{corpus.SEPARATOR}"
    single = corpus.load(a)
    assert data.decode(single.ids, single.vocab) == "one\n" and corpus.SEPARATOR not in single.vocab


def test_folder_and_file_errors(tmp_path):
    write(tmp_path / "bin" / "x.dat", b"\x00\x01")
    with pytest.raises(CharrnnError, match="holds no text files"):
        corpus.scan([tmp_path / "bin"])
    with pytest.raises(CharrnnError, match="does not exist"):
        corpus.scan([tmp_path / "nope.txt"])
    with pytest.raises(CharrnnError, match="empty"):
        corpus.scan([write(tmp_path / "e.txt", "")])
    with pytest.raises(CharrnnError, match="binary"):
        corpus.scan([tmp_path / "bin" / "x.dat"])


def test_unknown_characters_under_a_given_vocabulary(tmp_path):
    path = write(tmp_path / "t.txt", "abcz\n")
    with pytest.raises(CharrnnError, match="'z'"):
        corpus.load(path, vocab="\nabc")
    c = corpus.load(path, vocab="\nabcdz")  # a larger vocabulary is fine
    assert c.vocab == "\nabcdz" and data.decode(c.ids, c.vocab) == "abcz\n"


def test_split_and_batches_are_views_of_the_memmap(tmp_path):
    path = write(tmp_path / "t.txt", TEXT * 20)
    ids = corpus.open_corpus([path], cache_dir=tmp_path / "cache").ids
    train, val = data.split(ids, 0.1)
    batches = data.Batches(train, batch_size=4, seq_len=10)
    for view in (train, val, batches.streams):
        assert not view.flags.owndata and np.shares_memory(view, ids)
    x, y, _ = batches.next()
    np.testing.assert_array_equal(x[:, 1], ids[batches.streams.shape[1]:][:10])


PEAK_RSS = """
import sys
sys.path.insert(0, {root!r})
from charrnn import corpus, data
c = corpus.open_corpus([{path!r}], cache_dir={cache!r})
train, val = data.split(c.ids, 0.1)
b = data.Batches(train, 8, 50)
for _ in range(20):
    b.next()
# VmHWM, not ru_maxrss: ru_maxrss keeps the high-water mark of the forked parent across exec
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def _peak_rss_kb(tmp_path, name, size):
    line = TEXT.encode()
    path = tmp_path / name
    with open(path, "wb") as f:
        f.write(line * (size // len(line)))
    code = PEAK_RSS.format(root=ROOT, path=str(path), cache=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's VmHWM")
def test_peak_memory_does_not_grow_with_the_corpus(tmp_path):
    small = _peak_rss_kb(tmp_path, "small.txt", 2 << 20)
    large = _peak_rss_kb(tmp_path, "large.txt", 48 << 20)  # 46 MB more text, 184 MB as UTF-32
    assert large - small < 16 * 1024, (small, large)


@pytest.mark.parametrize("content, fragments", [
    (b"", ["empty"]),
    (b"to be or not to be\n" * 3, ["fewer than one batch"]),
    (b"hello\xc3\x28 world" * 200, ["not valid UTF-8", "byte offset 5"]),
    (b"fine text\n" * 50 + b"\xff\xfe broken", ["byte offset 500"]),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 20, ["binary"]),
])
def test_bad_corpus(unchanged, tmp_path, content, fragments):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    assert_one_line_error(run_overwriting("train", path, *TEN_STEPS, "--out", unchanged),
                          *fragments)


def test_bom_and_crlf_are_kept_as_characters(tmp_path):
    text = "\ufeff" + "First line.\r\nSecond line, longer.\r\n" * 100
    path = tmp_path / "windows.txt"
    path.write_bytes(text.encode("utf-8"))
    out = tmp_path / "run"
    assert run_overwriting("train", path, *TEN_STEPS, "--out", out).exit_code == 0
    vocab = checkpoint.load(out / "last.npz").vocab
    assert "\ufeff" in vocab and "\r" in vocab and "\n" in vocab
    assert set(vocab) == set(text)
