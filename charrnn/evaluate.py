"""Scoring text: summed negative log-likelihood over every character, state carried."""
import numpy as np

from . import data, model


def score(params, spec, ids, n_streams=64, seq_len=100, part=(0, 1)):
    """Total NLL (nats) of ids[1:] given everything before it, from a zero state.

    ids (L,) are cut into n_streams contiguous streams read window by window with the state
    carried, so each stream is scored like one long text. The few characters left after the
    streams follow the last stream, so they are scored with its state: every one of the L - 1
    predictable characters counts. Returns (total_nats, chars_scored).

    part (k, K): score only the k-th of K contiguous blocks of the streams (the last block
    takes the leftover characters too); K processes that each score their part and add the
    totals get the whole total, to rounding. chars_scored still counts all L - 1.
    """
    L = len(ids)
    if L < 2:
        return 0.0, 0
    n_streams = max(1, min(n_streams, (L - 1) // max(seq_len, 1) or 1))
    S = (L - 1) // n_streams  # predictions per stream
    rows = data.block(n_streams, *part)
    streams_x = ids[:n_streams * S].reshape(n_streams, S)[rows]
    streams_y = ids[1:n_streams * S + 1].reshape(n_streams, S)[rows]
    if len(streams_x) == 0:
        return 0.0, L - 1
    state = model.zero_state(spec, len(streams_x))
    total = 0.0
    for p in range(0, S, seq_len):
        x = np.ascontiguousarray(streams_x[:, p:p + seq_len].T)
        y = np.ascontiguousarray(streams_y[:, p:p + seq_len].T)
        nats, state = model.window_nll(params, spec, x, y, state)
        total += nats
    rest = ids[n_streams * S:]
    if len(rest) > 1 and rows.stop == n_streams:
        last = [tuple(s[-1:] for s in layer) for layer in state]
        nats, _ = model.window_nll(params, spec, rest[:-1].reshape(-1, 1), rest[1:].reshape(-1, 1),
                                   last)
        total += nats
    return total, L - 1
