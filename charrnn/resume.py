"""Continuing a run (`--resume`) or starting a new one from a checkpoint's weights (`--init-from`).

A resumed run is the same run: the checkpoint's config is the base, and a config file or flags
given again may change only config.RESUMABLE (learning rate, clipping, run length, logging);
anything that gives the saved arrays their meaning (model shape, batch layout, split, optimizer,
seed) is refused, and so is a different corpus. It writes into the checkpoint's folder, and
`steps` still counts the whole run.

Fine-tuning keeps only the weights: its settings start from the checkpoint's too, but anything
may change except the model's shape, and the corpus must use the checkpoint's vocabulary.
"""
import dataclasses
import math
import os

from . import checkpoint, config as config_mod
from .errors import CharrnnError
from .model import SHAPE_KEYS


def _differences(saved, cfg, keys):
    return [f"{k} ({getattr(saved, k)!r} in the checkpoint, {getattr(cfg, k)!r} now)"
            for k in keys if getattr(saved, k) != getattr(cfg, k)]


def _same_dir(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


def for_resume(ck_path, config=None, overrides=None):
    """-> (Checkpoint, TrainConfig) to continue the run that saved ck_path."""
    overrides = dict(overrides or {})
    ck = checkpoint.load(ck_path)
    run_dir = os.path.dirname(os.fspath(ck_path)) or "."
    out = overrides.get("out")
    if out is not None and not _same_dir(out, run_dir):
        raise CharrnnError(f"--resume continues the run in {run_dir}, the checkpoint's folder; "
                           f"drop --out {out}, or copy the run directory there first")
    overrides["out"] = run_dir  # wins over the config file's `out`, which is ignored
    cfg = config_mod.load(config, overrides, base=ck.config)
    if cfg.steps == config_mod.AUTO:  # fixed when the run started: the schedule keeps its length
        cfg = dataclasses.replace(cfg, steps=ck.config.steps)
    locked = [f.name for f in dataclasses.fields(cfg)
              if f.name not in config_mod.RESUMABLE and f.name != "out"]
    changed = _differences(ck.config, cfg, locked)
    if changed:
        raise CharrnnError(f"cannot resume {ck_path} with different settings: "
                           f"{'; '.join(changed)}. A resumed run may change only "
                           f"{', '.join(config_mod.RESUMABLE)}")
    if cfg.steps <= ck.step:
        raise CharrnnError(f"{ck_path} is at step {ck.step} and steps is {cfg.steps}: nothing to "
                           f"do; pass a larger --steps (it counts the whole run)")
    return ck, cfg


def check_corpus(ck, corpus, ck_path):
    """A resumed run must see the text it was trained on (same content hash)."""
    if ck.corpus_hash and ck.corpus_hash != corpus.hash:
        raise CharrnnError(f"cannot resume {ck_path}: it was trained on a different corpus "
                           f"(content hash {ck.corpus_hash}; {corpus.source} has {corpus.hash})")


def for_init(ck_path, config=None, overrides=None):
    """-> (Checkpoint, TrainConfig) for a new run that starts from ck_path's weights."""
    ck = checkpoint.load(ck_path)
    # a new run: the checkpoint's own run directory is never the default
    base = dataclasses.replace(ck.config, out=config_mod.TrainConfig.out)
    cfg = config_mod.load(config, overrides, base=base)
    if cfg.time is not None:
        raise CharrnnError(f"--init-from {ck_path} brings its model, and `time` chooses one: "
                           f"give time_limit and steps: auto instead of time")
    changed = _differences(ck.config, cfg, SHAPE_KEYS)
    if changed:
        raise CharrnnError(f"--init-from {ck_path} needs the same model shape: "
                           f"{'; '.join(changed)}")
    if _same_dir(cfg.out, os.path.dirname(os.fspath(ck_path)) or "."):
        raise CharrnnError(f"--init-from starts a new run, which would overwrite the checkpoints "
                           f"in {cfg.out}; choose another --out (or --resume that run)")
    return ck, cfg


def resolve(config=None, overrides=None, resume=None, init_from=None):
    """-> (Checkpoint or None, TrainConfig) for a new run, a resume or a fine-tuning run."""
    if resume is not None and init_from is not None:
        raise CharrnnError("--resume and --init-from cannot be used together")
    if resume is not None:
        return for_resume(resume, config, overrides)
    if init_from is not None:
        return for_init(init_from, config, overrides)
    return None, config_mod.load(config, overrides)


def resolve_given(config=None, overrides=None, resume=None, init_from=None):
    """-> (Checkpoint or None, TrainConfig, the keys the user set when `time` is to choose the
    others, else None): resolve() and chosen_by_time() together, as train and its dry run
    need them."""
    ck, cfg = resolve(config, overrides, resume, init_from)
    return ck, cfg, chosen_by_time(ck, cfg, config, overrides)


def chosen_by_time(ck, cfg, config=None, overrides=None):
    """For a new run with `time`, the keys the user set (config, overrides), which the rules
    of timeplan.py leave as they are; None when nothing is to be chosen (no `time`, or a
    checkpoint's run, which keeps its own)."""
    if ck is not None or cfg.time is None:
        return None
    return config_mod.given_keys(config, overrides)


def describe(ck, cfg):
    """One line for the log: where the run continues and which options changed."""
    changed = [f"{k} {getattr(ck.config, k)!r} -> {getattr(cfg, k)!r}"
               for k in config_mod.RESUMABLE if getattr(ck.config, k) != getattr(cfg, k)]
    return (f"resuming at step {ck.step:,} of {cfg.steps:,}"
            + (f"; changed: {', '.join(changed)}" if changed else ""))


def best_floor(ck, best_path, echo):
    """The validation loss a resumed run's best.npz must beat: the best of the file in the run
    folder when it is better than the checkpoint's own best, else inf.

    A run resumed from an older checkpoint (a periodic one, say) would replace a best.npz that a
    later part of the same run saved as soon as it beat the older checkpoint's best: that file
    is kept until a better model comes. The run's own record (best_val, patience) stays as the
    checkpoint has it, so replaying the same steps reproduces the same run; resuming from
    last.npz changes nothing, as it carries the same best as best.npz."""
    try:
        saved = checkpoint.load(best_path)
    except CharrnnError as e:
        if "does not exist" not in str(e):
            echo(f"Warning: {e}; the next best model of this run will replace it")
        return math.inf
    if saved.best_val < ck.best_val:
        echo(f"{best_path} (step {saved.step:,}) holds a better model than this checkpoint's "
             f"best: validation loss {saved.best_val:.4f} nats/char against "
             f"{ck.best_val:.4f}; it is replaced only by a better one")
        return saved.best_val
    return math.inf
