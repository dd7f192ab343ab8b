"""charrnn.schedule: `steps: auto`, the schedule sized to the time limit at the machine's
measured pace, fixed in config.yaml and the checkpoint, kept on resume, and reproducible from the
resolved config; and the notice when a time limit will cut an annealing schedule short."""
import os
import types

import numpy as np
import pytest
import yaml

import charrnn
from charrnn import blas, config, interrupt, optim, resume as resume_mod, run as run_mod, schedule, \
    training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAKESPEARE = os.path.join(ROOT, "data", "tinyshakespeare.txt")
TINY = os.path.join(ROOT, "configs", "tiny.yaml")
# the simulated seconds of the clock below: a step at full speed, the delay that a machine much
# slower than that adds to every step, and an evaluation
STEP, DELAY, EVALUATION = 0.005, 0.04, 0.05
LIMIT = 5.0


class Clock:
    """The perf_counter that training, its Run and its schedule read, moved only by the steps
    and evaluations the test simulates (each takes `pace` seconds, the probe's `probe` seconds),
    so a run against a time limit comes out the same however busy the machine is."""

    def __init__(self, pace, probe):
        self.now, self.pace, self.probe = 0.0, pace, probe

    def perf_counter(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """A Clock whose steps all take STEP + DELAY; set its pace and probe to change that."""
    clock = Clock(STEP + DELAY, STEP + DELAY)
    fake_time = types.SimpleNamespace(perf_counter=clock.perf_counter)
    for module in (training, run_mod, schedule):
        monkeypatch.setattr(module, "time", fake_time)
    train_step, validation_loss = run_mod.Run.train_step, run_mod.Run.validation_loss

    def step(run, lr, vote=interrupt.NO_VOTE):
        # a vote to stop takes no step, as in one process (Run.train_step); the probe is the
        # Run with steps=1 (schedule.fit_steps)
        if not np.any(vote):
            clock.now += clock.probe if run.cfg.steps == 1 else clock.pace
        return train_step(run, lr, vote)

    def evaluation(run):
        clock.now += EVALUATION
        return validation_loss(run)
    monkeypatch.setattr(run_mod.Run, "train_step", step)
    monkeypatch.setattr(run_mod.Run, "validation_loss", evaluation)
    return clock


def train_on_the_clock(clock, *args, **kwargs):
    """-> (charrnn.train's Result, the simulated seconds it took)."""
    start = clock.now
    result = charrnn.train(*args, **kwargs)
    return result, clock.now - start


def resolved_steps(run_dir):
    with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["steps"]


def test_auto_steps_end_the_schedule_at_the_time_limit(clock, tmp_path):
    result, wall = train_on_the_clock(
        clock, SHAKESPEARE, TINY, out=tmp_path / "run", steps="auto", time_limit=LIMIT,
        lr_schedule="cosine", eval_every=20, sample_length=0, progress=False)
    steps = resolved_steps(tmp_path / "run")
    assert isinstance(steps, int) and steps > 20
    # the schedule ran to its end, just before the limit
    assert result.step == steps
    assert 0.9 * LIMIT <= wall <= LIMIT
    ck = charrnn.load(tmp_path / "run" / "last.npz").checkpoint
    assert ck.config.steps == steps and ck.step == result.step
    # the last cosine step is at lr_min: the schedule annealed fully
    assert schedule.lr_for(ck.config, steps - 1) < 0.01 * ck.config.lr


def test_a_run_cut_by_its_clock_has_ended_by_the_limit(clock, tmp_path):
    """The probe at full speed and the run DELAY slower a step, with a cosine (which is not
    fitted again): the probe's steps are far too many and the clock cuts the run. It stops
    while one more step and the closing evaluation still fit, so the run has ended by its limit,
    not a step and an evaluation after it (a half-hour run once ended 9 s late)."""
    clock.probe = STEP
    result, wall = train_on_the_clock(
        clock, SHAKESPEARE, TINY, out=tmp_path / "run", steps="auto", time_limit=LIMIT,
        lr_schedule="cosine", eval_every=20, sample_length=0, progress=False)
    assert result.step < 0.5 * resolved_steps(tmp_path / "run")  # cut by the clock
    assert LIMIT - (STEP + DELAY) - EVALUATION < wall <= LIMIT
    ck = charrnn.load(tmp_path / "run" / "last.npz").checkpoint
    assert ck.step == result.step and ck.record["val_loss"] is not None  # closed and saved


def test_resume_keeps_the_resolved_steps(clock, tmp_path):
    out = tmp_path / "run"
    charrnn.train(SHAKESPEARE, TINY, out=out, steps="auto", time_limit=LIMIT, eval_every=20,
                  sample_length=0, keep_last=10, progress=False)
    steps = resolved_steps(out)
    periodic = out / "step-000020.npz"
    _, cfg = resume_mod.for_resume(periodic, {"steps": "auto"})
    assert cfg.steps == steps
    result = charrnn.train(SHAKESPEARE, {"steps": "auto"}, resume=periodic, time_limit=60,
                           progress=False)
    assert result.step == steps and resolved_steps(out) == steps


def test_the_resolved_config_reproduces_the_run(clock, tmp_path):
    auto = tmp_path / "auto"
    charrnn.train(SHAKESPEARE, TINY, out=auto, steps="auto", time_limit=LIMIT, eval_every=20,
                  sample_length=0, dropout=0.1, keep_last=1000, progress=False)
    clock.pace = STEP  # the rerun at full speed
    again = tmp_path / "again"
    charrnn.train(SHAKESPEARE, str(auto / "config.yaml"), out=again, keep_last=1000,
                  progress=False)
    assert resolved_steps(again) == resolved_steps(auto)
    for name in sorted(os.listdir(auto)):
        if name.startswith("step-"):
            a, b = np.load(auto / name), np.load(again / name)
            for key in a.files:
                if key.startswith(("param/", "optim/", "state/")):
                    np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key}")


def test_auto_steps_need_a_time_limit(tmp_path):
    with pytest.raises(charrnn.CharrnnError, match="steps: auto needs a time_limit"):
        charrnn.train(SHAKESPEARE, TINY, out=tmp_path / "run", steps="auto", progress=False)


def test_a_held_schedule_is_refitted_at_the_first_evaluation(clock, tmp_path):
    """wsd: the probe's steps run at full speed and the run's DELAY slower, as on a machine that
    slows down after the probe, so the probe's guess is far too long and without a second fit
    the limit would stop the run before its decay began. At the first evaluation the steps are
    fitted again from the pace so far; the run then anneals inside the limit, the new number is
    what config.yaml and the checkpoints say, and that config reproduces the run bit for bit."""
    clock.probe = STEP
    lines = []
    auto = tmp_path / "auto"
    result, wall = train_on_the_clock(
        clock, SHAKESPEARE, TINY, out=auto, steps="auto", time_limit=LIMIT, lr_schedule="wsd",
        lr_decay_frac=0.3, lr_min=1e-5, eval_every=20, sample_length=0, keep_last=1000,
        progress=False, log=lines.append)
    first = next(line for line in lines if line.startswith("steps: auto ->"))
    guessed = int(first.split("->")[1].split()[0].replace(",", ""))
    refit = [line for line in lines if " at step 20 " in line]
    assert len(refit) == 1, lines
    steps = resolved_steps(auto)
    assert steps == int(refit[0].split("->")[1].split()[0].replace(",", ""))
    assert steps < 0.5 * guessed  # the probe ran DELAY faster a step
    assert result.step == steps and 0.9 * LIMIT <= wall <= LIMIT
    ck = charrnn.load(auto / "last.npz").checkpoint
    assert ck.config.steps == steps
    assert schedule.lr_for(ck.config, result.step - 1) < 0.2 * ck.config.lr  # well into its decay
    clock.pace = STEP  # the rerun at full speed
    again = tmp_path / "again"
    charrnn.train(SHAKESPEARE, str(auto / "config.yaml"), out=again, keep_last=1000,
                  progress=False)
    common = sorted(set(os.listdir(auto)) & set(os.listdir(again)))
    periodic = [f for f in common if f.startswith("step-")]
    assert "step-000020.npz" in periodic and len(periodic) >= 3
    for name in (periodic[0], periodic[-1]):  # before the refit's step and well after it
        a, b = np.load(auto / name), np.load(again / name)
        for key in a.files:
            if key.startswith(("param/", "optim/", "state/")):
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key}")


def test_refit_keeps_a_schedule_whose_past_rates_would_change():
    base = dict(lr=1e-3, time_limit=10.0, eval_every=20, steps=1000)
    # 20 steps in 1 s: about 180 more fit in the 9 s left
    for name, changes in (("constant", True), ("step", True), ("wsd", True), ("cosine", False)):
        cfg = config.build({**base, "lr_schedule": name})
        refitted = schedule.refit_steps(cfg, 20, 1.0, 0.1, 1.0)
        assert (refitted.steps != cfg.steps) == changes, name
        if changes:
            assert 150 < refitted.steps < 200
    # wsd whose decay would have begun before step 20 at the new length: kept
    late = config.build({**base, "lr_schedule": "wsd", "lr_decay_frac": 0.95})
    assert schedule.refit_steps(late, 20, 1.0, 0.1, 1.0) is late


def test_time_limit_notice_when_a_cosine_schedule_would_be_cut():
    cfg = config.build({"lr": 1e-3, "lr_schedule": "cosine", "lr_min": 1e-5, "steps": 10_000,
                        "time_limit": 10})
    # 50 steps in 1 s: the other 9 s reach about step 500 of 10,000
    line = schedule.time_limit_notice(cfg, 0, 50, 1.0, 9.0)
    assert "near step 500 of 10,000" in line and "--steps 400" in line
    assert f"lr {optim.lr_at(500, 1e-3, 'cosine', 10_000, 0, 1e-5):.2g}" in line
    assert schedule.time_limit_notice(cfg, 0, 50, 0.04, 9.96) is None  # 12,500 steps fit in 10 s
    resumed = schedule.time_limit_notice(cfg, 9_100, 9_150, 1.0, 9.0)  # the limit counts from now
    assert resumed is None
    held = config.build({"lr": 1e-3, "lr_schedule": "wsd", "steps": 10_000, "time_limit": 10})
    line = schedule.time_limit_notice(held, 0, 50, 1.0, 9.0)  # a cut wsd has not begun its decay
    assert "the wsd schedule is still at lr 0.001" in line


@pytest.mark.skipif(not blas.get().libs, reason="no BLAS threadpoolctl can control")
def test_a_pace_is_measured_on_the_threads_it_names(monkeypatch):
    """measure_pace holds the BLAS at its layout's thread count, whoever calls it: a dry run
    calls it outside training's hold, where the BLAS may run on every core while the step's
    loops think they have one."""
    seen = []
    train_step = run_mod.Run.train_step

    def step(run, lr, vote=interrupt.NO_VOTE):
        seen.append([get() for get, _ in blas.get().calls])
        return train_step(run, lr, vote)
    monkeypatch.setattr(run_mod.Run, "train_step", step)
    values = {"cell": "gru", "layers": 1, "hidden_size": 16, "batch_size": 4, "seq_len": 8}
    blas_ = blas.get()
    outside = blas_.hold(3)
    try:
        assert schedule.measure_pace(values, 20, threads=1) > 0
        assert seen and all(counts == [1] * len(blas_.calls) for counts in seen), seen
        assert [get() for get, _ in blas_.calls] == [3] * len(blas_.calls)  # put back
    finally:
        blas_.restore(outside, 3)
