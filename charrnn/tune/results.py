"""What a sweep found: one row per trial from the study's storage, the totals, the table printed
by `charrnn tune`, and the best trial's config as a YAML file (written only by write_best)."""
import datetime
import os
from dataclasses import dataclass, field
from typing import Optional

from .. import atomic, config as config_mod
from ..arguments import PathLike, checked
from ..errors import CharrnnError
from ..loss import bits
from . import storage as storage_mod

BEST = "best.yaml"
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
    config: Optional[dict] = None  # the trial's resolved config


@dataclass
class Report:
    study: str
    rows: list  # Rows, best validation loss first
    best: Optional[Row]  # the best complete trial
    steps_saved: int = 0  # steps the pruned trials would still have trained
    seconds_saved: float = 0.0  # time the pruned trials with a time limit would still have had
    surplus: int = 0
    counts: dict = field(default_factory=dict)
    best_yaml: Optional[str] = None  # where write_best wrote the best trial's config


def state_name(state):
    """Optuna's state name ('COMPLETE') -> the word the table uses ('complete')."""
    return _STATES.get(state, state.lower())


def _row(t):
    a = t.user_attrs
    state = state_name(t.state.name)
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
               run_dir=a.get("run_dir"), config=a.get("config"))


def of_study(study):
    """The Report of an open Optuna study."""
    trials = study.get_trials(deepcopy=False)
    shown = [t for t in trials if not t.user_attrs.get("surplus")]
    rows = sorted(map(_row, shown), key=lambda r: (r.best_val is None, r.best_val or 0, r.number))
    complete = [t for t in shown if t.state.name == "COMPLETE" and t.value is not None]
    best_t = min(complete, key=lambda t: (t.value, t.number)) if complete else None
    best_row = next((r for r in rows if best_t is not None and r.number == best_t.number), None)
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
    return Report(study=study.study_name, rows=rows, best=best_row, steps_saved=steps_saved,
                  seconds_saved=seconds_saved, surplus=len(trials) - len(shown), counts=counts)


@checked
def report(out: PathLike, *, study: Optional[str] = None, storage: Optional[str] = None):
    """The Report of the sweep in folder `out` (its study.json says which study and storage,
    unless given). Reads only: best.yaml is written by write_best."""
    name, url = storage_mod.recorded(out, study, storage)
    if url is not None:
        storage_mod.parse_storage(url)
    optuna = storage_mod.optuna()
    with storage_mod.quiet(optuna):
        st = storage_mod.open_storage(optuna, out, url)
        try:
            the_study = optuna.load_study(study_name=name, storage=st)
        except KeyError:
            where = (storage_mod.parse_storage(url) if url
                     else os.path.join(out, storage_mod.JOURNAL))
            raise CharrnnError(f"no study {name!r} in {where}") from None
        return of_study(the_study)


@checked
def write_best(rep: Report, out: PathLike):
    """Write the best complete trial's config as out/best.yaml (its `out` set to out/best),
    note its path in rep.best_yaml and return it; None when no trial has completed."""
    best = rep.best
    if best is None or best.config is None:
        return None
    cfg = config_mod.load(best.config, {"out": os.path.join(out, "best")})
    text = (f"# the best trial of study {rep.study!r}: trial {best.number}, validation loss "
            f"{best.best_val:.4f} nats/char ({bits(best.best_val):.3f} bits/char), trained in "
            f"{best.run_dir}\n" + config_mod.dump(cfg))
    path = os.path.join(out, BEST)
    os.makedirs(out, exist_ok=True)
    atomic.write_text_atomic(path, text)
    rep.best_yaml = path
    return path


def fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def clock(seconds):
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


def table_lines(rep):
    """The report as text: a header, one line per trial, then the totals and the best (with the
    path of its config once write_best wrote it)."""
    keys = sorted({k for r in rep.rows for k in r.params})
    head = ["trial", "state", *keys, "best val", "bpc", "step", "chars", "wall", "note"]
    body = [[str(r.number), r.state, *(fmt(r.params[k]) if k in r.params else "-" for k in keys),
             f"{r.best_val:.4f}" if r.best_val is not None else "-",
             f"{bits(r.best_val):.3f}" if r.best_val is not None else "-",
             f"{r.step:,}", f"{r.chars:,}", clock(r.wall), r.note] for r in rep.rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)] if body else []
    lines = [f"study {rep.study!r}: no trials yet"] if not body else [
        "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *body]]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(rep.counts.items()))
    if body:
        saved = [f"{rep.steps_saved:,} training steps"] if rep.steps_saved else []
        saved += [f"{clock(rep.seconds_saved)} of time-limited training"] if \
            rep.seconds_saved else []
        lines.append(f"{len(rep.rows)} trials ({counts}); pruning saved "
                     f"{' and '.join(saved) or 'nothing'}")
    if rep.best is not None:
        lines.append(f"best: trial {rep.best.number}, validation loss {rep.best.best_val:.4f} "
                     f"nats/char ({bits(rep.best.best_val):.3f} bits/char)"
                     + (f"; its config: {rep.best_yaml}" if rep.best_yaml else ""))
    return lines
