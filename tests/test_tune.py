"""`charrnn tune` for real: two worker processes on one study (a journal file, then a throwaway
PostgreSQL server), pruning, an interrupted sweep that resumes, failing trials, SPACE.yaml errors
and the missing-Optuna message. Every trial is configs/tiny.yaml cut to 40 steps."""
import builtins
import contextlib
import getpass
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import charrnn
from charrnn import checkpoint, config, tune
from charrnn.tune import parse_space
from clihelp import ROOT, TINY, one_line_error, run, without_package

try:
    import optuna
except ImportError:  # the missing-Optuna test still runs
    optuna = None
needs_optuna = pytest.mark.skipif(optuna is None, reason="Optuna is not installed")

SEARCHED = {"hidden_size": [16, 32], "lr": {"low": 1e-3, "high": 3e-2, "log": True}}


@pytest.fixture(scope="module")
def corpus(shakespeare_excerpt):
    return shakespeare_excerpt(20000)


def write_space(folder, searched=SEARCHED, **fixed):
    """tiny.yaml cut to 40 steps, one BLAS-free thread per worker, plus the searched keys."""
    with open(TINY, encoding="utf-8") as f:
        values = config.parse_yaml(f.read())
    del values["out"], values["seed"]  # each trial is seeded from --seed
    values.update(steps=40, eval_every=20, sample_length=0, val_frac=0.1, threads=1)
    values.update(fixed)
    values.update(searched)
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


# `python -m charrnn` whose trials wait, before training, until the file argv[1] exists
HELD = """import os, runpy, sys, time
import charrnn.api
go, train = sys.argv.pop(1), charrnn.api.train
def held(*args, **kwargs):
    while not os.path.exists(go):
        time.sleep(0.02)
    return train(*args, **kwargs)
charrnn.api.train = held
runpy.run_module("charrnn", run_name="__main__", alter_sys=True)
"""


def worker(*args, held_until=None):
    """`python -m charrnn tune ...` as its own process, as on another machine; with held_until
    (a path), each trial waits for that file to exist before it trains."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    head = ["-m", "charrnn"] if held_until is None else ["-c", HELD, held_until]
    return subprocess.Popen([sys.executable, *head, "tune", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(ready, procs, timeout=60):
    """Wait until ready() is true; if a worker ends first or time runs out, kill the workers
    (a held one would wait for ever) and fail with their output."""
    deadline = time.monotonic() + timeout
    while not ready():
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            pytest.fail(f"gave up waiting: {[(p.returncode, *p.communicate()) for p in procs]}")
        time.sleep(0.02)


def storage_of(out, storage=None):
    if storage:
        return optuna.storages.RDBStorage(tune.storage._driver(storage))
    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / tune.JOURNAL)))


def trials_of(out, storage=None, study="charrnn"):
    return optuna.load_study(study_name=study, storage=storage_of(out, storage)).get_trials()


def check_two_workers(corpus, tmp_path, n, storage=None):
    """Two workers at once on one study: exactly n finished trials between them, each in a
    folder of its own whose trial.json agrees with the storage; the report lists them all and
    its best.yaml trains."""
    # both work, and at once, whatever the machine's load: the first holds its trial 0 until
    # the second has begun trial 1 (unheld, the first could finish every trial before the
    # second had imported Optuna, as it did once on a loaded machine)
    space, out, go = write_space(tmp_path), tmp_path / "sweep", tmp_path / "go"
    extra = ("--storage", storage) if storage else ()
    args = (corpus, "--space", space, "--trials", n, "--out", out, "--seed", 3, *extra)
    procs = [worker(*args, held_until=go)]
    wait_for((out / "trial-0000").exists, procs)
    procs.append(worker(*args))
    wait_for((out / "trial-0001").exists, procs)
    go.touch()
    for proc in procs:
        code, _, err = finish(proc)
        assert code == 0, err
    trials = trials_of(out, storage)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == n, [(t.number, t.state) for t in trials]
    assert {t.user_attrs["pid"] for t in finished} == {p.pid for p in procs}  # both worked
    assert [t.user_attrs["pid"] for t in trials[:2]] == [p.pid for p in procs]  # at once
    folders = sorted(p.name for p in out.iterdir() if p.name.startswith("trial-"))
    assert folders == sorted(f"trial-{t.number:04d}" for t in finished)
    run_dirs = [t.user_attrs["run_dir"] for t in finished]
    assert len(set(run_dirs)) == n
    for t in finished:
        info = json.loads((out / f"trial-{t.number:04d}" / tune.TRIAL).read_text())
        assert (info["number"], info["state"], info["params"]) == (t.number, t.state.name,
                                                                    t.params)
        assert info["pid"] == t.user_attrs["pid"]
    report = run("tune", "--report", out)
    assert report.exit_code == 0, report.output
    lines = report.stdout.splitlines()
    assert lines[0].split()[:2] == ["trial", "state"] and len(lines) == 1 + n + 2
    best = min((t for t in finished if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert lines[1].split()[0] == str(best.number)
    assert f"best: trial {best.number}," in lines[-1]
    assert yaml.safe_load((out / "best.yaml").read_text())["hidden_size"] == \
        best.params["hidden_size"]
    again = run("train", corpus, "--config", out / "best.yaml", "--steps", 5, "--eval-every", 5,
                "--out", tmp_path / "best-run")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "best-run" / "best.npz").exists()


@needs_optuna
def test_two_workers_share_a_journal_study(corpus, tmp_path):
    check_two_workers(corpus, tmp_path, n=6)
    assert json.loads((tmp_path / "sweep" / tune.STUDY).read_text()) == {
        "study": "charrnn", "storage": tune.JOURNAL}


# ---- PostgreSQL --------------------------------------------------------------------------------

def _pg_bin():
    found = sorted(d for d in (os.path.join("/usr/lib/postgresql", v, "bin")
                               for v in (os.listdir("/usr/lib/postgresql")
                                         if os.path.isdir("/usr/lib/postgresql") else []))
                   if os.path.exists(os.path.join(d, "initdb")))
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


@contextlib.contextmanager
def postgres_server():
    """A throwaway PostgreSQL cluster in a temporary folder, reachable only on a unix socket
    there; yields its storage URL and stops the server at the end. initdb refuses root, so
    as root the server runs as the `postgres` user that Debian's package creates."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    pytest.importorskip("psycopg")
    as_user = []
    if os.geteuid() == 0:
        try:
            import pwd
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a `postgres` user to run the server")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = tempfile.mkdtemp(prefix="charrnn-pg-")  # short: a socket path has a length limit
    if as_user:
        os.chown(folder, pw.pw_uid, pw.pw_gid)
    data, user = os.path.join(folder, "data"), "postgres" if as_user else getpass.getuser()

    def pg(tool, *args):
        subprocess.run([*as_user, os.path.join(bindir, tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    try:
        pg("initdb", "-D", data, "-A", "trust", "-U", user, "--no-sync")
        pg("pg_ctl", "-D", data, "-l", os.path.join(folder, "server.log"), "-w", "start",
           "-o", f"-k {folder} -c listen_addresses='' -c fsync=off")
        try:
            yield f"postgresql://{user}@/postgres?host={folder}"
        finally:
            pg("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@needs_optuna
def test_two_workers_share_a_postgresql_study(corpus, tmp_path):
    with postgres_server() as url:
        check_two_workers(corpus, tmp_path, n=6, storage=url)
        assert json.loads((tmp_path / "sweep" / tune.STUDY).read_text())["storage"] == url
        assert run("tune", "--report", tmp_path / "sweep").exit_code == 0  # the URL recorded


# ---- pruning, failures, interruption -----------------------------------------------------------

def started_training(proc, folder):
    """Wait until the worker's trial has logged its first evaluation."""
    metrics = folder / "trial-0000" / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.read_text().strip(), [proc])


@needs_optuna
def test_a_hopeless_trial_is_pruned_and_its_folder_says_so(corpus, tmp_path):
    # one learning rate that learns and one that cannot: once one trial has completed, the
    # median pruner stops any trial worse than it at its first evaluation (step 20 of 40)
    space = write_space(tmp_path, searched={"lr": [3e-2, 1e-5]})
    out = tmp_path / "sweep"
    result = run("tune", corpus, "--space", space, "--trials", 5, "--out", out,
                 "--pruner-startup", 1, "--seed", 0)
    assert result.exit_code == 0, result.output
    pruned = [t for t in trials_of(out) if t.state.name == "PRUNED"]
    assert pruned
    for t in pruned:
        folder = out / f"trial-{t.number:04d}"
        info = json.loads((folder / tune.TRIAL).read_text())
        assert info["state"] == "PRUNED" and info["step"] == 20 and "pruned at step 20" in \
            info["note"]
        assert [json.loads(line)["step"] for line in (folder / "metrics.jsonl").open()] == [20]
        assert (folder / "last.npz").exists()
    assert "pruned" in result.stdout and "pruning saved " in result.stdout
    assert f"pruning saved {20 * len(pruned)} training steps" in result.stdout


@needs_optuna
def test_a_failing_trial_is_marked_failed_and_the_sweep_goes_on(corpus, tmp_path):
    space = write_space(tmp_path, searched={"lr": [1e30]})  # the loss explodes
    out = tmp_path / "sweep"
    result = run("tune", corpus, "--space", space, "--trials", 2, "--out", out)
    assert result.exit_code == 0, result.output
    trials = trials_of(out)
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    for t in trials:
        assert "the run diverged" in t.user_attrs["error"]
        info = json.loads((out / f"trial-{t.number:04d}" / tune.TRIAL).read_text())
        assert info["state"] == "FAIL" and "the run diverged" in info["note"]
    assert not (out / "best.yaml").exists()


@needs_optuna
def test_an_interrupted_sweep_resumes(corpus, tmp_path):
    space = write_space(tmp_path, steps=300)
    out = tmp_path / "sweep"
    args = (corpus, "--space", space, "--trials", 2, "--out", out)
    proc = worker(*args)
    started_training(proc, out)
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130, err
    assert "trial 0 interrupted by SIGINT" in err and "run the same command" in err
    (first,) = trials_of(out)
    assert first.state.name == "FAIL" and first.user_attrs["interrupted"]
    info = json.loads((out / "trial-0000" / tune.TRIAL).read_text())
    assert info["state"] == "FAIL" and info["interrupted"] and 20 <= info["step"] < 300
    assert (out / "trial-0000" / "last.npz").exists()

    code, stdout, err = finish(worker(*args))
    assert code == 0, err
    trials = trials_of(out)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "interrupted" in stdout and "2 complete" in stdout


@needs_optuna
def test_sigterm_exits_143(corpus, tmp_path):
    space = write_space(tmp_path, steps=300)
    proc = worker(corpus, "--space", space, "--trials", 1, "--out", tmp_path / "sweep")
    started_training(proc, tmp_path / "sweep")
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 143, err
    assert trials_of(tmp_path / "sweep")[0].user_attrs["interrupted"]


@needs_optuna
def test_the_trial_of_a_killed_worker_is_run_again(corpus, tmp_path):
    space = write_space(tmp_path, steps=300)
    args = (corpus, "--space", space, "--trials", 1, "--out", tmp_path / "sweep")
    proc = worker(*args)
    started_training(proc, tmp_path / "sweep")
    proc.kill()  # no handler runs: the storage still says the trial is running
    proc.communicate()
    assert trials_of(tmp_path / "sweep")[0].state.name == "RUNNING"
    code, stdout, err = finish(worker(*args))
    assert code == 0, err
    assert [t.state.name for t in trials_of(tmp_path / "sweep")] == ["FAIL", "COMPLETE"]
    assert "its worker ended without finishing it" in stdout


# ---- SPACE.yaml ---------------------------------------------------------------------------------

def test_a_space_is_read_as_a_config_is():
    space = parse_space("cell: [rnn, gru]\nlr: {low: 1e-4, high: '3e-2', log: true}\n"
                        "hidden_size: {low: 32, high: 128, step: 32}\nlayers: 2\n"
                        "dropout: {low: 0, high: 0.5}\ntime_limit: [null, 30]\n")
    assert space.fixed == {"layers": 2}
    assert space.searched == {"cell": ["rnn", "gru"], "lr": {"low": 1e-4, "high": 3e-2,
                                                             "log": True},
                              "hidden_size": {"low": 32, "high": 128, "step": 32},
                              "dropout": {"low": 0.0, "high": 0.5},
                              "time_limit": [None, 30.0]}
    assert isinstance(space.searched["dropout"]["low"], float)


@pytest.mark.parametrize("text, fragment", [
    ("hiden_size: [32, 64]", "unknown config key 'hiden_size'"),
    ("hidden_size: [32, big]", "'hidden_size' must be int, got 'big'"),
    ("lr: {low: 0.1, high: 0.01}", "'lr': the range is empty"),
    ("lr: {low: 0.01, high: 0.01}", "'lr': the range is empty"),
    ("cell: []", "'cell' has an empty list of choices"),
    ("cell: [rnn, transformer]", "'cell' must be one of rnn, lstm, gru"),
    ("cell: {low: 1, high: 2}", "search it with a list of choices"),
    ("lr: {min: 0.001, max: 0.1}", "unknown range field 'max'"),
    ("lr: {low: 0.001}", "a range needs both low and high"),
    ("dropout: {low: 0, high: 0.5, log: true}", "a log range needs low above 0"),
    ("lr: {low: 0.001, high: 0.1, log: yes please}", "log must be true or false"),
    ("hidden_size: {low: 32, high: 100, step: 32}", "must be a multiple of step 32"),
    ("hidden_size: {low: 32, high: 64, step: 0}", "step must be positive"),
    ("hidden_size: {low: 32.5, high: 64}", "'hidden_size' must be int, got 32.5"),
    ("dropout: [0.1, 1.5]", "'dropout' must be in [0, 1), got 1.5"),
    ("cell: [rnn, rnn]", "lists the choice 'rnn' twice"),
    ("out: runs/x\nlr: [0.01]", "key 'out' is set by charrnn tune"),
    ("lr: 0.01", "searches nothing"),
    ("lr: [0.01\n", "is not valid YAML"),
    ("- lr", "must be a mapping"),
    ("lr: [0.01]\nlr: [0.02]", "duplicate key 'lr'"),
    # the space checked whole, as each trial's config will be
    ("steps: auto\nlr: [0.01, 0.02]", "steps: auto needs a time_limit"),
    ("eval_chars: 1\nlr: [0.01, 0.02]", "'eval_chars' must be 0 (all) or at least 2"),
    ("dropout: 1.5\nlr: [0.01, 0.02]", "'dropout' must be in [0, 1), got 1.5"),
    ("lr_min: 0.005\nlr: {low: 0.001, high: 0.1, log: true}", "a trial with lr 0.001"),
    ("steps: auto\ntime_limit: [null, 30]", "a trial with time_limit None would be refused"),
])
def test_space_errors_are_one_line(corpus, tmp_path, text, fragment, monkeypatch):
    """Every space error is found before Optuna is imported: with it made unimportable, the
    same one line."""
    real_import = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna" or name.startswith("optuna."):
            raise AssertionError("a space error must need no Optuna")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    (tmp_path / "space.yaml").write_text(text)
    result = run("tune", corpus, "--space", tmp_path / "space.yaml", "--trials", 2,
                 "--out", tmp_path / "sweep")
    one_line_error(result, fragment)
    assert "space.yaml" in result.stderr
    assert not (tmp_path / "sweep").exists()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=60) | st.builds(
    lambda scheme, user, pw, host, port, rest: f"{scheme}://{user}:{pw}@{host}:{port}{rest}",
    st.sampled_from(["postgresql", "postgres", "mysql", "sqlite", "x", "", "1a"]),
    st.text(max_size=8), st.text(max_size=8), st.sampled_from(["localhost", "[::1", "[::1]",
                                                                "h", ""]),
    st.one_of(st.integers(-10, 10**6).map(str), st.sampled_from(["PORT", "", "5432"])),
    st.text(max_size=12)))
def test_any_storage_url_gives_one_line_and_never_shows_its_password(url):
    """parse_storage, the one reader of --storage: a form to print, or a CharrnnError; either
    way without the password of a user:password@ part."""
    try:
        shown = tune.parse_storage(url)
    except charrnn.CharrnnError as e:
        shown = str(e)
    if "://" in url and "@" in url.split("://", 1)[1]:
        head = url.split("://", 1)[1]
        userinfo = head[:head.rfind("@", 0, len(head.split("?")[0].split("#")[0]))]
        if ":" in userinfo and len(userinfo.split(":", 1)[1]) >= 4:
            assert f":{userinfo.split(':', 1)[1]}@" not in shown, (url, shown)


@pytest.mark.parametrize("url, fragment", [
    ("postgresql://u:secret@localhost:PORT/db", "Port could not be cast"),
    ("postgresql://u:secret@localhost:70000/db", "out of range"),
    ("postgresql://u:secret@[::1/db", "Invalid IPv6 URL"),
    ("://u:secret@host/db", "no valid scheme"),
])
def test_storage_urls_that_cannot_be_read_are_one_line(corpus, tmp_path, url, fragment):
    space = write_space(tmp_path)
    for args in (("tune", corpus, "--space", space, "--trials", 1, "--out", tmp_path / "s",
                  "--storage", url), ("tune", "--report", tmp_path / "s", "--storage", url)):
        result = run(*args)
        one_line_error(result, fragment)
        assert "secret" not in result.stderr
    assert not (tmp_path / "s").exists()


@needs_optuna
def test_usage_and_folder_errors(corpus, tmp_path):
    space = write_space(tmp_path)
    assert run("tune", corpus, "--space", space, "--out", tmp_path / "s").exit_code == 2
    assert run("tune", "--report", tmp_path, "--trials", 3).exit_code == 2
    one_line_error(run("tune", "--report", tmp_path / "none"), "holds no sweep")
    one_line_error(run("tune", tmp_path / "missing.txt", "--space", space, "--trials", 1,
                       "--out", tmp_path / "s"), "does not exist")
    assert run("tune", corpus, "--space", space, "--trials", 1, "--out", tmp_path / "s",
               "--pruner", "none").exit_code == 0
    assert run("tune", corpus, "--space", space, "--trials", 2, "--out", tmp_path / "h",
               "--pruner", "hyperband").exit_code == 0
    one_line_error(run("tune", corpus, "--space", space, "--trials", 1, "--out", tmp_path / "s",
                       "--study", "other"), "holds the trials of study 'charrnn'")
    one_line_error(run("tune", "--report", tmp_path / "s", "--study", "other"),
                   "no study 'other'")
    other = write_space(tmp_path, searched={"lr": [0.01, 0.02]})
    journal = (tmp_path / "s" / tune.JOURNAL).read_bytes()
    one_line_error(run("tune", corpus, "--space", other, "--trials", 2, "--out", tmp_path / "s"),
                   "started with another search space")
    assert (tmp_path / "s" / tune.JOURNAL).read_bytes() == journal  # refused without a write
    with pytest.raises(charrnn.CharrnnError, match="unknown pruner 'xx'"):
        tune.sweep(str(corpus), str(space), str(tmp_path / "x"), 1, pruner="xx")
    assert not (tmp_path / "x").exists()  # refused before the sweep's folder is made
    one_line_error(run("tune", corpus, "--space", space, "--trials", 1, "--out", tmp_path / "p",
                       "--storage", "postgresql://nobody@/none?host=/nonexistent"),
                   "cannot open storage")


def test_tune_without_optuna_says_how_to_install_it(corpus, tmp_path, monkeypatch):
    without_package(monkeypatch, "optuna")
    space = write_space(tmp_path)
    result = run("tune", corpus, "--space", space, "--trials", 2, "--out", tmp_path / "sweep")
    one_line_error(result, "charrnn tune needs Optuna: pip install 'charrnn[tune]'")
    assert not (tmp_path / "sweep").exists()
    (tmp_path / tune.JOURNAL).write_text("")  # a folder that holds a sweep: only Optuna reads it
    one_line_error(run("tune", "--report", tmp_path), "pip install 'charrnn[tune]'")


@needs_optuna
def test_a_sweep_over_the_min_cells_and_the_residual_stack(corpus, tmp_path):
    """The schema gives tune the new cells and shape keys with nothing written for them: each
    trial trains the cell and MLP it drew, in the residual stack fixed by the space."""
    space = write_space(tmp_path, searched={"cell": ["mingru", "minlstm"], "mlp": [0, 2]},
                        stack="residual")
    out = tmp_path / "sweep"
    result = run("tune", corpus, "--space", space, "--trials", 3, "--out", out, "--seed", 1)
    assert result.exit_code == 0, result.output
    finished = [t for t in trials_of(out) if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3
    for t in finished:
        ck = checkpoint.load(os.path.join(t.user_attrs["run_dir"], "last.npz"))
        assert (ck.config.cell, ck.config.mlp, ck.config.stack) == (t.params["cell"],
                                                                     t.params["mlp"], "residual")
        assert ("l0.W1" in ck.params) == (t.params["mlp"] > 0)


@needs_optuna
def test_a_sweep_of_timed_trials_with_auto_steps(corpus, tmp_path):
    """A space with `steps: auto` (each trial's schedule fitted to its time limit, as `--time`
    runs are): the pruner's check of the closing evaluation reads the number each run resolved,
    and every trial finishes, pruned or complete, none failed."""
    space = write_space(tmp_path, steps="auto", time_limit=3, eval_every=10)
    out = tmp_path / "sweep"
    result = run("tune", corpus, "--space", space, "--trials", 6, "--out", out, "--seed", 2,
                 "--pruner-startup", 1)
    assert result.exit_code == 0, result.output
    states = [t.state.name for t in trials_of(out)]
    assert len(states) == 6 and "FAIL" not in states, states
    for t in trials_of(out):
        ck = checkpoint.load(os.path.join(t.user_attrs["run_dir"], "last.npz"))
        assert isinstance(ck.config.steps, int)
