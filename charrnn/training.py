"""The training loop: batches -> forward -> backward -> clip -> update, evaluation, checkpoints.

This is the one place that wires the math core to the run directory: it writes `last.npz`,
`best.npz`, `config.yaml` and `metrics.jsonl`, and shows progress with tqdm on stderr.

A run may be spread over a group of processes (distributed.py): each takes its block of the
batch's streams, the step's gradients are summed over the group, and rank 0 alone writes the
run folder and the log. One process is a group of one, so there is one loop.
"""
import dataclasses
import signal
import sys
import time
from dataclasses import dataclass
from typing import Optional

from tqdm import tqdm

from . import atomic, blas, checkpoint, config as config_mod, distributed, interrupt, report, \
    resume as resume_mod, rundir, runtime, schedule
from .loss import bits
from .run import Run


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
         else f"{layout}, {blas.describe()}")
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

