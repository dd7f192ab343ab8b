"""Loss curves of a run, from its metrics.jsonl, as a PNG.

matplotlib is an optional extra (`pip install 'charrnn[plot]'`), imported only when a plot is
drawn, so reading the metrics and the rest of charrnn work without it.
"""
import json
import math
import os

from .errors import CharrnnError
from .loss import LN2

INSTALL_HINT = "charrnn plot needs matplotlib, an optional extra: pip install 'charrnn[plot]'"


def read_metrics(run):
    """run: a run directory or its metrics.jsonl -> the list of records, one per evaluation."""
    path = os.path.join(run, "metrics.jsonl") if os.path.isdir(run) else run
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
    except OSError as e:
        raise CharrnnError(f"cannot read {path}: {e.strerror or e}") from None
    records = []
    for number, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
            records.append({k: float(rec[k]) for k in ("chars", "train_loss", "val_loss")})
        except (ValueError, KeyError, TypeError) as e:
            raise CharrnnError(f"{path} line {number} is not a metrics record ({e})") from None
    if not records:
        raise CharrnnError(f"{path} holds no evaluations yet")
    return records


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
    best = min(records, key=lambda r: r["val_loss"])
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
