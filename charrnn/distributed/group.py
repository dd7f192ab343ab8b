"""A group of one: the process group of a run that no MPI launcher started, whose every
collective is the identity; the interface every group has, and the error every rank raises."""
import contextlib

from .. import data
from ..errors import CharrnnError


class GroupError(CharrnnError):
    """An error every rank of the group raises at the same point. Rank 0 shows it (shown);
    the other ranks exit with it quietly, so a job reports it once."""

    def __init__(self, message, shown=True):
        super().__init__(message)
        self.shown = shown


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

    def wait_for_leader(self):
        """On a rank other than 0, while rank 0 runs a command alone: return once rank 0 calls
        leader_done, without using a core meanwhile."""

    def leader_done(self):
        """On rank 0, when the command it ran alone has ended: the others may end too."""

    def bcast(self, obj):
        """Rank 0's obj, on every rank."""
        return obj

    def on_leader(self, fn):
        """fn() on rank 0 alone; returns its result on every rank. When it raises, rank 0
        raises that exception and every other rank a quiet GroupError, so all stop at the same
        point."""
        return fn()

    def leader_only(self, make):
        """An object whose method calls run on the leader alone, on make()'s object, each as
        on_leader runs it (every rank returns its result, or raises when it raises). make is
        called on the leader only: the other ranks hold an object that does nothing."""
        return LeaderOnly(self, make() if self.leader else None)

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


class LeaderOnly:
    """What Group.leader_only gives: obj's methods, called through group.on_leader."""

    def __init__(self, group, obj):
        self._group, self._obj = group, obj

    def __getattr__(self, name):
        def call(*args, **kwargs):
            return self._group.on_leader(lambda: getattr(self._obj, name)(*args, **kwargs))
        return call


ALONE = Group()
