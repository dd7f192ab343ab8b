"""Scoring text by its summed negative log-likelihood, under two protocols: score reads it as
one stream with the state carried; score_windows reads random windows each from a zero state,
as nanoGPT's estimate_loss does."""
import numpy as np

from . import data, model
from .errors import CharrnnError

WINDOW = 256  # nanoGPT's shakespeare_char block_size
NUM_WINDOWS = 200 * 64  # its eval_iters batches of batch_size windows
ROWS_AT_ONCE = 64 * 256  # characters (T * N) of each forward pass; the total does not depend
# on it, the memory does: nanoGPT's batch of 64 windows of 256, fewer windows when longer


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


def window_starts(n, window, num_windows, seed):
    """(num_windows,) first positions of random windows in n ids, drawn uniformly with
    replacement from the n - window that leave room for the window's targets: the window at s
    reads ids[s:s + window] and predicts ids[s + 1:s + window + 1]. The same seed gives the
    same starts, so two models (or a model and a PyTorch anchor) are scored on the same text."""
    if window < 1 or num_windows < 1:
        raise CharrnnError(f"the window length and the number of windows must be at least 1, "
                           f"got {window} and {num_windows}")
    if seed < 0:
        raise CharrnnError(f"the windows' seed must be 0 or more, got {seed}")
    if n < window + 1:
        raise CharrnnError(f"the text has {n:,} characters, too few for one window of "
                           f"{window:,} and its next character; score it with a shorter window")
    return np.random.default_rng(seed).integers(0, n - window, size=num_windows)


def score_windows(params, spec, ids, window=WINDOW, num_windows=NUM_WINDOWS, seed=0):
    """Total NLL (nats) of num_windows random windows of ids (window_starts), each window's
    every position predicted from a zero state and the characters before it in the window.
    Returns (total_nats, chars_scored = num_windows * window); their ratio is nanoGPT's
    validation loss when ids is the validation split.

    The windows run side by side, as many as fit ROWS_AT_ONCE characters (one at least):
    x, y (T, N) = (window, ROWS_AT_ONCE // window).
    """
    starts = window_starts(len(ids), window, num_windows, seed)
    positions = np.arange(window)[:, None]  # (T, 1)
    at_once = max(1, ROWS_AT_ONCE // window)
    total = 0.0
    for i in range(0, num_windows, at_once):
        first = positions + starts[i:i + at_once]  # (T, N) indices of the inputs
        nats, _ = model.window_nll(params, spec, ids[first], ids[first + 1],
                                   model.zero_state(spec, first.shape[1]))
        total += nats
    return total, num_windows * window
