"""Runs that survive: exact resume, Ctrl-C, SIGTERM, non-finite losses, failed saves, --keep-last.

The exactness tests run the CLI in subprocesses with single-threaded BLAS, because the number
of threads can change the order of float sums and so the last bits of the weights.
"""
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from charrnn import checkpoint, cli, model, training
from clihelp import ROOT, TINY, assert_one_line_error, run

# two stacked LSTM layers with dropout: the carried (h, c) state and the dropout generator must
# both come back from the checkpoint; a 4,000-character corpus makes the streams wrap (24
# windows per epoch) so the data position and the state reset at the wrap are exercised too;
# warmup and step decay put the learning-rate schedule's position to the test
EXACT = ["--config", TINY, "--cell", "lstm", "--layers", 2, "--dropout", 0.1,
         "--eval-every", 5, "--sample-length", 0, "--lr-schedule", "step", "--warmup-steps", 4,
         "--lr-decay-every", 7, "--lr-decay", 0.7]
TIMING = ("elapsed",)


@pytest.fixture(scope="module")
def small_corpus(shakespeare_excerpt):
    return shakespeare_excerpt(4000)


def single_threaded():
    # read at call time: conftest points the corpus cache elsewhere after this module loads
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


def cli_process(*args):
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], cwd=ROOT,
                          env=single_threaded(), capture_output=True, text=True, timeout=300)


def arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


def snapshot(run_dir):
    """name -> bytes of every file in run_dir but the lock, which exists while a run trains."""
    return {name: open(os.path.join(run_dir, name), "rb").read()
            for name in sorted(os.listdir(run_dir)) if name != ".lock"}


def assert_same_run(a_dir, b_dir):
    """last.npz, best.npz and metrics.jsonl agree exactly but for timing, `out` and `steps`."""
    for name in ("last.npz", "best.npz"):
        a, b = arrays(os.path.join(a_dir, name)), arrays(os.path.join(b_dir, name))
        assert set(a) == set(b)
        for k in a:
            if k == "config":
                ca, cb = (json.loads(str(x[k])) for x in (a, b))
                for d in (ca, cb):
                    del d["out"], d["steps"]
                assert ca == cb
            elif k not in TIMING:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}: {k}")
    assert metrics(a_dir) == metrics(b_dir)


def no_temporary_files(run_dir):
    return [n for n in os.listdir(run_dir) if n.startswith(".tmp") or n.endswith(".tmp")] == []


@pytest.fixture(scope="module")
def uninterrupted(small_corpus, tmp_path_factory):
    """N = 40 steps in one go, to compare the resumed runs with."""
    out = tmp_path_factory.mktemp("whole")
    result = cli_process("train", small_corpus, *EXACT, "--out", out, "--steps", 40)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("k", [15, 17])  # 17: stopped between evaluations
def test_resume_equals_an_uninterrupted_run(small_corpus, uninterrupted, tmp_path, k):
    out = tmp_path / "run"
    first = cli_process("train", small_corpus, *EXACT, "--out", out, "--steps", k)
    assert first.returncode == 0, first.stderr
    records = metrics(out)
    assert records[-1]["step"] == k
    # an evaluation between multiples of eval_every (k = 17) is provisional: best_val ignores it
    grid_best = min(r["val_loss"] for r in records if r["step"] % 5 == 0)
    assert checkpoint.load(out / "last.npz").best_val == grid_best
    # the same config file again, only --steps changed: it counts the whole run
    second = cli_process("train", small_corpus, *EXACT, "--resume", out / "last.npz",
                         "--steps", 40)
    assert second.returncode == 0, second.stderr
    assert f"resuming at step {k} of 40" in second.stderr
    assert [r["step"] for r in metrics(out)] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert_same_run(out, uninterrupted)


REGULARIZERS = {"weight_drop": ["--weight-drop", 0.3], "locked": ["--dropout-mode", "locked"],
                "weight_decay": ["--weight-decay", 0.1], "ema": ["--ema", 0.9]}


def stopped_at_12_and_resumed_to_20(corpus, args, tmp_path):
    """Train `args` to step 20 in one go and, in another folder, to 12 then resumed to 20; assert
    the two runs' files are the same and return the resumed run's folder."""
    whole, part = tmp_path / "whole", tmp_path / "part"
    for out, steps in ((whole, 20), (part, 12)):
        done = cli_process("train", corpus, *args, "--out", out, "--steps", steps)
        assert done.returncode == 0, done.stderr
    second = cli_process("train", corpus, *args, "--resume", part / "last.npz", "--steps", 20)
    assert second.returncode == 0, second.stderr
    assert_same_run(part, whole)
    return part


@pytest.mark.parametrize("regularizer", sorted(REGULARIZERS))
def test_resume_is_exact_with_each_regularizer(small_corpus, tmp_path, regularizer):
    """Stopped at step 12 (between evaluations) and resumed to 20: the masks' generator, the
    decayed weights and the moving average (ema/ in every checkpoint) come back as they were."""
    out = stopped_at_12_and_resumed_to_20(small_corpus, [*EXACT, *REGULARIZERS[regularizer]],
                                          tmp_path)
    if regularizer == "ema":
        assert "ema/Wy" in arrays(out / "last.npz")
        assert all({"val_loss_raw", "val_loss_ema", "weights"} <= set(r) for r in metrics(out))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_last_and_resume_is_exact(small_corpus, tmp_path, sig):
    out = tmp_path / "run"
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "charrnn", "train", str(small_corpus), *map(str, EXACT),
             "--out", str(out), "--steps", "1000000"], cwd=ROOT, env=single_threaded(),
            stderr=err)
        try:
            deadline = time.time() + 60
            log = out / "metrics.jsonl"
            while not log.exists() or log.read_text().count("\n") < 2:  # evaluated at step 10
                assert proc.poll() is None and time.time() < deadline
                time.sleep(0.01)
            proc.send_signal(sig)
            assert proc.wait(timeout=60) == 128 + sig
        finally:
            if proc.poll() is None:  # a failed test must not leave a training run behind
                proc.kill()
                proc.wait()
    stderr = (tmp_path / "stderr").read_text()
    assert "Traceback" not in stderr
    assert f"saved {out / 'last.npz'}" in stderr
    assert no_temporary_files(out)
    k = int(arrays(out / "last.npz")["step"])
    assert 10 <= k < 1000000
    n = k + 13  # ends between evaluations, and the log must still match
    resumed = cli_process("train", small_corpus, *EXACT, "--resume", out / "last.npz",
                          "--steps", n)
    assert resumed.returncode == 0, resumed.stderr
    whole = tmp_path / "whole"
    assert cli_process("train", small_corpus, *EXACT, "--out", whole, "--steps", n).returncode == 0
    assert_same_run(out, whole)


def test_second_ctrl_c_during_the_save_changes_nothing(small_corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_step, real_savez = training.Run.train_step, np.savez

    def step_then_ctrl_c(self, *votes):
        result = real_step(self, *votes)
        if self.state.step == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    def savez_under_fire(f, **arrs):
        if arrs["step"] != 7:
            return real_savez(f, **arrs)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again, while last.npz is being written
        real_savez(f, **arrs)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(training.Run, "train_step", step_then_ctrl_c)
    monkeypatch.setattr(np, "savez", savez_under_fire)
    handler_before = signal.getsignal(signal.SIGINT)
    result = run("train", small_corpus, *EXACT, "--out", out, "--steps", 100)
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output and "still stopping" in result.stderr
    assert signal.getsignal(signal.SIGINT) is handler_before  # the handler is put back
    ck = checkpoint.load(out / "last.npz")
    assert ck.step == 7 and ck.loss_count == 2  # steps 6 and 7, since the evaluation at 5
    assert no_temporary_files(out)


def test_ctrl_c_before_training_exits_130(small_corpus, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli.config_mod, "load", interrupted)
    result = run("train", small_corpus, "--out", tmp_path / "run")
    assert result.exit_code == 130 and "Interrupted." in result.stderr
    assert not (tmp_path / "run").exists()


def test_non_finite_loss_stops_and_keeps_the_checkpoints(small_corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_forward, calls, saved = model.forward, [], {}

    def forward(*args, **kwargs):
        loss, state, cache = real_forward(*args, **kwargs)
        calls.append(1)
        if len(calls) == 12:
            saved.update(snapshot(out))
            return float("nan"), state, cache
        return loss, state, cache

    monkeypatch.setattr(model, "forward", forward)
    result = run("train", small_corpus, *EXACT, "--out", out, "--steps", 20)
    assert_one_line_error(result, "non-finite", "step 12", "not applied", before="log")
    assert snapshot(out) == saved and {"last.npz", "best.npz"} <= set(saved)
    assert int(arrays(out / "last.npz")["step"]) == 10


def test_really_diverging_run_exits_non_zero(small_corpus, tmp_path):
    out = tmp_path / "run"
    result = run("train", small_corpus, "--config", TINY, "--out", out, "--steps", 30,
                 "--eval-every", 1, "--optimizer", "sgd", "--lr", 1e36, "--clip", 0,
                 "--sample-length", 0)
    # the first update throws the weights far out: the first evaluation's loss, finite but
    # past the divergence limit, stops the run before that model is saved
    assert_one_line_error(result, "the run diverged", "the validation loss at step 1",
                          before="log")
    assert not [name for name in os.listdir(out) if name.endswith(".npz")]
    assert not (out / "metrics.jsonl").exists() or metrics(out) == []


def test_keep_last_keeps_the_most_recent_and_never_last_or_best(small_corpus, tmp_path):
    out = tmp_path / "run"
    assert run("train", small_corpus, *EXACT, "--out", out, "--steps", 30,
               "--keep-last", 2).exit_code == 0
    assert sorted(os.listdir(out)) == ["best.npz", "config.yaml", "last.npz", "metrics.jsonl",
                                       "step-000025.npz", "step-000030.npz"]
    assert checkpoint.load(out / "step-000025.npz").step == 25
    other = tmp_path / "none"
    assert run("train", small_corpus, *EXACT, "--out", other, "--steps", 10).exit_code == 0
    assert not [n for n in os.listdir(other) if n.startswith("step-")]
    assert run("train", small_corpus, "--keep-last", -1).exit_code == 1


def test_resume_from_an_earlier_checkpoint_rewrites_the_log(small_corpus, tmp_path):
    out = tmp_path / "run"
    assert cli_process("train", small_corpus, *EXACT, "--out", out, "--steps", 30,
                       "--keep-last", 5).returncode == 0
    whole = tmp_path / "whole"
    shutil.copytree(out, whole)
    # going back to step 10 drops the log lines after it; the repeated steps give them again
    resumed = cli_process("train", small_corpus, *EXACT, "--resume", out / "step-000010.npz",
                          "--steps", 30, "--keep-last", 5)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(out, whole)
    np.testing.assert_array_equal(arrays(out / "step-000020.npz")["param/Wy"],
                                  arrays(whole / "step-000020.npz")["param/Wy"])


@pytest.fixture
def ten_steps(small_corpus, tmp_path):
    out = tmp_path / "run"
    result = run("train", small_corpus, *EXACT, "--out", out, "--steps", 10)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("flags, fragments", [
    (["--hidden-size", 64], ["hidden_size (32 in the checkpoint, 64 now)"]),
    (["--cell", "gru"], ["cell"]),
    (["--batch-size", 4], ["batch_size"]),
    (["--seed", 7], ["seed"]),
    (["--optimizer", "sgd"], ["optimizer"]),
    (["--steps", 10], ["nothing to do"]),
    (["--out", "elsewhere"], ["checkpoint's folder"]),
])
def test_resume_refuses_changes_that_break_it(small_corpus, ten_steps, flags, fragments):
    before = snapshot(ten_steps)
    result = run("train", small_corpus, *EXACT, "--resume", ten_steps / "last.npz", *flags)
    assert_one_line_error(result, *fragments)
    assert snapshot(ten_steps) == before


def test_resume_refuses_another_corpus(small_corpus, ten_steps, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(small_corpus.read_text()[::-1], encoding="utf-8")  # same characters
    before = snapshot(ten_steps)
    result = run("train", other, *EXACT, "--resume", ten_steps / "last.npz", "--steps", 20)
    assert_one_line_error(result, "different corpus")
    assert snapshot(ten_steps) == before


def test_resume_may_change_training_options(small_corpus, ten_steps):
    result = run("train", small_corpus, *EXACT, "--resume", ten_steps / "last.npz",
                 "--steps", 20, "--lr", 1e-3, "--clip", 1, "--eval-every", 4, "--time-limit", 60)
    assert result.exit_code == 0, result.output
    assert "lr 0.005 -> 0.001" in result.stderr
    assert [r["step"] for r in metrics(ten_steps)] == [5, 10, 12, 16, 20]
    assert checkpoint.load(ten_steps / "last.npz").config.lr == 1e-3


def test_resume_and_init_from_together_is_refused_in_one_line(small_corpus, ten_steps):
    ck = ten_steps / "last.npz"
    assert_one_line_error(run("train", small_corpus, "--resume", ck, "--init-from", ck),
                          "--resume and --init-from cannot be used together")


def test_init_from_starts_a_new_run_from_the_weights(small_corpus, ten_steps, tmp_path):
    from charrnn import config, corpus
    ck = checkpoint.load(ten_steps / "last.npz")
    cfg = config.load(None, {"out": str(tmp_path / "ft")}, base=ck.config)
    fresh = training.Run(cfg, corpus.load(str(small_corpus), vocab=ck.vocab), init_ck=ck)
    assert fresh.state.step == 0 and int(fresh.state.optim_state["t"]) == 0
    for k, v in ck.params.items():
        np.testing.assert_array_equal(fresh.state.params[k], v)
    # fine-tuning on part of the text: fewer distinct characters, the checkpoint's vocabulary
    part = tmp_path / "part.txt"
    part.write_text(small_corpus.read_text()[:3000].replace("Z", "z"), encoding="utf-8")
    ft = tmp_path / "ft"
    result = run("train", part, "--init-from", ten_steps / "last.npz", "--out", ft,
                 "--steps", 5, "--lr", 1e-3)
    assert result.exit_code == 0, result.output
    new = checkpoint.load(ft / "last.npz")
    assert new.step == 5 and new.vocab == ck.vocab and new.config.cell == "lstm"
    assert [r["step"] for r in metrics(ft)] == [5]


def test_init_from_refusals(small_corpus, ten_steps, tmp_path):
    ck = ten_steps / "last.npz"
    alien = tmp_path / "alien.txt"
    alien.write_text(small_corpus.read_text() + "caf\u00e9 \u2603\n", encoding="utf-8")
    assert_one_line_error(run("train", alien, "--init-from", ck, "--out", tmp_path / "a"),
                          "'é'", "'☃'")
    assert_one_line_error(run("train", small_corpus, "--init-from", ck, "--out", tmp_path / "b",
                              "--hidden-size", 16), "model shape", "hidden_size")
    before = snapshot(ten_steps)
    assert_one_line_error(run("train", small_corpus, "--init-from", ck, "--out", ten_steps),
                          "another --out")
    assert snapshot(ten_steps) == before


# --- failed saves, for real ---------------------------------------------------------------

@contextlib.contextmanager
def read_only(path):
    """Make the directory path read-only: chmod, or for root (whom modes do not stop) a
    read-only bind mount; skip the test when neither is possible."""
    if os.geteuid() != 0:
        os.chmod(path, 0o555)
        try:
            yield
        finally:
            os.chmod(path, 0o755)
        return
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "--bind", "-o", "ro", str(path), str(path)], capture_output=True).returncode:
        pytest.skip("running as root and cannot mount a read-only directory")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_read_only_run_directory_is_refused_before_training(small_corpus, ten_steps):
    before = snapshot(ten_steps)
    with read_only(ten_steps):
        result = run("train", small_corpus, *EXACT, "--resume", ten_steps / "last.npz",
                     "--steps", 20)
    assert_one_line_error(result, "not writable")
    assert snapshot(ten_steps) == before


def _fail_after_first_evaluation(monkeypatch, act):
    """Call act() once, when the CLI logs the evaluation at step 5; return what it saved."""
    real_echo, saved = training.echo_stderr, {}

    def echo(text):
        real_echo(text)
        if text.startswith("step 5:") and not saved:
            saved["run"] = act()
    monkeypatch.setattr(training, "echo_stderr", echo)
    return saved


def test_directory_turning_read_only_mid_run(small_corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    with contextlib.ExitStack() as stack:
        def lock():
            files = snapshot(out)
            stack.enter_context(read_only(out))
            return files
        saved = _fail_after_first_evaluation(monkeypatch, lock)
        result = run("train", small_corpus, *EXACT, "--out", out, "--steps", 20)
        assert_one_line_error(result, "could not", "previous checkpoint is kept",
                              before="log")
        files = snapshot(out)
        for name in ("last.npz", "best.npz", "config.yaml"):
            assert files[name] == saved["run"][name]
        assert no_temporary_files(out)


def test_run_directory_removed_mid_run(small_corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _fail_after_first_evaluation(monkeypatch, lambda: shutil.rmtree(out))
    result = run("train", small_corpus, *EXACT, "--out", out, "--steps", 20)
    assert_one_line_error(result, "could not", str(out), before="log")


@pytest.mark.parametrize("where", ["write", "rename"])
def test_save_failing_part_way_keeps_the_previous_checkpoints(small_corpus, tmp_path,
                                                               monkeypatch, where):
    out = tmp_path / "run"
    real_savez, real_replace, saved = np.savez, os.replace, {}

    def savez(f, **arrs):
        if arrs["step"] == 10 and where == "write":
            saved.update(snapshot(out))
            f.write(b"PK\x03\x04" + bytes(1000))  # a partial archive, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_savez(f, **arrs)

    def replace(src, dst):
        if str(dst).endswith("last.npz") and where == "rename" and (
                checkpoint.load(src).step == 10):
            saved.update(snapshot(out))
            raise PermissionError(errno.EACCES, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(np, "savez", savez)
    monkeypatch.setattr(os, "replace", replace)
    result = run("train", small_corpus, *EXACT, "--out", out, "--steps", 20)
    assert_one_line_error(result, "could not save checkpoint", "previous checkpoint is kept",
                          before="log")
    files = snapshot(out)
    assert {"last.npz", "best.npz"} <= set(saved)
    for name in ("last.npz", "best.npz"):
        assert files[name] == saved[name]
    assert no_temporary_files(out)
    assert checkpoint.load(out / "last.npz").step == 5


def test_checkpoints_are_not_private_files(small_corpus, ten_steps):
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(ten_steps / "last.npz").st_mode & 0o777 == 0o666 & ~mask


def test_resume_from_an_older_checkpoint_keeps_a_better_best(small_corpus, tmp_path):
    """Going back to a periodic checkpoint must not let a worse model replace best.npz."""
    out = tmp_path / "run"
    first = cli_process("train", small_corpus, *EXACT, "--out", out, "--steps", 40,
                        "--keep-last", 8)
    assert first.returncode == 0, first.stderr
    best_before = (out / "best.npz").read_bytes()
    best = checkpoint.load(out / "best.npz")
    old = checkpoint.load(out / "step-000010.npz")
    assert best.best_val < old.best_val  # 40 steps of training beat 10
    second = cli_process("train", small_corpus, *EXACT, "--resume", out / "step-000010.npz",
                         "--steps", 20)
    assert second.returncode == 0, second.stderr
    assert "holds a better model than this checkpoint's best" in second.stderr
    vals = [r["val_loss"] for r in metrics(out)]
    assert [r["step"] for r in metrics(out)] == [5, 10, 15, 20]
    # the resumed steps improved on the old checkpoint's best but not on best.npz's: without
    # the guard best.npz would now hold step 15's or 20's weights
    assert min(vals[2:]) < old.best_val and min(vals[2:]) > best.best_val
    assert (out / "best.npz").read_bytes() == best_before


def test_resume_past_an_unreadable_best(small_corpus, ten_steps):
    """A broken best.npz does not block a resume: a warning, and the run's next best replaces it."""
    (ten_steps / "best.npz").write_bytes(b"not a checkpoint")
    result = run("train", small_corpus, *EXACT, "--resume", ten_steps / "last.npz", "--steps", 15)
    assert result.exit_code == 0, result.output
    assert "Warning: checkpoint" in result.stderr and "will replace it" in result.stderr
    assert checkpoint.load(ten_steps / "best.npz").step == 15


def test_save_failing_before_any_checkpoint_says_none_is_kept(small_corpus, tmp_path,
                                                               monkeypatch):
    """Issue 15, point 5: the first save fails, so no checkpoint is kept, and the log has no
    line for an evaluation whose model is not on disk."""
    out = tmp_path / "run"
    real_savez = np.savez

    def savez(f, **arrs):
        if arrs["step"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_savez(f, **arrs)

    monkeypatch.setattr(np, "savez", savez)
    result = run("train", small_corpus, *EXACT, "--out", out, "--steps", 20)
    assert_one_line_error(result, "could not save checkpoint", "No space left on device",
                          "no checkpoint was there before, so none is kept", before="log")
    assert "previous checkpoint is kept" not in result.stderr
    assert not (out / "last.npz").exists() and not (out / "best.npz").exists()
    logged = metrics(out) if (out / "metrics.jsonl").exists() else []
    assert [r for r in logged if r["step"] == 5] == []
    assert no_temporary_files(out)


def test_every_atomic_write_fsyncs_its_folder_after_the_rename(small_corpus, tmp_path,
                                                                monkeypatch):
    """Issue 15: a crash right after a save must not lose the new name, so each rename is
    followed by an fsync of its folder: checkpoints, the config and the corpus cache."""
    events = []
    real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

    def record_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        events.append(("open", os.path.abspath(os.fspath(path)), fd))
        return fd

    def record_fsync(fd):
        events.append(("fsync", fd))
        return real_fsync(fd)

    def record_replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        events.append(("replace", os.path.abspath(os.fspath(dst))))

    monkeypatch.setattr(os, "open", record_open)
    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    out, cache = tmp_path / "run", tmp_path / "cache"
    result = run("train", small_corpus, *EXACT, "--out", out, "--steps", 5, "--cache-dir", cache)
    monkeypatch.undo()
    assert result.exit_code == 0, result.output
    (cache_name,) = [n for n in os.listdir(cache) if not n.startswith(".")]
    for target in (out / "last.npz", out / "best.npz", out / "config.yaml", cache / cache_name):
        target = str(target)
        renamed = [i for i, e in enumerate(events) if e == ("replace", target)]
        assert renamed, f"{target} was not written by a rename"
        after = events[renamed[-1] + 1:]
        opened = [e[2] for e in after if e[0] == "open" and e[1] == os.path.dirname(target)]
        assert opened, f"the folder of {target} was not opened after its rename"
        fd = opened[0]
        i = after.index(("open", os.path.dirname(target), fd))
        assert ("fsync", fd) in after[i:], f"the folder of {target} was not fsynced"


def test_residual_min_cell_resumes_exactly_and_keeps_its_shape(small_corpus, tmp_path):
    """The residual stack's own arrays (embedding, norms, branches, wide carried state) come
    back from the checkpoint as exactly as the plain stack's, and its shape keys are locked."""
    shape = ["--config", TINY, "--cell", "minlstm", "--layers", 2, "--dropout", 0.1,
             "--stack", "residual", "--expand", 2, "--mlp", 2, "--eval-every", 5,
             "--sample-length", 0]
    part = stopped_at_12_and_resumed_to_20(small_corpus, shape, tmp_path)
    for flags in (["--mlp", 3], ["--expand", 1], ["--stack", "plain", "--expand", 1, "--mlp", 0]):
        result = run("train", small_corpus, *shape, "--resume", part / "last.npz",
                     "--steps", 30, *flags)
        assert_one_line_error(result, flags[0].lstrip("-"))
