"""A training run: its state (runstate.RunState) and what acts on it: one step (batches ->
forward -> backward -> summed over the process group -> clip -> update), one evaluation, and
the checkpoint of the state. The loop around it is training.py's, every write writer.py's."""
import copy
import dataclasses
import math
import time

import numpy as np

from . import checkpoint, data, distributed, divergence, evaluate, interrupt, model, optim, \
    runtime
from .errors import CharrnnError
from .loss import bits
from .runstate import RunState
from .sample import generate


class Run:
    """A run's state and the objects that act on it: the model's spec, the data, the group,
    the thread layout of cfg.threads (one thread when it is None) that every step and evaluation
    runs on.

    cfg: the run's settings. Its schedule (`steps`, so each step's learning rate) belongs to the
    caller, which may fit it again while the run goes (schedule.Pacer): train_step, evaluate
    and checkpoint take what they need of it as arguments.
    """

    def __init__(self, cfg, corpus, resume_ck=None, init_ck=None, group=distributed.ALONE):
        """resume_ck: a Checkpoint of this run to continue; init_ck: one whose weights start a
        new run (fine-tuning). Both must fit cfg and corpus (see resume.py). group: the
        processes training this model together; this one computes its `rows` of each batch
        and holds their carried state (all of the rest of the state is the same on every one)."""
        self.cfg, self.corpus, self.group = cfg, corpus, group
        self.rows = group.rows(cfg.batch_size)
        self.threads = runtime.Threads(cfg.threads or 1)
        self.spec = model.spec_of(cfg, len(corpus.vocab))
        train_ids, self.val_ids = data.split(corpus.ids, cfg.val_frac)
        self.batches = data.Batches(train_ids, cfg.batch_size, cfg.seq_len)
        if len(self.val_ids) < 2:
            raise CharrnnError(
                f"the validation split has {len(self.val_ids)} characters (val_frac "
                f"{cfg.val_frac} of {len(corpus.ids)}); it needs at least 2 to score anything: "
                f"raise --val-frac or use a longer corpus")
        self.state = self._fresh(init_ck) if resume_ck is None else self._resumed(resume_ck)
        # the loss above which the run has diverged (divergence.py), fixed by this invocation's
        # first step: every process sees the same summed loss, so all agree on it and on a stop
        self.loss_limit = None

    def _fresh(self, init_ck):
        rng = np.random.default_rng(self.cfg.seed)
        params = model.init_params(self.spec, rng)
        if init_ck is not None:
            params = {k: v.copy() for k, v in init_ck.weights.items()}
        return RunState(params=params, optim_state=optim.init_state(self.cfg.optimizer, params),
                        carried_state=self.zero_state(), rng=rng, ema_params=self._ema_of(params))

    def _ema_of(self, params):
        """The moving average's start, the weights themselves (None when ema is off)."""
        return {k: v.copy() for k, v in params.items()} if self.cfg.ema else None

    def _resumed(self, ck):
        if ck.data_position > self.batches.streams.shape[1]:
            raise CharrnnError(f"checkpoint data position {ck.data_position} is past the end of "
                               f"this corpus's streams")
        state = RunState(**{f.name: getattr(ck, f.name) for f in dataclasses.fields(RunState)})
        state.optim_state = state.optim_state or optim.init_state(self.cfg.optimizer,
                                                                  state.params)
        state.carried_state = ([tuple(s[self.rows] for s in layer) for layer in ck.carried_state]
                               or self.zero_state())
        state.rng = state.rng or np.random.default_rng(self.cfg.seed)
        if state.ema_params is None:
            state.ema_params = self._ema_of(state.params)
        return state

    def zero_state(self):
        return model.zero_state(self.spec, self.rows.stop - self.rows.start)

    def train_step(self, lr, vote=interrupt.NO_VOTE):
        """One window at learning rate lr -> (training loss in nats/char, None); or (None, why)
        when a process voted to stop (vote: interrupt.StopRequests.vote's): the step is then
        not taken, and every process stops after the same step for the same reason.

        This process computes its rows of the batch; the group sums the gradients, the loss and
        the votes in one collective, so every process clips and updates the same weights.
        """
        votes = np.asarray(vote)
        known = self.group.sum_here(votes)
        if known is not None and np.any(known):  # known without the step: no need to take it
            return None, interrupt.agreed(known)
        s = self.state
        rng_state = s.rng.bit_generator.state
        x, y, wrapped, position = self.batches.at(s.data_position)
        # overflow ends as a non-finite loss or norm, refused below with one clear message;
        # numpy's warnings on the way would only bury it
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss, new_state, grads = self._gradients(
                x, y, self.zero_state() if wrapped else s.carried_state)
            grads, loss, votes = self.group.sum_step(grads, loss, votes)
            if np.any(votes):
                s.rng.bit_generator.state = rng_state
                return None, interrupt.agreed(votes)
            norm = optim.clip(grads, self.cfg.clip_mode, self.cfg.clip)
        self._update(grads, loss, norm, lr)
        s.carried_state, s.data_position = new_state, position
        s.chars += x.size
        return loss, None

    def _gradients(self, x, y, state):
        """-> (loss, new state, gradients) of this process's rows of the window x, y (T, N)
        from their carried state: their share of the batch's mean loss, under their rows of the
        whole batch's dropout masks (so the masks do not depend on how the batch is shared)."""
        T, N = x.shape
        rows, s = self.rows, self.state
        masks = model.dropout_masks(self.spec, T, N, s.rng)
        loss, new_state, cache = model.forward(
            s.params, self.spec, np.ascontiguousarray(x[:, rows]),
            np.ascontiguousarray(y[:, rows]), state,
            None if masks is None else masks.rows(rows), mean_over=T * N,
            threads=self.threads)
        grads, _ = model.backward(s.params, self.spec, cache, threads=self.threads)
        return loss, new_state, grads

    def timed_step(self, lr, vote=interrupt.NO_VOTE):
        """train_step, with its time added to `elapsed` and its loss to the sums of the next
        metrics line when it is taken."""
        t0 = time.perf_counter()
        loss, stop = self.train_step(lr, vote)
        if stop is None:
            s = self.state
            s.elapsed += time.perf_counter() - t0
            s.loss_sum, s.loss_count = s.loss_sum + loss, s.loss_count + 1
        return loss, stop

    def _update(self, grads, loss, norm, lr):
        """The optimizer's update of the weights, refused when the step went non-finite or its
        loss says the run diverged."""
        s = self.state
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise self.group.error(
                f"non-finite loss or gradient at step {s.step + 1} (loss {loss}, gradient "
                f"norm {norm}); the update was not applied and the saved checkpoints are kept; "
                f"try a lower --lr")
        if self.loss_limit is None:
            self.loss_limit = divergence.limit(len(self.corpus.vocab), loss)
        self._check_divergence(loss, f"the training loss at step {s.step + 1}")
        optim.apply(self.cfg.optimizer, s.params, grads, s.optim_state, lr,
                    self.cfg.weight_decay)
        s.step += 1
        if s.ema_params is not None:
            optim.ema_update(s.ema_params, s.params, self.cfg.ema, s.step)

    def _check_divergence(self, loss, what, confirm=None):
        """Raise the group's error when loss (the same on every process) is past the limit;
        confirm(), when given, is a second loss that must be past it too."""
        limit = self.loss_limit
        if limit is not None and divergence.diverged(loss, limit) and (
                confirm is None or divergence.diverged(confirm(), limit)):
            raise self.group.error(divergence.message(what, loss, limit, self.cfg.lr,
                                                      self.cfg.clip))

    def _training_loss_now(self):
        """The weights' loss (nats/char) on the next training window from the carried state,
        without dropout, summed over the group; nothing of the run changes."""
        s = self.state
        x, y, wrapped, _ = self.batches.at(s.data_position)
        T, N = x.shape
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss, _, _ = model.forward(
                s.params, self.spec, np.ascontiguousarray(x[:, self.rows]),
                np.ascontiguousarray(y[:, self.rows]),
                self.zero_state() if wrapped else s.carried_state, mean_over=T * N,
                threads=self.threads)
        return self.group.sum(loss)

    def validation_loss(self, params=None):
        """Loss of params (None: the weights) on the first eval_chars characters of the
        validation split (all when 0), so that evaluating a large corpus's split does not stall
        training. Each process scores its block of the split's streams; the group sums the
        totals."""
        ids = self.val_ids[:self.cfg.eval_chars or None]
        if len(ids) < 2:
            return 0.0
        streams = evaluate.cut(ids, self.cfg.batch_size, self.cfg.seq_len)
        n = len(streams.x)
        rows = self.group.rows(n)
        total = evaluate.score_streams(params or self.state.params, self.spec, streams.x[rows],
                                       streams.y[rows], self.cfg.seq_len,
                                       streams.rest if rows.stop == n else None,
                                       threads=self.threads)
        return self.group.sum(total) / (len(ids) - 1)

    def evaluate(self, lr):
        """Score the validation split -> (the metrics line, whether it is a new best to save);
        lr: the last step's learning rate, for the line.

        On the eval_every grid this closes a period: the training-loss sums restart, and the best
        and patience are updated. An evaluation off the grid ends a run that stopped between
        evaluations; it changes nothing a resumed run carries on with, and resuming drops its
        line, so a resumed run logs exactly what an uninterrupted one would.
        """
        s = self.state
        on_grid = s.step % self.cfg.eval_every == 0
        scores = self._validation_scores()
        val = min(scores.values())
        # the last update may be the one that diverged: its model must never be saved. A model
        # that overfits a small text may score its validation split far worse than chance while
        # it fits its training text well: only a model past the limit on both has diverged
        self._check_divergence(val, f"the validation loss at step {s.step}",
                               confirm=self._training_loss_now)
        s.last_val = val
        train_loss = s.loss_sum / s.loss_count if s.loss_count else float("nan")
        if on_grid:
            s.loss_sum, s.loss_count = 0.0, 0
        rec = {"step": s.step, "chars": s.chars, "elapsed": round(s.elapsed, 3),
               "train_loss": train_loss, "train_bpc": bits(train_loss),
               "val_loss": val, "val_bpc": bits(val), "lr": lr, "threads": self.cfg.threads}
        if len(scores) > 1:  # which weights scored val_loss: what best.npz and load() use
            rec.update({f"val_loss_{name}": v for name, v in scores.items()},
                       weights=min(scores, key=scores.get))
        improved = val < s.best_val
        if on_grid:
            if improved:
                s.best_val = val
            s.evals_since_best = 0 if improved else s.evals_since_best + 1
        return rec, improved and val < s.best_floor

    def _validation_scores(self):
        """{"raw": the weights' validation loss}, and "ema": the moving average's when the run
        keeps one (the weights win a tie)."""
        scores = {"raw": self.validation_loss()}
        if self.state.ema_params is not None:
            scores["ema"] = self.validation_loss(self.state.ema_params)
        return scores

    def checkpoint(self, cfg, record=None):
        """The state as a Checkpoint of config cfg, the carried state of every process's rows
        gathered (on every process); record: the metrics line of the evaluation that saves it."""
        s = self.state
        fields = {f.name: getattr(s, f.name) for f in dataclasses.fields(RunState)}
        fields["carried_state"] = [tuple(self.group.gather_rows(a) for a in layer)
                                   for layer in s.carried_state]
        fields["rng"] = copy.deepcopy(s.rng)  # as it is now, whatever later steps draw
        return checkpoint.Checkpoint(**fields, config=cfg, vocab=self.corpus.vocab,
                                     corpus_hash=self.corpus.hash, record=record)

    def sample_text(self):
        rng = np.random.default_rng([self.cfg.seed, self.state.step])
        return "".join(generate(self.state.params, self.spec, self.corpus.vocab,
                                self.cfg.sample_length, rng))
