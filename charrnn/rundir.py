"""The run directory's log and numbered checkpoints: appending to and cutting back metrics.jsonl,
and the periodic `step-000500.npz` files that `--keep-last` prunes."""
import json
import os
import re

from .errors import CharrnnError

PERIODIC = re.compile(r"step-(\d+)\.npz")


def append_metrics(path, rec):
    """Add one JSON line; a failure is a CharrnnError (the caller has saved nothing new yet)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
    except OSError as e:
        raise CharrnnError(f"could not write {path}: {e.strerror or e}; "
                           f"the previous checkpoint is kept") from None


def metrics_for_resume(path, step, eval_every):
    """The text of the log a run resumed at `step` keeps, or None when there is no log.

    Lines after `step` came from a part of the run that the resumed run repeats, so they go. So
    does a line at `step` itself when it is off the evaluation grid (a multiple of eval_every, the
    checkpoint's): it was the end-of-run evaluation of a run that stopped between evaluations,
    which an uninterrupted run would not have made. Unreadable lines (a write cut short) go too.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise CharrnnError(f"cannot read {path}: {e}") from None
    kept = []
    for line in lines:
        try:
            s = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(s, int) and (s < step or (s == step and s % eval_every == 0)):
            kept.append(line + "\n")
    return "".join(kept)


def periodic_path(run_dir, step):
    return os.path.join(run_dir, f"step-{step:06d}.npz")


def prune_periodic(run_dir, step, keep):
    """Delete periodic checkpoints so that only the `keep` most recent up to `step` remain.

    Files past `step` (left by a run resumed from an earlier checkpoint) are not counted, and
    last.npz and best.npz never match the pattern, so they are never deleted.
    """
    found = sorted((int(m.group(1)), name) for name in os.listdir(run_dir)
                   if (m := PERIODIC.fullmatch(name)) and int(m.group(1)) <= step)
    for _, name in found[:max(len(found) - keep, 0)]:
        try:
            os.unlink(os.path.join(run_dir, name))
        except OSError:
            pass  # one checkpoint too many is no reason to stop a run
