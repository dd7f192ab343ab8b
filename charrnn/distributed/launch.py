"""Which group this process belongs to: the launcher's environment variables, read before MPI
starts, and mpi4py, imported only when they say this process is one of several."""
import math
import os

from .group import ALONE, GroupError
from .mpi import TIMEOUT, MPIGroup, library_name

# what launchers put in each process's environment: the job's size, or at least a rank
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
INSTALL = "pip install 'charrnn[mpi]'"


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


def launched_size():
    """How many processes the launcher that started this one started: 1 without a launcher, None
    when the launcher gives only a rank (then only MPI knows)."""
    found = _launcher()
    return 1 if found is None else found[1]


def single_process(refusal=None):
    """The rule for every command but data-parallel training, under a launcher that started
    several processes: the work is done once, by rank 0. Returns whether this process does it:
    True without a launcher and on rank 0; False on any other rank, which has then waited for
    rank 0's leader_done without using a core and ends quietly with exit code 0 (MPICH's
    mpiexec ORs the ranks' exit codes and Open MPI's reports one that is not 0, so the job's code
    is rank 0's and its output is one process's). Without mpi4py they end at once.

    refusal: a command that cannot run as one process of several (the sweeps, which have their
    own way to use several machines) raises GroupError(refusal) on every rank instead, rank 0
    showing it.
    """
    size = launched_size()
    if size is None:  # only a rank is known: ask MPI, the one place that knows the size
        size = world().size
    if size == 1:
        return True
    if refusal is not None:
        raise GroupError(refusal, shown=launcher_rank() == 0)
    try:  # the others wait for rank 0 (MPIGroup.wait_for_leader says why)
        group = world()
    except GroupError:  # no mpi4py, or another MPI's launcher: they end at once
        group = ALONE
    if launcher_rank() == 0:
        return True
    group.wait_for_leader()
    return False


def leader_done():
    """After a command single_process gave rank 0: the ranks waiting for it end."""
    if _world is not None:
        _world.leader_done()


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
        seconds = float(timeout) if timeout else TIMEOUT
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):  # a negative limit ends every job at once
        raise GroupError(f"CHARRNN_MPI_TIMEOUT must be a number of seconds, 0 or more (0: no "
                         f"limit), got {timeout!r}", shown=launcher_rank() == 0)
    timeout = seconds
    _world = MPIGroup(MPI, timeout)
    return _world
