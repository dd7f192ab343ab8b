"""The training loop: steps of a Run (run.py) until its schedule, its time limit, its patience
or a signal ends it, an evaluation every eval_every steps and a closing one, each saved by the
run's writer (writer.py); progress with tqdm on stderr.

A run may be spread over a group of processes (the distributed package): the group meets the
loop at two seams only, the Run's step (each process computes its rows of the batch, the group
sums the rest) and the writer (the first process alone writes). One process is a group of one,
so there is one loop.
"""
import dataclasses
import signal
import sys
import time
from dataclasses import dataclass

from tqdm import tqdm

from . import blas, config as config_mod, data, distributed, interrupt, model, report, \
    resume as resume_mod, rundir, runtime, schedule
from .loss import bits
from .run import Run
from .writer import RunWriter

STEPS, PATIENCE = "steps", "patience"  # ends of a run besides interrupt.REASONS


def echo_stderr(text):
    """A log line on stderr that leaves the progress bar intact."""
    tqdm.write(text, file=sys.stderr)


@dataclass
class Result:
    """What a training run ended with."""
    run_dir: str
    best_val: float  # best validation loss of the run, nats/char (inf before any evaluation)
    step: int
    chars: int  # training characters seen
    # why it ended: "steps" (all of them), "time limit", "patience", or the signal's name
    # ("SIGINT", "SIGTERM") that stopped it early
    ended_by: str = STEPS

    @property
    def stopped_by(self):
        """The signal that stopped the run early (a signal.Signals), else None."""
        return (signal.Signals[self.ended_by] if self.ended_by in interrupt.SIGNAL_NAMES
                else None)


class Stopped(KeyboardInterrupt):
    """Raised by train() after a SIGINT or SIGTERM stopped the run and last.npz was saved; a
    KeyboardInterrupt, so a notebook shows it as one. `result` is the run as it was saved."""

    def __init__(self, result):
        super().__init__(f"stopped by {result.ended_by} at step {result.step}; "
                         f"saved {rundir.RunDir(result.run_dir).last}")
        self.result = result


def train(cfg, corpus, run_dir, resume_ck=None, progress=True, echo=None, init_ck=None,
          on_eval=None, group=distributed.ALONE, given=None):
    """Train per cfg on corpus (a corpus.Corpus) into run_dir (a rundir.RunDir this process has
    claimed). Returns a Result.

    resume_ck: a Checkpoint of this run to continue; init_ck: one whose weights start a new run
    (resume.resolve gives either).
    echo(text) receives the log: evaluation lines, samples, notes. on_eval(record), when given,
    is called with each evaluation's metrics line once its checkpoints are saved; an exception
    it raises ends the run there (charrnn tune prunes trials this way). A SIGINT or SIGTERM stops
    the run after the current step with last.npz saved; train then raises Stopped. Signal
    handlers and the BLAS's thread count are put back as they were before it returns or raises.

    group: the processes that train this model together (the distributed package); every one
    calls train, rank 0 with the claimed run_dir, echo and on_eval, which the others never call.
    given: for a new run with `time`, the config keys the user set; the rules (timeplan.py)
    choose the others, on this machine, within the time.
    """
    echo = echo or (lambda text: None)
    wall_start = time.perf_counter()  # the time limit counts from here, steps: auto's probe too
    lines = [] if resume_ck is None else [resume_mod.describe(resume_ck, cfg)]
    # `threads: none` is every CPU this process may use, fixed in config.yaml and the checkpoint
    # as the number it was: the same thread count gives the same bits. A process of a group
    # takes one: the launcher starts one process per core
    cfg = dataclasses.replace(cfg, threads=runtime.step_threads(cfg.threads, group.size))
    with runtime.use_threads(cfg.threads):
        run, pacer, auto_lines = _prepare(cfg, corpus, resume_ck, init_ck, wall_start, group,
                                          given)
        writer = group.leader_only(lambda: RunWriter(run_dir, echo, on_eval))
        run.state.best_floor = writer.start(lines + auto_lines + _first_lines(run, run_dir, group),
                                            pacer.cfg, resume_ck)
        with interrupt.StopRequests(echo) as requests:
            ended_by = _train(run, pacer, writer, requests, progress)
    s = run.state
    result = Result(run_dir=run_dir.path, best_val=min(s.best_val, s.last_val), step=s.step,
                    chars=s.chars, ended_by=ended_by)
    if result.stopped_by is not None:
        raise group.agreed(Stopped(result))
    return result


def _prepare(cfg, corpus, resume_ck, init_ck, wall_start, group, given):
    """-> (the Run, the Pacer of its schedule and clock, the log's lines so far): the model a
    `time` chooses, then `steps: auto` fitted by a probe; the paces are the group's (rank 0's
    numbers count)."""
    eval_time, lines = None, []
    if given is not None and cfg.time is not None:
        train_chars = data.split_sizes(len(corpus), cfg.val_frac)[0]
        cfg, lines = schedule.plan_time(cfg, given, train_chars, len(corpus.vocab), group)
    if cfg.steps == config_mod.AUTO:
        probe = group.everywhere(lambda: Run(dataclasses.replace(cfg, steps=1), corpus,
                                             init_ck=init_ck, group=group))
        cfg, eval_time, line = group.bcast(schedule.fit_steps(cfg, probe, wall_start))
        lines.append(line)
    # its checks end a bad run before any line
    run = group.everywhere(lambda: Run(cfg, corpus, resume_ck, init_ck, group))
    pacer = schedule.Pacer(cfg, run.state.step, wall_start, eval_time, agree=group.bcast)
    return run, pacer, lines


def _first_lines(run, run_dir, group):
    """The log's first lines: the threads (or processes), the corpus, the model, warnings."""
    cfg, corpus = run.cfg, run.corpus
    layout = group.describe(cfg.threads)
    paired = any(len(g) == 2 for g in model.layer_groups(run.spec, run.threads))
    lines = [runtime.describe(cfg.threads, cfg.batch_size, paired) if layout is None
             else f"{layout}, {blas.describe()}"]
    n_params = sum(p.size for p in run.state.params.values())
    lines.append(f"corpus {corpus.source}: {len(corpus):,} characters, vocabulary of "
                 f"{len(corpus.vocab)}; {run.spec}, {n_params:,} parameters; "
                 f"{run.batches.windows_per_epoch:,} steps per epoch; run directory "
                 f"{run_dir.path}")
    estimate = report.estimate(cfg, len(corpus), len(corpus.vocab))
    return lines + [f"Warning: {warning}" for warning in
                    report.warnings(cfg, estimate) + group.warnings(cfg.threads)]


def _train(run, pacer, writer, requests, progress):
    """Steps until the run ends, evaluating every eval_every steps and at the end; -> why it
    ended (Result.ended_by). A signal ends it with last.npz saved and no evaluation, promptly."""
    s, cfg = run.state, run.cfg
    ended_by, evaluated_at = STEPS, s.step
    with Progress(pacer.steps, s.step, progress) as bar:
        while s.step < pacer.steps:
            loss, stop = run.timed_step(pacer.lr(s.step),
                                        requests.vote(pacer.out_of_time(s.step)))
            if stop is not None:
                ended_by = stop
                break
            bar.step(s, loss, pacer.steps)
            notes, refitted = pacer.after_step(s.step, s.elapsed)
            for note in notes:
                writer.echo(note)
            if refitted is not None:
                writer.write_config(refitted)
            if s.step % cfg.eval_every == 0:
                _evaluate(run, pacer, writer)
                evaluated_at = s.step
                if cfg.patience and s.evals_since_best >= cfg.patience:
                    writer.echo(f"stopping early: no better validation loss in the last "
                                f"{cfg.patience} evaluations")
                    ended_by = PATIENCE
                    break
    if ended_by in interrupt.SIGNAL_NAMES:
        writer.stopped(run.checkpoint(pacer.cfg))
    elif evaluated_at != s.step:
        _evaluate(run, pacer, writer)
    return ended_by


def _evaluate(run, pacer, writer):
    """An evaluation, saved: its checkpoint carries its metrics line without the timing. Its
    seconds tell the pacer how early the clock must stop the steps for the closing one."""
    t0 = time.perf_counter()
    rec, new_best = run.evaluate(pacer.lr(max(run.state.step - 1, 0)))
    ck = run.checkpoint(pacer.cfg, record={k: v for k, v in rec.items() if k != "elapsed"})
    writer.evaluation(ck, rec, new_best, run.sample_text)
    pacer.evaluated(time.perf_counter() - t0)


class Progress:
    """The progress bar on stderr (none when not enabled); it closes, clearing its line, on
    errors too, so an error message starts a line."""

    def __init__(self, total, initial, enabled):
        self.bar = tqdm(total=total, initial=initial, unit="step", file=sys.stderr,
                        disable=not enabled, dynamic_ncols=True, leave=False)

    def step(self, state, loss, total):
        """One step more, of `total` (which a refitted schedule changes)."""
        if total != self.bar.total:
            self.bar.total = total
            self.bar.refresh()
        self.bar.update(1)
        if state.step % 10 == 0:
            self.bar.set_postfix_str(f"loss {loss:.3f} ({bits(loss):.2f} bpc), "
                                     f"{state.chars / state.elapsed:,.0f} chars/s")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shown = not self.bar.disable
        self.bar.close()
        # on a terminal close() clears the bar's line; on a pipe or in a log file its carriage
        # returns stay on that line, and whatever came next (an error too) would follow them on
        # it: end the line, so that the next one starts clean for a reader that splits on "\n"
        if shown and not _is_terminal(sys.stderr):
            sys.stderr.write("\n")
            sys.stderr.flush()
        return False


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
