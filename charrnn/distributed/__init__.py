"""The process group a training run is spread over: one process, or P ranks started by an MPI
launcher (`mpiexec -n P charrnn train ...`), with one interface, so the training loop has one
code path. Process-level like runtime.py: communication, never math.

Data parallelism: every rank holds the whole model and optimizer state and takes a contiguous
block of the batch's N streams (`rows`). A step's gradients, loss and stop votes are summed in
one Allreduce of one flat buffer (`sum_step`), so every rank clips and updates identically.
Rank 0 alone writes the run folder and the log, through an object that `leader_only` wraps; what
it does alone runs through `on_leader`, which tells every rank whether it succeeded, so a
failure there ends every rank the same way.

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

Every other command (sample, eval, info, viz, plot) and every API function but
train does its work in one process: under a launcher the command runs on rank 0 alone and the
other ranks wait for it without using a core, then end with exit code 0 (`single_process`,
`leader_done`); `charrnn tune` refuses.

mpi4py is imported only when a launcher's environment variables say this process is one of
several: a single process never starts MPI.
"""
from .group import ALONE, Group, GroupError
from .launch import INSTALL, launched_size, launcher_rank, leader_done, single_process, world
from .mpi import MPIGroup

__all__ = ["ALONE", "Group", "GroupError", "MPIGroup", "INSTALL", "launched_size", "launcher_rank",
           "leader_done", "single_process", "world"]
