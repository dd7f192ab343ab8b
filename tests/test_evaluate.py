"""Scoring text (evaluate.py): every predictable character scored once, the score equal to a
naive one-character-at-a-time pass, and the blocks of a cut's streams (one process's share in
data-parallel evaluation) adding up to the whole score."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from charrnn import data, evaluate, inference, model
from charrnn.loss import log_softmax

V, H = 11, 8


@settings(max_examples=40, deadline=None)
@given(L=st.integers(2, 400), n_streams=st.integers(1, 9), seq_len=st.integers(1, 30))
def test_a_cut_holds_every_predictable_character_once(L, n_streams, seq_len):
    ids = np.arange(L)
    streams = evaluate.cut(ids, n_streams, seq_len)
    assert streams.x.shape == streams.y.shape and len(streams.x) <= n_streams
    np.testing.assert_array_equal(streams.y, streams.x + 1)  # each target is the next id
    predicted = np.concatenate([streams.y.reshape(-1), streams.rest[1:]])
    np.testing.assert_array_equal(predicted, ids[1:])


@pytest.mark.parametrize("n_streams, seq_len", [(1, 100), (3, 7), (64, 5)])
def test_score_is_the_sum_of_each_characters_loss_in_one_pass(n_streams, seq_len):
    """One stream read in one pass carries its state exactly as the cut's windows and its rest
    do: the totals agree whatever the cut (each stream starts from a zero state, so only the
    one-stream cut equals the whole text's single pass)."""
    spec = model.ModelSpec("lstm", V, H, 2, 0.0, "float64")
    params = model.init_params(spec, np.random.default_rng(2))
    ids = np.random.default_rng(3).integers(0, V, 200)
    total, n = evaluate.score(params, spec, ids, n_streams, seq_len)
    assert n == len(ids) - 1
    streams = evaluate.cut(ids, n_streams, seq_len)
    expected = 0.0
    for k, (x, y) in enumerate(zip(streams.x, streams.y)):
        text = np.concatenate([x, y[-1:], streams.rest[1:]]) if k == len(streams.x) - 1 else \
            np.concatenate([x, y[-1:]])
        logits, _ = inference.trace(params, spec, text)
        expected -= log_softmax(logits)[np.arange(len(text) - 1), text[1:]].sum()
    assert total == pytest.approx(expected, rel=1e-12)


def test_too_short_a_text_scores_nothing():
    spec = model.ModelSpec("gru", V, H, 1, 0.0, "float64")
    params = model.init_params(spec, np.random.default_rng(1))
    assert evaluate.score(params, spec, np.array([3])) == (0.0, 0)


@settings(max_examples=40, deadline=None)
@given(L=st.integers(2, 400), n_streams=st.integers(1, 9), seq_len=st.integers(1, 30),
       K=st.integers(1, 6))
def test_evaluation_parts_add_up_to_the_whole_score(L, n_streams, seq_len, K):
    spec = model.ModelSpec("gru", V, H, 1, 0.0, "float64")  # one process's share: a block
    params = model.init_params(spec, np.random.default_rng(1))
    ids = np.random.default_rng(L).integers(0, V, L)
    total, n = evaluate.score(params, spec, ids, n_streams, seq_len)
    streams = evaluate.cut(ids, n_streams, seq_len)
    n_cut = len(streams.x)
    parts = [evaluate.score_streams(params, spec, streams.x[rows], streams.y[rows], seq_len,
                                    streams.rest if rows.stop == n_cut else None)
             for rows in (data.block(n_cut, k, K) for k in range(K))]
    assert n == L - 1
    assert sum(parts) == pytest.approx(total, rel=1e-12)
