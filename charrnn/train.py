"""The training loop: batches -> forward -> backward -> clip -> update, evaluation, checkpoints.

This is the one place that wires the math core to the run directory: it writes `last.npz`,
`best.npz`, `config.yaml` and `metrics.jsonl`, and shows progress with tqdm on stderr.
"""
import json
import math
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from . import checkpoint, config as config_mod, data, model, optim
from .errors import CharrnnError
from .evaluate import score
from .loss import bits
from .sample import generate


def _write_text_atomic(path, text):
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise CharrnnError(f"could not write {path}: {e.strerror or e}") from None


def prepare_run_dir(path):
    """Create the run directory and make sure it is writable before any training happens."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise CharrnnError(f"run directory {path} is not writable: {e.strerror or e}") from None


class Run:
    """Everything a training run carries from step to step; a checkpoint restores all of it."""

    def __init__(self, cfg, corpus, resume=None):
        self.cfg = cfg
        self.corpus = corpus
        self.spec = checkpoint.spec_of(cfg, len(corpus.vocab))
        train_ids, self.val_ids = data.split(corpus.ids, cfg.val_frac)
        self.batches = data.Batches(train_ids, cfg.batch_size, cfg.seq_len)
        self.rng = np.random.default_rng(cfg.seed)
        if resume is None:
            self.params = model.init_params(self.spec, self.rng)
            self.opt = optim.init_state(cfg.optimizer, self.params)
            self.state = model.zero_state(self.spec, cfg.batch_size)
            self.step, self.chars, self.elapsed, self.best_val = 0, 0, 0.0, math.inf
        else:
            self.params, self.opt = resume.params, resume.optim_state
            self.state = resume.carried_state or model.zero_state(self.spec, cfg.batch_size)
            self.step, self.chars = resume.step, resume.chars
            self.elapsed, self.best_val = resume.elapsed, resume.best_val
            self.batches.position = resume.data_position
            self.rng.bit_generator.state = resume.rng_state

    def train_step(self):
        """One window: returns the training loss (nats/char) and the gradient norm."""
        cfg = self.cfg
        x, y, wrapped = self.batches.next()
        if wrapped:
            self.state = model.zero_state(self.spec, cfg.batch_size)
        dropout_rng = self.rng if cfg.dropout > 0 else None
        loss, new_state, cache = model.forward(self.params, self.spec, x, y, self.state, dropout_rng)
        grads, _ = model.backward(self.params, self.spec, cache)
        norm = optim.clip(grads, cfg.clip_mode, cfg.clip)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise CharrnnError(f"non-finite loss or gradient at step {self.step + 1} "
                               f"(loss {loss}, gradient norm {norm}); the update was not applied "
                               f"and the saved checkpoints are kept; try a lower --lr")
        optim.apply(cfg.optimizer, self.params, grads, self.opt, cfg.lr)
        self.state = new_state
        self.step += 1
        self.chars += x.size
        return loss, norm

    def validation_loss(self):
        total, n = score(self.params, self.spec, self.val_ids, self.cfg.batch_size, self.cfg.seq_len)
        return total / max(n, 1)

    def checkpoint(self):
        return checkpoint.Checkpoint(
            config=self.cfg, vocab=self.corpus.vocab, params=self.params, optim_state=self.opt,
            step=self.step, chars=self.chars, elapsed=self.elapsed, best_val=self.best_val,
            corpus_hash=self.corpus.hash, rng_state=self.rng.bit_generator.state,
            carried_state=self.state, data_position=self.batches.position)

    def sample_text(self):
        rng = np.random.default_rng([self.cfg.seed, self.step])
        return "".join(generate(self.params, self.spec, self.corpus.vocab,
                                self.cfg.sample_length, rng))


def _log_line(rec):
    return (f"step {rec['step']}: train {rec['train_loss']:.4f} nats ({rec['train_bpc']:.3f} bpc), "
            f"val {rec['val_loss']:.4f} nats ({rec['val_bpc']:.3f} bpc), "
            f"{rec['chars'] / max(rec['elapsed'], 1e-9):,.0f} chars/s")


def train(cfg, corpus, resume=None, progress=True, echo=None):
    """Train per cfg on corpus, writing into cfg.out. Returns the Run at the end.

    echo(text) receives the evaluation lines and samples (the CLI passes tqdm.write to stderr).
    """
    echo = echo or (lambda text: None)
    run_dir = cfg.out
    run = Run(cfg, corpus, resume)
    prepare_run_dir(run_dir)
    n_params = sum(p.size for p in run.params.values())
    echo(f"corpus {corpus.source}: {len(corpus):,} characters, vocabulary of {len(corpus.vocab)}; "
         f"{cfg.cell} {cfg.layers}x{cfg.hidden_size}, {n_params:,} parameters; "
         f"{run.batches.windows_per_epoch:,} steps per epoch; run directory {run_dir}")
    _write_text_atomic(os.path.join(run_dir, "config.yaml"), config_mod.dump(cfg))
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    if resume is None and os.path.exists(metrics_path):
        os.unlink(metrics_path)
    wall_start = time.perf_counter()
    loss_sum, loss_count = 0.0, 0
    bar = tqdm(total=cfg.steps, initial=run.step, unit="step", file=sys.stderr,
               disable=not progress, dynamic_ncols=True, leave=False)

    def evaluate_and_save():
        nonlocal loss_sum, loss_count
        val = run.validation_loss()
        train_loss = loss_sum / loss_count if loss_count else float("nan")
        loss_sum, loss_count = 0.0, 0
        rec = {"step": run.step, "chars": run.chars, "elapsed": round(run.elapsed, 3),
               "train_loss": train_loss, "train_bpc": bits(train_loss),
               "val_loss": val, "val_bpc": bits(val), "lr": cfg.lr}
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        improved = val < run.best_val
        if improved:
            run.best_val = val
        ck = run.checkpoint()
        checkpoint.save(os.path.join(run_dir, "last.npz"), ck)
        if improved:
            checkpoint.save(os.path.join(run_dir, "best.npz"), ck)
        echo(_log_line(rec) + ("  (best)" if improved else ""))
        if cfg.sample_length:
            echo("---\n" + run.sample_text() + "\n---")

    evaluated_at = run.step
    while run.step < cfg.steps:
        if cfg.time_limit is not None and time.perf_counter() - wall_start >= cfg.time_limit:
            break
        t0 = time.perf_counter()
        loss, _ = run.train_step()
        run.elapsed += time.perf_counter() - t0
        loss_sum += loss
        loss_count += 1
        bar.update(1)
        if run.step % 10 == 0:
            bar.set_postfix_str(f"loss {loss:.3f} ({bits(loss):.2f} bpc), "
                                f"{run.chars / run.elapsed:,.0f} chars/s")
        if run.step % cfg.eval_every == 0:
            evaluate_and_save()
            evaluated_at = run.step
    bar.close()
    if evaluated_at != run.step or loss_count:
        evaluate_and_save()
    return run
