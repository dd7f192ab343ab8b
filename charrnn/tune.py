"""Hyperparameter sweeps on Optuna: running a study's trials, its storage, and the report.

A sweep lives in a folder DIR: study.json (which study and storage it belongs to), journal.log
(the default storage, Optuna's file journal), one ordinary run folder per trial, trial-NNNN/,
with its trial.json (state, parameters, outcome), and best.yaml once a trial has completed.
The search space, SPACE.yaml, is charrnn.space's. Optuna is an optional extra, imported only
inside these functions, so `import charrnn` and `import charrnn.tune` never need it.
"""
import datetime
import json
import math
import os
import signal
import socket
import time
import urllib.parse
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

import charrnn

from . import config as config_mod, interrupt, rundir
from .errors import CharrnnError
from .loss import bits
from .space import Space, load_space

INSTALL = "charrnn tune needs Optuna: pip install 'charrnn[tune]'"
STUDY, JOURNAL, BEST, TRIAL = "study.json", "journal.log", "best.yaml", "trial.json"
PRUNERS = ("none", "median", "hyperband")
DEFAULT_STUDY = "charrnn"
HEARTBEAT, GRACE = 60, 180  # seconds: an RDB trial silent this long belongs to a dead worker
OPEN_ATTEMPTS = 4


def _optuna():
    try:
        import optuna
    except ImportError:
        raise CharrnnError(INSTALL) from None
    return optuna


# ---- the study and its storage ----------------------------------------------------------------

def _display(url):
    """The storage URL without its password, fit to print and to record in study.json."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _driver(url):
    """postgresql://... names SQLAlchemy's default driver, psycopg2; the tune extra installs
    psycopg (3), so use that one when psycopg2 is absent."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        import importlib.util
        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg"):
            return "postgresql+psycopg" + sep + rest
    return url


def _storage(optuna, out, storage):
    """An Optuna storage: a URL (e.g. postgresql://...) is an RDB with heartbeats, so a worker
    that dies leaves no trial running for ever; anything else is a journal file, by default
    DIR/journal.log (Optuna recommends it over SQLite for concurrent workers)."""
    if storage and "://" in storage:
        for attempt in range(OPEN_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(_driver(storage), heartbeat_interval=HEARTBEAT,
                                                  grace_period=GRACE)
            except ImportError as e:
                raise CharrnnError(f"cannot open storage {_display(storage)}: {e} (pip install "
                                   f"'charrnn[tune]' installs psycopg for PostgreSQL)") from None
            except Exception as e:  # the driver's errors: refused connection, bad password ...
                # ... or another worker creating Optuna's tables in a new database at the same
                # moment (a duplicate key in PostgreSQL's catalog): the tables exist on a retry
                if attempt + 1 == OPEN_ATTEMPTS:
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    raise CharrnnError(f"cannot open storage {_display(storage)}: "
                                       f"{first}") from None
                time.sleep(0.5 * (attempt + 1))
    path = storage or os.path.join(out, JOURNAL)
    journal = optuna.storages.journal
    return optuna.storages.JournalStorage(journal.JournalFileBackend(path))


def _bind_folder(out, study, storage, write=False):
    """DIR/study.json records which study DIR's trial folders belong to: refuse another one,
    whose trial numbers would collide with them. write: record it (once the study is open)."""
    want = {"study": study, "storage": _display(storage) if storage else JOURNAL}
    path = os.path.join(out, STUDY)
    try:
        with open(path, encoding="utf-8") as f:
            have = json.load(f)
    except FileNotFoundError:
        if write:
            rundir.write_text_atomic(path, json.dumps(want, indent=1) + "\n")
        return
    except (OSError, ValueError) as e:
        raise CharrnnError(f"cannot read {path}: {e}") from None
    if have != want:
        raise CharrnnError(f"{out} holds the trials of study {have.get('study')!r} in "
                           f"{have.get('storage')}; run it with the same --study and --storage, "
                           f"or choose another --out")


def _recorded(out, study, storage):
    """--study and --storage, or else what DIR/study.json recorded."""
    path = os.path.join(out, STUDY)
    try:
        with open(path, encoding="utf-8") as f:
            have = json.load(f)
    except FileNotFoundError:
        have = {}
    except (OSError, ValueError) as e:
        raise CharrnnError(f"cannot read {path}: {e}") from None
    if storage is None and have.get("storage") not in (None, JOURNAL):
        storage = have["storage"]
    if storage is None and not os.path.exists(os.path.join(out, JOURNAL)):
        raise CharrnnError(f"{out} holds no sweep ({STUDY} and {JOURNAL} are missing); give "
                           f"the sweep's folder, or --study and --storage")
    return study or have.get("study") or DEFAULT_STUDY, storage


def _pruner(optuna, name, startup, warmup):
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup))
    raise CharrnnError(f"unknown pruner {name!r} (known: {', '.join(PRUNERS)})")


def _derived(seed, number, stream):
    """A seed for trial `number`'s sampler (stream 0) or run (stream 1), from the sweep's seed."""
    return int(np.random.SeedSequence([seed, number, stream]).generate_state(1)[0] >> 1)


# ---- what counts -------------------------------------------------------------------------------

def _finished(t):
    """A trial that reached an outcome of its own. An interrupted trial, one whose worker died
    and one started after the study had its trials are failed too, but have no 'error'."""
    name = t.state.name
    return name in ("COMPLETE", "PRUNED") or (name == "FAIL" and "error" in t.user_attrs)


def _taken(t):
    return _finished(t) or t.state.name == "RUNNING"


def _fail_dead_workers(optuna, study):
    """Mark failed the running trials whose worker is gone (killed with SIGKILL, say), so that
    they are run again rather than waited for: on an RDB storage those whose heartbeat stopped,
    on any storage those of this machine whose process is gone. (A journal on a shared folder
    cannot tell that another machine's worker died.)"""
    optuna.storages.fail_stale_trials(study)  # a no-op without heartbeats
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False):
        pid = t.user_attrs.get("pid")
        if (t.state.name == "RUNNING" and t.user_attrs.get("host") == host
                and isinstance(pid, int) and pid != os.getpid()
                and not rundir.process_alive(pid)):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


# ---- running the sweep ------------------------------------------------------------------------

class SweepStopped(KeyboardInterrupt):
    """A SIGINT or SIGTERM stopped the sweep; the trial it hit (if any) is marked failed with its
    last.npz saved. signum: the signal; exit code 128 + signum."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum = int(signum)


class _Signalled(KeyboardInterrupt):
    """A stop signal that arrived outside charrnn.train's own handling."""


class _Surplus(Exception):
    """This trial was started after the study had its trials (another worker took the last)."""


def _write_trial(path, info):
    rundir.write_text_atomic(path, json.dumps(info, indent=1, default=str) + "\n")


def run(corpus, space, out, trials, *, study=None, storage=None, pruner="median",
        pruner_startup=5, pruner_warmup=0, seed=0, log=None):
    """Run trials of `space` (a Space or a SPACE.yaml path) on corpus until the study has
    `trials` finished ones (complete, pruned or failed by an error; counted over every worker of
    the study), each an ordinary charrnn run in out/trial-NNNN. Returns the Report.

    storage: a URL Optuna accepts (postgresql://...) or a journal file's path; default
    out/journal.log. Each evaluation's validation loss is reported to Optuna and the pruner
    (none, median or hyperband; startup: trials completed before median prunes; warmup: steps
    before any pruning) may stop the trial there. seed seeds each trial's sampler and run.
    A SIGINT or SIGTERM marks the running trial failed (its last.npz saved) and raises
    SweepStopped; running again continues the study. log(text) receives one line per trial.
    """
    optuna = _optuna()
    space = space if isinstance(space, Space) else load_space(space)
    if trials < 1:
        raise CharrnnError(f"trials must be at least 1, got {trials}")
    log = log or (lambda text: None)
    study_name = study or DEFAULT_STUDY
    paths = [corpus] if isinstance(corpus, (str, os.PathLike)) else list(corpus)
    for p in paths:
        if not os.path.exists(p):
            raise CharrnnError(f"corpus {p} does not exist")
    _bind_folder(out, study_name, storage)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise CharrnnError(f"cannot create {out}: {e.strerror or e}") from None
    with _quiet(optuna):
        st = _storage(optuna, out, storage)
        the_study = optuna.create_study(storage=st, study_name=study_name, direction="minimize",
                                        pruner=_pruner(optuna, pruner, pruner_startup,
                                                       pruner_warmup), load_if_exists=True)
        _bind_folder(out, study_name, storage, write=True)
        had = the_study.user_attrs.get("space")
        if had is None:
            the_study.set_user_attr("space", space.as_dict())
        elif had != json.loads(json.dumps(space.as_dict())):
            raise CharrnnError(f"study {study_name!r} was started with another search space; "
                               f"use the same SPACE.yaml or another --study")
        with interrupt.StopRequests() as stop:
            objective = _Objective(the_study, space, paths, out, trials, seed, stop, log)
            while stop.signum is None:
                _fail_dead_workers(optuna, the_study)
                if sum(map(_taken, the_study.get_trials(deepcopy=False))) >= trials:
                    break
                try:
                    the_study.optimize(objective, n_trials=1,
                                       catch=(CharrnnError, MemoryError, _Surplus))
                except KeyboardInterrupt as e:
                    signum = getattr(e, "signum", None) or stop.signum or signal.SIGINT
                    raise SweepStopped(signum, objective.stopped_message or
                                       "interrupted") from None
                if objective.surplus:
                    break
            if stop.signum is not None:
                raise SweepStopped(stop.signum, f"{signal.Signals(stop.signum).name}: "
                                   f"stopped between trials; run the same command to continue")
        return _report(optuna, the_study, out)


class _Objective:
    """One trial: parameters from the space, a charrnn run in its folder, the outcome recorded
    in the folder's trial.json and in the trial's user attributes."""

    def __init__(self, study, space, paths, out, trials, seed, stop, log):
        self.study, self.space, self.paths, self.out = study, space, paths, out
        self.trials, self.seed, self.stop, self.log = trials, seed, stop, log
        self.surplus, self.stopped_message, self.made = False, None, False

    def __call__(self, trial):
        optuna = _optuna()
        # a sampler seeded by the trial's number: reproducible for one worker, and two workers
        # never draw the same random start
        self.study.sampler = optuna.samplers.TPESampler(seed=_derived(self.seed, trial.number, 0))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        before = [t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number]
        if sum(map(_taken, before)) >= self.trials:
            self.surplus = True
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"the study had its {self.trials} trials when this one started")
        if self.stop.signum is not None:
            raise _Signalled()
        params = self.space.suggest(trial)
        folder = os.path.join(self.out, f"trial-{trial.number:04d}")
        values = {**self.space.fixed, **params, "out": folder}
        if "seed" not in self.space.fixed and "seed" not in self.space.searched:
            values["seed"] = _derived(self.seed, trial.number, 1)
        info = {"study": self.study.study_name, "number": trial.number, "state": "RUNNING",
                "params": params, "host": socket.gethostname(), "pid": os.getpid(),
                "started": datetime.datetime.now().isoformat(timespec="seconds")}
        seen, self.made = [], False
        try:
            cfg = config_mod.load(values)
            trial.set_user_attr("config", config_mod.to_dict(cfg))
            trial.set_user_attr("run_dir", os.path.abspath(folder))
            try:
                os.makedirs(folder)
                self.made = True
            except FileExistsError:
                raise CharrnnError(f"{folder} already exists: another sweep's trial? choose "
                                   f"another --out") from None
            except OSError as e:
                raise CharrnnError(f"cannot create {folder}: {e.strerror or e}") from None
            _write_trial(os.path.join(folder, TRIAL), info)
            result = charrnn.train(self.paths, cfg, progress=False,
                                   on_eval=lambda rec: self._on_eval(trial, cfg, rec, seen))
        except optuna.TrialPruned as e:
            self._end(trial, folder, info, "PRUNED", seen, note=str(e))
            raise
        except KeyboardInterrupt as e:  # charrnn.Stopped, or a signal seen outside train
            self._interrupted(e, trial, folder, info, seen)
            raise
        except (CharrnnError, MemoryError) as e:
            message = str(e) if isinstance(e, CharrnnError) else "out of memory"
            trial.set_user_attr("error", message)
            self._end(trial, folder, info, "FAIL", seen, note=message)
            raise
        except Exception as e:  # a bug: recorded, then it propagates with its traceback
            trial.set_user_attr("error", repr(e))
            self._end(trial, folder, info, "FAIL", seen, note=repr(e))
            raise
        self._end(trial, folder, info, "COMPLETE", seen, result=result)
        return result.best_val

    def _interrupted(self, e, trial, folder, info, seen):
        """Record a trial that a signal stopped as failed, and not finished: it is run again."""
        res = getattr(e, "result", None)
        signum = res.stopped_by if res is not None else self.stop.signum or signal.SIGINT
        step = res.step if res is not None else (seen[-1]["step"] if seen else 0)
        name = signal.Signals(signum).name
        saved = os.path.join(folder, rundir.LAST)
        note = f"interrupted by {name} at step {step}" + (
            f"; {saved} saved" if os.path.exists(saved) else "")
        self.stopped_message = (f"{name}: trial {trial.number} {note}; marked failed; run the "
                                f"same command to continue the study")
        self._end(trial, folder, info, "FAIL", seen, note=note, interrupted=True, result=res)
        e.signum = int(signum)

    def _on_eval(self, trial, cfg, rec, seen):
        seen.append(rec)
        trial.report(rec["val_loss"], rec["step"])
        if self.stop.signum is not None:  # the signal came just before train took them over
            raise _Signalled()
        # never at the closing evaluation (the last step, or where the time limit fell):
        # pruning there would save nothing and lose a finished trial
        last = rec["step"] >= cfg.steps or rec["step"] % cfg.eval_every
        if not last and trial.should_prune():
            raise _optuna().TrialPruned(f"pruned at step {rec['step']} (val "
                                        f"{rec['val_loss']:.4f})")

    def _end(self, trial, folder, info, state, seen, note=None, interrupted=False, result=None):
        step = result.step if result is not None else (seen[-1]["step"] if seen else 0)
        chars = result.chars if result is not None else (seen[-1]["chars"] if seen else 0)
        vals = [r["val_loss"] for r in seen if math.isfinite(r["val_loss"])]
        best = result.best_val if result is not None and math.isfinite(result.best_val) else (
            min(vals) if vals else None)
        for key, value in (("step", step), ("chars", chars), ("best_val", best), ("note", note),
                           ("interrupted", interrupted or None)):
            if value is not None:
                trial.set_user_attr(key, value)
        if self.made:  # never into a folder another trial made
            _write_trial(os.path.join(folder, TRIAL), {
                **info, "state": state, "interrupted": interrupted, "note": note,
                "best_val": best, "step": step, "chars": chars,
                "ended": datetime.datetime.now().isoformat(timespec="seconds")})
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in info["params"].items())
        loss = f"best val {best:.4f}" if best is not None else "no evaluation"
        self.log(f"trial {trial.number} {_STATES.get(state, state)}: {shown}: {loss} at step "
                 f"{step}" + (f" ({note})" if note and state == "FAIL" else ""))


class _quiet:
    """Optuna's own INFO lines and tracebacks of caught trials off (this module logs its own),
    its experimental warnings too; both put back on leaving."""

    def __init__(self, optuna):
        self.optuna = optuna

    def __enter__(self):
        self.level = self.optuna.logging.get_verbosity()
        self.optuna.logging.set_verbosity(self.optuna.logging.ERROR)
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        warnings.simplefilter("ignore", self.optuna.exceptions.ExperimentalWarning)
        return self

    def __exit__(self, *exc):
        self.warnings.__exit__(*exc)
        self.optuna.logging.set_verbosity(self.level)
        return False


# ---- the report --------------------------------------------------------------------------------

_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
           "WAITING": "waiting"}


@dataclass
class Row:
    number: int
    state: str  # complete, pruned, failed, interrupted, running
    params: dict
    best_val: Optional[float]
    step: int
    chars: int
    wall: Optional[float]  # seconds
    note: str = ""
    run_dir: Optional[str] = None


@dataclass
class Report:
    study: str
    rows: list  # Rows, best validation loss first
    best: Optional[Row]  # the best complete trial
    best_yaml: Optional[str]  # where its config was written
    steps_saved: int = 0  # steps the pruned trials would still have trained
    seconds_saved: float = 0.0  # time the pruned trials with a time limit would still have had
    surplus: int = 0
    counts: dict = field(default_factory=dict)


def _row(t):
    a = t.user_attrs
    state = _STATES.get(t.state.name, t.state.name.lower())
    if state == "failed" and a.get("interrupted"):
        state = "interrupted"
    note = a.get("note") or a.get("error") or ""
    if state == "failed" and not note:
        note = "its worker ended without finishing it"
    best = a.get("best_val", t.value)
    end = t.datetime_complete or (datetime.datetime.now() if state == "running" else None)
    wall = (end - t.datetime_start).total_seconds() if end and t.datetime_start else None
    return Row(number=t.number, state=state, params=dict(t.params), best_val=best,
               step=a.get("step", 0), chars=a.get("chars", 0), wall=wall, note=note,
               run_dir=a.get("run_dir"))


def _report(optuna, study, out):
    trials = study.get_trials(deepcopy=False)
    shown = [t for t in trials if not t.user_attrs.get("surplus")]
    rows = sorted(map(_row, shown), key=lambda r: (r.best_val is None, r.best_val or 0, r.number))
    complete = [t for t in shown if t.state.name == "COMPLETE" and t.value is not None]
    best_t = min(complete, key=lambda t: (t.value, t.number)) if complete else None
    best_row = next((r for r in rows if best_t is not None and r.number == best_t.number), None)
    best_yaml = None
    if best_t is not None and "config" in best_t.user_attrs:
        best_yaml = os.path.join(out, BEST)
        os.makedirs(out, exist_ok=True)
        rundir.write_text_atomic(best_yaml, _best_yaml(study.study_name, best_t, out))
    steps_saved = seconds_saved = 0
    for t in shown:
        cfg = t.user_attrs.get("config", {})
        if t.state.name != "PRUNED" or not cfg:
            continue
        if cfg.get("time_limit") is not None:  # a trial that the clock would have ended
            wall = (t.datetime_complete - t.datetime_start).total_seconds()
            seconds_saved += max(0.0, cfg["time_limit"] - wall)
        else:
            steps_saved += max(0, cfg["steps"] - t.user_attrs.get("step", 0))
    counts = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    return Report(study=study.study_name, rows=rows, best=best_row, best_yaml=best_yaml,
                  steps_saved=steps_saved, seconds_saved=seconds_saved,
                  surplus=len(trials) - len(shown), counts=counts)


def _best_yaml(name, t, out):
    cfg = config_mod.load(t.user_attrs["config"], {"out": os.path.join(out, "best")})
    return (f"# the best trial of study {name!r}: trial {t.number}, validation loss "
            f"{t.value:.4f} nats/char ({bits(t.value):.3f} bits/char), trained in "
            f"{t.user_attrs.get('run_dir')}\n" + config_mod.dump(cfg))


def report(out, *, study=None, storage=None):
    """The Report of the sweep in folder `out` (its study.json says which study and storage,
    unless given), writing out/best.yaml when a trial has completed."""
    optuna = _optuna()
    name, storage = _recorded(out, study, storage)
    with _quiet(optuna):
        st = _storage(optuna, out, storage)
        try:
            the_study = optuna.load_study(study_name=name, storage=st)
        except KeyError:
            where = _display(storage) if storage else os.path.join(out, JOURNAL)
            raise CharrnnError(f"no study {name!r} in {where}") from None
        return _report(optuna, the_study, out)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _clock(seconds):
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


def table_lines(rep):
    """The report as text: a header, one line per trial, then the totals and the best."""
    keys = sorted({k for r in rep.rows for k in r.params})
    head = ["trial", "state", *keys, "best val", "bpc", "step", "chars", "wall", "note"]
    body = [[str(r.number), r.state, *(_fmt(r.params[k]) if k in r.params else "-" for k in keys),
             f"{r.best_val:.4f}" if r.best_val is not None else "-",
             f"{bits(r.best_val):.3f}" if r.best_val is not None else "-",
             f"{r.step:,}", f"{r.chars:,}", _clock(r.wall), r.note] for r in rep.rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)] if body else []
    lines = [f"study {rep.study!r}: no trials yet"] if not body else [
        "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *body]]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(rep.counts.items()))
    if body:
        saved = [f"{rep.steps_saved:,} training steps"] if rep.steps_saved else []
        saved += [f"{_clock(rep.seconds_saved)} of time-limited training"] if \
            rep.seconds_saved else []
        lines.append(f"{len(rep.rows)} trials ({counts}); pruning saved "
                     f"{' and '.join(saved) or 'nothing'}")
    if rep.best is not None:
        lines.append(f"best: trial {rep.best.number}, validation loss {rep.best.best_val:.4f} "
                     f"nats/char ({bits(rep.best.best_val):.3f} bits/char); its config: "
                     f"{rep.best_yaml}")
    return lines
