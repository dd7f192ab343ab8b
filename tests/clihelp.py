"""What the tests that drive the command line share: the shipped paths, the options of a tiny
run, running a command in-process and checking that it failed in one line, and the mpiexec of
the tests that launch one."""
import builtins
import importlib.util
import os
import shutil
import sys

import pytest
from click.testing import CliRunner

from charrnn.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")
SHAKESPEARE = os.path.join(ROOT, "data", "tinyshakespeare.txt")
# a tiny run whose steps and evaluations each test sets
QUICK = ("--config", TINY, "--sample-length", 0, "--val-frac", 0.1)
# a whole tiny run of 10 steps
TEN_STEPS = ("--config", TINY, "--steps", 10, "--eval-every", 5, "--sample-length", 0)


def _mpiexec():
    """The mpiexec beside this Python (the mpich wheel's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="needs mpi4py and mpiexec: pip install 'charrnn[mpi]'")


def run(*args):
    """Run `charrnn ARGS...` in this process; any argument is turned to a string."""
    return CliRunner().invoke(main, [str(a) for a in args])


def run_overwriting(*args):
    """run(), but a `train` that does not resume gets --overwrite: the failing trains aimed at an
    existing run on purpose then get past the "already holds a run" refusal to the error under
    test, and the `unchanged` fixture checks that the run is still byte-identical afterwards."""
    args = [str(a) for a in args]
    if args[0] == "train" and "--resume" not in args:
        args.append("--overwrite")
    return run(*args)


BEFORE_THE_ERROR = {  # what stderr may hold besides the error line
    "nothing": lambda line: False,
    "warnings": lambda line: line.startswith("Warning: "),  # one line each, about the run
    "log": lambda line: not line.strip().startswith("Error"),  # a run's log and progress bar
}


def assert_one_line_error(result, *fragments, code=1, before="warnings"):
    """The command exited with `code` and wrote one line `Error: ...` holding every fragment to
    stderr, no traceback; besides it stderr holds only what `before` names (BEFORE_THE_ERROR):
    "warnings" about the run (e.g. a model large for its corpus), "nothing", or a run's "log"
    (an error that ends a run that has started)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    allowed = BEFORE_THE_ERROR[before]
    # lines end at "\n" only: a progress bar's carriage returns must not share the error's line
    lines = [line for line in result.stderr.split("\n") if line.strip() and not allowed(line)]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def one_line_error(result, *fragments, code=1):
    """assert_one_line_error, with nothing at all on stderr but the error line."""
    assert_one_line_error(result, *fragments, code=code, before="nothing")


def without_package(monkeypatch, package):
    """Make every import of `package` or its submodules fail, as where it is not installed."""
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == package or name.startswith(package + "."):
            raise ImportError(f"No module named {package!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
