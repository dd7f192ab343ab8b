"""The training loop: batches -> forward -> backward -> clip -> update, evaluation, checkpoints.

This is the one place that wires the math core to the run directory: it writes `last.npz`,
`best.npz`, `config.yaml` and `metrics.jsonl`, and shows progress with tqdm on stderr.

A run may be spread over a group of processes (distributed.py): each takes its block of the
batch's streams, the step's gradients are summed over the group, and rank 0 alone writes the
run folder and the log. One process is a group of one, so there is one loop.
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

from . import atomic, checkpoint, config as config_mod, data, distributed, interrupt, model, \
    optim, report, resume as resume_mod, rundir, runtime, schedule
from .errors import CharrnnError
from .evaluate import score
from .loss import bits
from .sample import generate
from .schedule import lr_for


class Run:
    """Everything a training run carries from step to step; a checkpoint restores all of it."""

    def __init__(self, cfg, corpus, resume=None, init_from=None, group=distributed.ALONE):
        """resume: a Checkpoint of this run to continue; init_from: one whose weights start a
        new run (fine-tuning). Both must fit cfg and corpus (see resume.py). group: the
        processes training this model together; this one holds the carried state of its
        `rows` of the batch (all of the run's other state is the same on every process)."""
        self.cfg = cfg
        self.corpus = corpus
        self.group = group
        self.rows = group.rows(cfg.batch_size)
        self.stop_votes = None  # the summed votes of the step that stopped the run, if any
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
            self.state = self.zero_state()
            self.step, self.chars, self.elapsed, self.best_val = 0, 0, 0.0, math.inf
            self.loss_sum, self.loss_count = 0.0, 0
        else:
            self.params = resume.params
            self.opt = resume.optim_state or optim.init_state(cfg.optimizer, self.params)
            self.state = ([tuple(s[self.rows] for s in layer) for layer in resume.carried_state]
                          or self.zero_state())
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

    def zero_state(self):
        return model.zero_state(self.spec, self.rows.stop - self.rows.start)

    def train_step(self, votes=(0,)):
        """One window: returns the training loss (nats/char) and the gradient norm.

        This process computes its rows; the group sums the gradients, the loss and votes, a
        vector of counts (a process's reasons to stop the run), in one collective. When any
        vote is set the step is not taken: nothing changes but stop_votes, the summed votes,
        and None is returned, so every process stops after the same step.
        """
        cfg = self.cfg
        known = self.group.sum_here(np.asarray(votes))
        if known is not None and np.any(known):  # alone: no need to compute it first
            self.stop_votes = known
            return None
        position, rng_state = self.batches.position, self.rng.bit_generator.state
        x, y, wrapped = self.batches.next()
        state = self.zero_state() if wrapped else self.state
        x, y = np.ascontiguousarray(x[:, self.rows]), np.ascontiguousarray(y[:, self.rows])
        dropout_rng = self.rng if cfg.dropout > 0 else None
        # overflow ends as a non-finite loss or norm, refused below with one clear message;
        # numpy's warnings on the way would only bury it
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss, new_state, cache = model.forward(self.params, self.spec, x, y, state,
                                                   dropout_rng, (self.rows, cfg.batch_size))
            grads, _ = model.backward(self.params, self.spec, cache)
            grads, loss, votes = self.group.sum_step(grads, loss, np.asarray(votes))
            if np.any(votes):
                self.batches.position, self.rng.bit_generator.state = position, rng_state
                self.stop_votes = votes
                return None
            norm = optim.clip(grads, cfg.clip_mode, cfg.clip)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise self.group.error(
                f"non-finite loss or gradient at step {self.step + 1} (loss {loss}, gradient "
                f"norm {norm}); the update was not applied and the saved checkpoints are kept; "
                f"try a lower --lr")
        optim.apply(cfg.optimizer, self.params, grads, self.opt, lr_for(cfg, self.step))
        self.state = new_state
        self.step += 1
        self.chars += x.shape[0] * cfg.batch_size
        return loss, norm

    def timed_step(self, votes=(0,)):
        """train_step, with its time added to `elapsed` and its loss to the period's sums;
        None when the step was not taken."""
        t0 = time.perf_counter()
        taken = self.train_step(votes)
        if taken is None:
            return None
        self.elapsed += time.perf_counter() - t0
        self.loss_sum += taken[0]
        self.loss_count += 1
        return taken[0]

    def validation_loss(self):
        """Loss on the first eval_chars characters of the validation split (all when 0), so that
        evaluating a large corpus's split does not stall training."""
        ids = self.val_ids[:self.cfg.eval_chars or None]
        total, n = score(self.params, self.spec, ids, self.cfg.batch_size, self.cfg.seq_len,
                         part=(self.group.rank, self.group.size))
        return self.group.sum(total) / max(n, 1)

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
        """The run as a Checkpoint, the carried state of every process's rows gathered (on
        every process); record: the metrics line of the evaluation that saves it."""
        state = [tuple(self.group.gather_rows(s) for s in layer) for layer in self.state]
        return checkpoint.Checkpoint(
            config=self.cfg, vocab=self.corpus.vocab, params=self.params, optim_state=self.opt,
            step=self.step, chars=self.chars, elapsed=self.elapsed, best_val=self.best_val,
            corpus_hash=self.corpus.hash, rng_state=self.rng.bit_generator.state,
            carried_state=state, data_position=self.batches.position,
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
          on_eval=None, group=distributed.ALONE):
    """Train per cfg on corpus (a corpus.Corpus) into run_dir (a rundir.RunDir this process has
    claimed). Returns a Result.

    echo(text) receives the log: evaluation lines, samples, notes. on_eval(record), when given,
    is called with each evaluation's metrics line once its checkpoints are saved; an exception
    it raises ends the run there (charrnn tune prunes trials this way). A SIGINT or SIGTERM stops
    the run after the current step with last.npz saved; train then raises Stopped. Signal
    handlers and the BLAS's thread count are put back as they were before it returns or raises.

    group: the processes that train this model together (distributed.py); every one calls
    train, rank 0 with the claimed run_dir, echo and on_eval, which the others never call.
    """
    echo = echo or (lambda text: None)
    wall_start = time.perf_counter()  # the time limit counts from here, steps: auto's probe too
    # `threads: none` is every CPU this process may use, fixed in config.yaml and the checkpoint
    # as the number it was: the same thread count gives the same bits. A process of a group
    # takes one: the launcher starts one process per core
    cfg = dataclasses.replace(cfg, threads=cfg.threads or (
        runtime.available_cpus() if group.size == 1 else 1))
    with runtime.use_threads(cfg.threads):
        return _train(cfg, corpus, run_dir, resume, progress, echo, init_from, on_eval,
                      wall_start, group)


def _start(run, run_dir, resume, echo):
    """The first lines of the log, and the run folder made ready: a fresh run's old files gone,
    or a resumed run's log cut back to its checkpoint; config.yaml written. Rank 0's work."""
    cfg, corpus = run.cfg, run.corpus
    layout = run.group.describe(cfg.threads)
    echo(runtime.describe(cfg.threads, cfg.batch_size) if layout is None
         else f"{layout}, {runtime.describe_blas()}")
    n_params = sum(p.size for p in run.params.values())
    echo(f"corpus {corpus.source}: {len(corpus):,} characters, vocabulary of {len(corpus.vocab)}; "
         f"{run.spec}, {n_params:,} parameters; {run.batches.windows_per_epoch:,} steps per "
         f"epoch; run directory {run_dir.path}")
    estimate = report.estimate(cfg, len(corpus), len(corpus.vocab))
    for warning in report.warnings(cfg, estimate) + run.group.warnings(cfg.threads):
        echo(f"Warning: {warning}")
    if resume is None:
        run_dir.start_fresh()
    else:
        run.best_floor = resume_mod.best_floor(resume, run_dir.best, echo)
        record = None if resume.record is None else {**resume.record,
                                                     "elapsed": round(resume.elapsed, 3)}
        run_dir.resume_metrics(resume.step, resume.config.eval_every, record)
    atomic.write_text_atomic(run_dir.file(rundir.CONFIG), config_mod.dump(cfg))


def _save_evaluation(ck, run_dir, rec, new_best):
    """The checkpoints of an evaluation, then its log line, so the log never shows an evaluation
    whose model is not on disk. The checkpoint carries its line without the timing (so that
    checkpoints stay bit-identical run to run), and a resume restores a line that a crash
    between the two writes left out. Rank 0's work."""
    checkpoint.save(run_dir.last, ck)
    if new_best:
        checkpoint.save(run_dir.best, ck)
    if ck.step % ck.config.eval_every == 0 and ck.config.keep_last:
        checkpoint.save(run_dir.periodic(ck.step), ck)
        run_dir.prune_periodic(ck.step, ck.config.keep_last)
    run_dir.append_metrics(rec)


def _train(cfg, corpus, run_dir, resume, progress, echo, init_from, on_eval, wall_start, group):
    eval_time = None
    if cfg.steps == config_mod.AUTO:  # the probe's pace is the group's; rank 0's number counts
        probe = group.everywhere(lambda: Run(dataclasses.replace(cfg, steps=1), corpus,
                                             init_from=init_from, group=group))
        cfg, eval_time = group.bcast(schedule.fit_steps(cfg, probe, wall_start, echo))
    # its checks end a bad run before any line
    run = group.everywhere(lambda: Run(cfg, corpus, resume, init_from, group))
    group.on_leader(lambda: _start(run, run_dir, resume, echo))
    pacer = schedule.Pacer(cfg, run.step, wall_start, eval_time, agree=group.bcast)
    bar = tqdm(total=cfg.steps, initial=run.step, unit="step", file=sys.stderr,
               disable=not progress, dynamic_ncols=True, leave=False)

    def evaluate_and_save():
        rec, new_best = run.evaluate()
        ck = run.checkpoint(record={k: v for k, v in rec.items() if k != "elapsed"})

        def save_and_report():
            _save_evaluation(ck, run_dir, rec, new_best)
            echo(_log_line(rec) + ("  (best)" if new_best else ""))
            if run.cfg.sample_length:
                echo("---\n" + run.sample_text() + "\n---")
            if on_eval is not None:
                on_eval(dict(rec))
        group.on_leader(save_and_report)

    evaluated_at = run.step
    # the bar closes (and clears its line) on errors too, so an error message starts a line
    with interrupt.StopRequests(echo) as stop, bar:
        while run.step < run.cfg.steps:
            loss = run.timed_step(stop.votes(pacer.out_of_time(run.cfg, run.step)))
            if loss is None:  # a process asked to stop: the step was not taken
                break
            bar.update(1)
            if run.step % 10 == 0:
                bar.set_postfix_str(f"loss {loss:.3f} ({bits(loss):.2f} bpc), "
                                    f"{run.chars / run.elapsed:,.0f} chars/s")
            cfg, lines = pacer.after_step(run.cfg, run.step, run.elapsed)
            for line in lines:
                echo(line)
            if cfg is not run.cfg:  # steps: auto fitted again: the schedule's new length
                run.cfg = cfg
                group.on_leader(lambda: atomic.write_text_atomic(run_dir.file(rundir.CONFIG),
                                                                 config_mod.dump(cfg)))
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
        run.stopped_by = interrupt.voted_signal(run.stop_votes)
        if run.stopped_by is not None:
            # no evaluation: stop promptly, with everything a resume needs in last.npz
            ck = run.checkpoint()
            group.on_leader(lambda: checkpoint.save(run_dir.last, ck))
        elif evaluated_at != run.step:
            evaluate_and_save()
    result = Result(run_dir=run_dir.path, best_val=min(run.best_val, run.last_val),
                    step=run.step, chars=run.chars, stopped_by=run.stopped_by)
    if result.stopped_by is not None:
        raise group.agreed(Stopped(result))
    return result

