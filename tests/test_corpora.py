"""benchmarks/corpora.py on the corpora that need nothing installed (the standard library's):
the same files and hashes twice, the manifest, whole files, and the one-line refusal when a
package is missing."""
import hashlib
import importlib.util
import json
import os

import pytest

import charrnn.corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "corpora_script", os.path.join(ROOT, "benchmarks", "corpora.py"))
corpora = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpora)

STDLIB_ONLY = ["pydoc", "code-1m"]


def test_every_corpus_is_described_and_stdlib_ones_need_nothing():
    assert len(corpora.BY_NAME) == len(corpora.CORPORA)
    kinds = {c.kind for c in corpora.CORPORA}
    assert {"prose", "verse", "code", "big vocabulary", "list"} <= kinds
    for name in STDLIB_ONLY:
        c = corpora.BY_NAME[name]
        assert not c.debian and not c.pypi and c.python
        assert corpora.missing_line([c]) is None


def test_the_stdlib_corpora_are_deterministic_with_a_manifest(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    assert corpora.main([str(first), "--only", *STDLIB_ONLY]) == 0
    assert corpora.main([str(second), "--only", *STDLIB_ONLY]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((first / "manifest.json").read_text(encoding="utf-8"))["corpora"]
    assert manifest == json.loads((second / "manifest.json").read_text(encoding="utf-8"))[
        "corpora"]
    assert sorted(manifest) == sorted(STDLIB_ONLY)
    for name, entry in manifest.items():
        raw = (first / entry["file"]).read_bytes()
        assert raw == (second / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(raw).hexdigest() and entry["sha256"] in out
        text = raw.decode("utf-8")
        assert entry["bytes"] == len(raw) and entry["chars"] == len(text)
        assert entry["vocab"] == len(charrnn.corpus.open_corpus([first / entry["file"]]).vocab)
        assert text.endswith(corpora.SEPARATOR)
    assert set(os.listdir(first)) == {"manifest.json", "pydoc.txt", "code-1m.txt"}


def test_code_1m_is_whole_files_at_the_head_of_the_stdlib(tmp_path):
    text = corpora.utf8_files(corpora.stdlib_sources(), limit=corpora.MB)
    assert len(text.encode("utf-8")) <= corpora.MB
    files = text.split(corpora.SEPARATOR)[:-1]
    sources = corpora.stdlib_sources()
    assert len(files) > 10
    with open(sources[0], encoding="utf-8") as f:
        assert files[0] == f.read()
    whole = corpora.utf8_files(sources[:len(files) + 5])
    assert whole.startswith(text) and len(whole) > len(text)


def test_a_later_build_adds_to_the_manifest(tmp_path):
    assert corpora.main([str(tmp_path), "--only", "pydoc"]) == 0
    assert corpora.main([str(tmp_path), "--only", "code-1m"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert sorted(manifest["corpora"]) == sorted(STDLIB_ONLY)


@pytest.mark.parametrize("kind", ["debian", "pypi"])
def test_a_missing_package_is_one_line_and_nothing_is_written(tmp_path, capsys, monkeypatch,
                                                              kind):
    monkeypatch.setattr(corpora, f"{kind}_version", lambda name: None)
    name = {"debian": "verse", "pypi": "names"}[kind]
    assert corpora.main([str(tmp_path / "out"), "--only", "pydoc", name]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Error: ")
    assert {"debian": "apt-get install fortunes", "pypi": "pip install names"}[kind] in err
    assert not (tmp_path / "out").exists()


def test_an_unknown_name_is_one_line(tmp_path, capsys):
    assert corpora.main([str(tmp_path), "--only", "klingon"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Error: no corpus named klingon")
