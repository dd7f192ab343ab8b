"""The group of P ranks an MPI launcher started: the one Allreduce of a step, the gathers and
broadcasts, rank 0's work announced to all, and the watchdog and abort that end a job rather
than leave a rank waiting at a collective (see the package docstring)."""
import contextlib
import os
import re
import signal
import sys
import threading
import time
import traceback

import numpy as np

from ..errors import CharrnnError
from .group import Group, GroupError

TIMEOUT = 600.0  # seconds a rank may wait in one collective; see the package docstring
ABORT_PAUSE = 0.5  # seconds between a rank's last words and its Abort (see _abort)


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
            # MPICH's launcher forwards a rank's stderr through a pipe to its proxy; an Abort
            # right after the write killed the job before the line was forwarded in about one
            # launch in four here (the message lost, the exit code kept). A pause lets it go.
            time.sleep(ABORT_PAUSE)
        finally:
            self.comm.Abort(code)
            # MPI_Abort returns when the launcher cannot be reached (this machine's link to
            # mpiexec is down): the job must still end here, with the code it would have had
            os._exit(code)

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

    # A rank that exits while rank 0 works leaves MPICH's hydra proxy spinning on its closed PMI
    # socket (pmip_cb.c deregisters a closed socket only for a process that spoke PMI): `charrnn
    # eval` under `mpiexec -n 2` took 117-122 s against 22-23 s alone. So the others stay, in a
    # barrier they test 20 times a second (a blocking Barrier would spin in MPICH's progress
    # engine), with Ctrl-C left to rank 0, which ends its command and then the barrier.
    WAIT_POLL = 0.05

    def wait_for_leader(self):
        request = self.comm.Ibarrier()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while not request.Test():
                time.sleep(self.WAIT_POLL)
        finally:
            signal.signal(signal.SIGINT, previous)

    def leader_done(self):
        with self._collective("the end of rank 0's command"):
            self.comm.Ibarrier().Wait()

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
