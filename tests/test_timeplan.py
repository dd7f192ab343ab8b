"""`time`: the rules that choose a model and recipe (charrnn.timeplan) over any corpus, machine
and time (hypothesis, on a simulated machine); the keys a user gives winning over them; the
choice and its reasons in a dry run; a timed run on a simulated clock that records its choice
in config.yaml, ends at its time and resumes; and what is refused in one line."""
import os

import pytest
import yaml
from hypothesis import given, settings, strategies as st

import charrnn
from charrnn import config, timeplan
from clihelp import SHAKESPEARE, assert_one_line_error, run
from test_schedule import clock, train_on_the_clock  # noqa: F401 (clock: a fixture)


def machine(speed):
    """A simulated machine: a step's cost grows with the model's weights, as a CPU's does (its
    pace in chars/s is speed / weights), so wider models train on fewer characters."""
    calls = []

    def measure(values):
        calls.append(values)
        return speed / timeplan.weights(values, 65)
    measure.calls = calls
    return measure


SECONDS = st.floats(30, 200_000)
TRAIN_CHARS = st.integers(1_000, 10**9)
SPEED = st.floats(1e9, 1e13)


@settings(max_examples=60, deadline=None)
@given(SECONDS, TRAIN_CHARS, SPEED)
def test_the_width_is_the_widest_whose_budget_feeds_each_weight(seconds, train_chars, speed):
    measure = machine(speed)
    plan = timeplan.choose(seconds, train_chars, 65, {}, measure)
    width = plan.values["hidden_size"]

    def per_weight(width):
        shaped = {**plan.values, "hidden_size": width}
        return speed / timeplan.weights(shaped, 65) ** 2 * seconds * timeplan.TRAINING_SHARE

    def text(width):  # training characters of the corpus a weight
        return train_chars / timeplan.weights({**plan.values, "hidden_size": width}, 65)

    def fits(width):
        return (per_weight(width) >= timeplan.CHARS_PER_WEIGHT
                and text(width) >= timeplan.TEXT_PER_WEIGHT)
    wider = [w for w in timeplan.WIDTHS if w > width]
    assert fits(width) or width == timeplan.WIDTHS[0]
    assert not wider or not fits(wider[0])
    # measured narrowest first, and none wider than the first that falls short; one whose text
    # is too short is not measured at all
    measured = [m["hidden_size"] for m in measure.calls]
    assert measured == list(timeplan.WIDTHS[:len(measured)])
    if width != timeplan.WIDTHS[0] and wider:
        too_big = text(wider[0]) < timeplan.TEXT_PER_WEIGHT
        assert measured[-1] == (width if too_big else wider[0])
    config.load(plan.values)  # a valid config, as it is used


@settings(max_examples=40, deadline=None)
@given(SECONDS, SECONDS, TRAIN_CHARS, SPEED)
def test_more_time_never_gives_a_narrower_model_or_less_dropout(a, b, train_chars, speed):
    short, long = (timeplan.choose(s, train_chars, 65, {}, machine(speed)).values
                   for s in sorted((a, b)))
    assert long["hidden_size"] >= short["hidden_size"]
    if long["hidden_size"] == short["hidden_size"]:
        assert long["dropout"] >= short["dropout"]
    for values in (short, long):
        assert 0 <= values["dropout"] <= timeplan.DROPOUT_MAX


@settings(max_examples=40, deadline=None)
@given(SECONDS, TRAIN_CHARS, SPEED, st.fixed_dictionaries({}, optional={
    "hidden_size": st.integers(1, 700), "dropout": st.floats(0, 0.9),
    "lr": st.floats(1e-5, 1e-1), "cell": st.sampled_from(["rnn", "lstm", "gru"]),
    "layers": st.integers(1, 3), "batch_size": st.integers(1, 200),
    "seq_len": st.integers(2, 200), "lr_schedule": st.sampled_from(["constant", "wsd"]),
    "eval_every": st.integers(1, 1000)}))
def test_the_keys_a_user_gives_win(seconds, train_chars, speed, mine):
    measure = machine(speed)
    plan = timeplan.choose(seconds, train_chars, 65, dict(mine), measure)
    for key, value in mine.items():
        assert plan.values[key] == value
    for measured in measure.calls:  # the user's model is the one measured
        for key in ("cell", "layers", "batch_size", "seq_len", "hidden_size"):
            if key in mine:
                assert measured[key] == mine[key]
    config.load(plan.values)


def test_no_dropout_until_the_text_is_seen_several_times():
    # a budget of about a pass over a big corpus, then of dozens over a small one
    speed = 1e11
    once = timeplan.choose(600, 10**9, 65, {}, machine(speed)).values
    often = timeplan.choose(600, 100_000, 65, {}, machine(speed)).values
    assert once["dropout"] == 0
    assert often["dropout"] > 0.2


def test_long_budgets_turn_on_weight_drop_and_ema():
    # hundreds of passes over 100,000 characters, then a fifth of one over 100M; a cell without
    # hidden-to-hidden weights gets no weight_drop, and an ema the user gives wins
    speed = 1e11
    often = timeplan.choose(600, 100_000, 65, {}, machine(speed)).values
    rarely = timeplan.choose(600, 10**8, 65, {}, machine(speed)).values
    assert {k: often[k] for k in timeplan.LONG_BUDGET} == timeplan.LONG_BUDGET
    assert not set(timeplan.LONG_BUDGET) & set(rarely)
    mine = timeplan.choose(600, 100_000, 65, {"cell": "mingru", "ema": 0.0},
                           machine(speed)).values
    assert "weight_drop" not in mine and mine["ema"] == 0.0
    for values in (often, rarely, mine):
        config.load(values)


def test_fewer_passes_turn_them_on_only_over_a_large_budget():
    # the same passes (20) over a large text and a small one: only the large budget memorises
    def passes(train_chars):
        return timeplan.choose(600, train_chars, 65, {"hidden_size": 256},
                               lambda values: 20 * train_chars / 600 / timeplan.TRAINING_SHARE)
    large, small = passes(10**6), passes(50_000)
    assert timeplan.REGULARIZE_LARGE_FROM_EPOCHS <= 20 < timeplan.REGULARIZE_FROM_EPOCHS
    assert {k: large.values[k] for k in timeplan.LONG_BUDGET} == timeplan.LONG_BUDGET
    assert not set(timeplan.LONG_BUDGET) & set(small.values)
    assert any("20.0 passes" in r and "weight_drop 0.2" in r for r in large.reasons)


@pytest.mark.parametrize("passes, on", [(12.1, False), (16.0, True)])
def test_over_all_of_tiny_shakespeare_the_measured_passes_decide(passes, on):
    """The two points measured over tiny Shakespeare's 1M characters (RESULTS.md): at 12.1 passes
    the regularizers cost 0.032 nats and stay off; at 16 they gained 0.014 and are on."""
    train_chars = 1_003_855

    def pace(values):
        return passes * train_chars / 600 / timeplan.TRAINING_SHARE
    plan = timeplan.choose(600, train_chars, 65, {"hidden_size": 384}, pace)
    assert (set(timeplan.LONG_BUDGET) <= set(plan.values)) is on, plan.reasons
    assert any(f"{passes:.1f} passes" in r for r in plan.reasons), plan.reasons


def test_the_recipe_follows_the_budget():
    recipes = [timeplan.choose(seconds, 10**6, 65, {}, machine(speed)).values
               for seconds, speed in ((60, 1e9), (3600, 1e12))]
    assert (recipes[0]["batch_size"], recipes[0]["seq_len"]) == timeplan.RECIPES[0][1:3]
    assert (recipes[1]["batch_size"], recipes[1]["seq_len"]) == timeplan.RECIPES[-1][1:3]


# --- the config key --------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1h30m", 5400),
                                           ("1.5h", 5400), ("600", 600), (45, 45), ("2m30s", 150)])
def test_durations(text, seconds):
    assert config.seconds_of(text) == seconds
    cfg = config.load({"time": text})
    assert (cfg.time_limit, cfg.steps) == (seconds, config.AUTO)


def test_time_keeps_the_steps_and_time_limit_a_user_gives():
    cfg = config.load({"time": "10m"}, {"steps": 500, "time_limit": 300})
    assert (cfg.steps, cfg.time_limit) == (500, 300)
    assert config.given_keys({"time": "10m"}, {"steps": 500, "lr": None}) == {"time", "steps"}


@pytest.mark.parametrize("value", ["abc", "0", "-5m", "10x", "", "m", "1e400", "99999h"])
def test_a_bad_duration_is_a_usage_error(value, tmp_path):
    result = run("train", SHAKESPEARE, "--time", value, "--out", tmp_path / "run")
    assert_one_line_error(result, "'--time'", code=2, before="nothing")


def test_too_short_a_time_and_a_bad_file_value_are_refused_in_one_line(tmp_path):
    result = run("train", SHAKESPEARE, "--time", "10s", "--out", tmp_path / "run")
    assert_one_line_error(result, "'time' must be at least 30s", before="nothing")
    bad = tmp_path / "bad.yaml"
    bad.write_text("time: 10 minutes\n")
    result = run("train", SHAKESPEARE, "--config", bad, "--out", tmp_path / "run")
    assert_one_line_error(result, "'time' must be a duration", before="nothing")
    assert not (tmp_path / "run").exists()


# --- the dry run and a run -------------------------------------------------------------------

def test_the_dry_run_prints_the_choice_and_its_reasons(tmp_path):
    result = run("train", SHAKESPEARE, "--time", "45s", "--threads", 1, "--batch-size", 8,
                 "--seq-len", 20, "--dropout", 0.2, "--out", tmp_path / "run", "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("time 45s: 2 x ")
    for reason in ("corpus: 1,003,855 training characters, vocabulary of 65", "hidden_size ",
                   "chars/s", "dropout 0.2 (yours)", "batch 8 x 20", "weight_drop"):
        assert reason in out
    assert "steps auto: as many as fit 45 s" in out
    assert not (tmp_path / "run").exists()


def test_a_timed_run_records_its_choice_ends_on_time_and_resumes(clock, tmp_path):  # noqa: F811
    # a simulated clock makes every width as fast, so the width is given (the rule has its own
    # tests above) and the rest is chosen around it
    clock.pace = clock.probe = 0.05  # 160 characters a step: a 3,200 chars/s machine
    out = tmp_path / "run"
    logged = []
    result, seconds = train_on_the_clock(
        clock, SHAKESPEARE, time="60s", hidden_size=32, batch_size=8, seq_len=20, threads=1,
        out=out, sample_length=0, progress=False, log=logged.append)
    with open(out / "config.yaml", encoding="utf-8") as f:
        saved = yaml.safe_load(f)
    assert (saved["cell"], saved["layers"], saved["hidden_size"]) == ("gru", 2, 32)
    assert (saved["time"], saved["time_limit"], saved["dropout"]) == ("60s", 60, 0)
    assert (saved["batch_size"], saved["seq_len"]) == (8, 20)
    assert isinstance(saved["steps"], int) and result.step <= saved["steps"]
    assert 55 <= seconds <= 61  # the measuring counts in the time
    assert logged[0] == "time 60s: 2 x 32 gru, chosen for this corpus and machine (1 thread):"
    assert logged[2] == "  hidden_size 32 (yours): 3,200 chars/s here"
    # a resume continues the same run: nothing is chosen again
    resumed = charrnn.train(SHAKESPEARE, resume=out / "last.npz", steps=result.step + 5,
                            progress=False, log=logged.append)
    assert resumed.step == result.step + 5
    with open(out / "config.yaml", encoding="utf-8") as f:
        again = yaml.safe_load(f)
    assert {k: v for k, v in again.items() if k != "steps"} == {
        k: v for k, v in saved.items() if k != "steps"}


def test_time_is_refused_with_init_from(tmp_path):
    first = tmp_path / "first"
    assert run("train", SHAKESPEARE, "--config", os.path.join(os.path.dirname(SHAKESPEARE),
               "..", "configs", "tiny.yaml"), "--steps", 2, "--eval-every", 2,
               "--sample-length", 0, "--out", first).exit_code == 0
    result = run("train", SHAKESPEARE, "--init-from", first / "last.npz", "--time", "1m",
                 "--out", tmp_path / "second")
    assert_one_line_error(result, "--init-from", "`time` chooses one", before="nothing")
