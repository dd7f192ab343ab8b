"""The tools around a run: training on folders with the id cache, bounded evaluation, the
learning-rate schedule, early stopping, `info`, `train --dry-run`, sampling options and `plot`."""
import builtins
import hashlib
import json
import math
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn import checkpoint, config, corpus, model, optim, report, schedule, training
from charrnn.cli import main
from charrnn.evaluate import score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")
SHAKESPEARE = os.path.join(ROOT, "data", "tinyshakespeare.txt")
QUICK = ("--config", TINY, "--sample-length", 0, "--val-frac", 0.1)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, fragment, code=1):
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], lines


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def tiny_run(books, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    result = run("train", books, *QUICK, "--out", out, "--cache-dir", cache, "--steps", 30,
                 "--eval-every", 10)
    assert result.exit_code == 0, result.output
    return out, cache


# ---- plot ----------------------------------------------------------------------------------

def test_plot_writes_a_png(tiny_run, tmp_path):
    pytest.importorskip("matplotlib")
    out, _ = tiny_run
    result = run("plot", out, "-o", tmp_path / "loss.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    default = run("plot", out)
    assert default.exit_code == 0 and (out / "loss.png").exists()


def test_plot_without_matplotlib_says_how_to_install_it(tiny_run, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = run("plot", tiny_run[0], "-o", tmp_path / "loss.png")
    one_line_error(result, "pip install 'charrnn[plot]'")
    assert not (tmp_path / "loss.png").exists()


def test_plot_errors(tmp_path):
    one_line_error(run("plot", tmp_path / "none"), "does not exist")
    one_line_error(run("plot", tmp_path), "holds no metrics.jsonl")
    (tmp_path / "metrics.jsonl").write_text("")
    one_line_error(run("plot", tmp_path), "no evaluations")
    (tmp_path / "metrics.jsonl").write_bytes(b'{"step": 1}\n\xff\xfe{"step": 2}\n')
    one_line_error(run("plot", tmp_path), "2 damaged lines skipped (line 1, 2)")


def test_plot_reads_the_run_of_a_checkpoint_and_skips_damaged_lines(tiny_run, tmp_path):
    """`charrnn plot RUN/best.npz` is RUN; a line cut short or not UTF-8 is skipped with one
    warning, as resuming skips it (rundir reads metrics.jsonl for both)."""
    pytest.importorskip("matplotlib")
    out, _ = tiny_run
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    with open(folder / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 9, "chars": \xff\n{"step": 10, "ch')
    result = run("plot", folder / "best.npz", "-o", tmp_path / "loss.png")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning")]
    assert len(warnings) == 1 and "2 damaged lines skipped" in warnings[0], result.stderr
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
