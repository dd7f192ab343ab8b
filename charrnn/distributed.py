"""The process group a training run is spread over: one process, or P ranks started by an MPI
launcher (`mpiexec -n P charrnn train ...`), with one interface, so the training loop has one
code path. Process-level like runtime.py: communication, never math.

Data parallelism: every rank holds the whole model and optimizer state and takes a contiguous
block of the batch's N streams (`rows`). A step's gradients, loss and stop votes are summed in
one Allreduce of one flat buffer (`sum_step`), so every rank clips and updates identically.
Rank 0 alone writes the run folder; what it does alone runs through `on_leader`, which tells
every rank whether it succeeded, so a failure there ends every rank the same way.

How a job ends on a fault, with no rank left waiting at a collective:
- an error every rank meets at the same point (a bad config, a failure of rank 0's save, a
  non-finite loss computed from the summed gradients) is raised on every rank: rank 0 reports
  it, the others raise it quietly (GroupError.shown is False), all exit 1 together;
- anything else that escapes on one rank (a bug, MemoryError, a Ctrl-C outside the training
  loop) is reported by that rank and ends the job with MPI_Abort (`together`), since the
  others may already be waiting for it in a collective;
- a rank that is killed or dies is noticed by the launcher, which ends the others (MPICH's
  hydra and Open MPI both do);
- a rank that waits more than TIMEOUT seconds in one collective (a machine that stopped
  answering, a process stopped with SIGSTOP) ends the job from a watchdog thread: set
  CHARRNN_MPI_TIMEOUT to change it, 0 for none.

mpi4py is imported only when a launcher's environment variables say this process is one of
several: a single process never starts MPI.
"""
import contextlib
import os
import re
import sys
import threading
import time
import traceback

import numpy as np

from . import data
from .errors import CharrnnError

# what launchers put in each process's environment: the job's size, or at least a rank
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
INSTALL = "pip install 'charrnn[mpi]'"
TIMEOUT = 600.0  # seconds a rank may wait in one collective; see the module docstring


class GroupError(CharrnnError):
    """An error every rank of the group raises at the same point. Rank 0 shows it (shown);
    the other ranks exit with it quietly, so a job reports it once."""

    def __init__(self, message, shown=True):
        super().__init__(message)
        self.shown = shown


def _launcher():
    """(variable, size) of the launcher that started this process, size None when only a rank
    is given; None when no launcher did."""
    for var in SIZE_VARIABLES:
        if os.environ.get(var, "").isdigit():
            return var, int(os.environ[var])
    for var in RANK_VARIABLES:
        if var in os.environ:
            return var, None
    return None


def launcher_rank():
    """This process's rank as its launcher's environment gives it (0 without a launcher): known
    before MPI starts, so that only rank 0 reports what fails before then."""
    for var in RANK_VARIABLES:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


class Group:
    """One process: the group of size 1 a run has when no MPI launcher started it. Every
    collective is the identity."""

    rank, size = 0, 1
    local_size = 1  # the ranks on this machine

    @property
    def leader(self):
        """Whether this rank writes the run folder and the log (rank 0)."""
        return self.rank == 0

    def rows(self, n):
        """This rank's block [r n / P, (r + 1) n / P) of n rows (streams), as a slice."""
        return data.block(n, self.rank, self.size)

    def describe(self, threads):
        """The first words of a run's first log line, the layout of the processes; None for
        one process."""
        return None

    def warnings(self, threads):
        """Lines for the log when this machine's ranks ask for more threads than it has CPUs
        (a resumed run keeps the `threads` it started with, at any number of ranks)."""
        return []

    def sum_step(self, grads, loss, votes):
        """The one collective of a training step: grads (name -> array), loss (float) and votes
        ((k,) counts) summed over the ranks in one Allreduce; -> (grads, loss, votes)."""
        return grads, loss, votes

    def sum_here(self, votes):
        """votes summed over the ranks when that needs no communication (one process), else
        None: a step that one process alone votes to stop need not be computed."""
        return votes

    def sum(self, value):
        """A float summed over the ranks (rank order)."""
        return value

    def gather_rows(self, block):
        """Every rank's block of rows, stacked in rank order (on every rank)."""
        return block

    def bcast(self, obj):
        """Rank 0's obj, on every rank."""
        return obj

    def on_leader(self, fn):
        """fn() on rank 0 alone; returns its result on every rank. When it raises, rank 0
        raises that exception and every other rank a quiet GroupError, so all stop at the same
        point."""
        return fn()

    def everywhere(self, fn):
        """fn() on every rank; when it raises on any rank, every rank raises (rank 0 shows the
        first failing rank's error), so all stop at the same point."""
        return fn()

    def error(self, message):
        """A GroupError for an error every rank meets at the same point; raise it."""
        return GroupError(message, shown=self.leader)

    def agreed(self, e):
        """Mark e as raised by every rank at the same point (no abort); returns it."""
        return e

    @contextlib.contextmanager
    def together(self):
        """Context for the code every rank runs in step: see the module docstring."""
        yield


ALONE = Group()


class MPIGroup(Group):
    """P ranks over MPI_COMM_WORLD (through mpi4py), with a watchdog on every collective."""

    def __init__(self, MPI, timeout=TIMEOUT):
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.local_size = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()
        self._buffer = None  # the step's flat buffer, made at the first step
        self._agreed = set()  # ids of exceptions every rank raises: no abort for those
        self._waiting = None  # (what, since) while in a collective
        self.timeout = timeout
        if timeout:
            threading.Thread(target=self._watch, name="charrnn-mpi-watchdog",
                             daemon=True).start()

    # -- the watchdog ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _collective(self, what):
        self._waiting = (what, time.monotonic())
        try:
            yield
        finally:
            self._waiting = None

    def _watch(self):
        while True:
            time.sleep(min(5.0, self.timeout / 4))
            waiting = self._waiting
            if waiting is not None and time.monotonic() - waiting[1] > self.timeout:
                self._abort(f"Error: rank {self.rank} waited more than {self.timeout:g} s for the "
                            f"other ranks at {waiting[0]}; ending the job (a rank or machine "
                            f"stopped answering; CHARRNN_MPI_TIMEOUT sets the limit)", 1)

    def _abort(self, message, code):
        try:
            sys.stderr.write(message.rstrip("\n") + "\n")
            sys.stderr.flush()
        finally:
            self.comm.Abort(code)

    # -- collectives ----------------------------------------------------------------------------

    def describe(self, threads):
        return (f"ranks: {self.size} x {threads} thread{'s' if threads > 1 else ''}, "
                f"MPI: {library_name(self.MPI)}")

    def warnings(self, threads):
        cpus = os.cpu_count() or 1
        if threads > 1 and threads * self.local_size > cpus:
            return [f"{self.local_size} ranks x {threads} threads on {cpus} CPUs here: the ranks "
                    f"compete for cores; pass --threads 1"]
        return []

    def sum_step(self, grads, loss, votes):
        layout = [(name, g.shape, g.dtype) for name, g in grads.items()] + [len(votes)]
        if self._buffer is None or self._buffer[1] != layout:  # made once per model
            size = sum(g.size for g in grads.values()) + 1 + len(votes)
            self._buffer = (np.empty(size, dtype=np.result_type(*grads.values())), layout)
        buf = self._buffer[0]
        views, at = {}, 0
        for name in grads:
            g = grads[name]
            views[name] = buf[at:at + g.size].reshape(g.shape)
            views[name][...] = g
            at += g.size
        buf[at] = loss
        buf[at + 1:] = votes
        with self._collective("a training step's Allreduce"):
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return views, float(buf[at]), buf[at + 1:].astype(np.int64)

    def sum_here(self, votes):
        return None

    def sum(self, value):
        with self._collective("a sum"):
            values = self.comm.allgather(float(value))
        return float(sum(values))

    def gather_rows(self, block):
        with self._collective("gathering the carried state"):
            blocks = self.comm.allgather(block)
        return np.concatenate(blocks, axis=0)

    def bcast(self, obj):
        with self._collective("a broadcast from rank 0"):
            return self.comm.bcast(obj, root=0)

    def on_leader(self, fn):
        if self.leader:
            try:
                result = fn()
            except Exception as e:
                self.bcast(_Failed(str(e) or type(e).__name__))
                self._agreed.add(id(e))
                raise
            return self.bcast(result)
        outcome = self.bcast(None)
        if isinstance(outcome, _Failed):
            raise self._quiet(f"rank 0 failed: {outcome.message}")
        return outcome

    def everywhere(self, fn):
        error = None
        try:
            result = fn()
        except Exception as e:
            error = e
        with self._collective("checking that every rank succeeded"):
            failed = [(r, m) for r, m in enumerate(self.comm.allgather(
                None if error is None else (str(error) or type(error).__name__))) if m]
        if not failed:
            return result
        rank, message = failed[0]
        if self.leader and error is not None and rank == 0:
            self._agreed.add(id(error))
            raise error
        if self.leader:
            raise self._agree(GroupError(f"rank {rank}: {message}", shown=True))
        raise self._quiet(f"rank {rank} failed: {message}")

    def _quiet(self, message):
        return self._agree(GroupError(message, shown=False))

    def _agree(self, e):
        self._agreed.add(id(e))
        return e

    def error(self, message):
        return self._agree(super().error(message))

    def agreed(self, e):
        return self._agree(e)

    @contextlib.contextmanager
    def together(self):
        try:
            yield
        except BaseException as e:
            if id(e) in self._agreed:
                raise
            if isinstance(e, KeyboardInterrupt):
                self._abort(f"rank {self.rank}: interrupted; ending the job", 130)
            if isinstance(e, CharrnnError):
                self._abort(f"Error: rank {self.rank}: {e}", 1)
            self._abort(f"Error: rank {self.rank} failed; ending the job:\n"
                        + "".join(traceback.format_exception(e)), 1)


class _Failed:
    """What rank 0 broadcasts when its part failed."""

    def __init__(self, message):
        self.message = message


def library_name(MPI):
    """'MPICH 5.0.2', 'Open MPI v4.1.6', ...: the first words of the MPI library's version."""
    first = MPI.Get_library_version().strip().splitlines()[0]
    first = re.sub(r"\s*\bVersion:\s*", " ", first.split(",")[0])
    return " ".join(first.split())


_world = None


def world():
    """This process's group: ALONE unless an MPI launcher started several processes, else the
    MPIGroup of MPI_COMM_WORLD (made once). A CharrnnError when a launcher started several but
    mpi4py is missing, or when the launcher and mpi4py's MPI disagree on the job's size."""
    global _world
    if _world is not None:
        return _world
    found = _launcher()
    if found is None or found[1] == 1:
        _world = ALONE
        return _world
    var, size = found
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as e:
        shown = launcher_rank() == 0
        raise GroupError(f"this process was started by an MPI launcher ({var} is set) but mpi4py "
                         f"cannot be used ({type(e).__name__}: {e}); install it with {INSTALL}",
                         shown=shown) from None
    seen = MPI.COMM_WORLD.Get_size()
    if size is not None and seen != size:
        raise GroupError(f"the launcher started {size} processes ({var}) but MPI sees {seen}: "
                         f"the mpiexec on PATH belongs to another MPI than mpi4py's "
                         f"({library_name(MPI)}); use that one's mpiexec",
                         shown=launcher_rank() == 0)
    if seen == 1:
        _world = ALONE
        return _world
    timeout = os.environ.get("CHARRNN_MPI_TIMEOUT", "")
    try:
        timeout = float(timeout) if timeout else TIMEOUT
    except ValueError:
        raise GroupError(f"CHARRNN_MPI_TIMEOUT must be a number of seconds, got {timeout!r}",
                         shown=launcher_rank() == 0) from None
    _world = MPIGroup(MPI, timeout)
    return _world
