"""A run that diverges stops: one line naming the loss, the limit and what to lower, exit 1, and
no diverged model saved (charrnn/divergence.py's rule), alone and under a real `mpiexec -n 2`."""
import math
import os
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

import charrnn
from charrnn import checkpoint, divergence, run as run_mod
from clihelp import MPIEXEC, needs_mpi, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")
SHAPES = {"rnn": [], "lstm": ["--cell", "lstm", "--layers", 2],
          "gru-residual": ["--cell", "gru", "--stack", "residual", "--layers", 2]}
SMALL = ["--config", TINY, "--eval-every", 5, "--sample-length", 0]


@pytest.fixture(scope="module")
def small_corpus(shakespeare_excerpt):
    return shakespeare_excerpt(4000)


def assert_one_error_line(stderr, code, *fragments):
    """Exit code 1 and one line `Error: ...` holding every fragment, the last on stderr (after
    the run's log), with no traceback."""
    assert code == 1, stderr
    assert "Traceback" not in stderr
    # split on "\n" only: a progress bar's carriage returns must not share the error's line
    lines = [line for line in stderr.split("\n") if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    assert errors == lines[-1:] and errors[0].startswith("Error: "), stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def saved(run_dir):
    """name -> bytes of the run's checkpoints."""
    return {name: open(os.path.join(run_dir, name), "rb").read()
            for name in sorted(os.listdir(run_dir)) if name.endswith(".npz")}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_huge_rate_stops_the_run_with_one_line_and_nothing_saved(small_corpus, tmp_path,
                                                                     shape):
    out = tmp_path / "run"
    result = run("train", small_corpus, *SMALL, *SHAPES[shape], "--steps", 20, "--lr", 1e9,
                 "--out", out)
    assert_one_error_line(result.stderr, result.exit_code, "the run diverged",
                          "the training loss at step 2",
                          "lower --lr (now 1e+09) or --clip (now 5)")
    assert saved(out) == {}  # no best.npz, nor a last.npz of a diverged model


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("steps, caught_by", [(20, "the training loss at step 12"),
                                              (11, "the validation loss at step 11")])
def test_a_run_that_diverges_after_saving_keeps_its_checkpoints(small_corpus, tmp_path, shape,
                                                                 steps, caught_by):
    """Ten healthy steps saved, then a resume at a huge rate. Going on to step 20, step 12's
    loss is past the limit; stopping at step 11, the one diverged update is the last before the
    closing evaluation, whose validation loss is the only one that sees it: either way last.npz
    and best.npz stay the healthy ones, whole."""
    out = tmp_path / "run"
    assert run("train", small_corpus, *SMALL, *SHAPES[shape], "--steps", 10,
               "--out", out).exit_code == 0
    before = saved(out)
    assert {"last.npz", "best.npz"} <= set(before)
    result = run("train", small_corpus, "--resume", out / "last.npz", "--steps", steps,
                 "--lr", 1e9)
    assert_one_error_line(result.stderr, result.exit_code, "the run diverged", caught_by,
                          "lower --lr (now 1e+09)")
    assert saved(out) == before
    for name in before:
        assert checkpoint.load(out / name).step == 10


def test_without_clipping_the_line_says_to_set_one(small_corpus, tmp_path):
    result = run("train", small_corpus, *SMALL, "--steps", 20, "--lr", 1e9, "--clip", 0,
                 "--out", tmp_path / "run")
    assert_one_error_line(result.stderr, result.exit_code, "the run diverged",
                          "or set a --clip (now off)")


@given(vocab_size=st.integers(1, 10**6), first=st.floats(0, 1e3),
       share=st.floats(0, 1), excess=st.floats(1e-9, 1e12))
def test_the_limit_is_three_times_the_largest_reference(vocab_size, first, share, excess):
    """A loss up to FACTOR x max(ln V, the first loss, FLOOR_NATS) goes on, so a run never stops
    within three times where it started or where a model that knows nothing is; anything
    beyond, and a loss that is not a number, stops it."""
    reference = max(math.log(vocab_size), first, divergence.FLOOR_NATS)
    limit = divergence.limit(vocab_size, first)
    assert limit == divergence.FACTOR * reference
    assert not divergence.diverged(share * limit, limit)
    assert divergence.diverged(limit * (1 + excess), limit)
    assert divergence.diverged(math.nan, limit) and divergence.diverged(math.inf, limit)
    # a larger vocabulary or first loss never lowers the limit
    assert divergence.limit(vocab_size + 1, first) >= limit
    assert divergence.limit(vocab_size, first + excess) >= limit


@needs_mpi
def test_every_rank_stops_and_the_line_is_printed_once(small_corpus, tmp_path):
    def mpiexec(*args):
        return subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "charrnn",
                               *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "CHARRNN_MPI_TIMEOUT": "60", "PYTHONPATH": ROOT,
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    out = tmp_path / "run"
    launched = mpiexec("train", small_corpus, *SMALL, "--steps", 10, "--out", out)
    assert launched.returncode == 0, launched.stderr
    before = saved(out)
    resumed = mpiexec("train", small_corpus, "--resume", out / "last.npz", "--steps", 20,
                      "--lr", 1e9)
    # both ranks ended, with the error's code, and the line came once
    assert_one_error_line(resumed.stderr, resumed.returncode, "the run diverged",
                          "the training loss at step 12")
    assert saved(out) == before


def test_a_validation_loss_past_the_limit_alone_is_overfitting_not_divergence(
        small_corpus, tmp_path, monkeypatch):
    """A model that fits its training text while scoring a small validation split worse than
    chance (it memorised the text) has not diverged: the run goes on and saves it."""
    monkeypatch.setattr(run_mod.Run, "validation_loss", lambda run: 1e3)
    result = charrnn.train(small_corpus, TINY, out=tmp_path / "run", steps=10, eval_every=5,
                           sample_length=0, progress=False)
    assert result.step == 10 and checkpoint.load(tmp_path / "run" / "last.npz").step == 10
