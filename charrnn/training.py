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

from . import atomic, checkpoint, config as config_mod, data, interrupt, model, optim, report, \
    resume as resume_mod, rundir, runtime, schedule
from .errors import CharrnnError
from .evaluate import score
from .loss import bits
from .sample import generate
from .schedule import lr_for


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

    def timed_step(self):
        """train_step, with its time added to `elapsed` and its loss to the period's sums."""
        t0 = time.perf_counter()
        loss, _ = self.train_step()
        self.elapsed += time.perf_counter() - t0
        self.loss_sum += loss
        self.loss_count += 1
        return loss

    def validation_loss(self):
        """Loss on the first eval_chars characters of the validation split (all when 0), so that
        evaluating a large corpus's split does not stall training."""
        ids = self.val_ids[:self.cfg.eval_chars or None]
        total, n = score(self.params, self.spec, ids, self.cfg.batch_size, self.cfg.seq_len)
        return total / max(n, 1)

    def evaluate(self):
        """Score the validation split -> (the metrics line, whether it is a new best to save).

        On the eval_every grid this closes a period: the training-loss sums restart, and the best
        and patience are updated. An evaluation off the grid ends a run that stopped between
        evaluations; it changes nothing a resumed run carries on with, and resuming drops its
        line, so a resumed run logs exactly what an uninterrupted one would.
        """
        on_grid = self.step % self.cfg.eval_every == 0
        val = self.last_val = self.validation_loss()
        train_loss = self.loss_sum / self.loss_count if self.loss_count else float("nan")
        if on_grid:
            self.loss_sum, self.loss_count = 0.0, 0
        rec = {"step": self.step, "chars": self.chars, "elapsed": round(self.elapsed, 3),
               "train_loss": train_loss, "train_bpc": bits(train_loss),
               "val_loss": val, "val_bpc": bits(val),
               "lr": lr_for(self.cfg, max(self.step - 1, 0)), "threads": self.cfg.threads}
        improved = val < self.best_val
        if on_grid:
            if improved:
                self.best_val = val
            self.evals_since_best = 0 if improved else self.evals_since_best + 1
        return rec, improved and val < self.best_floor

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




def _start(run, run_dir, resume, echo):
    """The first lines of the log, and the run folder made ready: a fresh run's old files gone,
    or a resumed run's log cut back to its checkpoint; config.yaml written."""
    cfg, corpus = run.cfg, run.corpus
    echo(runtime.describe(cfg.threads, cfg.batch_size))
    n_params = sum(p.size for p in run.params.values())
    echo(f"corpus {corpus.source}: {len(corpus):,} characters, vocabulary of {len(corpus.vocab)}; "
         f"{run.spec}, {n_params:,} parameters; {run.batches.windows_per_epoch:,} steps per "
         f"epoch; run directory {run_dir.path}")
    for warning in report.warnings(cfg, report.estimate(cfg, len(corpus), len(corpus.vocab))):
        echo(f"Warning: {warning}")
    if resume is None:
        run_dir.start_fresh()
    else:
        run.best_floor = resume_mod.best_floor(resume, run_dir.best, echo)
        record = None if resume.record is None else {**resume.record,
                                                     "elapsed": round(resume.elapsed, 3)}
        run_dir.resume_metrics(resume.step, resume.config.eval_every, record)
    atomic.write_text_atomic(run_dir.file(rundir.CONFIG), config_mod.dump(cfg))


def _save_evaluation(run, run_dir, rec, new_best):
    """The checkpoints of an evaluation, then its log line, so the log never shows an evaluation
    whose model is not on disk. The checkpoint carries its line without the timing (so that
    checkpoints stay bit-identical run to run), and a resume restores a line that a crash
    between the two writes left out."""
    ck = run.checkpoint(record={k: v for k, v in rec.items() if k != "elapsed"})
    checkpoint.save(run_dir.last, ck)
    if new_best:
        checkpoint.save(run_dir.best, ck)
    if run.step % run.cfg.eval_every == 0 and run.cfg.keep_last:
        checkpoint.save(run_dir.periodic(run.step), ck)
        run_dir.prune_periodic(run.step, run.cfg.keep_last)
    run_dir.append_metrics(rec)


def _train(cfg, corpus, run_dir, resume, progress, echo, init_from, on_eval, wall_start):
    eval_time = None
    if cfg.steps == config_mod.AUTO:
        probe = Run(dataclasses.replace(cfg, steps=1), corpus, init_from=init_from)
        cfg, eval_time = schedule.fit_steps(cfg, probe, wall_start, echo)
    run = Run(cfg, corpus, resume, init_from)  # its checks end a bad run before any line
    _start(run, run_dir, resume, echo)
    pacer = schedule.Pacer(cfg, run.step, wall_start, eval_time)
    bar = tqdm(total=cfg.steps, initial=run.step, unit="step", file=sys.stderr,
               disable=not progress, dynamic_ncols=True, leave=False)

    def evaluate_and_save():
        rec, new_best = run.evaluate()
        _save_evaluation(run, run_dir, rec, new_best)
        echo(_log_line(rec) + ("  (best)" if new_best else ""))
        if run.cfg.sample_length:
            echo("---\n" + run.sample_text() + "\n---")
        if on_eval is not None:
            on_eval(dict(rec))

    evaluated_at = run.step
    # the bar closes (and clears its line) on errors too, so an error message starts a line
    with interrupt.StopRequests(echo) as stop, bar:
        while (run.step < run.cfg.steps and stop.signum is None
               and not pacer.out_of_time(run.cfg, run.step)):
            loss = run.timed_step()
            bar.update(1)
            if run.step % 10 == 0:
                bar.set_postfix_str(f"loss {loss:.3f} ({bits(loss):.2f} bpc), "
                                    f"{run.chars / run.elapsed:,.0f} chars/s")
            cfg, lines = pacer.after_step(run.cfg, run.step, run.elapsed)
            for line in lines:
                echo(line)
            if cfg is not run.cfg:  # steps: auto fitted again: the schedule's new length
                run.cfg = cfg
                atomic.write_text_atomic(run_dir.file(rundir.CONFIG), config_mod.dump(cfg))
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
