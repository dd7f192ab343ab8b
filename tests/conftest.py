import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
pytest.register_assert_rewrite("clihelp")  # its checks fail with the values, as in a test file

from clihelp import QUICK, SHAKESPEARE, TEN_STEPS, run, run_overwriting  # noqa: E402
from test_resume import snapshot  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _corpus_cache_in_a_temp_dir(tmp_path_factory):
    """Runs through the CLI cache corpus ids; keep them out of the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(scope="session")
def shakespeare_excerpt(tmp_path_factory):
    """excerpt(chars) -> the path of a new text file: the first `chars` characters of the corpus."""
    def excerpt(chars):
        path = tmp_path_factory.mktemp("corpus") / "small.txt"
        with open(SHAKESPEARE, encoding="utf-8") as f:
            path.write_text(f.read(chars), encoding="utf-8")
        return path
    return excerpt


# The runs below are trained once for the whole session: several test files read them.

@pytest.fixture(scope="session")
def books(tmp_path_factory):
    """A folder of two text files (and a binary one that is skipped) cut from Shakespeare."""
    root = tmp_path_factory.mktemp("books")
    with open(SHAKESPEARE, encoding="utf-8") as f:
        text = f.read(40000)
    (root / "act2").mkdir()
    (root / "act1.txt").write_text(text[:20000], encoding="utf-8")
    (root / "act2" / "scene.txt").write_text(text[20000:], encoding="utf-8")
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff\x00\x10JFIF")
    return root


@pytest.fixture(scope="session")
def tiny_run(books, tmp_path_factory):
    """(run folder, id cache folder) of a 30-step run on `books`, evaluated every 10 steps."""
    out = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    result = run("train", books, *QUICK, "--out", out, "--cache-dir", cache, "--steps", 30,
                 "--eval-every", 10)
    assert result.exit_code == 0, result.output
    return out, cache


@pytest.fixture(scope="session")
def corpus(shakespeare_excerpt):
    return shakespeare_excerpt(4000)


@pytest.fixture(scope="session")
def saved_run(corpus, tmp_path_factory):
    """A finished run; the failing commands of the tests point at it and must leave it as it was."""
    out = tmp_path_factory.mktemp("run")
    result = run_overwriting("train", corpus, *TEN_STEPS, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def unchanged(saved_run):
    before = snapshot(saved_run)
    yield saved_run
    assert snapshot(saved_run) == before
