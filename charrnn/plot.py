"""Loss curves of a run, from its metrics.jsonl, as a PNG.

matplotlib is an optional extra (`pip install 'charrnn[plot]'`), imported only when a plot is
drawn, so reading the metrics and the rest of charrnn work without it.
"""
import math
import os

from typing import Callable, Optional

from . import rundir
from .arguments import PathLike, checked
from .errors import CharrnnError
from .loss import LN2

INSTALL_HINT = "charrnn plot needs matplotlib, an optional extra: pip install 'charrnn[plot]'"


@checked
def plot_run(run: PathLike, output: Optional[PathLike] = None, warn: Optional[Callable] = None):
    """Draw the loss curves of the run in folder `run` (or of the run a file in it belongs to:
    RUN/best.npz, RUN/metrics.jsonl) into output (default RUN/loss.png); returns its path.

    Damaged lines of metrics.jsonl are skipped (rundir's one rule); warn(text), when given,
    hears of them in one line."""
    folder = rundir.folder_of(run)
    run_dir = rundir.RunDir(folder)
    if not os.path.exists(run_dir.metrics):
        raise CharrnnError(f"{folder} holds no {rundir.METRICS}: is it a run directory?")
    damaged = []
    records = run_dir.read_metrics(on_damaged=damaged.append)
    skipped = (f"{len(damaged)} damaged line{'s' * (len(damaged) > 1)} skipped (line "
               f"{', '.join(map(str, damaged[:5]))}{' ...' if len(damaged) > 5 else ''})")
    if not records:
        raise CharrnnError(f"{run_dir.metrics} holds no evaluations yet"
                           + (f"; {skipped}" if damaged else ""))
    if damaged and warn is not None:
        warn(f"Warning: {run_dir.metrics}: {skipped}")
    output = output or run_dir.file("loss.png")
    plot_losses(records, output, title=os.path.basename(os.path.abspath(folder)))
    return output


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise CharrnnError(INSTALL_HINT) from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    return plt


def plot_losses(records, out_path, title=""):
    """Draw train and validation loss (nats/char on the left axis, bits/char on the right)
    against characters seen into out_path (PNG)."""
    plt = _pyplot()
    from matplotlib.ticker import EngFormatter

    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for key, label, style in (("train_loss", "train", "-"), ("val_loss", "validation", "o-")):
        # a train loss is NaN for an evaluation with no steps since the last one
        points = [(r["chars"], r[key]) for r in records if math.isfinite(r[key])]
        if points:
            ax.plot(*zip(*points), style, label=label, markersize=3)
    best = min(records, key=lambda r: r["val_loss"] if math.isfinite(r["val_loss"]) else math.inf)
    ax.annotate(f"best {best['val_loss']:.3f} nats ({best['val_loss'] / LN2:.3f} bits)",
                (best["chars"], best["val_loss"]), textcoords="offset points", xytext=(0, 10),
                ha="center", fontsize=8)
    ax.set_xlabel("characters seen")
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_ylabel("loss (nats/char)")
    ax.secondary_yaxis("right", functions=(lambda n: n / LN2, lambda b: b * LN2)).set_ylabel(
        "bits/char")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    try:
        fig.savefig(out_path, dpi=100)
    except OSError as e:
        raise CharrnnError(f"cannot write {out_path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
