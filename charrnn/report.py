"""Summaries around a run: what a checkpoint holds (`charrnn info`) and what a run would cost
before it starts (`charrnn train --dry-run`). Pure functions that return dicts and lines; the CLI
prints them."""
import math

from . import data, model, runtime, wavefront
from .config import AUTO
from .loss import bits
from .optim import SLOTS
from .timeplan import TEXT_PER_WEIGHT

PYTHON_AND_NUMPY_MB = 35  # resident size of an idle interpreter with NumPy loaded


def n_params(spec):
    return sum(math.prod(shape) for shape in model.param_shapes(spec).values())


def checkpoint_info(ck):
    """A Checkpoint -> a JSON-ready dict of what `charrnn info` shows."""
    cfg = ck.config
    best = ck.best_val if math.isfinite(ck.best_val) else None
    return {
        "format_version": ck.format_version, "model": str(ck.spec),
        **{k: getattr(cfg, k) for k in model.MODEL_KEYS},
        "parameters": n_params(ck.spec), "vocab_size": len(ck.vocab), "vocab": ck.vocab,
        "optimizer": cfg.optimizer, "lr": cfg.lr, "lr_schedule": cfg.lr_schedule,
        "step": ck.step, "chars": ck.chars, "elapsed": ck.elapsed,
        "best_val_loss": best, "best_val_bpc": bits(best) if best is not None else None,
        "corpus_hash": ck.corpus_hash,
    }


def info_lines(info):
    """The dict from checkpoint_info -> aligned lines; the vocabulary as a Python string literal,
    so control characters and spaces are visible."""
    best = ("none yet" if info["best_val_loss"] is None else
            f"{info['best_val_loss']:.4f} nats/char ({info['best_val_bpc']:.4f} bits/char)")
    rows = [
        ("model", f"{info['model']}, dropout {info['dropout']}, {info['dtype']}"),
        ("parameters", f"{info['parameters']:,}"),
        ("vocabulary", f"{info['vocab_size']} characters: {info['vocab']!r}"),
        ("optimizer", f"{info['optimizer']}, lr {info['lr']:g} ({info['lr_schedule']})"),
        ("step", f"{info['step']:,}"),
        ("characters seen", f"{info['chars']:,} in {info['elapsed']:,.1f} s of training"),
        ("best validation", best),
        ("corpus hash", info["corpus_hash"] or "unknown"),
        ("format version", str(info["format_version"])),
    ]
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {value}" for name, value in rows]


def estimate(cfg, n_chars, vocab_size):
    """What a run of cfg on a corpus of n_chars characters and vocab_size would be: a dict.

    The memory estimate is the arrays a training step holds: weights, gradients and optimizer
    slots, and one window's activations, about T N (layers 5 G E / 2 + H) floats for cells of
    G gates and width E (the forward cache and its gradients, and the output layer's gradient
    dtop), with 3.5 H + 4 M more per layer in the residual stack (the stream, its norms, the MLP
    of width M), plus one chunk of logits (model.output_chunks: at most
    model.OUTPUT_CHUNK_BYTES, whatever V), which is what tracemalloc measures around
    model.forward and backward, plus the interpreter. The ids are memory-mapped and not counted.
    A plain stack of two or more rnn, lstm or gru layers holds one more layer's gate gradients,
    T N G E floats, when it runs on two threads (wavefront.py: the upper layer's are still
    being used while the lower one's are made); the estimate counts them whatever the threads.
    """
    spec = model.spec_of(cfg, vocab_size)
    P = n_params(spec)
    n_train, n_val = data.split_sizes(n_chars, cfg.val_frac)
    T, N, H, V = cfg.seq_len, cfg.batch_size, cfg.hidden_size, vocab_size
    G, E = spec.cell_module.GATES, spec.cell_size
    itemsize = 4 if cfg.dtype == "float32" else 8
    params_bytes = P * itemsize * (2 + len(SLOTS[cfg.optimizer]))  # weights, gradients, slots
    per_layer = E * 5 * G // 2
    if cfg.stack == "residual":  # the stream, its norms and the out projection; the MLP's
        per_layer += 7 * H // 2 + 4 * cfg.mlp * H
    logits_bytes = min(T * N * V * itemsize, model.OUTPUT_CHUNK_BYTES + V * itemsize)
    step_bytes = T * N * (cfg.layers * per_layer + H) * itemsize + logits_bytes
    if wavefront.applies(spec, runtime.Threads(2)):
        step_bytes += T * N * G * E * itemsize
    windows = data.windows_per_epoch(n_train, N, T)
    return {
        "chars": n_chars, "vocab_size": V, "parameters": P, "train_chars": n_train,
        "val_chars": n_val, "eval_chars": min(n_val, cfg.eval_chars or n_val),
        "windows_per_epoch": windows,
        "epochs": cfg.steps / windows if windows and cfg.steps != AUTO else None,
        "chars_per_param": n_train / P, "params_mb": params_bytes / 2**20,
        "step_mb": step_bytes / 2**20,
        "memory_mb": params_bytes / 2**20 + step_bytes / 2**20 + PYTHON_AND_NUMPY_MB,
    }


def warnings(cfg, est):
    """Problems a run would have, as sentences (empty when there are none)."""
    out = []
    if est["windows_per_epoch"] == 0:
        out.append(f"the training split has {est['train_chars']:,} characters, fewer than one "
                   f"batch needs (batch_size * (seq_len + 1) = "
                   f"{cfg.batch_size * (cfg.seq_len + 1):,}): training would stop at once")
    if est["val_chars"] < cfg.seq_len + 1:
        out.append(f"the validation split has {est['val_chars']:,} characters, less than one "
                   f"window (seq_len + 1 = {cfg.seq_len + 1}): its loss says little; "
                   f"raise --val-frac or use more text")
    if cfg.steps != AUTO and cfg.warmup_steps >= cfg.steps:
        out.append(f"warmup_steps ({cfg.warmup_steps:,}) is not below steps ({cfg.steps:,}): the "
                   f"rate only ramps up, and the whole run trains below its lr {cfg.lr:g}")
    if est["chars_per_param"] < TEXT_PER_WEIGHT:
        out.append(f"the model is far too large for the corpus: {est['parameters']:,} parameters "
                   f"for {est['train_chars']:,} training characters "
                   f"({est['chars_per_param']:.2g} per parameter); it will memorise the text "
                   f"rather than learn it: use a smaller --hidden-size or --layers, more "
                   f"--dropout, or more text")
    return out


def dry_run_lines(cfg, est, source):
    if cfg.steps == AUTO:
        steps = f"steps auto: as many as fit {cfg.time_limit:g} s, measured at the start"
    else:
        epochs = (f"{est['epochs']:,.2f} epochs" if est["epochs"] is not None else
                  "no full epoch")
        steps = f"{cfg.steps:,} steps = {epochs}"
    return [
        f"corpus           {source}: {est['chars']:,} characters, vocabulary of "
        f"{est['vocab_size']}",
        f"model            {model.spec_of(cfg, est['vocab_size'])}, {est['parameters']:,} "
        f"parameters",
        f"split            {est['train_chars']:,} training, {est['val_chars']:,} validation "
        f"characters; each evaluation scores the first {est['eval_chars']:,}",
        f"batches          {cfg.batch_size} streams x {cfg.seq_len} characters: "
        f"{est['windows_per_epoch']:,} steps per epoch; {steps}",
        f"chars per param  {est['chars_per_param']:,.2f}",
        f"memory estimate  ~{est['memory_mb']:,.0f} MB: {est['params_mb']:,.1f} MB weights, "
        f"gradients and optimizer state, {est['step_mb']:,.1f} MB for one step's activations, "
        f"~{PYTHON_AND_NUMPY_MB} MB Python and NumPy (the ids are memory-mapped, not counted)",
    ]
