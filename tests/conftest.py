import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

SHAKESPEARE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                           "tinyshakespeare.txt")


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
