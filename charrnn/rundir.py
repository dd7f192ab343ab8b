"""The one owner of a run directory RUN/: its file names, the lock that keeps one training per
folder, the metrics log and the pruning of periodic checkpoints (each file written whole through
atomic.py; a training run's writes come through writer.py).

RUN/ holds config.yaml (the resolved config), metrics.jsonl (one JSON line per evaluation),
last.npz, best.npz, the periodic step-NNNNNN.npz that `keep_last` prunes, and .lock.
"""
import contextlib
import json
import os
import re
import tempfile
import time

from . import atomic
from .errors import CharrnnError

try:
    import fcntl
except ImportError:  # Windows: no flock; one training per folder is then the user's care
    fcntl = None

CONFIG, METRICS, LAST, BEST, LOCK = "config.yaml", "metrics.jsonl", "last.npz", "best.npz", ".lock"
PERIODIC = re.compile(r"step-(\d+)\.npz")


def _record(line):
    """One line of metrics.jsonl (bytes) -> its record, or None when it is not a record."""
    try:
        rec = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(rec, dict) or type(rec.get("step")) is not int or rec["step"] < 0:
        return None
    numbers = [rec.get(k) for k in ("chars", "train_loss", "val_loss")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        return None
    return rec


def folder_of(path):
    """The run folder a user means by path: the folder itself, or the folder of a file in it
    (RUN/best.npz, RUN/metrics.jsonl), as every command that takes a checkpoint invites."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return path
    if not os.path.exists(path):
        raise CharrnnError(f"{path} does not exist")
    return os.path.dirname(path) or "."


HOLDER_WAIT = 0.5  # seconds a refused run waits for the lock's holder to name itself


def process_alive(pid):
    """Whether a process with this PID exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class RunDir:
    """A run directory: paths of its files, and what reads and writes them."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._lock_fd = None

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def last(self):
        return self.file(LAST)

    @property
    def best(self):
        return self.file(BEST)

    @property
    def metrics(self):
        return self.file(METRICS)

    def periodic(self, step):
        return self.file(f"step-{step:06d}.npz")

    def holds_run(self):
        return os.path.exists(self.last)

    # -- taking the folder ---------------------------------------------------------------------

    def claim(self, fresh, overwrite=False):
        """Create the folder, check it is writable and lock it for this process.

        fresh: a new run (not a resume). A fresh run refuses a folder that already holds one
        unless overwrite (the new run calls start_fresh() once it is ready to train). The check
        comes after the lock, so two trainings started at the same instant cannot both pass it.
        Release with release() (or use the RunDir as a context).
        """
        try:
            os.makedirs(self.path, exist_ok=True)
            # a name of its own: two runs probing one shared name removed each other's file
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=self.path)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise CharrnnError(f"run directory {self.path} is not writable: "
                               f"{e.strerror or e}") from None
        self._lock()
        self._remove_leftovers()
        try:
            if fresh and not overwrite:
                self.refuse_a_run()
        except BaseException:
            self.release()
            raise
        return self

    def _remove_leftovers(self):
        """Remove the temporary files of a writer killed mid-save (SIGKILL, or mpiexec ending a
        job whose rank died): only the lock's holder saves here, so none of them is live. (The
        .write-test- probes are left alone: another process may be probing before its lock.)"""
        for name in os.listdir(self.path):
            if atomic.is_temporary(name):
                with contextlib.suppress(OSError):
                    os.unlink(self.file(name))

    def refuse_a_run(self):
        """A CharrnnError when the folder already holds a run (its last.npz)."""
        if self.holds_run():
            raise CharrnnError(
                f"{self.path} already holds a run ({self.last}); continue it with "
                f"--resume {self.last}, choose another --out, or pass --overwrite")

    def start_fresh(self):
        """Remove an earlier run's checkpoints and log, so that every file in the folder belongs
        to the run starting now. Called only once that run is ready to train, so a run that fails
        to start leaves an earlier one as it was."""
        names = [LAST, BEST, METRICS] + [n for n in os.listdir(self.path) if PERIODIC.fullmatch(n)]
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.file(name))

    def _lock(self):
        """An exclusive flock on RUN/.lock, holding this process's PID. The kernel drops it when
        the process ends, however it ends, so a killed run never leaves a stale lock (only,
        perhaps, the file, which the next run takes over).

        release() removes the file. A process that opened it just before could then hold a lock
        on a file no longer in the folder while a third locks a new one, so a lock counts only
        once the path still names the file locked; otherwise it is taken again.

        The holder writes its PID just after taking the lock, over whatever a killed run left
        there, so a run refused at that moment reads an empty file or a dead process's PID (one
        start in thirty, two racing at once): it tries again until the file names a live
        process or the lock is free, for at most HOLDER_WAIT seconds."""
        if fcntl is None:
            return
        path = self.file(LOCK)
        deadline = time.monotonic() + HOLDER_WAIT
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise CharrnnError(f"cannot lock {self.path}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                os.close(fd)
                if holder.isdigit() and process_alive(int(holder)):
                    raise CharrnnError(f"{self.path} is in use by process {holder}") from None
                if time.monotonic() >= deadline:
                    raise CharrnnError(f"{self.path} is in use by another process") from None
                time.sleep(0.001)  # the holder is writing its PID, or has just gone: again
                continue
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder released and removed it meanwhile: lock the new one
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError:
            pass  # a full disk: the lock holds all the same; a refused run names no PID

    def release(self):
        """Give the folder up: remove the lock file, then unlock (in that order, see _lock)."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):  # the folder may be gone or read-only by now
                os.unlink(self.file(LOCK))
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    # -- the metrics log -----------------------------------------------------------------------

    def append_metrics(self, rec):
        """Add one JSON line (after its checkpoint is on disk); a failure is a CharrnnError."""
        try:
            with open(self.metrics, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
        except OSError as e:
            raise CharrnnError(f"could not write {self.metrics}: {e.strerror or e}; the "
                               f"checkpoints of step {rec['step']} are saved, the log lacks "
                               f"their line") from None

    def read_metrics(self, on_damaged=None):
        """The log's records, in order. A line that is not one (not UTF-8, not JSON, not an
        object with an int step and numbers for chars, train_loss and val_loss: a write cut
        short, or an edit) is skipped, and on_damaged(line_number), when given, is told of it.
        The one reader of metrics.jsonl: resuming, `charrnn plot` and the API all read it here.
        """
        try:
            with open(self.metrics, "rb") as f:
                lines = f.read().split(b"\n")
        except FileNotFoundError:
            return []
        except OSError as e:
            raise CharrnnError(f"cannot read {self.metrics}: {e.strerror or e}") from None
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            rec = _record(line)
            if rec is not None:
                records.append(rec)
            elif on_damaged is not None:
                on_damaged(number)
        return records

    def resume_metrics(self, resume_step, eval_every, record=None):
        """Cut the log back for a run resumed at resume_step: it keeps the lines of the steps
        before it, and the line at it when that is on the evaluation grid (a multiple of the
        checkpoint's eval_every); a line off the grid was the closing evaluation of a run that
        stopped between evaluations, which an uninterrupted run would not have made. The line at
        resume_step is the checkpoint's own record when it has one, so a line that a crash kept
        from the log after its checkpoint was saved comes back."""
        on_grid = resume_step % eval_every == 0
        kept = [r for r in self.read_metrics() if r["step"] < resume_step
                or (on_grid and r["step"] == resume_step and record is None)]
        if on_grid and record is not None:
            kept.append(record)
        if kept or os.path.exists(self.metrics):
            atomic.write_text_atomic(self.metrics, "".join(json.dumps(r) + "\n" for r in kept))

    # -- periodic checkpoints ------------------------------------------------------------------

    def prune_periodic(self, step, keep):
        """Delete periodic checkpoints so that only the `keep` most recent up to `step` remain.

        Files past `step` (left by a run resumed from an earlier checkpoint) are not counted, and
        last.npz and best.npz never match the pattern, so they are never deleted.
        """
        found = sorted((int(m.group(1)), name) for name in os.listdir(self.path)
                       if (m := PERIODIC.fullmatch(name)) and int(m.group(1)) <= step)
        for _, name in found[:max(len(found) - keep, 0)]:
            with contextlib.suppress(OSError):  # one checkpoint too many is no reason to stop
                os.unlink(self.file(name))
