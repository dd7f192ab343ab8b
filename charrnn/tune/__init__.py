"""Hyperparameter sweeps on Optuna (`charrnn tune`).

A sweep lives in a folder DIR: study.json (which study and storage it belongs to), journal.log
(the default storage, Optuna's file journal), one ordinary run folder per trial, trial-NNNN/,
with its trial.json (state, parameters, outcome), and best.yaml once a trial has completed.
The search space, SPACE.yaml, is a config with some keys searched (space.py).

    storage.py  Optuna, the storage URL or journal, the folder's study.json
    space.py    reading and checking a space, drawing a trial's values
    trials.py   running the sweep: one charrnn run per trial, pruning, signals
    results.py  the table of trials (report), and the best trial's config as best.yaml

Optuna is an optional extra, imported only when a sweep opens its storage, so `import charrnn`,
`import charrnn.tune` and the checks of every argument and space never need it.
"""
from .results import BEST, Report, Row, report, table_lines, write_best
from .space import Space, load_space, parse_space
from .storage import DEFAULT_STUDY, INSTALL, JOURNAL, STUDY, parse_storage
from .trials import PRUNERS, TRIAL, SweepStopped, sweep

__all__ = ["sweep", "report", "write_best", "table_lines", "Report", "Row", "SweepStopped",
           "Space", "load_space", "parse_space", "parse_storage", "PRUNERS", "BEST", "JOURNAL",
           "STUDY", "TRIAL", "DEFAULT_STUDY", "INSTALL"]
