"""Summaries around a run: `charrnn info` on a checkpoint, and `charrnn train --dry-run` (what a run
would cost, its warnings, and that it writes nothing)."""
import json
import math

import numpy as np
import pytest

from charrnn import checkpoint, config, corpus, model, report
from charrnn.cells import CELLS
from clihelp import QUICK, TINY, one_line_error, run


def test_info(tiny_run):
    out, _ = tiny_run
    ck = checkpoint.load(out / "best.npz")
    result = run("info", out / "best.npz")
    assert result.exit_code == 0, result.output
    text = result.stdout
    n = sum(p.size for p in ck.params.values())
    for fragment in ("rnn 1 x 32, dropout", f"{n:,}", repr(ck.vocab), "\\n", "\\x1c",
                     f"step             {ck.step}", f"{ck.chars:,}", f"{ck.best_val:.4f} nats/char",
                     f"{ck.best_val / math.log(2):.4f} bits/char", ck.corpus_hash,
                     "format version   1"):
        assert fragment in text, fragment
    info = json.loads(run("info", out / "best.npz", "--json").stdout)
    assert info["parameters"] == n and info["vocab"] == ck.vocab and info["step"] == ck.step
    assert info["best_val_bpc"] == pytest.approx(ck.best_val / math.log(2))
    one_line_error(run("info", out / "missing.npz"), "does not exist")


def test_dry_run_reports_and_writes_nothing(books, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    result = run("train", books, *QUICK, "--out", out, "--cache-dir", cache, "--dry-run")
    assert result.exit_code == 0, result.output
    sc = corpus.scan([books])
    cfg = config.build(config.parse_yaml(open(TINY).read()), {"val_frac": 0.1})
    est = report.estimate(cfg, sc.chars, len(sc.vocab))
    assert est["windows_per_epoch"] == (36001 // 8 - 1) // 20
    for fragment in (f"{est['parameters']:,} parameters", f"{est['windows_per_epoch']:,} steps per epoch",
                     f"chars per param  {est['chars_per_param']:,.2f}", "memory estimate  ~"):
        assert fragment in result.stdout, fragment
    assert "Warning" not in result.stderr and "nothing was trained or written" in result.stderr
    assert not out.exists() and not cache.exists()


def test_dry_run_warnings(books, tmp_path):
    # 40,000 characters for 1.2M weights: 0.03 a weight, below timeplan.TEXT_PER_WEIGHT
    result = run("train", books, *QUICK, "--val-frac", 0.0005, "--hidden-size", 1024,
                 "--out", tmp_path / "o", "--dry-run")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 2
    assert "validation split has 20 characters, less than one window" in warnings[0]
    assert "far too large for the corpus" in warnings[1]


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("stack", [{}, {"stack": "residual", "expand": 2, "mlp": 3},
                                   {"stack": "residual", "expand": 1, "mlp": 0}],
                         ids=["plain", "residual-mlp", "residual"])
def test_parameter_count_is_the_size_of_the_arrays_a_model_has(cell, stack):
    """estimate()'s count against the arrays model.init_params really makes, for every cell and
    stack."""
    cfg = config.build(None, {"cell": cell, "hidden_size": 12, "layers": 2, **stack})
    est = report.estimate(cfg, 10**5, 30)
    params = model.init_params(model.spec_of(cfg, 30), np.random.default_rng(0))
    assert est["parameters"] == sum(p.size for p in params.values())


def test_memory_estimate_is_of_the_right_size():
    cfg = config.build(None, {"cell": "lstm", "hidden_size": 512, "layers": 2})
    est = report.estimate(cfg, 10**8, 100)
    P = est["parameters"]
    assert P == 4 * 512 * (100 + 512 + 1) + 4 * 512 * (512 + 512 + 1) + 512 * 100 + 100
    assert est["params_mb"] == pytest.approx(P * 4 * 4 / 2**20)  # adam: weights, grads, m, v
    # tracemalloc's peak over a forward and backward pass of this model is 272 MB on one
    # thread and 329 MB on two, where its layers run as a wavefront (2026-12-07); the estimate
    # counts the second
    assert 0.9 * 329 < est["step_mb"] + est["params_mb"] / 2 < 1.15 * 329
    # at V = 5,000 the logits are made a chunk at a time: tracemalloc's peak over a training
    # step of an RNN 1x256 at batch 64 x 100 (forward, backward, clip, Adam) is 53 MB
    cfg = config.build(None, {"cell": "rnn", "hidden_size": 256})
    est = report.estimate(cfg, 10**8, 5000)
    assert 40 < est["step_mb"] + est["params_mb"] / 2 < 70


@pytest.mark.parametrize("cell, shape, peak", [("mingru", {}, 162),
                                               ("minlstm", {"expand": 2, "mlp": 4}, 649)])
def test_memory_estimate_of_the_residual_stack(cell, shape, peak):
    """peak: tracemalloc's peak in MB over a forward and backward pass of the model at batch 64
    x 100 (what estimate's step_mb stands for), measured for the residual stack."""
    cfg = config.build(None, {"cell": cell, "stack": "residual", "hidden_size": 256,
                              "layers": 3, **shape})
    est = report.estimate(cfg, 10**6, 65)
    assert 0.9 * peak < est["step_mb"] + est["params_mb"] / 2 < 1.15 * peak
