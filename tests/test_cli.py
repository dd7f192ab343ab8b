"""The command line end to end on small runs: train, sample, eval, user errors, and outputs
that cannot be written (a run folder under a file or read-only, a full disk)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from clihelp import (ROOT, SHAKESPEARE as CORPUS, TEN_STEPS, TINY, assert_one_line_error,
                     one_line_error, run, run_overwriting)
from test_resume import read_only


@pytest.fixture(scope="module")
def shakespeare_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run("train", CORPUS, "--config", TINY, "--out", out, "--steps", 40, "--eval-every", 20)
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_the_run_directory(shakespeare_run):
    assert {"last.npz", "best.npz", "config.yaml",
            "metrics.jsonl"} <= set(os.listdir(shakespeare_run))
    records = [json.loads(line) for line in open(shakespeare_run / "metrics.jsonl")]
    assert [r["step"] for r in records] == [20, 40]
    for r in records:
        assert {"step", "chars", "elapsed", "train_loss", "val_loss", "val_bpc"} <= set(r)
        assert r["val_bpc"] == pytest.approx(r["val_loss"] / np.log(2))
    assert records[-1]["chars"] == 40 * 8 * 20
    assert records[-1]["val_loss"] < np.log(65)  # it learned something beyond uniform


def test_checkpoint_loads_without_pickle(shakespeare_run):
    with np.load(shakespeare_run / "best.npz", allow_pickle=False) as z:
        assert "param/l0.Wx" in z.files and z["vocab"].dtype == np.uint32
        assert int(z["format_version"]) == 1


def test_sample_writes_only_text_to_stdout(shakespeare_run):
    result = run("sample", "--ckpt", shakespeare_run / "best.npz", "--length", 300, "--seed", 1)
    assert result.exit_code == 0, result.output
    assert len(result.stdout) == 301 and result.stdout.endswith("\n")
    again = run("sample", "--ckpt", shakespeare_run / "best.npz", "--length", 300, "--seed", 1)
    assert again.stdout == result.stdout
    assert result.stderr == ""


def test_sample_with_prime_and_argmax(shakespeare_run):
    result = run("sample", "--ckpt", shakespeare_run / "best.npz", "--length", 50,
                 "--temperature", 0, "--prime", "ROMEO:")
    assert result.exit_code == 0 and result.stdout.startswith("ROMEO:")
    assert len(result.stdout) == len("ROMEO:") + 51


def test_sample_prime_with_unknown_characters(shakespeare_run):
    result = run("sample", "--ckpt", shakespeare_run / "best.npz", "--prime", "caf\u00e9 \u2603")
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "'é'" in result.stderr and "'☃'" in result.stderr


def test_eval_json(shakespeare_run):
    result = run("eval", "--ckpt", shakespeare_run / "best.npz", CORPUS, "--json")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)
    assert set(rec) == {"loss_nats", "bits_per_char", "perplexity", "chars"}
    assert rec["chars"] == 1115394 - 1
    assert rec["perplexity"] == pytest.approx(np.exp(rec["loss_nats"]))


def test_same_seed_same_weights_bit_for_bit(tmp_path):
    for name in ("a", "b"):
        assert run("train", CORPUS, "--config", TINY, "--out", tmp_path / name,
                   "--steps", 15, "--eval-every", 5).exit_code == 0
    with np.load(tmp_path / "a" / "last.npz") as a, np.load(tmp_path / "b" / "last.npz") as b:
        arrays = [k for k in a.files if k.startswith(("param/", "optim/", "state/"))]
        assert arrays
        for k in arrays:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    losses = [[json.loads(line)["val_loss"] for line in open(tmp_path / n / "metrics.jsonl")]
              for n in ("a", "b")]
    assert losses[0] == losses[1]


def test_user_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    short = tmp_path / "short.txt"
    short.write_text("to be or not to be\n" * 3)
    bad_utf8 = tmp_path / "bad.txt"
    bad_utf8.write_bytes(b"hello\xc3\x28 world")
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("hidden_sise: 12\n")
    bad_type = tmp_path / "type.yaml"
    bad_type.write_text("hidden_size: big\n")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "out"
    one_line_error(run("train", tmp_path / "missing.txt", "--out", out), "does not exist")
    one_line_error(run("train", empty, "--out", out), "empty")
    one_line_error(run("train", short, "--config", TINY, "--out", out), "fewer than one batch")
    one_line_error(run("train", bad_utf8, "--out", out), "byte offset 5")
    one_line_error(run("train", CORPUS, "--config", bad_key, "--out", out), "hidden_sise")
    one_line_error(run("train", CORPUS, "--config", bad_type, "--out", out), "hidden_size")
    one_line_error(run("sample", "--ckpt", tmp_path / "none.npz"), "does not exist")
    one_line_error(run("sample", "--ckpt", corrupt), "corrupt.npz")
    one_line_error(run("eval", "--ckpt", corrupt, CORPUS), "corrupt.npz")
    assert run("train").exit_code == 2  # usage error: no corpus


def test_eval_of_a_text_too_short_to_score_is_one_line(shakespeare_run, tmp_path):
    one_char = tmp_path / "one.txt"
    one_char.write_text("a")
    one_line_error(run("eval", "--ckpt", shakespeare_run / "best.npz", one_char),
                   "too short to score")


def test_train_refuses_to_replace_an_existing_run(shakespeare_run):
    before = (shakespeare_run / "last.npz").read_bytes()
    result = run("train", CORPUS, "--config", TINY, "--out", shakespeare_run, "--steps", 2)
    one_line_error(result, "already holds a run", "--resume", "--overwrite")
    assert (shakespeare_run / "last.npz").read_bytes() == before


def test_python_dash_m_and_help():
    result = subprocess.run([sys.executable, "-m", "charrnn", "-h"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout and "sample" in result.stdout


STDOUT_COMMANDS = [
    ("sample", "--ckpt", "{run}/best.npz", "--length", "50"),
    ("eval", "--ckpt", "{run}/best.npz", "{small}"),
    ("info", "{run}/best.npz"),
    ("train", CORPUS, "--config", TINY, "--dry-run"),
    ("--version",),
]


@pytest.mark.parametrize("redirect", [">&-", ">/dev/full"], ids=["closed", "full"])
@pytest.mark.parametrize("command", STDOUT_COMMANDS, ids=lambda c: c[0].strip("-"))
def test_a_command_whose_stdout_is_gone_says_so_in_one_line(shakespeare_run, tmp_path, command,
                                                             redirect):
    """Every command that writes to stdout, with stdout closed (`>&-`: Python then has no
    sys.stdout at all) or on a full disk: one line `Error: ...`, exit 1, no traceback."""
    if redirect == ">/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    small = tmp_path / "small.txt"
    small.write_text(open(CORPUS, encoding="utf-8").read(2000), encoding="utf-8")
    args = [a.format(run=shakespeare_run, small=small) for a in command]
    script = " ".join(f"'{a}'" for a in [sys.executable, "-m", "charrnn", *args])
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(["bash", "-c", f"{script} {redirect}"], capture_output=True,
                            text=True, timeout=120, env=env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr


def test_output_path_under_a_file(corpus, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    assert_one_line_error(run_overwriting("train", corpus, *TEN_STEPS, "--out", blocker),
                          "not writable")
    assert_one_line_error(run_overwriting("train", corpus, *TEN_STEPS, "--out", blocker / "run"),
                          "not writable")
    assert blocker.read_text() == "keep me"


def test_output_path_read_only(corpus, unchanged):
    with read_only(unchanged):
        result = run_overwriting("train", corpus, *TEN_STEPS, "--out", unchanged)
        nested = run_overwriting("train", corpus, *TEN_STEPS, "--out", unchanged / "new")
    assert_one_line_error(result, "not writable")
    assert_one_line_error(nested, "not writable")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", [["sample", "--length", 5000], ["eval", "--json"]])
def test_output_to_a_full_disk(corpus, saved_run, command):
    args = [*command[:1], "--ckpt", str(saved_run / "last.npz"), *map(str, command[1:])]
    if command[0] == "eval":
        args.append(str(corpus))
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "charrnn", *args], cwd=ROOT, stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: input/output failed: No space left on device"], result.stderr
