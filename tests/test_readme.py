"""The README and docs/ as a newcomer meets them: the quickstart, the ten-minute model's commands
and the Python example run as written; every command of the synopsis answers -h; the test
command is the one .ci/run runs; every relative link resolves."""
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

from clihelp import MPIEXEC, needs_mpi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))),
        os.path.join(ROOT, "benchmarks", "RESULTS.md")]


def readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def block(heading, lang):
    """The first ```lang block after the heading `## {heading}`."""
    text = readme()
    section = text[text.index(f"\n## {heading}"):]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def as_commands(shell):
    """A README shell block without its install step (the test runs the package it tests), with
    `charrnn` the package run by this Python."""
    shell = shell.replace("\\\n", " ")
    parts = [p.strip() for line in shell.splitlines() for p in line.split("&&")]
    return [p.replace("charrnn ", f"{sys.executable} -m charrnn ", 1) for p in parts
            if p.startswith("charrnn ")]


@pytest.fixture
def workdir(tmp_path):
    for folder in ("data", "configs"):
        shutil.copytree(os.path.join(ROOT, folder), tmp_path / folder)
    return tmp_path


def run_all(commands, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    outputs = []
    for command in commands:
        result = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True,
                                timeout=300, env=env)
        assert result.returncode == 0, (command, result.stderr[-2000:])
        outputs.append(result)
    return outputs


def test_the_quickstart_runs_as_written(workdir):
    shell = block("Quickstart", "sh")
    assert shell.splitlines()[0].startswith("python3 -m venv .venv")
    commands = as_commands(shell)
    assert len(commands) == 2
    train, sample = run_all(commands, workdir)
    assert "best validation loss" in train.stderr
    assert len(sample.stdout) == 301  # 300 characters and the newline


def test_the_ten_minute_model_commands_run(workdir):
    """The one command's train and sample, with the training cut to a few steps (its flags are
    the ones shipped: the model is chosen for the ten minutes, the steps are the user's)."""
    commands = as_commands(block("A model that writes", "sh"))
    assert len(commands) == 2 and "--time 10m" in commands[0]
    commands[0] += " --steps 3 --eval-every 3 --sample-length 0"
    _, sample = run_all(commands, workdir)
    assert len(sample.stdout) == 501


@needs_mpi
def test_the_mpiexec_command_runs(workdir):
    """The README's mpiexec line, cut to a few steps, on a real mpiexec (the mpi extra's)."""
    lines = [line for line in block("Every core", "sh").splitlines()
             if line.startswith("mpiexec -n 2 charrnn train")]
    assert len(lines) == 1
    command = lines[0].replace("mpiexec ", f"{MPIEXEC} ", 1).replace(
        "charrnn ", f"{sys.executable} -m charrnn ", 1)
    result, = run_all([command + " --steps 3 --eval-every 3 --sample-length 0"], workdir)
    assert result.stderr.startswith("ranks: 2 x 1 thread"), result.stderr[:300]
    assert os.path.exists(workdir / "runs" / "gru" / "last.npz")


def test_the_python_example_runs_as_written(workdir):
    code = block("From Python", "python")
    assert len(code.strip().splitlines()) <= 6
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_every_command_of_the_synopsis_answers_help():
    names = re.findall(r"^charrnn (\w+)", block("Commands", "text"), re.M)
    assert sorted(set(names)) == ["eval", "export", "info", "plot", "sample", "train", "tune",
                                 "viz"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    for name in sorted(set(names)):
        result = subprocess.run([sys.executable, "-m", "charrnn", name, "-h"], capture_output=True,
                                text=True, timeout=60, env=env)
        assert result.returncode == 0 and "Usage:" in result.stdout, (name, result.stderr)


def test_the_test_command_is_the_one_ci_runs():
    command = block("Tests", "sh").strip()
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    assert "python -m pytest" in command
    assert ci.count(command) == 1, "the README's test command must appear in .ci/run word for word"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_resolve(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and t.split("#")[0]]
    if path.endswith("README.md"):
        assert len(local) >= 10  # the README links the docs, the reference and the tests
    missing = [t for t in local
               if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(path), t)))]
    assert not missing, missing
