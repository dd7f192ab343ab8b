"""The run folder (rundir.py): pruning the periodic checkpoints, the leftovers of a writer
killed mid-save, the metrics log cut back for a resume. The lock has tests/test_lock.py."""
import json
import os

from charrnn import atomic, rundir


def test_pruning_ignores_checkpoints_past_the_current_step(tmp_path):
    for step in (5, 10, 15, 40, 45):  # 40 and 45: left by the run before a resume from 15
        (tmp_path / f"step-{step:06d}.npz").write_bytes(b"")
    for name in ("last.npz", "best.npz", "step-x.npz"):
        (tmp_path / name).write_bytes(b"")
    rundir.RunDir(tmp_path).prune_periodic(15, keep=1)
    assert sorted(os.listdir(tmp_path)) == ["best.npz", "last.npz", "step-000015.npz",
                                            "step-000040.npz", "step-000045.npz", "step-x.npz"]


def test_taking_the_folder_removes_a_killed_writers_temporary_files(tmp_path):
    """A writer killed between write_atomic's temporary file and its rename (SIGKILL, or an MPI
    job ended mid-save) leaves the file behind; the next run to lock the folder removes it, since
    only the lock's holder writes there. Nothing else in the folder is touched, a user's own
    files named like it included."""
    pid = os.fork()
    if pid == 0:  # a writer that dies in the middle of its save
        try:
            atomic.write_atomic(tmp_path / "last.npz", lambda f: os._exit(9))
        finally:
            os._exit(1)  # never back into pytest
    os.waitpid(pid, 0)
    stale, = os.listdir(tmp_path)
    assert atomic.is_temporary(stale)
    kept = ["last.npz", ".tmpfile-of-the-user", ".tmp-notes.txt", ".tmp-abc", "notes.txt"]
    for name in kept:
        (tmp_path / name).write_bytes(b"kept")
    with rundir.RunDir(tmp_path).claim(fresh=False):
        assert not (tmp_path / stale).exists()
    assert sorted(os.listdir(tmp_path)) == sorted(kept)


def record(step, val_loss=1.0):
    return {"step": step, "chars": 100 * step, "train_loss": 1.5, "val_loss": val_loss}


def test_log_cut_back_for_a_resume(tmp_path):
    log = tmp_path / "metrics.jsonl"
    lines = [json.dumps(record(s)) for s in (5, 10, 12, 15)]
    log.write_text("\n".join(lines) + '\n{"step": 20, "val_lo')  # the last write was cut short
    cut = log.read_text()
    # resumed at 12, off the grid of 5: the closing evaluation at 12 goes too
    rundir.RunDir(tmp_path).resume_metrics(12, 5)
    assert log.read_text() == "".join(line + "\n" for line in lines[:2])
    log.write_text(cut)
    rundir.RunDir(tmp_path).resume_metrics(15, 5)
    assert log.read_text() == "".join(line + "\n" for line in lines)
    # the checkpoint's own line wins over the log's, and comes back when the log lost it
    log.write_text(cut)
    rundir.RunDir(tmp_path).resume_metrics(15, 5, record(15, 2.0))
    assert json.loads(log.read_text().splitlines()[-1]) == record(15, 2.0)
    log.write_text("\n".join(lines[:3]) + "\n")
    rundir.RunDir(tmp_path).resume_metrics(15, 5, record(15))
    assert log.read_text() == "".join(line + "\n" for line in lines)
    rundir.RunDir(tmp_path / "none").resume_metrics(15, 5)  # no log: nothing to cut
    assert not (tmp_path / "none" / "metrics.jsonl").exists()
