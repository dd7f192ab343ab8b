"""The training loop end to end: corpora of any size (folders, several files, the id cache,
bounded evaluation), the learning rate it logs, the time limit, warmup and patience, and the
validation split."""
import hashlib
import json
import math
import os

import numpy as np
import pytest

from charrnn import checkpoint, config, corpus, optim, training
from clihelp import QUICK, TEN_STEPS, TINY, assert_one_line_error, run, run_overwriting


# ---- any corpus size ------------------------------------------------------------------------

def test_training_on_a_folder_caches_its_ids_once(books, tiny_run, tmp_path):
    out, cache = tiny_run
    (cached,) = os.listdir(cache)
    ck = checkpoint.load(out / "last.npz")
    sep = corpus.SEPARATOR.encode()
    raw = (books / "act1.txt").read_bytes() + sep + (books / "act2" / "scene.txt").read_bytes() + sep
    assert ck.corpus_hash == hashlib.sha256(raw).hexdigest()[:16] and cached.startswith(ck.corpus_hash)
    assert corpus.SEPARATOR in ck.vocab
    before = os.stat(cache / cached).st_mtime_ns
    again = run("train", books, *QUICK, "--out", tmp_path / "again", "--cache-dir", cache,
                "--steps", 10, "--eval-every", 10)
    assert again.exit_code == 0, again.output
    assert os.listdir(cache) == [cached] and os.stat(cache / cached).st_mtime_ns == before


def test_several_files_on_the_command_line(books, tmp_path):
    result = run("train", books / "act2" / "scene.txt", books / "act1.txt", *QUICK,
                 "--out", tmp_path / "r", "--steps", 5, "--eval-every", 5, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "2 files from" in result.stdout and "40,002 characters" in result.stdout


# ---- learning rate, time limit and early stopping -------------------------------------------

@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_logged_lr_follows_the_schedule(books, tmp_path, schedule):
    result = run("train", books, *QUICK, "--out", tmp_path, "--steps", 40, "--eval-every", 10,
                 "--lr-schedule", schedule, "--warmup-steps", 5, "--lr-min", 1e-4,
                 "--lr-decay-frac", 0.5)
    assert result.exit_code == 0, result.output
    cfg = config.load(TINY)
    at = dict(schedule=schedule, total_steps=40, warmup_steps=5, lr_min=1e-4, decay_frac=0.5)
    lrs = [json.loads(line)["lr"] for line in open(tmp_path / "metrics.jsonl")]
    assert lrs == [pytest.approx(optim.lr_at(s - 1, cfg.lr, **at)) for s in (10, 20, 30, 40)]
    assert optim.lr_at(40, cfg.lr, **at) == pytest.approx(1e-4)
    if schedule == "wsd":  # held through step 22 (5 + half of the 35 after warmup), then falling
        assert lrs[0] == lrs[1] == pytest.approx(cfg.lr) and lrs[2] < cfg.lr


def test_time_limit_notice_in_a_run(books, tmp_path):
    result = run("train", books, *QUICK, "--out", tmp_path, "--steps", 10**6,
                 "--lr-schedule", "cosine", "--time-limit", 2, "--eval-every", 10**6)
    assert result.exit_code == 0, result.output
    assert "time limit stops the run near step" in result.stderr
    fits = run("train", books, *QUICK, "--out", tmp_path / "b", "--steps", 60,
               "--lr-schedule", "cosine", "--time-limit", 300)
    assert fits.exit_code == 0 and "time limit stops" not in fits.stderr


def test_steps_auto_is_not_told_that_its_limit_cuts_its_schedule(books, tmp_path):
    """Steps fitted to the limit by steps: auto's probe get no notice that the limit cuts them:
    the notice once timed the probe as the run's first steps and told every fitted cosine run
    it would stop near half its steps; then, timing the run's own first 50 steps (with their
    warm-up), it told a run of 0.6 ms steps it would stop at 91% of them, and the run ended
    all of them in time."""
    result = run("train", books, *QUICK, "--out", tmp_path, "--steps", "auto",
                 "--lr-schedule", "cosine", "--time-limit", 4, "--eval-every", 10**6)
    assert result.exit_code == 0, result.output
    assert "steps: auto ->" in result.stderr and "time limit stops" not in result.stderr


@pytest.mark.parametrize("steps", ["60", "auto"])
def test_a_time_limit_shorter_than_a_step_still_trains_one_and_saves_it(books, tmp_path, steps):
    """A run never reports success with nothing saved: the limit is checked only after a first
    step, which is evaluated and saved like any closing step."""
    result = run("train", books, *QUICK, "--out", tmp_path, "--steps", steps,
                 "--time-limit", 0.001)
    assert result.exit_code == 0, result.output
    assert "done: step 1, best validation loss" in result.stderr
    assert "inf" not in result.stderr.split("done:")[1]
    for name in ("last.npz", "best.npz"):
        ck = checkpoint.load(tmp_path / name)
        assert ck.step == 1 and math.isfinite(ck.record["val_loss"])


def test_a_warmup_longer_than_the_run_is_warned_about(books, tmp_path):
    result = run("train", books, *QUICK, "--out", tmp_path, "--steps", 20, "--eval-every", 20,
                 "--warmup-steps", 50)
    assert result.exit_code == 0, result.output
    assert "Warning: warmup_steps (50) is not below steps (20)" in result.stderr


def test_patience_ends_the_run_normally(books, tmp_path, monkeypatch):
    losses = iter([3.0, 2.5, 2.6, 2.7, 2.4, 2.3, 2.2])  # best at the 2nd, then two worse
    monkeypatch.setattr(training.Run, "validation_loss", lambda self: next(losses))
    result = run("train", books, *QUICK, "--out", tmp_path, "--steps", 70, "--eval-every", 10,
                 "--patience", 2)
    assert result.exit_code == 0, result.output
    assert "stopping early" in result.stderr
    steps = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
    assert steps == [10, 20, 30, 40]
    assert checkpoint.load(tmp_path / "last.npz").step == 40
    best = checkpoint.load(tmp_path / "best.npz")
    assert best.step == 20 and best.best_val == 2.5


# ---- the validation split and tiny vocabularies ---------------------------------------------

def test_training_warns_about_a_tiny_validation_split(books, tmp_path):
    result = run("train", books, *QUICK, "--val-frac", 0.0005, "--out", tmp_path, "--steps", 5,
                 "--eval-every", 5)
    assert result.exit_code == 0, result.output
    assert "Warning: the validation split has 20 characters" in result.stderr
    assert np.isfinite(checkpoint.load(tmp_path / "last.npz").best_val)


def test_validation_split_too_short_to_score(unchanged, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abcdefghij" * 200)  # 2,000 characters: 1% is 20, 0.04% is 0
    assert_one_line_error(run_overwriting("train", path, *TEN_STEPS, "--out", unchanged,
                                          "--val-frac", 0.0004),
                          "validation split has 0 characters")


def test_single_distinct_character_trains(tmp_path):
    """Decided: not an error. The next character is certain, so the loss is exactly 0."""
    path = tmp_path / "a.txt"
    path.write_text("a" * 3000)
    out = tmp_path / "run"
    result = run_overwriting("train", path, *TEN_STEPS, "--out", out)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert records[-1]["val_loss"] == 0.0 and records[-1]["train_loss"] == 0.0
    sample = run("sample", "--ckpt", out / "best.npz", "--length", 20, "--seed", 1)
    assert sample.exit_code == 0 and sample.stdout == "a" * 20 + "\n"


# ---- the progress bar -----------------------------------------------------------------------

class _Stream:
    """A text stream that says whether it is a terminal."""

    def __init__(self, terminal):
        self.text, self.terminal = [], terminal

    def write(self, s):
        self.text.append(s)

    def flush(self):
        pass

    def isatty(self):
        return self.terminal


@pytest.mark.parametrize("terminal", [False, True])
def test_the_progress_bar_leaves_an_error_a_line_of_its_own(monkeypatch, terminal):
    stream = _Stream(terminal)
    monkeypatch.setattr("sys.stderr", stream)
    with pytest.raises(RuntimeError):
        with training.Progress(total=3, initial=0, enabled=True) as bar:
            bar.bar.update(1)
            raise RuntimeError("ended")
    stream.write("Error: ended\n")
    text = "".join(stream.text)
    assert "0/3 [" in text  # the bar was drawn
    if terminal:  # close() cleared its line with a carriage return; nothing more is needed
        assert text.endswith("\rError: ended\n")
    else:  # on a pipe the bar's line ends first
        assert text.split("\n")[-2] == "Error: ended"


def test_a_disabled_progress_bar_writes_nothing(monkeypatch):
    stream = _Stream(False)
    monkeypatch.setattr("sys.stderr", stream)
    with training.Progress(total=3, initial=0, enabled=False) as bar:
        bar.bar.update(1)
    assert "".join(stream.text) == ""
