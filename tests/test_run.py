"""A Run (run.py): its state (runstate.RunState) round-trips through a checkpoint whole and the
next step is the same; a non-finite step changes nothing; a stop vote leaves the step untaken;
validation scores only the first eval_chars characters."""
import dataclasses

import numpy as np
import pytest

from charrnn import checkpoint, config, corpus as corpus_mod, interrupt, runstate, runtime, training
from charrnn.errors import CharrnnError
from charrnn.evaluate import score
from charrnn.schedule import lr_for
from clihelp import TINY


def _step(run):
    return run.timed_step(lr_for(run.cfg, run.state.step))


def test_checkpoint_round_trips_everything_a_run_carries(corpus, tmp_path):
    cfg = config.load(TINY, {"cell": "lstm", "dropout": 0.2, "out": str(tmp_path)})
    text = corpus_mod.load(str(corpus))
    a = training.Run(cfg, text)
    for _ in range(30):  # past the wrap at 24 windows
        _step(a)
    a.state.elapsed, a.state.best_val, a.state.evals_since_best = 1.5, 2.5, 2
    checkpoint.save(tmp_path / "ck.npz", a.checkpoint(cfg))
    b = training.Run(cfg, text, resume_ck=checkpoint.load(tmp_path / "ck.npz"))
    for name in ("step", "chars", "elapsed", "best_val", "loss_sum", "loss_count",
                 "evals_since_best", "data_position"):
        assert getattr(b.state, name) == getattr(a.state, name), name
    assert b.state.rng.bit_generator.state == a.state.rng.bit_generator.state
    for group in ("params", "optim_state"):
        for k, v in getattr(a.state, group).items():
            np.testing.assert_array_equal(getattr(b.state, group)[k], v, err_msg=k)
    for layer_a, layer_b in zip(a.state.carried_state, b.state.carried_state):
        for va, vb in zip(layer_a, layer_b):
            np.testing.assert_array_equal(va, vb)
    assert _step(a) == _step(b)  # and the next step is the same


def test_every_field_of_a_run_is_saved_or_said_not_to_be():
    """A new field of RunState (or of Checkpoint) needs its row in checkpoint.FIELDS."""
    assert list(checkpoint.FIELDS) == sorted(
        (f.name for f in dataclasses.fields(checkpoint.Checkpoint)),
        key=list(checkpoint.FIELDS).index)
    not_saved = {name for name, stored in checkpoint.FIELDS.items() if stored is None}
    assert not_saved <= {f.name for f in dataclasses.fields(runstate.RunState)}


def test_non_finite_step_leaves_the_run_untouched(corpus):
    cfg = config.load(TINY, {"steps": 5})
    run = training.Run(cfg, corpus_mod.load(str(corpus)))
    _step(run)
    s = run.state
    before = ({k: v.copy() for k, v in s.params.items()},
              {k: v.copy() for k, v in s.optim_state.items()}, s.step, s.data_position)
    s.params["Wy"][0, 0] = np.inf  # the next forward pass produces a non-finite loss
    with pytest.raises(CharrnnError, match="step 2"):
        _step(run)
    s.params["Wy"][0, 0] = before[0]["Wy"][0, 0]
    for k, v in before[0].items():
        np.testing.assert_array_equal(s.params[k], v)
    for k, v in before[1].items():
        np.testing.assert_array_equal(s.optim_state[k], v)
    assert (s.step, s.data_position) == before[2:]


def test_a_vote_to_stop_leaves_the_step_untaken(corpus):
    cfg = config.load(TINY, {"steps": 5, "dropout": 0.1})
    run = training.Run(cfg, corpus_mod.load(str(corpus)))
    _step(run)
    s = run.state
    before = (s.step, s.data_position, s.loss_count, s.rng.bit_generator.state)
    vote = [0] * len(interrupt.REASONS)
    vote[interrupt.REASONS.index("SIGTERM")] = 1
    assert run.train_step(1e-3, vote) == (None, "SIGTERM")
    assert (s.step, s.data_position, s.loss_count, s.rng.bit_generator.state) == before


def test_validation_scores_only_the_first_eval_chars(books, tmp_path):
    c = corpus_mod.open_corpus([books], cache_dir=tmp_path)
    cfg = config.build(config.parse_yaml(open(TINY).read()), {"val_frac": 0.2, "eval_chars": 777})
    r = training.Run(cfg, c)
    assert len(r.val_ids) > 777
    total, n = score(r.state.params, r.spec, r.val_ids[:777], cfg.batch_size, cfg.seq_len)
    assert n == 776 and r.validation_loss() == pytest.approx(total / n)
    r.cfg = config.build(config.to_dict(cfg), {"eval_chars": 0})  # 0: the whole split
    total, n = score(r.state.params, r.spec, r.val_ids, cfg.batch_size, cfg.seq_len)
    assert n == len(r.val_ids) - 1 and r.validation_loss() == pytest.approx(total / n)


def test_a_run_steps_and_evaluates_on_the_layout_of_its_thread_count(books, tmp_path):
    """Run.threads is Threads(cfg.threads), one thread when cfg names none; its evaluation is
    evaluate's on that layout, bit for bit (a batch of 64 rows: 3 blocks on 3 threads)."""
    c = corpus_mod.open_corpus([books], cache_dir=tmp_path)
    cfg = config.build(config.parse_yaml(open(TINY).read()),
                       {"val_frac": 0.2, "eval_chars": 5000, "batch_size": 64, "threads": 3})
    r = training.Run(cfg, c)
    assert r.threads.n == 3
    assert training.Run(dataclasses.replace(cfg, threads=None), c).threads.n == 1
    _step(r)
    total, n = score(r.state.params, r.spec, r.val_ids[:5000], cfg.batch_size, cfg.seq_len,
                     threads=runtime.Threads(3))
    assert r.validation_loss() == total / n
