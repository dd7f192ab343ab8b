"""A training run's state, carried from step to step and restored whole by a checkpoint: the
weights, the optimizer, the carried hidden state, the data position and the random generator;
one step (batches -> forward -> backward -> summed over the group -> clip -> update) and one
evaluation. The loop around it, and all its writing, is training.py's."""
import math
import time

import numpy as np

from . import checkpoint, data, distributed, model, optim
from .errors import CharrnnError
from .evaluate import score
from .loss import bits
from .sample import generate
from .schedule import lr_for


class Run:
    """Everything a training run carries from step to step; a checkpoint restores all of it."""

    def __init__(self, cfg, corpus, resume=None, init_from=None, group=distributed.ALONE):
        """resume: a Checkpoint of this run to continue; init_from: one whose weights start a
        new run (fine-tuning). Both must fit cfg and corpus (see resume.py). group: the
        processes training this model together; this one holds the carried state of its
        `rows` of the batch (all of the run's other state is the same on every process)."""
        self.cfg = cfg
        self.corpus = corpus
        self.group = group
        self.rows = group.rows(cfg.batch_size)
        self.stop_votes = None  # the summed votes of the step that stopped the run, if any
        self.spec = model.spec_of(cfg, len(corpus.vocab))
        train_ids, self.val_ids = data.split(corpus.ids, cfg.val_frac)
        self.batches = data.Batches(train_ids, cfg.batch_size, cfg.seq_len)
        if len(self.val_ids) < 2:
            raise CharrnnError(
                f"the validation split has {len(self.val_ids)} characters (val_frac "
                f"{cfg.val_frac} of {len(corpus.ids)}); it needs at least 2 to score anything: "
                f"raise --val-frac or use a longer corpus")
        self.rng = np.random.default_rng(cfg.seed)
        self.stopped_by = None  # the signal that stopped the run early, if any
        self.last_val = math.inf
        self.evals_since_best = 0  # for `patience`
        # best.npz is written only below this: the best of a later part of the run when this
        # one resumed from an older checkpoint (see _keep_a_better_best)
        self.best_floor = math.inf
        if resume is None:
            self.params = model.init_params(self.spec, self.rng)
            if init_from is not None:
                self.params = {k: v.copy() for k, v in init_from.params.items()}
            self.opt = optim.init_state(cfg.optimizer, self.params)
            self.state = self.zero_state()
            self.step, self.chars, self.elapsed, self.best_val = 0, 0, 0.0, math.inf
            self.loss_sum, self.loss_count = 0.0, 0
        else:
            self.params = resume.params
            self.opt = resume.optim_state or optim.init_state(cfg.optimizer, self.params)
            self.state = ([tuple(s[self.rows] for s in layer) for layer in resume.carried_state]
                          or self.zero_state())
            self.step, self.chars = resume.step, resume.chars
            self.elapsed, self.best_val = resume.elapsed, resume.best_val
            self.loss_sum, self.loss_count = resume.loss_sum, resume.loss_count
            self.evals_since_best = resume.evals_since_best
            if resume.data_position > self.batches.streams.shape[1]:
                raise CharrnnError(f"checkpoint data position {resume.data_position} is past "
                                   f"the end of this corpus's streams")
            self.batches.position = resume.data_position
            if resume.rng_state:
                self.rng.bit_generator.state = resume.rng_state

    def zero_state(self):
        return model.zero_state(self.spec, self.rows.stop - self.rows.start)

    def train_step(self, votes=(0,)):
        """One window: returns the training loss (nats/char) and the gradient norm.

        This process computes its rows; the group sums the gradients, the loss and votes, a
        vector of counts (a process's reasons to stop the run), in one collective. When any
        vote is set the step is not taken: nothing changes but stop_votes, the summed votes,
        and None is returned, so every process stops after the same step.
        """
        cfg = self.cfg
        known = self.group.sum_here(np.asarray(votes))
        if known is not None and np.any(known):  # alone: no need to compute it first
            self.stop_votes = known
            return None
        position, rng_state = self.batches.position, self.rng.bit_generator.state
        x, y, wrapped = self.batches.next()
        state = self.zero_state() if wrapped else self.state
        x, y = np.ascontiguousarray(x[:, self.rows]), np.ascontiguousarray(y[:, self.rows])
        dropout_rng = self.rng if cfg.dropout > 0 else None
        # overflow ends as a non-finite loss or norm, refused below with one clear message;
        # numpy's warnings on the way would only bury it
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss, new_state, cache = model.forward(self.params, self.spec, x, y, state,
                                                   dropout_rng, (self.rows, cfg.batch_size))
            grads, _ = model.backward(self.params, self.spec, cache)
            grads, loss, votes = self.group.sum_step(grads, loss, np.asarray(votes))
            if np.any(votes):
                self.batches.position, self.rng.bit_generator.state = position, rng_state
                self.stop_votes = votes
                return None
            norm = optim.clip(grads, cfg.clip_mode, cfg.clip)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise self.group.error(
                f"non-finite loss or gradient at step {self.step + 1} (loss {loss}, gradient "
                f"norm {norm}); the update was not applied and the saved checkpoints are kept; "
                f"try a lower --lr")
        optim.apply(cfg.optimizer, self.params, grads, self.opt, lr_for(cfg, self.step))
        self.state = new_state
        self.step += 1
        self.chars += x.shape[0] * cfg.batch_size
        return loss, norm

    def timed_step(self, votes=(0,)):
        """train_step, with its time added to `elapsed` and its loss to the period's sums;
        None when the step was not taken."""
        t0 = time.perf_counter()
        taken = self.train_step(votes)
        if taken is None:
            return None
        self.elapsed += time.perf_counter() - t0
        self.loss_sum += taken[0]
        self.loss_count += 1
        return taken[0]

    def validation_loss(self):
        """Loss on the first eval_chars characters of the validation split (all when 0), so that
        evaluating a large corpus's split does not stall training."""
        ids = self.val_ids[:self.cfg.eval_chars or None]
        total, n = score(self.params, self.spec, ids, self.cfg.batch_size, self.cfg.seq_len,
                         part=(self.group.rank, self.group.size))
        return self.group.sum(total) / max(n, 1)

    def evaluate(self):
        """Score the validation split -> (the metrics line, whether it is a new best to save).

        On the eval_every grid this closes a period: the training-loss sums restart, and the best
        and patience are updated. An evaluation off the grid ends a run that stopped between
        evaluations; it changes nothing a resumed run carries on with, and resuming drops its
        line, so a resumed run logs exactly what an uninterrupted one would.
        """
        on_grid = self.step % self.cfg.eval_every == 0
        val = self.last_val = self.validation_loss()
        train_loss = self.loss_sum / self.loss_count if self.loss_count else float("nan")
        if on_grid:
            self.loss_sum, self.loss_count = 0.0, 0
        rec = {"step": self.step, "chars": self.chars, "elapsed": round(self.elapsed, 3),
               "train_loss": train_loss, "train_bpc": bits(train_loss),
               "val_loss": val, "val_bpc": bits(val),
               "lr": lr_for(self.cfg, max(self.step - 1, 0)), "threads": self.cfg.threads}
        improved = val < self.best_val
        if on_grid:
            if improved:
                self.best_val = val
            self.evals_since_best = 0 if improved else self.evals_since_best + 1
        return rec, improved and val < self.best_floor

    def checkpoint(self, record=None):
        """The run as a Checkpoint, the carried state of every process's rows gathered (on
        every process); record: the metrics line of the evaluation that saves it."""
        state = [tuple(self.group.gather_rows(s) for s in layer) for layer in self.state]
        return checkpoint.Checkpoint(
            config=self.cfg, vocab=self.corpus.vocab, params=self.params, optim_state=self.opt,
            step=self.step, chars=self.chars, elapsed=self.elapsed, best_val=self.best_val,
            corpus_hash=self.corpus.hash, rng_state=self.rng.bit_generator.state,
            carried_state=state, data_position=self.batches.position,
            loss_sum=self.loss_sum, loss_count=self.loss_count,
            evals_since_best=self.evals_since_best, record=record)

    def sample_text(self):
        rng = np.random.default_rng([self.cfg.seed, self.step])
        return "".join(generate(self.params, self.spec, self.corpus.vocab,
                                self.cfg.sample_length, rng))
