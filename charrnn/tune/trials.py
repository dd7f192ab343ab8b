"""Running a sweep: each trial an ordinary charrnn run in DIR/trial-NNNN with its trial.json
(state, parameters, outcome), until the study has its number of finished trials, counted over
every worker that shares it; pruning at evaluations, dead workers' trials run again, and a
SIGINT or SIGTERM that marks the running trial failed with its last.npz saved."""
import datetime
import json
import math
import os
import signal
import socket

from typing import Callable, Optional, Sequence, Union

import numpy as np

from .. import api, atomic, config as config_mod, corpus as corpus_mod, interrupt, rundir
from ..arguments import PathLike, checked
from ..errors import CharrnnError
from . import results, storage as storage_mod
from .space import Space, load_space

TRIAL = "trial.json"
PRUNERS = ("none", "median", "hyperband")


def _pruner(optuna, name, startup, warmup):
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup))


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


def _length(cfg, folder):
    """cfg with the number of steps its run has now: for `steps: auto`, the number the run
    resolved and wrote to its config.yaml (it may fit it again at its first evaluation)."""
    if cfg.steps != config_mod.AUTO:
        return cfg
    return config_mod.load(os.path.join(folder, rundir.CONFIG))


def _write_trial(path, info):
    atomic.write_text_atomic(path, json.dumps(info, indent=1, default=str) + "\n")


def _check_values(corpus, trials, study, pruner, pruner_startup, pruner_warmup, seed):
    """sweep()'s values (their types are checked by @checked), before Optuna is imported or
    anything is written."""
    paths = corpus_mod.as_paths(corpus)
    corpus_mod.list_files(paths)  # a missing, empty or binary corpus: refused here already
    for name, value, low in (("trials", trials, 1), ("pruner_startup", pruner_startup, 0),
                             ("pruner_warmup", pruner_warmup, 0), ("seed", seed, 0)):
        if value < low:
            raise CharrnnError(f"{name} must be at least {low}, got {value}")
    if study is not None and not study:
        raise CharrnnError("study must be a non-empty name")
    if pruner not in PRUNERS:
        raise CharrnnError(f"unknown pruner {pruner!r} (known: {', '.join(PRUNERS)})")
    return paths


def _open_study(optuna, st, name, pruner):
    """The study `name`, created if new. An existing one is loaded without a write, so that a
    sweep refused below (another space) leaves the storage as it was."""
    try:
        return optuna.load_study(study_name=name, storage=st, pruner=pruner)
    except KeyError:
        return optuna.create_study(storage=st, study_name=name, direction="minimize",
                                   pruner=pruner, load_if_exists=True)


@checked
def sweep(corpus: Union[PathLike, Sequence[PathLike]], space: Union[PathLike, dict, Space],
          out: PathLike, trials: int, *, study: Optional[str] = None,
          storage: Optional[str] = None, pruner: str = "median", pruner_startup: int = 5,
          pruner_warmup: int = 0, seed: int = 0, log: Optional[Callable] = None):
    """Run trials of `space` (a SPACE.yaml path, a dict of its form or a Space) on corpus until
    the study has `trials` finished ones (complete, pruned or failed by an error; counted over
    every worker of the study), each an ordinary charrnn run in out/trial-NNNN. Writes
    out/best.yaml once a trial has completed and returns the Report.

    storage: a URL Optuna accepts (postgresql://...) or a journal file's path; default
    out/journal.log. Each evaluation's validation loss is reported to Optuna and the pruner
    (none, median or hyperband; startup: trials completed before median prunes; warmup: steps
    before any pruning) may stop the trial there. seed seeds each trial's sampler and run.
    A SIGINT or SIGTERM marks the running trial failed (its last.npz saved) and raises
    SweepStopped; running again continues the study. log(text) receives one line per trial.
    Every argument, the space and the storage URL are checked before anything is written.
    """
    paths = _check_values(corpus, trials, study, pruner, pruner_startup, pruner_warmup, seed)
    space = load_space(space)
    if storage is not None:
        storage_mod.parse_storage(storage)
    log = log or (lambda text: None)
    study_name = study or storage_mod.DEFAULT_STUDY
    storage_mod.bind_folder(out, study_name, storage)
    optuna = storage_mod.optuna()
    _make_folder(out)
    with storage_mod.quiet(optuna):
        the_study = _study_of(optuna, out, storage, study_name, space,
                              _pruner(optuna, pruner, pruner_startup, pruner_warmup))
        with interrupt.StopRequests() as stop:
            objective = _Objective(the_study, space, paths, out, trials, seed, stop, log)
            _run_trials(optuna, the_study, objective, trials, stop)
        rep = results.of_study(the_study)
    results.write_best(rep, out)
    return rep


def _make_folder(folder):
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise CharrnnError(f"cannot create {folder}: {e.strerror or e}") from None


def _study_of(optuna, out, storage, study_name, space, pruner):
    """The study of out's storage, refused when it was started with another space; out bound
    to it, and the space recorded in a new study."""
    st = storage_mod.open_storage(optuna, out, storage)
    the_study = _open_study(optuna, st, study_name, pruner)
    had = the_study.user_attrs.get("space")
    if had is not None and had != json.loads(json.dumps(space.as_dict())):
        raise CharrnnError(f"study {study_name!r} was started with another search space; "
                           f"use the same SPACE.yaml or another --study")
    storage_mod.bind_folder(out, study_name, storage, write=True)
    if had is None:
        the_study.set_user_attr("space", space.as_dict())
    return the_study


def _run_trials(optuna, the_study, objective, trials, stop):
    """One trial at a time until the study has `trials` taken ones or another worker took the
    last; a stop signal raises SweepStopped, in a trial or between two."""
    while stop.signum is None:
        _fail_dead_workers(optuna, the_study)
        if sum(map(_taken, the_study.get_trials(deepcopy=False))) >= trials:
            break
        try:
            the_study.optimize(objective, n_trials=1,
                               catch=(CharrnnError, MemoryError, _Surplus))
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", None) or stop.signum or signal.SIGINT
            raise SweepStopped(signum, objective.stopped_message or "interrupted") from None
        if objective.surplus:
            break
    if stop.signum is not None:
        raise SweepStopped(stop.signum, f"{signal.Signals(stop.signum).name}: "
                           f"stopped between trials; run the same command to continue")


class _Objective:
    """One trial: parameters from the space, a charrnn run in its folder, the outcome recorded
    in the folder's trial.json and in the trial's user attributes."""

    def __init__(self, study, space, paths, out, trials, seed, stop, log):
        self.study, self.space, self.paths, self.out = study, space, paths, out
        self.trials, self.seed, self.stop, self.log = trials, seed, stop, log
        self.surplus, self.stopped_message, self.made = False, None, False

    def __call__(self, trial):
        optuna = storage_mod.optuna()
        self._start(optuna, trial)
        params = self.space.suggest(trial)
        folder = os.path.join(self.out, f"trial-{trial.number:04d}")
        info = {"study": self.study.study_name, "number": trial.number, "state": "RUNNING",
                "params": params, "host": socket.gethostname(), "pid": os.getpid(),
                "started": datetime.datetime.now().isoformat(timespec="seconds")}
        seen, self.made = [], False
        try:
            result = self._train(trial, folder, info, self._values(trial, params, folder), seen)
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

    def _start(self, optuna, trial):
        """The trial's sampler and worker recorded; refused (_Surplus) when the study had its
        trials before it started, and ended (_Signalled) when a stop signal came first."""
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

    def _values(self, trial, params, folder):
        """The trial's config values: the space's fixed ones, its suggested params, its folder
        and, unless the space sets it, a seed derived from the sweep's."""
        values = {**self.space.fixed, **params, "out": folder}
        if "seed" not in self.space.fixed and "seed" not in self.space.searched:
            values["seed"] = _derived(self.seed, trial.number, 1)
        return values

    def _train(self, trial, folder, info, values, seen):
        """The trial's run in its own new folder, its trial.json written first -> train's
        Result; each evaluation's line goes to _on_eval (and into seen)."""
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
        return api.train(self.paths, cfg, progress=False,
                         on_eval=lambda rec: self._on_eval(trial, _length(cfg, folder), rec,
                                                           seen))

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
        """An evaluation of the trial's run, whose config (steps resolved) is cfg."""
        seen.append(rec)
        trial.report(rec["val_loss"], rec["step"])
        if self.stop.signum is not None:  # the signal came just before train took them over
            raise _Signalled()
        # never at the closing evaluation (the last step, or where the time limit fell):
        # pruning there would save nothing and lose a finished trial
        last = rec["step"] >= cfg.steps or rec["step"] % cfg.eval_every
        if not last and trial.should_prune():
            raise storage_mod.optuna().TrialPruned(f"pruned at step {rec['step']} (val "
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
        shown = ", ".join(f"{k}={results.fmt(v)}" for k, v in info["params"].items())
        loss = f"best val {best:.4f}" if best is not None else "no evaluation"
        self.log(f"trial {trial.number} {results.state_name(state)}: {shown}: {loss} at step "
                 f"{step}" + (f" ({note})" if note and state == "FAIL" else ""))


