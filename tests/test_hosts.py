"""A job of 2 ranks on 2 machines, for real: two network namespaces joined by a veth pair, each
with its own working directory, mpiexec's launcher reaching the second through `ip netns exec`
(tests/twohosts.py). The same model as one process, the run folder on rank 0's machine alone,
and the faults: the link going down mid-run and a machine's rank killed end the job non-zero,
the checkpoints whole, and a --resume on one machine continues.

Needs root and `ip netns` (skipped, saying why, where the machine refuses them), mpi4py and an
mpiexec of MPICH (the launcher options are hydra's).
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from charrnn import checkpoint
from clihelp import MPIEXEC, ROOT, needs_mpi
from test_mpi import ATOL, MODEL, assert_close_runs, end, train_alone, wait_for_evaluations
from twohosts import Hosts, env, refused



def _why_not():
    if MPIEXEC is None:
        return None  # needs_mpi says why
    version = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True).stdout
    if "HYDRA" not in version:
        return "the launcher options here are MPICH's (hydra); this mpiexec is another's"
    return refused()


WHY = _why_not()
pytestmark = [needs_mpi, pytest.mark.skipif(WHY is not None, reason=WHY or "")]

LIMIT = 3  # CHARRNN_MPI_TIMEOUT of the faults' jobs, seconds


@pytest.fixture
def hosts(tmp_path, shakespeare_excerpt, request):
    made = Hosts(str(tmp_path))
    request.addfinalizer(made.close)
    corpus = shakespeare_excerpt(20_000)
    for folder in made.dirs:  # the corpus at the same path on every machine, as docs say
        shutil.copy(corpus, os.path.join(folder, "corpus.txt"))
    return made


def train_args(*extra):
    args = [sys.executable, "-m", "charrnn", "train", "corpus.txt", "--out", "run",
            "--threads", 1, *extra]
    for key, value in MODEL.items():
        args += ["--" + key.replace("_", "-"), value]
    return [str(a) for a in args]


def test_two_hosts_train_the_model_of_one_process(hosts, tmp_path):
    args = train_args("--cell", "gru", "--dtype", "float64", "--steps", 5)
    done = subprocess.run(hosts.mpiexec(MPIEXEC, [args, args]), env=env(ROOT, 60),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ranks: 2 x 1 thread" in done.stderr
    assert open(hosts.launched).read().split() == [hosts.addresses[1]]  # B through the script
    a, b = hosts.dirs
    assert os.listdir(b) == ["corpus.txt"]  # no run folder on rank 1's machine
    alone = tmp_path / "alone"
    train_alone(os.path.join(a, "corpus.txt"), alone, cell="gru", dtype="float64", steps=5)
    assert_close_runs(alone, os.path.join(a, "run"), ATOL["float64"])


def rank_1(hosts):
    """The pid of the training process on host B."""
    for pid in hosts.pids(1):
        try:
            if b"charrnn" in open(f"/proc/{pid}/cmdline", "rb").read():
                return pid
        except OSError:
            continue
    return None


@pytest.mark.parametrize("fault", ["link down", "rank killed"])
def test_a_fault_between_hosts_ends_the_job_and_one_host_resumes(hosts, tmp_path, fault):
    """The link down: rank 0 waits at the next collective, its watchdog ends the job after LIMIT
    seconds; rank 1, cut off from mpiexec, ends itself the same way. Rank 1 killed: the
    launcher sees it and ends rank 0. The job's exit code is not 0, the checkpoints are whole,
    and `--resume` continues the run on host A alone."""
    args = train_args("--cell", "lstm", "--steps", 1_000_000)
    run = os.path.join(hosts.dirs[0], "run")
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen(hosts.mpiexec(MPIEXEC, [args, args]), env=env(ROOT, LIMIT),
                                stdout=err, stderr=err, start_new_session=True)
        try:
            wait_for_evaluations(proc, tmp_path / "host-a" / "run", 2)
            pid = rank_1(hosts)
            assert pid is not None
            started = time.monotonic()
            if fault == "link down":
                hosts.link(up=False)
            else:
                os.kill(pid, signal.SIGKILL)
            code = proc.wait(timeout=60)
            took = time.monotonic() - started
            while rank_1(hosts) is not None and time.monotonic() - started < 60:
                time.sleep(0.1)
            assert rank_1(hosts) is None, "rank 1 outlived the job"
        finally:
            end(proc)
    stderr = (tmp_path / "stderr").read_text()
    print(f"{fault}: the job ended {took:.1f} s later with exit code {code}")
    assert code != 0, stderr
    if fault == "link down":
        assert "waited more than 3 s" in stderr
    ck = checkpoint.load(os.path.join(run, "last.npz"))
    checkpoint.load(os.path.join(run, "best.npz"))
    assert ck.step >= 10
    resumed = subprocess.run(
        [sys.executable, "-m", "charrnn", "train", "corpus.txt", "--resume", "run/last.npz",
         "--steps", str(ck.step + 2)], cwd=hosts.dirs[0], env=env(ROOT, LIMIT),
        capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint.load(os.path.join(run, "last.npz")).step == ck.step + 2
    assert not any(name.startswith(".tmp") for name in os.listdir(run))
