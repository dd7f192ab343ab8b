"""How far below the divergence limit (charrnn/divergence.py) healthy runs of the shipped
configs stay: each config trained for its first few steps, every step's training loss and the
closing validation loss against the run's limit: the limit, the first loss (a third of the
limit when it is at least ln V), the worst training loss after it, the validation loss, and
each as a share of the limit.

    python benchmarks/divergence_margin.py --steps 150
    python benchmarks/divergence_margin.py --steps 150 configs/tiny.yaml configs/rnn.yaml
    python benchmarks/divergence_margin.py --steps 150 --set lr=1e-2 configs/rnn.yaml

A ratio of 1 would stop the run. The first steps are where a healthy run is nearest the limit
(its first loss is the reference, and a rate at its peak has not yet been tamed by the loss
falling), so each run is the start of the config's real schedule: `steps: auto` is replaced by
--schedule-steps (about what a half-hour run resolves to), so that the cosine and wsd schedules
are at the rates a real run has at those steps, and the run is ended after --steps.
"""
import argparse
import glob
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import charrnn  # noqa: E402
from charrnn import config as config_mod, divergence  # noqa: E402

CORPUS = os.path.join(ROOT, "data", "tinyshakespeare.txt")
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml"))
                 + glob.glob(os.path.join(ROOT, "configs", "candidates", "*.yaml")))


class Ended(Exception):
    """Ends a run at its first evaluation, after --steps."""


def margins(path, steps, schedule_steps, overrides):
    """-> (the limit, the first training loss, the worst training loss after it, the closing
    validation loss), all in nats/char, of the first `steps` steps of the config at path with
    overrides (config keys)."""
    cfg = config_mod.load(path)
    full = schedule_steps if cfg.steps == config_mod.AUTO else cfg.steps
    checks = []  # (loss, limit) of every check: each step's, then the evaluation's
    real = divergence.diverged

    def recorded(loss, loss_limit):
        checks.append((loss, loss_limit))
        return real(loss, loss_limit)

    def end(record):
        raise Ended

    divergence.diverged = recorded
    try:
        with tempfile.TemporaryDirectory() as out:
            charrnn.train(CORPUS, path, out=out, steps=full, time_limit=None,
                          eval_every=min(steps, full), sample_length=0, progress=False,
                          log=lambda line: None, on_eval=end, **overrides)
    except Ended:
        pass
    finally:
        divergence.diverged = real
    (first, loss_limit), *train, (val, _) = checks
    return loss_limit, first, max(loss for loss, _ in train), val


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="*", default=SHIPPED, help="config files (all shipped)")
    ap.add_argument("--steps", type=int, default=150, help="steps of each run")
    ap.add_argument("--schedule-steps", type=int, default=4000,
                    help="the length of the schedule that `steps: auto` stands for")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config key for every run (e.g. lr=1e-2, a sweep space's top rate)")
    args = ap.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    print(f"{'config':<44} {'limit':>6} {'first':>6} {'worst after':>11} {'ratio':>6} "
          f"{'val':>6} {'ratio':>6}")
    for path in args.configs:
        if "space" in os.path.basename(path):
            continue  # a sweep's space, not a run's config
        loss_limit, first, worst, val = margins(path, args.steps, args.schedule_steps,
                                              overrides)
        print(f"{os.path.relpath(path, ROOT):<44} {loss_limit:>6.3f} {first:>6.3f} "
              f"{worst:>11.3f} {worst / loss_limit:>6.3f} {val:>6.3f} {val / loss_limit:>6.3f}",
              flush=True)

if __name__ == "__main__":
    main()
