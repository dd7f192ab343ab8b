"""charrnn/idcache.py, the corpus id cache: one file per text and vocabulary, reused, memory-
mapped, checked against its checksum before every use and rebuilt with one warning when damaged
or cut short; an unwritable cache folder refused in one line."""
import os

import numpy as np
import pytest

from charrnn import corpus, data, idcache
from charrnn.errors import CharrnnError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = "Grüße, wörld ✓ 😀 naïve café\n\tend.\n" * 7  # 1-, 2-, 3- and 4-byte characters


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def test_verify_names_a_missing_a_damaged_and_a_good_file(tmp_path):
    ids = np.arange(50, dtype=np.uint8)
    path = str(tmp_path / "c.uint8")
    assert idcache.verify(path, ids.nbytes) == "missing"
    got = idcache.ids(str(tmp_path), "h", "".join(chr(65 + i) for i in range(50)), 50,
                      lambda sink: sink(ids), warn=None)
    np.testing.assert_array_equal(got, ids)
    (name,) = os.listdir(tmp_path)
    path = str(tmp_path / name)
    assert idcache.verify(path, ids.nbytes) is None
    assert idcache.verify(path, ids.nbytes + 1) == "damaged"  # another length
    raw = bytearray(open(path, "rb").read())
    raw[-1] ^= 1  # the checksum itself
    open(path, "wb").write(bytes(raw))
    assert idcache.verify(path, ids.nbytes) == "damaged"


def test_the_file_name_is_keyed_by_text_vocabulary_and_width():
    narrow = idcache.cache_path("d", "text1", "ab")
    assert narrow.endswith(".uint8") and os.path.basename(narrow).startswith("text1-")
    assert idcache.cache_path("d", "text2", "ab") != narrow
    assert idcache.cache_path("d", "text1", "abc") != narrow
    wide = "".join(chr(0x4E00 + i) for i in range(300))
    assert idcache.cache_path("d", "text1", wide).endswith(".uint16")


def test_ids_are_cached_once_and_memory_mapped(tmp_path, monkeypatch):
    path = write(tmp_path / "t.txt", TEXT)
    cache = tmp_path / "cache"
    first = corpus.open_corpus([path], cache_dir=cache)
    assert isinstance(first.ids, np.memmap) and first.ids.mode == "r"
    np.testing.assert_array_equal(first.ids, data.encode(TEXT, first.vocab))
    (cached,) = os.listdir(cache)
    assert cached.startswith(first.hash) and cached.endswith(".uint8")

    def must_not_encode(*args, **kwargs):
        raise AssertionError("the cache was not reused")

    monkeypatch.setattr(corpus, "encode_ids", must_not_encode)
    again = corpus.open_corpus([path], cache_dir=cache)
    np.testing.assert_array_equal(again.ids, first.ids)
    monkeypatch.undo()
    wider = corpus.open_corpus([path], cache_dir=cache, vocab=first.vocab + "~")
    assert len(os.listdir(cache)) == 2 and wider.vocab.endswith("~")  # keyed by vocabulary too
    write(path, TEXT + "more")
    assert corpus.open_corpus([path], cache_dir=cache).hash != first.hash  # and by content


def test_truncated_cache_is_rebuilt(tmp_path):
    path = write(tmp_path / "t.txt", TEXT)
    c = corpus.open_corpus([path], cache_dir=tmp_path / "cache")
    cache_file = idcache.cache_path(tmp_path / "cache", corpus.scan([path]).hash, c.vocab)
    del c
    with open(cache_file, "r+b") as f:
        f.truncate(10)
    c = corpus.open_corpus([path], cache_dir=tmp_path / "cache")
    assert data.decode(c.ids, c.vocab) == TEXT


def test_unwritable_cache_is_an_error_naming_it(tmp_path):
    path = write(tmp_path / "t.txt", TEXT)
    blocker = write(tmp_path / "a-file", "not a folder")
    with pytest.raises(CharrnnError, match="cannot write to the corpus cache .*--cache-dir"):
        corpus.open_corpus([path], cache_dir=blocker / "cache")


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert idcache.default_cache_dir() == os.path.join(str(tmp_path), "charrnn")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert idcache.default_cache_dir() == os.path.join(str(tmp_path), "home", ".cache", "charrnn")


def _damage(cache_file, how, vocab_size):
    """Overwrite bytes of the cache file in place, keeping its size."""
    raw = bytearray(cache_file.read_bytes())
    if how == "outside":  # ids no vocabulary has: an IndexError, before the cache was checked
        raw[100:110] = bytes([255]) * 10
    else:  # ids of other characters of the vocabulary: wrong text, trained on silently
        raw[100:110] = bytes((b + 1) % vocab_size for b in raw[100:110])
    cache_file.write_bytes(bytes(raw))


def _cache_file(cache):
    (name,) = [n for n in os.listdir(cache) if not n.startswith(".")]
    return cache / name


@pytest.mark.parametrize("how", ["outside", "inside"])
def test_damaged_cache_is_rebuilt_with_a_warning(tmp_path, how):
    path = write(tmp_path / "t.txt", TEXT)
    cache = tmp_path / "cache"
    vocab = corpus.open_corpus([path], cache_dir=cache).vocab
    cache_file = _cache_file(cache)
    _damage(cache_file, how, len(vocab))
    warnings = []
    c = corpus.open_corpus([path], cache_dir=cache, warn=warnings.append)
    assert warnings == [f"Warning: corpus cache {cache_file} did not match its checksum; rebuilt"]
    np.testing.assert_array_equal(c.ids, data.encode(TEXT, vocab))
    corpus.open_corpus([path], cache_dir=cache, warn=warnings.append)
    assert len(warnings) == 1  # the rebuilt file passes


@pytest.mark.parametrize("how", ["outside", "inside"])
def test_training_on_a_damaged_cache_equals_a_clean_run(tmp_path, how):
    """Issue 15, point 2: same-size damage to a cache file in the cache folder is found, the
    cache rebuilt with one warning, and the run is the run a clean cache gives."""
    from click.testing import CliRunner

    from charrnn.cli import main
    from test_resume import assert_same_run
    path = tmp_path / "small.txt"
    with open(os.path.join(ROOT, "data", "tinyshakespeare.txt"), encoding="utf-8") as f:
        path.write_text(f.read(4000), encoding="utf-8")

    def train(out, cache):
        args = ["train", path, "--config", os.path.join(ROOT, "configs", "tiny.yaml"),
                "--steps", 10, "--eval-every", 5, "--sample-length", 0, "--out", out,
                "--cache-dir", cache]
        return CliRunner().invoke(main, [str(a) for a in args])

    cache = tmp_path / "cache"
    assert train(tmp_path / "clean", cache).exit_code == 0  # it builds the cache
    cache_file = _cache_file(cache)
    _damage(cache_file, how, len(set(path.read_text(encoding="utf-8"))))
    result = train(tmp_path / "run", cache)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: corpus")]
    assert warnings == [f"Warning: corpus cache {cache_file} did not match its checksum; rebuilt"]
    assert_same_run(tmp_path / "run", tmp_path / "clean")


