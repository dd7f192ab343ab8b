"""Every command under a real `mpiexec -n 2`, as a user who prefixes every command with it runs
them: train trains data-parallel (tests/test_mpi.py) and its dry run takes every rank too, tune
refuses in one line, and every other command runs once, on rank 0: its stdout, exit code and
files are one process's."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from charrnn.atomic import is_temporary
from clihelp import MPIEXEC, ROOT, TEN_STEPS, needs_mpi, run

# each process records the files it opens for writing and the names it renames files to (an
# audit hook sees every open, Python's and os.open's, and every rename), so a test sees which
# rank wrote what
HOOKED = """
import atexit, os, sys, time
rank = os.environ.get("PMI_RANK", "alone")
log = os.open(os.environ["WRITES_LOG"] + "." + rank, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
# each line: the path, then when (CLOCK_MONOTONIC, one clock for every process of a machine)
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and (
            (isinstance(args[1], str) and args[1][:1] in "wax")
            or args[2] & (os.O_WRONLY | os.O_RDWR)):
        os.write(log, f"{os.path.abspath(args[0])} {time.monotonic()!r}\\n".encode())
    elif event in ("os.rename", "os.replace") and isinstance(args[1], str):
        os.write(log, f"{os.path.abspath(args[1])} {time.monotonic()!r}\\n".encode())
ended = os.open(os.environ["WRITES_LOG"] + ".ended." + rank, os.O_WRONLY | os.O_CREAT)
atexit.register(lambda: os.write(ended, repr(time.monotonic()).encode()))
sys.addaudithook(hook)
sys.argv[0] = "charrnn"
from charrnn.cli import main
main()
"""


@pytest.fixture(scope="module")
def run_dir(shakespeare_excerpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    corpus = shakespeare_excerpt(5000)
    done = run("train", corpus, *TEN_STEPS, "--out", out, "--cache-dir", out.parent / "cache")
    assert done.exit_code == 0, done.output
    return out, corpus


def charrnn(tmp_path, args, launched):
    """`charrnn ARGS` in tmp_path, under `mpiexec -n 2` or alone -> (result, files written in
    tmp_path by each rank: {"0": [...], "1": [...]} or {"alone": [...]})."""
    log = tmp_path / "writes"
    env = {**os.environ, "PYTHONPATH": ROOT, "WRITES_LOG": str(log), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "CHARRNN_MPI_TIMEOUT": "60"}
    prefix = [MPIEXEC, "-n", "2"] if launched else []
    result = subprocess.run([*prefix, sys.executable, "-c", HOOKED, *map(str, args)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    written = {}
    for rank in (["0", "1"] if launched else ["alone"]):
        path = f"{log}.{rank}"
        lines = open(path).read().split() if os.path.exists(path) else []
        # the command's own files: not caches of libraries (matplotlib's font list)
        # write_atomic's temporary files have names of their own each time
        written[rank] = sorted({"(a temporary file)" if is_temporary(os.path.basename(p))
                                else os.path.relpath(p, tmp_path)
                                for p in lines if p.startswith(str(tmp_path) + os.sep)})
    return result, written


def commands(run, corpus):
    """name -> (args, the file it writes or None), every command but train (its dry run
    included) and tune."""
    ckpt = run / "last.npz"
    yield "sample", ["sample", "--ckpt", ckpt, "--length", 200, "--seed", 3,
                     "--num-samples", 2], None
    yield "eval", ["eval", "--ckpt", ckpt, corpus, "--json"], None
    yield "info", ["info", ckpt], None
    yield "viz", ["viz", "--ckpt", ckpt, corpus, "--chars", 500, "-o", "page.html"], "page.html"
    if importlib.util.find_spec("matplotlib"):
        yield "plot", ["plot", run, "-o", "loss.png"], "loss.png"
    yield "a failure", ["info", "no-such.npz"], None
    yield "a usage error", ["sample", "--ckpt", ckpt, "--length", "many"], None
    yield "--help", ["eval", "--help"], None


@needs_mpi
def test_every_other_command_runs_once_on_rank_0(run_dir, tmp_path):
    run, corpus = run_dir
    for name, args, output in commands(run, corpus):
        (tmp_path / name).mkdir()
        alone, alone_wrote = charrnn(tmp_path / name, args, launched=False)
        if output:
            alone_page = (tmp_path / name / output).read_bytes()
            os.remove(tmp_path / name / output)
        two, wrote = charrnn(tmp_path / name, args, launched=True)
        assert two.returncode == alone.returncode, (name, two.stderr)
        assert two.stdout == alone.stdout, name
        errors = [line for line in two.stderr.splitlines() if line.startswith("Error")]
        assert errors == [line for line in alone.stderr.splitlines()
                          if line.startswith("Error")], (name, two.stderr)
        assert "Traceback" not in two.stderr
        if name == "a usage error":  # one line from the job, not one a rank
            assert two.returncode == 2 and len(two.stderr.splitlines()) == 1, two.stderr
        assert wrote["1"] == [], (name, wrote)  # rank 1 wrote nothing at all
        assert wrote["0"] == alone_wrote["alone"], name
        if output:
            assert (tmp_path / name / output).read_bytes() == alone_page, name
            assert output in wrote["0"]


@needs_mpi
def test_a_dry_run_takes_every_rank_and_reports_once(run_dir, tmp_path):
    """train's dry run runs on every rank, as the run does: a `time` measures the candidates'
    paces on the ranks together (the choice then is the run's); rank 0 alone prints, and no
    rank writes."""
    _, corpus = run_dir
    plain = ["train", corpus, "--dry-run", "--hidden-size", 32]
    alone, _ = charrnn(tmp_path, plain, launched=False)
    two, wrote = charrnn(tmp_path, plain, launched=True)
    assert two.returncode == alone.returncode == 0, two.stderr
    assert two.stdout == alone.stdout and wrote == {"0": [], "1": []}
    assert two.stderr.count("dry run: nothing was trained or written") == 1, two.stderr
    timed, wrote = charrnn(tmp_path, ["train", corpus, "--dry-run", "--time", "30s",
                                      "--layers", 1, "--batch-size", 8, "--seq-len", 20],
                           launched=True)
    assert timed.returncode == 0 and "Traceback" not in timed.stderr, timed.stderr
    assert wrote == {"0": [], "1": []}
    header = [line for line in timed.stdout.splitlines() if line.startswith("time 30s:")]
    assert len(header) == 1 and header[0].endswith(
        "chosen for this corpus and machine (2 processes of 1 thread):"), timed.stdout
    assert timed.stderr.count("dry run: nothing was trained or written") == 1, timed.stderr


@needs_mpi
def test_the_other_ranks_end_after_rank_0s_command(run_dir, tmp_path):
    """A rank that ended at once left MPICH's proxy spinning on its closed PMI socket for as
    long as rank 0 worked (`eval` under mpiexec -n 2 took 117-122 s against 22-23 s alone): the
    others now wait for rank 0's command to end, without using a core, and then end."""
    run, corpus = run_dir
    two, _ = charrnn(tmp_path, ["viz", "--ckpt", run / "last.npz", corpus, "--chars", 4000,
                                "-o", "page.html"], launched=True)
    assert two.returncode == 0, two.stderr
    with open(tmp_path / "writes.0") as f:
        page_written = max(float(line.split()[1]) for line in f
                           if line.split()[0] == str(tmp_path / "page.html"))
    with open(tmp_path / "writes.ended.1") as f:
        assert float(f.read()) > page_written


@needs_mpi
def test_tune_refuses_in_one_line_on_every_rank(tmp_path):
    args = ["tune", "corpus.txt", "--space", "space.yaml", "--trials", 1, "--out", "sweep"]
    refused, wrote = charrnn(tmp_path, args, launched=True)
    assert refused.returncode == 1 and refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: charrnn tune runs each trial"), lines
    assert wrote == {"0": [], "1": []} and not (tmp_path / "sweep").exists()


def test_a_rank_other_than_0_does_nothing_but_exit_0(run_dir, tmp_path, monkeypatch):
    """The rule without mpiexec: a process whose launcher says it is rank 1 of 2 reads nothing,
    writes nothing, prints nothing, for every command but train (whose dry run takes part in
    the group, test_a_dry_run_takes_every_rank_and_reports_once)."""
    run, corpus = run_dir
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "1")
    for name, args, output in commands(run, corpus):
        if name in ("a usage error", "--help"):
            continue  # every rank parses the command line, and exits as rank 0 does
        result = run_in(tmp_path, args)
        assert result.returncode == 0 and result.stdout == "" and result.stderr == "", name
        assert os.listdir(tmp_path) == [], name


def run_in(folder, args):
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], cwd=folder,
                          env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True,
                          text=True, timeout=60)


def test_the_api_is_not_changed_by_a_launcher(run_dir):
    """charrnn.load and Model's methods do their work wherever they are called (docs/api.md):
    under a launcher a script chooses the rank that prints."""
    run, _ = run_dir
    code = ("import charrnn, json; m = charrnn.load('last.npz'); "
            "print(json.dumps([m.sample(20, seed=1), m.score('To be')['chars']]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=run, capture_output=True,
                            text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": ROOT, "PMI_SIZE": "2",
                                 "PMI_RANK": "1"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[1] == 4
