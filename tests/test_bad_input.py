"""Every bad input a user can hand charrnn: one line `Error: ...`, exit 1 (2 for usage), no
traceback, and nothing already saved changed."""
import dataclasses
import io
import json
import os
import typing

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from charrnn import checkpoint, config
from charrnn.cli import main
from test_resume import read_only, snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")
QUICK = ["--config", TINY, "--steps", 10, "--eval-every", 5, "--sample-length", 0]


def run(*args):
    args = [str(a) for a in args]
    if args[0] == "train" and "--resume" not in args:
        # the failing trains below aim at an existing run on purpose: --overwrite gets them past
        # the "already holds a run" refusal to the error under test, and `unchanged` checks
        # that the run is still byte-identical afterwards
        args.append("--overwrite")
    return CliRunner().invoke(main, args)


def assert_one_line_error(result, *fragments, code=1):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    # warnings about the run (e.g. a model large for its corpus) may come first, one line each
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not line.startswith("Warning: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def corpus(shakespeare_excerpt):
    return shakespeare_excerpt(4000)


@pytest.fixture(scope="module")
def saved_run(corpus, tmp_path_factory):
    """A finished run; every failing command below points at it and must leave it as it was."""
    out = tmp_path_factory.mktemp("run")
    result = run("train", corpus, *QUICK, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def unchanged(saved_run):
    before = snapshot(saved_run)
    yield saved_run
    assert snapshot(saved_run) == before


# --- sampling and output paths ---------------------------------------------------------------


def test_output_path_under_a_file(corpus, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    assert_one_line_error(run("train", corpus, *QUICK, "--out", blocker), "not writable")
    assert_one_line_error(run("train", corpus, *QUICK, "--out", blocker / "run"), "not writable")
    assert blocker.read_text() == "keep me"


def test_output_path_read_only(corpus, unchanged):
    with read_only(unchanged):
        result = run("train", corpus, *QUICK, "--out", unchanged)
        nested = run("train", corpus, *QUICK, "--out", unchanged / "new")
    assert_one_line_error(result, "not writable")
    assert_one_line_error(nested, "not writable")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", [["sample", "--length", 5000], ["eval", "--json"]])
def test_output_to_a_full_disk(corpus, saved_run, command):
    import subprocess
    import sys
    args = [*command[:1], "--ckpt", str(saved_run / "last.npz"), *map(str, command[1:])]
    if command[0] == "eval":
        args.append(str(corpus))
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "charrnn", *args], cwd=ROOT, stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: input/output failed: No space left on device"], result.stderr
