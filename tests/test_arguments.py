"""charrnn/arguments.py, the type check of the public API's arguments: which values each
annotation admits (bool is never a number, NumPy's numbers are), and @checked's TypeError naming
the function, the argument and the type wanted before the function runs."""
import os
import pathlib
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import pytest

from charrnn.arguments import PathLike, checked, matches


@pytest.mark.parametrize("value, hint, ok", [
    (3, int, True), (np.int64(3), int, True), (True, int, False), (3.0, int, False),
    (3, float, True), (np.float32(0.5), float, True), (False, float, False), ("3", float, False),
    (None, Optional[int], True), (2, Optional[int], True), ("x", Optional[int], False),
    ("a.txt", PathLike, True), (pathlib.Path("a"), PathLike, True), (b"a", PathLike, False),
    (["a", pathlib.Path("b")], Sequence[PathLike], True), (("a",), Sequence[PathLike], True),
    (["a", 3], Sequence[PathLike], False), ("ab", Sequence[PathLike], False),
    (print, Callable, True), (3, Callable, False), (object(), Any, True),
    (np.zeros(2), Union[str, np.ndarray], True), ([1, 2], Union[str, np.ndarray], False),
])
def test_matches(value, hint, ok):
    assert matches(value, hint) is ok


def test_checked_names_the_argument_and_the_type_before_any_work():
    ran = []

    @checked
    def sample(length: int, prime: str = "", seed: Optional[int] = None, *rest, **more):
        ran.append(length)
        return length

    assert sample(np.int32(5), "ab", None, "anything", extra=object()) == 5
    with pytest.raises(TypeError, match=r"sample: prime must be str, got bytes b'x'"):
        sample(5, prime=b"x")
    with pytest.raises(TypeError, match=r"sample: length must be int, got bool True"):
        sample(True)
    with pytest.raises(TypeError, match=r"seed must be int or None, got float 1.5"):
        sample(1, seed=1.5)
    with pytest.raises(TypeError):  # Python's own message for a wrong count of arguments
        sample()
    assert ran == [5]


def test_a_long_value_is_cut_in_the_message():
    @checked
    def f(path: PathLike):
        return path

    with pytest.raises(TypeError,
                       match=r"f: path must be str or a path, got list \[0, 0, .*\.\.\.$"):
        f([0] * 100)
    assert f(os.path.join("a", "b")) == os.path.join("a", "b")
