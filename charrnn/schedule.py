"""A run against the clock: the model and recipe a `time` chooses (timeplan.py's rules, fed
the paces measured here), the learning rate of each step under the config's schedule, the
number of steps that fits a time limit (`steps: auto`), and the note when a time limit will cut
an annealing schedule short.

`steps: auto` is fitted twice in a fresh run: by a probe (a throwaway copy of the run) before
it starts, then, where the schedule allows it, again at the first evaluation from the pace of
the steps so far. Nothing here writes: the training loop asks a Pacer, the one owner of the
run's length and its time limit, for each step's learning rate and whether time is up.
"""
import dataclasses
import time

import numpy as np

from . import checkpoint, config as config_mod, distributed, optim, runtime, timeplan
from .corpus import Corpus


def lr_for(cfg, step):
    """The learning rate of update number step (0-based) under cfg's schedule."""
    return optim.lr_at(step, cfg.lr, cfg.lr_schedule, cfg.steps, cfg.warmup_steps, cfg.lr_min,
                       cfg.lr_decay, cfg.lr_decay_every, cfg.lr_decay_frac)


ANNEALING = ("cosine", "wsd")  # schedules that end low at `steps`, so a cut stops them high
NOTICE_AFTER_STEPS = 50  # steps timed before estimating where the time limit will fall
NOTICE_BELOW = 0.95  # share of `steps` under which the cut is worth a note (the estimate is rough)


def time_limit_notice(cfg, start_step, step, seconds, time_left):
    """A line when cfg's time limit will stop an annealing schedule (cosine or wsd) well before
    its end, else None.

    start_step..step took `seconds`; the steps that fit the `time_left` seconds of the limit are
    estimated at that pace (evaluations will make it a little slower). The suggested --steps
    leaves a tenth for them.
    """
    reachable = step + int(time_left * (step - start_step) / max(seconds, 1e-9))
    if reachable >= NOTICE_BELOW * cfg.steps:
        return None
    suggested = max(100, int(0.9 * reachable) // 100 * 100)
    return (f"Note: at this pace the {cfg.time_limit:g} s time limit stops the run near step "
            f"{reachable:,} of {cfg.steps:,}, where the {cfg.lr_schedule} schedule is still at lr "
            f"{lr_for(cfg, reachable):.2g} (it reaches lr_min {cfg.lr_min:g} only at step "
            f"{cfg.steps:,}); to anneal fully within the limit, pass --steps {suggested}")


AUTO_WARMUP_STEPS = 5  # untimed: the first steps pay for page faults and the BLAS's start
AUTO_TIMED_STEPS = 50
AUTO_SPARE = 0.02  # share of the time limit left unplanned, for the closing save and noise


def fit_steps(cfg, probe, wall_start):
    """-> (cfg with `steps: auto` replaced by the number of steps that fits its time limit, the
    seconds an evaluation took, the log line that says so).

    probe: a throwaway run.Run of the same model, data and seed (so the real run is the run
    that the resolved config reproduces). It times AUTO_TIMED_STEPS steps after a warm-up, and
    one evaluation with its checkpoint save and sample. The steps then fill what is left of the
    limit with an evaluation every eval_every steps and a closing one.
    """
    for _ in range(AUTO_WARMUP_STEPS):
        probe.train_step(lr_for(probe.cfg, probe.state.step))
    t0 = time.perf_counter()
    for _ in range(AUTO_TIMED_STEPS):
        probe.train_step(lr_for(probe.cfg, probe.state.step))
    step_time = (time.perf_counter() - t0) / AUTO_TIMED_STEPS
    t0 = time.perf_counter()
    probe.validation_loss()
    checkpoint.to_bytes(probe.checkpoint(probe.cfg))
    if cfg.sample_length:
        probe.sample_text()
    eval_time = time.perf_counter() - t0
    left = cfg.time_limit * (1 - AUTO_SPARE) - (time.perf_counter() - wall_start) - eval_time
    steps = max(1, int(left / (step_time + eval_time / cfg.eval_every)))
    line = (f"steps: auto -> {steps:,} (a step took {step_time * 1e3:,.1f} ms and an evaluation "
            f"{eval_time:,.2f} s here; {cfg.time_limit:g} s time limit)")
    return dataclasses.replace(cfg, steps=steps), eval_time, line


def refit_steps(cfg, step, train_seconds, eval_time, wall):
    """cfg with `steps` fitted again to its time limit at the pace of its first `step` steps
    (train_seconds of training, excluding evaluations; `wall` seconds since the limit began),
    or cfg itself when the new number would change the rate of a step already taken.

    The probe's 50 steps can miss the run's pace by 5-10% on a machine that drifts; the first
    eval_every steps are a larger sample. Only a schedule whose rates so far do not depend on
    `steps` (constant, step, wsd before its decay; not cosine) can take a new length without
    changing what happened: then the resolved config still reproduces the run bit for bit.
    """
    left = cfg.time_limit * (1 - AUTO_SPARE) - wall - 2 * eval_time  # this save, the last eval
    per_step = train_seconds / step + eval_time / cfg.eval_every
    steps = max(step + 1, step + int(left / per_step))
    refitted = dataclasses.replace(cfg, steps=steps)
    if any(lr_for(refitted, s) != lr_for(cfg, s) for s in range(step)):
        return cfg
    return refitted


class Pacer:
    """The schedule and the clock of one invocation of a run: its config `cfg`, whose `steps` it
    alone may change (the second fit of `steps: auto`), each step's learning rate, whether the
    time limit has passed, and the note on an annealing schedule the limit will cut.

    start_step: the run's step when this invocation began; wall_start: perf_counter() when the
    time limit began; eval_time: the probe's evaluation time when `steps: auto` was fitted by
    fit_steps in this invocation (then the run is fitted again at its first evaluation), else
    None. agree(cfg): the config every process takes from the second fit (the first process's),
    when several train one model.
    """

    def __init__(self, cfg, start_step, wall_start, eval_time=None, agree=lambda cfg: cfg):
        self.cfg = cfg
        self.start_step, self.wall_start, self.eval_time = start_step, wall_start, eval_time
        self.agree = agree
        # the pace of the steps is timed from here: the time limit began earlier (at wall_start)
        # and has paid for steps: auto's probe, which is not this run's pace
        self.steps_began = self.wall()
        # no notice for steps fitted by this invocation's probe: they were measured to fit the
        # limit (and are refitted at the first evaluation); the first 50 steps, with their
        # warm-up, are too rough a measure to tell a short fitted run it will be cut
        self.notice_at = (start_step + NOTICE_AFTER_STEPS
                          if cfg.time_limit is not None and cfg.lr_schedule in ANNEALING
                          and eval_time is None else None)
        self.refit_at = (cfg.eval_every if eval_time is not None and cfg.eval_every < cfg.steps
                         else None)
        # what must still fit when the clock decides whether to take another step: that step
        # (the latest step's seconds) and the closing evaluation with its save (the latest
        # evaluation's, the probe's before the first), so a run cut by its limit has ended by
        # it, not a step and an evaluation after it
        self.step_time, self.closing = 0.0, eval_time or 0.0
        self._timed = (start_step, None)  # (step, train_seconds) at the latest after_step

    @property
    def steps(self):
        """The run's length: the step it ends at."""
        return self.cfg.steps

    def lr(self, step):
        """The learning rate of update number step (0-based)."""
        return lr_for(self.cfg, step)

    def wall(self):
        return time.perf_counter() - self.wall_start

    def out_of_time(self, step):
        """Whether another step and the closing evaluation would end past the time limit, at
        `step`. Never before this invocation's first step: a run ends with at least one step
        trained and saved, however short its limit (a run that stopped at once would report
        success with nothing to show)."""
        return (self.cfg.time_limit is not None and step > self.start_step
                and self.wall() + self.step_time + self.closing > self.cfg.time_limit)

    def evaluated(self, seconds):
        """An evaluation and its save took `seconds`: the closing one is expected to take as
        long."""
        self.closing = seconds

    def after_step(self, step, train_seconds):
        """-> (log lines, the new config or None) after `step` steps that trained for
        train_seconds in all (evaluations excluded); a new config (`steps` fitted again) is
        this pacer's from now on."""
        lines, refitted = [], None
        last_step, last_seconds = self._timed
        if last_seconds is not None and step > last_step:
            self.step_time = (train_seconds - last_seconds) / (step - last_step)
        self._timed = (step, train_seconds)
        if step == self.notice_at:
            wall = self.wall()
            line = time_limit_notice(self.cfg, self.start_step, step, wall - self.steps_began,
                                     self.cfg.time_limit - wall)
            if line:
                lines.append(line)
        if step == self.refit_at:
            fitted = self.agree(refit_steps(self.cfg, step, train_seconds, self.eval_time,
                                            self.wall()))
            if fitted.steps != self.cfg.steps:
                lines.append(f"steps: auto -> {fitted.steps:,} at step {step:,} (a step took "
                             f"{train_seconds / step * 1e3:,.1f} ms so far)")
                self.cfg = refitted = fitted
        return lines, refitted


PACE_WARMUP_STEPS, PACE_TIMED_STEPS = 1, 3  # per candidate: a few seconds for them all


def measure_pace(values, vocab_size, threads, group=distributed.ALONE):
    """The pace, in training characters a second, of a step of config `values` on random text
    of vocab_size characters (a step's cost does not depend on the text), on `threads` threads
    in each process of `group`; every process measures together and takes rank 0's figure."""
    from .run import Run  # run.py imports this module
    cfg = config_mod.load({**values, "steps": 1, "time": None, "time_limit": None,
                           "threads": threads, "val_frac": 0.5, "ema": 0.0})
    steps = PACE_WARMUP_STEPS + PACE_TIMED_STEPS + 1
    ids = np.random.default_rng(0).integers(
        0, vocab_size, 2 * steps * cfg.batch_size * (cfg.seq_len + 1)).astype(
        np.uint8 if vocab_size <= 256 else np.uint32)
    text = Corpus(ids=ids, vocab="".join(map(chr, range(0x100, 0x100 + vocab_size))), hash="",
                  source="random")
    # the BLAS held at the layout's threads whoever calls: a `--threads 1` dry run timed at the
    # BLAS's default of every core measured 4-6x too slow with a second process beside it
    with runtime.use_threads(threads):
        run = Run(cfg, text, group=group)
        for _ in range(PACE_WARMUP_STEPS):
            run.train_step(cfg.lr)
        t0 = time.perf_counter()
        for _ in range(PACE_TIMED_STEPS):
            run.train_step(cfg.lr)
        seconds = (time.perf_counter() - t0) / PACE_TIMED_STEPS
    return group.bcast(cfg.batch_size * cfg.seq_len / seconds)


def _layout(threads, processes):
    """'2 threads', '2 processes of 1 thread': what the paces were measured on."""
    each = f"{threads} thread{'s' if threads > 1 else ''}"
    return each if processes == 1 else f"{processes} processes of {each}"


def plan_time(cfg, given, train_chars, vocab_size, group=distributed.ALONE):
    """-> (cfg with timeplan's choices for every key not in `given`, the log's lines saying what
    was chosen and why). cfg: a config with `time` and the threads the run will use; given: the
    keys the user set (they keep their values); train_chars, vocab_size: the corpus's."""
    # the time limit: the time's, or a shorter or longer one the user gave beside it
    plan = timeplan.choose(cfg.time_limit or config_mod.seconds_of(cfg.time), train_chars,
                           vocab_size,
                           {k: getattr(cfg, k) for k in given},
                           lambda values: measure_pace(values, vocab_size, cfg.threads, group))
    planned = config_mod.load({**config_mod.to_dict(cfg), **plan.values})
    return planned, [f"time {cfg.time}: {planned.layers} x {planned.hidden_size} "
                     f"{planned.cell}, chosen for this corpus and machine "
                     f"({_layout(cfg.threads, group.size)}):"] + [
        f"  {reason}" for reason in plan.reasons]
