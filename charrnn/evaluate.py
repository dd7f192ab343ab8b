"""Scoring text: summed negative log-likelihood over every character, state carried."""
from typing import NamedTuple

import numpy as np

from . import model


class Streams(NamedTuple):
    """A text cut for scoring: x, y (n, S) ids, n contiguous streams and their next characters;
    rest (R,), the characters after the streams, which continue the last stream."""
    x: np.ndarray
    y: np.ndarray
    rest: np.ndarray


def cut(ids, n_streams=64, seq_len=100):
    """ids (L,), L >= 2 -> Streams: as many as n_streams streams (fewer when the text has fewer
    than seq_len predictions per stream), so every one of the L - 1 predictable characters is
    in a stream or in rest."""
    L = len(ids)
    n_streams = max(1, min(n_streams, (L - 1) // max(seq_len, 1) or 1))
    S = (L - 1) // n_streams  # predictions per stream
    return Streams(ids[:n_streams * S].reshape(n_streams, S),
                   ids[1:n_streams * S + 1].reshape(n_streams, S), ids[n_streams * S:])


def score_streams(params, spec, x, y, seq_len, rest=None):
    """Total NLL (nats) of y (n, S) given x (n, S), n streams each read window by window from a
    zero state with its state carried, then of rest[1:] given rest[:-1] from the last stream's
    state when rest (R,) is given. Any block of a cut's streams scores alone: the blocks' totals
    add up to the whole's, to rounding, when the last block takes the rest."""
    if len(x) == 0:
        return 0.0
    state = model.zero_state(spec, len(x))
    total = 0.0
    for p in range(0, x.shape[1], seq_len):
        nats, state = model.window_nll(params, spec, np.ascontiguousarray(x[:, p:p + seq_len].T),
                                       np.ascontiguousarray(y[:, p:p + seq_len].T), state)
        total += nats
    if rest is not None and len(rest) > 1:
        last = [tuple(s[-1:] for s in layer) for layer in state]
        nats, _ = model.window_nll(params, spec, rest[:-1].reshape(-1, 1),
                                   rest[1:].reshape(-1, 1), last)
        total += nats
    return total


def score(params, spec, ids, n_streams=64, seq_len=100):
    """Total NLL (nats) of ids[1:] given everything before it, from a zero state.

    ids (L,) are cut into n_streams contiguous streams read window by window with the state
    carried, so each stream is scored like one long text. The few characters left after the
    streams follow the last stream, so they are scored with its state: every one of the L - 1
    predictable characters counts. Returns (total_nats, chars_scored).
    """
    if len(ids) < 2:
        return 0.0, 0
    streams = cut(ids, n_streams, seq_len)
    return score_streams(params, spec, streams.x, streams.y, seq_len, streams.rest), len(ids) - 1
