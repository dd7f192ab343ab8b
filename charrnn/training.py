"""The training loop: batches -> forward -> backward -> clip -> update, evaluation, checkpoints.

This is the one place that wires the math core to the run directory: it writes `last.npz`,
`best.npz`, `config.yaml` and `metrics.jsonl`, and shows progress with tqdm on stderr.
"""
import dataclasses
import math
import signal
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
from tqdm import tqdm

from . import checkpoint, config as config_mod, data, interrupt, model, optim, report, rundir, \
    runtime
from .errors import CharrnnError
from .evaluate import score
from .loss import bits
from .sample import generate


class Run:
    """Everything a training run carries from step to step; a checkpoint restores all of it."""

    def __init__(self, cfg, corpus, resume=None, init_from=None):
        """resume: a Checkpoint of this run to continue; init_from: one whose weights start a
        new run (fine-tuning). Both must fit cfg and corpus (see resume.py)."""
        self.cfg = cfg
        self.corpus = corpus
        self.spec = model.spec_of(cfg, len(corpus.vocab))
        train_ids, self.val_ids = data.split(corpus.ids, cfg.val_frac)
        self.batches = data.Batches(train_ids, cfg.batch_size, cfg.seq_len)
        if len(self.val_ids) < 2:
            raise CharrnnError(
                f"the validation split has {len(self.val_ids)} characters (val_frac "
                f"{cfg.val_frac} of {len(corpus.ids)}); it needs at least 2 to score anything: "
                f"raise --val-frac or use a longer corpus")
        self.rng = np.random.default_rng(cfg.seed)
        self.stopped_by = None  # the signal that stopped the run early, if any
        self.last_val = math.inf
        self.evals_since_best = 0  # for `patience`
        # best.npz is written only below this: the best of a later part of the run when this
        # one resumed from an older checkpoint (see _keep_a_better_best)
        self.best_floor = math.inf
        if resume is None:
            self.params = model.init_params(self.spec, self.rng)
            if init_from is not None:
                self.params = {k: v.copy() for k, v in init_from.params.items()}
            self.opt = optim.init_state(cfg.optimizer, self.params)
            self.state = model.zero_state(self.spec, cfg.batch_size)
            self.step, self.chars, self.elapsed, self.best_val = 0, 0, 0.0, math.inf
            self.loss_sum, self.loss_count = 0.0, 0
        else:
            self.params = resume.params
            self.opt = resume.optim_state or optim.init_state(cfg.optimizer, self.params)
            self.state = resume.carried_state or model.zero_state(self.spec, cfg.batch_size)
            self.step, self.chars = resume.step, resume.chars
            self.elapsed, self.best_val = resume.elapsed, resume.best_val
            self.loss_sum, self.loss_count = resume.loss_sum, resume.loss_count
            self.evals_since_best = resume.evals_since_best
            if resume.data_position > self.batches.streams.shape[1]:
                raise CharrnnError(f"checkpoint data position {resume.data_position} is past "
                                   f"the end of this corpus's streams")
            self.batches.position = resume.data_position
            if resume.rng_state:
                self.rng.bit_generator.state = resume.rng_state

    def train_step(self):
        """One window: returns the training loss (nats/char) and the gradient norm."""
        cfg = self.cfg
        x, y, wrapped = self.batches.next()
        if wrapped:
            self.state = model.zero_state(self.spec, cfg.batch_size)
        dropout_rng = self.rng if cfg.dropout > 0 else None
        # overflow ends as a non-finite loss or norm, refused below with one clear message;
        # numpy's warnings on the way would only bury it
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss, new_state, cache = model.forward(self.params, self.spec, x, y, self.state,
                                                   dropout_rng)
            grads, _ = model.backward(self.params, self.spec, cache)
            norm = optim.clip(grads, cfg.clip_mode, cfg.clip)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise CharrnnError(f"non-finite loss or gradient at step {self.step + 1} "
                               f"(loss {loss}, gradient norm {norm}); the update was not applied "
                               f"and the saved checkpoints are kept; try a lower --lr")
        optim.apply(cfg.optimizer, self.params, grads, self.opt, lr_for(cfg, self.step))
        self.state = new_state
        self.step += 1
        self.chars += x.size
        return loss, norm

    def validation_loss(self):
        """Loss on the first eval_chars characters of the validation split (all when 0), so that
        evaluating a large corpus's split does not stall training."""
        ids = self.val_ids[:self.cfg.eval_chars or None]
        total, n = score(self.params, self.spec, ids, self.cfg.batch_size, self.cfg.seq_len)
        return total / max(n, 1)

    def checkpoint(self, record=None):
        """The run as a Checkpoint; record: the metrics line of the evaluation that saves it."""
        return checkpoint.Checkpoint(
            config=self.cfg, vocab=self.corpus.vocab, params=self.params, optim_state=self.opt,
            step=self.step, chars=self.chars, elapsed=self.elapsed, best_val=self.best_val,
            corpus_hash=self.corpus.hash, rng_state=self.rng.bit_generator.state,
            carried_state=self.state, data_position=self.batches.position,
            loss_sum=self.loss_sum, loss_count=self.loss_count,
            evals_since_best=self.evals_since_best, record=record)

    def sample_text(self):
        rng = np.random.default_rng([self.cfg.seed, self.step])
        return "".join(generate(self.params, self.spec, self.corpus.vocab,
                                self.cfg.sample_length, rng))


def echo_stderr(text):
    """A log line on stderr that leaves the progress bar intact."""
    tqdm.write(text, file=sys.stderr)


def lr_for(cfg, step):
    """The learning rate of update number step (0-based) under cfg's schedule."""
    return optim.lr_at(step, cfg.lr, cfg.lr_schedule, cfg.steps, cfg.warmup_steps, cfg.lr_min,
                       cfg.lr_decay, cfg.lr_decay_every, cfg.lr_decay_frac)


def _keep_a_better_best(run, best_path, echo):
    """A run resumed from an older checkpoint (a periodic one, say) would replace a best.npz
    that a later part of the same run saved as soon as it beat the older checkpoint's best.
    Keep that file until a better model comes. The run's own record (best_val, patience) is
    left as the checkpoint has it, so replaying the same steps reproduces the same run; resuming
    from last.npz changes nothing, as it carries the same best as best.npz."""
    try:
        saved = checkpoint.load(best_path)
    except CharrnnError as e:
        if "does not exist" not in str(e):
            echo(f"Warning: {e}; the next best model of this run will replace it")
        return
    if saved.best_val < run.best_val:
        echo(f"{best_path} (step {saved.step:,}) holds a better model than this checkpoint's "
             f"best: validation loss {saved.best_val:.4f} nats/char against "
             f"{run.best_val:.4f}; it is replaced only by a better one")
        run.best_floor = saved.best_val


ANNEALING = ("cosine", "wsd")  # schedules that end low at `steps`, so a cut stops them high
NOTICE_AFTER_STEPS = 50  # steps timed before estimating where the time limit will fall
NOTICE_BELOW = 0.95  # share of `steps` under which the cut is worth a note (the estimate is rough)


def time_limit_notice(cfg, start_step, step, wall):
    """A line when cfg's time limit will stop an annealing schedule (cosine or wsd) well before
    its end, else None.

    start_step..step took wall seconds; the steps left in the limit are estimated at that pace
    (evaluations will make it a little slower). The suggested --steps leaves a tenth for them.
    """
    reachable = step + int((cfg.time_limit - wall) * (step - start_step) / max(wall, 1e-9))
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


def fit_steps(cfg, corpus, init_from, wall_start, echo):
    """cfg with `steps: auto` replaced by the number of steps that fits its time limit.

    A probe run (the same model, data and seed, thrown away afterwards, so the real run is the
    run that the resolved config reproduces) times AUTO_TIMED_STEPS steps after a warm-up, and
    one evaluation with its checkpoint save and sample. The steps then fill what is left of the
    limit with an evaluation every eval_every steps and a closing one.
    """
    probe = Run(dataclasses.replace(cfg, steps=1), corpus, init_from=init_from)
    for _ in range(AUTO_WARMUP_STEPS):
        probe.train_step()
    t0 = time.perf_counter()
    for _ in range(AUTO_TIMED_STEPS):
        probe.train_step()
    step_time = (time.perf_counter() - t0) / AUTO_TIMED_STEPS
    t0 = time.perf_counter()
    probe.validation_loss()
    checkpoint.to_bytes(probe.checkpoint())
    if cfg.sample_length:
        probe.sample_text()
    eval_time = time.perf_counter() - t0
    left = cfg.time_limit * (1 - AUTO_SPARE) - (time.perf_counter() - wall_start) - eval_time
    steps = max(1, int(left / (step_time + eval_time / cfg.eval_every)))
    echo(f"steps: auto -> {steps:,} (a step took {step_time * 1e3:,.1f} ms and an evaluation "
         f"{eval_time:,.2f} s here; {cfg.time_limit:g} s time limit)")
    return dataclasses.replace(cfg, steps=steps), eval_time


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


def _log_line(rec):
    return (f"step {rec['step']}: train {rec['train_loss']:.4f} nats ({rec['train_bpc']:.3f} bpc), "
            f"val {rec['val_loss']:.4f} nats ({rec['val_bpc']:.3f} bpc), "
            f"{rec['chars'] / max(rec['elapsed'], 1e-9):,.0f} chars/s")


@dataclass
class Result:
    """What a training run ended with."""
    run_dir: str
    best_val: float  # best validation loss of the run, nats/char (inf before any evaluation)
    step: int
    chars: int  # training characters seen
    stopped_by: Optional[int] = None  # the signal that stopped it early, if any


class Stopped(KeyboardInterrupt):
    """Raised by train() after a SIGINT or SIGTERM stopped the run and last.npz was saved; a
    KeyboardInterrupt, so a notebook shows it as one. `result` is the run as it was saved."""

    def __init__(self, result):
        super().__init__(f"stopped by {signal_name(result.stopped_by)} at step {result.step}; "
                         f"saved {rundir.RunDir(result.run_dir).last}")
        self.result = result


def signal_name(signum):
    return signal.Signals(signum).name


def train(cfg, corpus, run_dir, resume=None, progress=True, echo=None, init_from=None,
          on_eval=None):
    """Train per cfg on corpus (a corpus.Corpus) into run_dir (a rundir.RunDir this process has
    claimed). Returns a Result.

    echo(text) receives the log: evaluation lines, samples, notes. on_eval(record), when given,
    is called with each evaluation's metrics line once its checkpoints are saved; an exception
    it raises ends the run there (charrnn tune prunes trials this way). A SIGINT or SIGTERM stops
    the run after the current step with last.npz saved; train then raises Stopped. Signal
    handlers and the BLAS's thread count are put back as they were before it returns or raises.
    """
    echo = echo or (lambda text: None)
    wall_start = time.perf_counter()  # the time limit counts from here, steps: auto's probe too
    # `threads: none` is every CPU this process may use, fixed in config.yaml and the checkpoint
    # as the number it was: the same thread count gives the same bits
    cfg = dataclasses.replace(cfg, threads=cfg.threads or runtime.available_cpus())
    with runtime.use_threads(cfg.threads):
        return _train(cfg, corpus, run_dir, resume, progress, echo, init_from, on_eval,
                      wall_start)


def _train(cfg, corpus, run_dir, resume, progress, echo, init_from, on_eval, wall_start):
    # steps: auto is fitted twice in a fresh run: by a probe before it, then, where the schedule
    # allows it (refit_steps), at the first evaluation, from the pace of the steps so far
    refit_at = eval_time = None
    if cfg.steps == config_mod.AUTO:
        cfg, eval_time = fit_steps(cfg, corpus, init_from, wall_start, echo)
        refit_at = cfg.eval_every if cfg.eval_every < cfg.steps else None
    run = Run(cfg, corpus, resume, init_from)
    # after Run(), whose checks of the corpus and the sizes end a bad run with one line
    echo(runtime.describe(cfg.threads, cfg.batch_size))
    n_params = sum(p.size for p in run.params.values())
    echo(f"corpus {corpus.source}: {len(corpus):,} characters, vocabulary of {len(corpus.vocab)}; "
         f"{cfg.cell} {cfg.layers}x{cfg.hidden_size}, {n_params:,} parameters; "
         f"{run.batches.windows_per_epoch:,} steps per epoch; run directory {run_dir.path}")
    for warning in report.warnings(cfg, report.estimate(cfg, len(corpus), len(corpus.vocab))):
        echo(f"Warning: {warning}")
    if resume is not None:
        _keep_a_better_best(run, run_dir.best, echo)
    if resume is None:
        run_dir.start_fresh()
    else:
        record = None if resume.record is None else {**resume.record,
                                                     "elapsed": round(resume.elapsed, 3)}
        run_dir.resume_metrics(resume.step, resume.config.eval_every, record)
    rundir.write_text_atomic(run_dir.file(rundir.CONFIG), config_mod.dump(cfg))
    bar = tqdm(total=cfg.steps, initial=run.step, unit="step", file=sys.stderr,
               disable=not progress, dynamic_ncols=True, leave=False)

    def evaluate_and_save():
        # An evaluation off the eval_every grid ends a run that stopped between evaluations. It
        # changes nothing a resumed run carries on with (loss sums, best_val), and resuming
        # drops its metrics line, so a resumed run logs exactly what an uninterrupted one would.
        on_grid = run.step % cfg.eval_every == 0
        val = run.last_val = run.validation_loss()
        train_loss = run.loss_sum / run.loss_count if run.loss_count else float("nan")
        if on_grid:
            run.loss_sum, run.loss_count = 0.0, 0
        rec = {"step": run.step, "chars": run.chars, "elapsed": round(run.elapsed, 3),
               "train_loss": train_loss, "train_bpc": bits(train_loss),
               "val_loss": val, "val_bpc": bits(val), "lr": lr_for(cfg, max(run.step - 1, 0)),
               "threads": cfg.threads}
        improved = val < run.best_val
        if improved and on_grid:
            run.best_val = val
        if on_grid:
            run.evals_since_best = 0 if improved else run.evals_since_best + 1
        # the checkpoints first, then the log line, so the log never shows an evaluation whose
        # model is not on disk; the checkpoint carries its line, so a resume restores a line
        # that a crash between the two writes left out
        # the record goes without its timing, so that checkpoints stay bit-identical run to run
        ck = run.checkpoint(record={k: v for k, v in rec.items() if k != "elapsed"})
        checkpoint.save(run_dir.last, ck)
        new_best = improved and val < run.best_floor
        if new_best:
            checkpoint.save(run_dir.best, ck)
        if on_grid and cfg.keep_last:
            checkpoint.save(run_dir.periodic(run.step), ck)
            run_dir.prune_periodic(run.step, cfg.keep_last)
        run_dir.append_metrics(rec)
        echo(_log_line(rec) + ("  (best)" if new_best else ""))
        if cfg.sample_length:
            echo("---\n" + run.sample_text() + "\n---")
        if on_eval is not None:
            on_eval(dict(rec))

    evaluated_at = run.step
    start_step = run.step
    # an annealing schedule cut short by the time limit ends at a high learning rate: once a few
    # steps have been timed, say so (the run itself is not changed, so it stays reproducible)
    notice_at = (start_step + NOTICE_AFTER_STEPS
                 if cfg.time_limit is not None and cfg.lr_schedule in ANNEALING else None)
    # the bar closes (and clears its line) on errors too, so an error message starts a line
    with interrupt.StopRequests(echo) as stop, bar:
        while run.step < cfg.steps and stop.signum is None:
            if cfg.time_limit is not None and time.perf_counter() - wall_start >= cfg.time_limit:
                break
            t0 = time.perf_counter()
            loss, _ = run.train_step()
            run.elapsed += time.perf_counter() - t0
            run.loss_sum += loss
            run.loss_count += 1
            bar.update(1)
            if run.step == notice_at:
                line = time_limit_notice(cfg, start_step, run.step,
                                         time.perf_counter() - wall_start)
                if line:
                    echo(line)
            if run.step % 10 == 0:
                bar.set_postfix_str(f"loss {loss:.3f} ({bits(loss):.2f} bpc), "
                                    f"{run.chars / run.elapsed:,.0f} chars/s")
            if run.step == refit_at:
                refitted = refit_steps(cfg, run.step, run.elapsed, eval_time,
                                       time.perf_counter() - wall_start)
                if refitted.steps != cfg.steps:
                    echo(f"steps: auto -> {refitted.steps:,} at step {run.step:,} (a step took "
                         f"{run.elapsed / run.step * 1e3:,.1f} ms so far)")
                    cfg = run.cfg = refitted
                    rundir.write_text_atomic(run_dir.file(rundir.CONFIG), config_mod.dump(cfg))
                    bar.total = cfg.steps
                    bar.refresh()
            if run.step % cfg.eval_every == 0:
                evaluate_and_save()
                evaluated_at = run.step
                if cfg.patience and run.evals_since_best >= cfg.patience:
                    echo(f"stopping early: no better validation loss in the last "
                         f"{cfg.patience} evaluations")
                    break
        bar.close()
        if stop.signum is not None:
            # no evaluation: stop promptly, with everything a resume needs in last.npz
            checkpoint.save(run_dir.last, run.checkpoint())
            run.stopped_by = stop.signum
        elif evaluated_at != run.step:
            evaluate_and_save()
    result = Result(run_dir=run_dir.path, best_val=min(run.best_val, run.last_val),
                    step=run.step, chars=run.chars, stopped_by=run.stopped_by)
    if result.stopped_by is not None:
        raise Stopped(result)
    return result
