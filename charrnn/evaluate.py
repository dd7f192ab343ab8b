"""Scoring text by its summed negative log-likelihood, under two protocols: score reads it as
one stream with the state carried; score_windows reads random windows each from a zero state,
as nanoGPT's estimate_loss does."""
from typing import NamedTuple

import numpy as np

from . import model, runtime
from .errors import CharrnnError

WINDOW = 256  # nanoGPT's shakespeare_char block_size
NUM_WINDOWS = 200 * 64  # its eval_iters batches of batch_size windows
ROWS_AT_ONCE = 64 * 256  # characters (T * N) of each forward pass; the total does not depend
# on it, the memory does: nanoGPT's batch of 64 windows of 256, fewer windows when longer


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


def score_streams(params, spec, x, y, seq_len, rest=None, threads=runtime.ONE_THREAD):
    """Total NLL (nats) of y (n, S) given x (n, S), n streams each read window by window from a
    zero state with its state carried, then of rest[1:] given rest[:-1] from the last stream's
    state when rest (R,) is given. Any block of a cut's streams scores alone: the blocks' totals
    add up to the whole's, to rounding, when the last block takes the rest. threads: the layout
    the passes run on (runtime.Threads), as in model.forward."""
    if len(x) == 0:
        return 0.0
    state = model.zero_state(spec, len(x))
    total = 0.0
    for p in range(0, x.shape[1], seq_len):
        nats, state = model.window_nll(params, spec, np.ascontiguousarray(x[:, p:p + seq_len].T),
                                       np.ascontiguousarray(y[:, p:p + seq_len].T), state,
                                       threads)
        total += nats
    if rest is not None and len(rest) > 1:
        last = [tuple(s[-1:] for s in layer) for layer in state]
        nats, _ = model.window_nll(params, spec, rest[:-1].reshape(-1, 1),
                                   rest[1:].reshape(-1, 1), last, threads)
        total += nats
    return total


def score(params, spec, ids, n_streams=64, seq_len=100, threads=runtime.ONE_THREAD):
    """Total NLL (nats) of ids[1:] given everything before it, from a zero state.

    ids (L,) are cut into n_streams contiguous streams read window by window with the state
    carried, so each stream is scored like one long text. The few characters left after the
    streams follow the last stream, so they are scored with its state: every one of the L - 1
    predictable characters counts. Returns (total_nats, chars_scored). threads: the layout the
    passes run on (runtime.Threads).
    """
    if len(ids) < 2:
        return 0.0, 0
    streams = cut(ids, n_streams, seq_len)
    total = score_streams(params, spec, streams.x, streams.y, seq_len, streams.rest, threads)
    return total, len(ids) - 1


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


def score_windows(params, spec, ids, window=WINDOW, num_windows=NUM_WINDOWS, seed=0,
                  threads=runtime.ONE_THREAD):
    """Total NLL (nats) of num_windows random windows of ids (window_starts), each window's
    every position predicted from a zero state and the characters before it in the window.
    Returns (total_nats, chars_scored = num_windows * window); their ratio is nanoGPT's
    validation loss when ids is the validation split. threads: the layout the passes run on
    (runtime.Threads).

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
                                   model.zero_state(spec, first.shape[1]), threads)
        total += nats
    return total, num_windows * window
