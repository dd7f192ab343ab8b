"""Checkpoints that cannot be used (damaged, incomplete, of another format version, missing):
every command that reads one says so in one line `Error: ...` naming the file, and starts or
changes no run."""
import io
import os
import shutil

import numpy as np
import pytest

from clihelp import TEN_STEPS, assert_one_line_error, run, run_overwriting
from test_resume import snapshot


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _with(arrays, changes):
    """A copy of arrays with keys replaced, or dropped where the new value is None."""
    out = {**arrays, **changes}
    return {k: v for k, v in out.items() if v is not None}


def _npy_bytes():
    buf = io.BytesIO()
    np.save(buf, np.arange(10))
    return buf.getvalue()


def _bad_checkpoints(good):
    """name -> (bytes or arrays of a broken checkpoint, a fragment of the expected error)."""
    a = _arrays(good)
    raw = open(good, "rb").read()
    nan_by = a["param/by"].copy()
    nan_by[0] = np.nan
    inf_m = a["optim/m.Wy"].copy()
    inf_m[0, 0] = np.inf
    return {
        "truncated": (raw[:len(raw) // 2], "not a readable charrnn .npz"),
        "empty": (b"", "not a readable charrnn .npz"),
        "text": (b"this is not a checkpoint\n", "not a readable charrnn .npz"),
        "npy": (_npy_bytes(), "not an .npz archive"),
        "pickled": (_with(a, {"vocab": np.array([{"a": 1}], dtype=object)}), "not a readable"),
        "no_vocab": (_with(a, {"vocab": None}), "lacks the key 'vocab'"),
        "no_weight": (_with(a, {"param/Wy": None}), "missing param/Wy"),
        "extra_weight": (_with(a, {"param/W9": a["param/by"]}), "unexpected param/W9"),
        "wrong_shape": (_with(a, {"param/Wy": a["param/Wy"].T.copy()}), "param/Wy has shape"),
        "wrong_dtype": (_with(a, {"param/Wy": a["param/Wy"].astype(np.float64)}), "dtype float64"),
        "nan_weight": (_with(a, {"param/by": nan_by}), "param/by holds non-finite"),
        "inf_optimizer": (_with(a, {"optim/m.Wy": inf_m}), "non-finite"),
        "newer": (_with(a, {"format_version": np.array(2)}), "'format_version' is 2; this "
                  "charrnn reads format 1; upgrade"),
        "older": (_with(a, {"format_version": np.array(-1)}), "'format_version' is -1"),
        "repeated_char": (_with(a, {"vocab": np.r_[a["vocab"][:3], a["vocab"][2:-1]]}),
                          "key 'vocab' holds"),
        "unsorted_vocab": (_with(a, {"vocab": a["vocab"][::-1].copy()}), "increasing order"),
        "unknown_key": (_with(a, {"extra": np.array(1)}), "unexpected key 'extra'"),
        "nan_best": (_with(a, {"best_val": np.array(np.nan)}), "'best_val' must be"),
        "bad_hash": (_with(a, {"corpus_hash": np.array("zz")}), "'corpus_hash' must be"),
        "version_text": (_with(a, {"format_version": np.array("1")}), "'format_version'"),
        "bad_config": (_with(a, {"config": np.array('{"hidden_sise": 3}')}), "bad config"),
        "config_not_json": (_with(a, {"config": np.array("{")}), "bad config"),
        "bad_vocab": (_with(a, {"vocab": np.array([0xD800], dtype=np.uint32)}), "'vocab'"),
        "bad_rng": (_with(a, {"rng_state": np.array("[1, 2]")}), "'rng_state'"),
        "negative_step": (_with(a, {"step": np.array(-5)}), "'step' must be 0 or more"),
    }


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with open(path, "wb") as f:
            np.savez(f, **content)


BAD = ["truncated", "empty", "text", "npy", "pickled", "no_vocab", "no_weight", "extra_weight",
       "wrong_shape", "wrong_dtype", "nan_weight", "inf_optimizer", "newer", "older",
       "repeated_char", "unsorted_vocab", "unknown_key", "nan_best", "bad_hash", "version_text",
       "bad_config", "config_not_json", "bad_vocab", "bad_rng", "negative_step"]


@pytest.mark.parametrize("name", BAD)
def test_bad_checkpoint(corpus, saved_run, tmp_path, name):
    content, fragment = _bad_checkpoints(saved_run / "last.npz")[name]
    path = tmp_path / f"{name}.npz"
    _write(path, content)
    for args in (["sample", "--ckpt", path, "--length", 5], ["eval", "--ckpt", path, corpus],
                 ["train", corpus, "--resume", path, "--steps", 20],
                 ["train", corpus, "--init-from", path, "--out", tmp_path / "ft"]):
        assert_one_line_error(run_overwriting(*args), fragment, str(path))
    assert sorted(os.listdir(tmp_path)) == [f"{name}.npz"]  # no run was started


def test_bad_checkpoint_in_a_run_directory_changes_nothing(corpus, saved_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(saved_run, out)
    raw = (out / "last.npz").read_bytes()
    (out / "last.npz").write_bytes(raw[:1000])
    before = snapshot(out)
    assert_one_line_error(run_overwriting("train", corpus, *TEN_STEPS, "--resume", out / "last.npz",
                              "--steps", 20), "not a readable")
    assert snapshot(out) == before


def test_missing_checkpoint_or_a_directory(saved_run):
    assert_one_line_error(run("sample", "--ckpt", saved_run / "nope.npz"), "does not exist")
    assert run("sample", "--ckpt", saved_run).exit_code == 2  # click.Path(dir_okay=False)


def test_a_checkpoint_without_the_later_keys_loads_and_resumes(corpus, saved_run, tmp_path):
    """Keys added to the format over time are optional: a checkpoint holding only the first
    ones (config, vocabulary, weights, step) loads with every other field at its default, and
    a run continues from it."""
    from charrnn import checkpoint
    a = _arrays(saved_run / "last.npz")
    old = {k: v for k, v in a.items()
           if k in ("format_version", "config", "vocab", "step") or k.startswith("param/")}
    out = tmp_path / "run"
    out.mkdir()
    _write(out / "last.npz", old)
    ck = checkpoint.load(out / "last.npz")
    assert (ck.optim_state, ck.carried_state, ck.rng, ck.record, ck.loss_count) == ({}, [], None,
                                                                                   None, 0)
    assert ck.step == int(a["step"]) and ck.best_val == float("inf")
    resumed = run("train", corpus, "--resume", out / "last.npz", "--steps", int(a["step"]) + 5)
    assert resumed.exit_code == 0, resumed.output
    assert checkpoint.load(out / "last.npz").step == int(a["step"]) + 5
