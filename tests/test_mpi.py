"""Data-parallel training under a real `mpiexec -n 2`: the same model as one process to rounding,
evaluation split over the ranks, resumes at another number of ranks, Ctrl-C, a killed rank, a
rank that fails alone, a rank that stops answering, and errors reported once.

Needs mpi4py and an mpiexec of the MPI it uses (`pip install 'charrnn[mpi]'`); without them
those tests skip. The error for a launcher without mpi4py is tested everywhere.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import charrnn
from charrnn import checkpoint
from clihelp import MPIEXEC, needs_mpi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "mpi_worker.py")


# the model of the comparisons: small enough that a launch takes about a second
MODEL = dict(hidden_size=32, layers=2, dropout=0.1, batch_size=16, seq_len=20, lr=5e-3,
             eval_every=5, sample_length=0, val_frac=0.05)


def env(timeout=60):
    e = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
         "MKL_NUM_THREADS": "1", "CHARRNN_MPI_TIMEOUT": str(timeout),
         # CI runs as root, which Open MPI's launcher refuses unless told (MPICH's accepts it)
         "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    e["PYTHONPATH"] = ROOT
    return e


def mpi(n, *args, timeout=120):
    """`mpiexec -n n python ARGS`, finished."""
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, *map(str, args)], cwd=ROOT,
                          env=env(), capture_output=True, text=True, timeout=timeout)


def mpi_cli(n, *args, **kw):
    return mpi(n, "-m", "charrnn", *args, **kw)


def arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def assert_close_runs(a_dir, b_dir, atol, name="last.npz"):
    """Every array of the two checkpoints (weights, optimizer, carried state) agrees to atol;
    the counters agree exactly."""
    a, b = arrays(os.path.join(a_dir, name)), arrays(os.path.join(b_dir, name))
    assert set(a) == set(b)
    for k in a:
        if k.startswith(("param/", "optim/", "state/", "ema/")):
            assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype, k
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=k)
        elif k in ("step", "chars", "data_position", "loss_count", "rng_state", "vocab"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def worst_difference(a_dir, b_dir):
    a, b = arrays(os.path.join(a_dir, "last.npz")), arrays(os.path.join(b_dir, "last.npz"))
    return max(float(np.abs(a[k] - b[k]).max()) for k in a if k.startswith("param/"))


@pytest.fixture(scope="module")
def corpus(shakespeare_excerpt):
    return str(shakespeare_excerpt(20_000))


def train_alone(corpus, out, **kw):
    """The same run in this process, on one thread like each rank."""
    return charrnn.train(corpus, progress=False, out=str(out), threads=1, **{**MODEL, **kw})


# what the weights of P = 1 and P = 2 must agree to after 5 Adam steps at lr 5e-3: ten times the
# worst difference measured (see the test's docstring); a wrong share of the loss or a rank on
# the wrong rows moves them by about lr per step
ATOL = {"float64": 1e-12, "float32": 5e-5}


@needs_mpi
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_ranks_train_the_model_of_one_process(corpus, tmp_path, dtype):
    """P = 2 against P = 1 after 5 steps, every cell with dropout and two layers. The ranks sum
    halves of the batch where one process sums it whole, so the weights agree to rounding.
    Measured here (the test prints it with -s), the worst weight difference: float64 4e-14
    (rnn), 2e-14 (lstm), 2e-15 (gru), 3e-16 (minlstm), 7e-15 (mingru, residual); float32 6e-8
    (rnn), 2e-7 (lstm), 5e-6 (gru), 2e-7 (minlstm), 2.4e-5 (mingru, residual): a few ulps
    of the gradients, which Adam's normalised step can carry into a weight whose gradient is
    near zero. The min cells and the residual stack (its dropout masks cut from the whole
    batch's like the plain stack's) too."""
    shapes = {name: {"cell": name} for name in ("rnn", "lstm", "gru", "minlstm")}
    shapes["mingru-residual"] = dict(cell="mingru", stack="residual", expand=2, mlp=2)
    runs = [dict(corpus=corpus, dtype=dtype, steps=5, out=str(tmp_path / f"p2-{name}"),
                 cache_dir=str(tmp_path / "cache"), **MODEL, **shape)
            for name, shape in shapes.items()]
    launched = mpi(2, WORKER, "train", json.dumps(runs))
    assert launched.returncode == 0, launched.stderr
    for run, (name, shape) in zip(runs, shapes.items()):
        alone = tmp_path / f"p1-{name}"
        train_alone(corpus, alone, dtype=dtype, steps=5, cache_dir=run["cache_dir"], **shape)
        # the residual stack's float32 weights moved further (2.4e-5: more layers of products
        # whose rows are cut differently, and its norms), so ten times that
        residual = dtype == "float32" and "stack" in shape
        assert_close_runs(alone, run["out"], 2.5e-4 if residual else ATOL[dtype])
        log = open(os.path.join(run["out"], "log.txt"), encoding="utf-8").read()
        assert log.startswith("ranks: 2 x 1 thread, MPI: "), log
        val = [json.loads(line)["val_loss"] for line in
               open(os.path.join(run["out"], "metrics.jsonl"), encoding="utf-8")]
        val_alone = [json.loads(line)["val_loss"] for line in
                     open(alone / "metrics.jsonl", encoding="utf-8")]
        np.testing.assert_allclose(val, val_alone, rtol=1e-5 if dtype == "float32" else 1e-12)
        print(f"{dtype} {name}: worst weight difference "
              f"{worst_difference(alone, run['out']):.2g}")


@needs_mpi
def test_two_ranks_train_the_model_of_one_process_with_every_regularizer(corpus, tmp_path):
    """weight_drop and locked dropout (masks of the whole batch, each rank given its rows and
    the whole weight masks), weight_decay and ema (after the sum, the same on every rank): P = 2
    against P = 1 after 5 steps in float64, the moving average and the metrics line's scores
    of both weights too."""
    kw = dict(cell="gru", dtype="float64", steps=5, weight_drop=0.3, dropout_mode="locked",
              weight_decay=0.1, ema=0.9, cache_dir=str(tmp_path / "cache"))
    run = dict(corpus=corpus, out=str(tmp_path / "p2"), **MODEL, **kw)
    launched = mpi(2, WORKER, "train", json.dumps([run]))
    assert launched.returncode == 0, launched.stderr
    train_alone(corpus, tmp_path / "p1", **kw)
    assert_close_runs(tmp_path / "p1", run["out"], ATOL["float64"])
    assert any(k.startswith("ema/") for k in arrays(os.path.join(run["out"], "last.npz")))
    lines = [[json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"),
                                                encoding="utf-8")] for d in (run["out"],
                                                                             tmp_path / "p1")]
    for a, b in zip(*lines):
        assert a["weights"] == b["weights"]
        np.testing.assert_allclose([a["val_loss_raw"], a["val_loss_ema"]],
                                   [b["val_loss_raw"], b["val_loss_ema"]], rtol=1e-12)


@needs_mpi
def test_two_ranks_evaluation_equals_one_process(corpus, tmp_path):
    """The validation split scored in two blocks of streams, the loss sums added: equal to one
    process's score to rounding (float64: the sums only group the same terms differently)."""
    kw = dict(corpus=corpus, cell="lstm", hidden_size=16, dtype="float64", batch_size=7,
              seq_len=13, val_frac=0.2)
    out = tmp_path / "score.json"
    launched = mpi(2, WORKER, "score", json.dumps({**kw, "out": str(out)}))
    assert launched.returncode == 0, launched.stderr
    two = json.loads(out.read_text())["val_loss"]
    from charrnn import corpus as corpus_mod, training
    one = training.Run(charrnn.TrainConfig(**{k: v for k, v in kw.items() if k != "corpus"}),
                       corpus_mod.open_corpus([corpus])).validation_loss()
    assert two == pytest.approx(one, rel=1e-13)


@needs_mpi
@pytest.mark.parametrize("first, then", [(1, 2), (2, 1)])
def test_resume_at_another_number_of_ranks(corpus, tmp_path, first, then):
    """10 steps at P = first, resumed to 20 at P = then: the run of 20 steps at P = 1, to
    rounding; the checkpoints hold every stream's carried state whatever P wrote them."""
    kw = dict(cell="gru", dtype="float64")
    whole = tmp_path / "whole"
    train_alone(corpus, whole, steps=20, **kw)
    out = tmp_path / "run"
    flags = ["--cell", "gru", "--dtype", "float64", "--threads", 1]
    for key, value in MODEL.items():
        flags += ["--" + key.replace("_", "-"), value]
    started = mpi_cli(first, "train", corpus, *flags, "--out", out, "--steps", 10)
    assert started.returncode == 0, started.stderr
    assert arrays(out / "last.npz")["state/l0.h"].shape == (MODEL["batch_size"], 32)
    resumed = mpi_cli(then, "train", corpus, "--resume", out / "last.npz", "--steps", 20)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 10 of 20" in resumed.stderr
    assert_close_runs(whole, out, atol=1e-12)
    steps = [json.loads(line)["step"] for line in open(out / "metrics.jsonl", encoding="utf-8")]
    assert steps == [5, 10, 15, 20]


def start_long_run(corpus, out, err, timeout=60):
    """mpiexec -n 2 training for a long time, in a session of its own, stderr to err."""
    args = [MPIEXEC, "-n", "2", sys.executable, "-m", "charrnn", "train", corpus, "--out",
            str(out), "--steps", "1000000", "--cell", "lstm"]
    for key, value in MODEL.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    return subprocess.Popen(args, cwd=ROOT, env=env(timeout), stdout=err, stderr=err,
                            start_new_session=True)


def wait_for_evaluations(proc, out, count, timeout=60):
    deadline = time.time() + timeout
    log = out / "metrics.jsonl"
    while not log.exists() or log.read_text().count("\n") < count:
        assert proc.poll() is None, "the run ended early"
        assert time.time() < deadline, "no evaluation in time"
        time.sleep(0.02)


def ranks_of(proc):
    """pid -> MPI rank of the launched job's processes: proc's descendants (read from /proc,
    since the launcher's proxy starts each rank in a session of its own) with PMI_RANK set."""
    parent = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    family, found = {proc.pid}, {}
    for _ in range(5):  # mpiexec -> proxy -> rank, with room to spare
        family |= {pid for pid, ppid in parent.items() if ppid in family}
    for pid in family - {proc.pid}:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = dict(item.split(b"=", 1) for item in f.read().split(b"\0")
                               if b"=" in item)
        except OSError:
            continue
        if b"PMI_RANK" in environ:
            found[pid] = int(environ[b"PMI_RANK"])
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def end(proc):
    """A failed test must not leave a job behind."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@needs_mpi
def test_ctrl_c_saves_last_once_and_exits_130(corpus, tmp_path):
    """SIGINT to mpiexec (what Ctrl-C does): it reaches every rank, they agree in the next
    step's Allreduce to stop, rank 0 saves last.npz once, and the job exits 130."""
    out = tmp_path / "run"
    with open(tmp_path / "stderr", "w") as err:
        proc = start_long_run(corpus, out, err)
        try:
            wait_for_evaluations(proc, out, 2)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 130
        finally:
            end(proc)
    stderr = (tmp_path / "stderr").read_text()
    assert "Traceback" not in stderr
    assert stderr.count(f"saved {out / 'last.npz'}") == 1, stderr
    ck = checkpoint.load(out / "last.npz")
    assert ck.step >= 10 and ck.carried_state[0][0].shape == (MODEL["batch_size"], 32)
    resumed = mpi_cli(2, "train", corpus, "--resume", out / "last.npz", "--steps", ck.step + 3)
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint.load(out / "last.npz").step == ck.step + 3


def no_temporary_files(run_dir):
    return [n for n in os.listdir(run_dir) if n.startswith(".tmp")] == []


@needs_mpi
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP])
def test_a_rank_that_dies_or_stops_answering_ends_the_job(corpus, tmp_path, how):
    """SIGKILL: the launcher sees the rank die and ends the others. SIGSTOP: the rank lives but
    answers nothing; rank 0 waits in the next collective until CHARRNN_MPI_TIMEOUT (3 s here)
    and ends the job. Either way the job exits non-zero, no process is left, and the
    checkpoints already written are whole. A rank killed mid-save may leave write_atomic's
    temporary file (never a damaged checkpoint); the resume that takes the folder removes it."""
    out = tmp_path / "run"
    with open(tmp_path / "stderr", "w") as err:
        proc = start_long_run(corpus, out, err, timeout=3)
        try:
            wait_for_evaluations(proc, out, 2)
            ranks = {rank: pid for pid, rank in ranks_of(proc).items()}
            assert sorted(ranks) == [0, 1]
            os.kill(ranks[1], how)
            assert proc.wait(timeout=120) != 0
            time.sleep(0.5)
            assert not any(alive(pid) for pid in ranks.values())
        finally:
            end(proc)
    ck = checkpoint.load(out / "last.npz")
    assert ck.step >= 10
    if how == signal.SIGSTOP:
        assert "waited more than" in (tmp_path / "stderr").read_text()
    resumed = mpi_cli(2, "train", corpus, "--resume", out / "last.npz", "--steps", ck.step + 2)
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint.load(out / "last.npz").step == ck.step + 2 and no_temporary_files(out)


@needs_mpi
def test_an_error_on_one_rank_ends_the_job(corpus, tmp_path):
    """A fault only rank 1 meets (rank 0 is then waiting for it in the step's Allreduce): rank 1
    reports it and aborts the job, which exits non-zero at once."""
    kw = dict(corpus=corpus, cell="rnn", steps=50, out=str(tmp_path / "run"), **MODEL)
    failed = mpi(2, WORKER, "fail", json.dumps(kw), timeout=60)
    assert failed.returncode != 0
    assert "rank 1 failed" in failed.stderr and "a fault only rank 1 meets" in failed.stderr


@needs_mpi
@pytest.mark.parametrize("args, fragment, code", [
    (["train", "no-such-corpus.txt"], "no-such-corpus.txt", 1),
    (["train", "no-such-corpus.txt", "--dry-run"], "no-such-corpus.txt", 1),
    (["train", "x.txt", "--dry-run", "--config", "no-such.yaml"], "no-such.yaml", 1),
    (["train", "x.txt", "--lr", "abc"], "'--lr'", 2),  # Click's, before MPI starts
    (["tune", "x.txt", "--space", "s.yaml", "--trials", "1", "--out", "sweep"], "--storage", 1),
])
def test_an_error_every_rank_meets_is_reported_once(tmp_path, args, fragment, code):
    failed = mpi_cli(2, *args)
    assert failed.returncode == code
    errors = [line for line in failed.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and fragment in errors[0], failed.stderr
    assert "Traceback" not in failed.stderr


@needs_mpi
@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf"])
def test_a_bad_mpi_timeout_is_one_line(corpus, tmp_path, value):
    """A negative limit would end every job at its first collective, nan none: both refused."""
    failed = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "charrnn", "train",
                             corpus, "--out", tmp_path / "run"], cwd=ROOT,
                            env=env(timeout=value), capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "CHARRNN_MPI_TIMEOUT" in errors[0], failed.stderr
    assert "Traceback" not in failed.stderr and not (tmp_path / "run").exists()


@needs_mpi
def test_steps_auto_is_fitted_by_rank_0_for_every_rank(corpus, tmp_path):
    out = tmp_path / "run"
    flags = []
    for key, value in {**MODEL, "eval_every": 20}.items():
        flags += ["--" + key.replace("_", "-"), value]
    done = mpi_cli(2, "train", corpus, *flags, "--out", out, "--steps", "auto",
                   "--time-limit", 4)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("steps: auto ->") >= 1
    steps = checkpoint.load(out / "last.npz").config.steps
    assert isinstance(steps, int) and checkpoint.load(out / "last.npz").step <= steps


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_launcher_without_mpi4py_is_one_line(tmp_path, rank, shakespeare_excerpt):
    """A process started by mpiexec (PMI_SIZE set) where mpi4py cannot be imported: rank 0
    says how to install it, the others say nothing; all exit 1."""
    code = ("import sys; sys.modules['mpi4py'] = None; sys.argv[0] = 'charrnn'; "
            "from charrnn.cli import main; main()")
    result = subprocess.run(
        [sys.executable, "-c", code, "train", str(shakespeare_excerpt(2000)), "--out",
         str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PMI_SIZE": "2", "PMI_RANK": rank})
    assert result.returncode == 1
    if rank == "0":
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert "pip install 'charrnn[mpi]'" in result.stderr
    else:
        assert result.stderr == ""
    assert not (tmp_path / "run").exists()
