"""nanoGPT's evaluation protocol (evaluate.score_windows, Model.score(windows=...), `charrnn eval
--windows`): random windows each scored from a zero state, against a plain loop over the windows
with the textbook model in float64; the same seed, the same windows; refusals in one line."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import charrnn
from charrnn import evaluate, model
from charrnn.cells import CELLS
from charrnn.errors import CharrnnError
from charrnn.reference.model import model_forward
from clihelp import SHAKESPEARE, TEN_STEPS, assert_one_line_error, run

H, V = 5, 7
STACKS = {"plain": {}, "residual-x2-mlp3": dict(stack="residual", expand=2, mlp=3)}


def _model(cell, stack):
    spec = model.ModelSpec(cell, V, H, 2, 0.0, "float64", **STACKS[stack])
    rng = np.random.default_rng(1)
    params = {k: rng.standard_normal(v.shape) * 0.5
              for k, v in model.init_params(spec, rng).items()}
    return spec, params


@pytest.mark.parametrize("rows", [4 * 9 + 5, 5])
@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_windows_equal_a_plain_loop_with_the_reference_model(monkeypatch, cell, stack, rows):
    """Each window alone from a zero state, one after another, through the textbook model:
    the same total, over passes of 4 windows of 9 (the last pass short: 4, 4, 3) or, when
    ROWS_AT_ONCE is shorter than a window, of one window each."""
    monkeypatch.setattr(evaluate, "ROWS_AT_ONCE", rows)
    spec, params = _model(cell, stack)
    ids = np.random.default_rng(2).integers(0, V, size=60).astype(np.uint8)
    window, count, seed = 9, 11, 3
    total, chars = evaluate.score_windows(params, spec, ids, window, count, seed)
    expected = 0.0
    for s in evaluate.window_starts(len(ids), window, count, seed):
        x, y = ids[s:s + window].reshape(-1, 1), ids[s + 1:s + window + 1].reshape(-1, 1)
        mean, _, _ = model_forward(params, cell, spec.layers, x, y, model.zero_state(spec, 1),
                                   spec.stack)
        expected += mean * window
    assert chars == count * window
    assert total == pytest.approx(expected, rel=1e-12)


def test_a_window_is_scored_from_a_zero_state_not_from_the_text_before_it():
    """What separates the protocols: the same window scored after other text, state carried,
    gives another total."""
    spec, params = _model("gru", "plain")
    ids = np.random.default_rng(4).integers(0, V, size=40)
    (start,) = evaluate.window_starts(len(ids), 10, 1, seed=0)
    alone, _ = evaluate.score_windows(params, spec, ids, 10, 1, seed=0)
    window = ids[start:start + 11]
    fresh, _ = evaluate.score(params, spec, window, n_streams=1)
    assert alone == pytest.approx(fresh, rel=1e-12)
    assert start > 0  # some text before it
    carried, _ = evaluate.score(params, spec, ids[:start + 11], n_streams=1)
    before, _ = evaluate.score(params, spec, ids[:start + 1], n_streams=1)
    assert abs((carried - before) - alone) > 1e-6


@settings(max_examples=50, deadline=None)
@given(n=st.integers(2, 500), window=st.integers(1, 300), count=st.integers(1, 200),
       seed=st.integers(0, 2**32))
def test_window_starts_are_seeded_and_leave_room_for_the_targets(n, window, count, seed):
    if n < window + 1:
        with pytest.raises(CharrnnError, match="too few for one window"):
            evaluate.window_starts(n, window, count, seed)
        return
    starts = evaluate.window_starts(n, window, count, seed)
    assert starts.shape == (count,)
    assert starts.min() >= 0 and starts.max() + window + 1 <= n  # the last target is ids[n-1]
    np.testing.assert_array_equal(starts, evaluate.window_starts(n, window, count, seed))


def test_every_start_can_be_drawn():
    """Uniform over the n - window starts nanoGPT's torch.randint(len(data) - block_size) draws:
    the first and the last both occur."""
    starts = evaluate.window_starts(20, 15, 500, seed=0)
    assert set(starts) == set(range(5))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run("train", SHAKESPEARE, *TEN_STEPS, "--out", out)
    assert result.exit_code == 0, result.output
    return out / "best.npz"


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "val.txt"
    with open(SHAKESPEARE, encoding="utf-8") as f:
        path.write_text(f.read(3000), encoding="utf-8")
    return path


def test_eval_windows_equals_model_score_and_is_seeded(tiny_model, text_file):
    text = text_file.read_text(encoding="utf-8")
    m = charrnn.load(tiny_model)
    result = run("eval", "--ckpt", tiny_model, text_file, "--windows", 64, "--num-windows", 70,
                 "--seed", 5, "--json")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)
    assert rec == m.score(text, windows=64, num_windows=70, seed=5)
    assert rec["chars"] == 70 * 64 and (rec["window"], rec["num_windows"], rec["seed"]) == (
        64, 70, 5)
    again = m.score(text, windows=64, num_windows=70, seed=5)
    other = m.score(text, windows=64, num_windows=70, seed=6)
    assert again == rec and other["loss_nats"] != rec["loss_nats"]
    stream = m.score(text)
    assert set(stream) == {"loss_nats", "bits_per_char", "perplexity", "chars"}
    assert stream["loss_nats"] != rec["loss_nats"]


def test_eval_windows_defaults_are_nanogpts(tiny_model, text_file):
    result = run("eval", "--ckpt", tiny_model, text_file, "--windows", 16)
    assert result.exit_code == 0, result.output
    assert f"{200 * 64 * 16:,} characters scored in {200 * 64:,} random windows of 16 " \
           "(seed 0)" in result.stdout


def test_a_window_longer_than_the_text_is_one_line(tiny_model, text_file):
    result = run("eval", "--ckpt", tiny_model, text_file, "--windows", 3000)
    assert_one_line_error(result, "3,000 characters, too few for one window of 3,000")
    with pytest.raises(CharrnnError, match="too few for one window"):
        charrnn.load(tiny_model).score("ROMEO:", windows=6)
    for bad in (dict(windows=0), dict(windows=2, num_windows=0)):
        with pytest.raises(CharrnnError, match="at least 1"):
            charrnn.load(tiny_model).score("ROMEO:", **bad)
    with pytest.raises(CharrnnError, match="seed must be 0 or more"):
        charrnn.load(tiny_model).score("ROMEO:", windows=2, seed=-1)


def test_window_options_without_windows_are_one_line(tiny_model, text_file):
    for flag in ("--seed", "--num-windows"):
        result = run("eval", "--ckpt", tiny_model, text_file, flag, 3)
        assert_one_line_error(result, "give --windows W too")


def test_eval_val_scores_the_validation_split_training_read(tiny_model, text_file):
    """--val: the last val_frac (the checkpoint's, 0.01 in tiny.yaml) of the file, under either
    protocol."""
    m = charrnn.load(tiny_model)
    text = text_file.read_text(encoding="utf-8")
    assert m.config.val_frac == 0.01
    val = text[len(text) - int(len(text) * 0.01):]
    for flags, expected in [((), m.score(val)),
                            (("--windows", 16, "--num-windows", 9), m.score(val, windows=16,
                                                                            num_windows=9))]:
        result = run("eval", "--ckpt", tiny_model, text_file, "--val", "--json", *flags)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == expected
    assert expected["chars"] == 9 * 16 and m.score(val)["chars"] == len(val) - 1
