"""Softmax cross-entropy over the vocabulary, in nats per character."""
import numpy as np

LN2 = float(np.log(2.0))


def log_softmax(logits):
    """(M, V) -> (M, V), stable for logits of any magnitude (max subtracted first)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy_rows(logits, targets, M, nll):
    """Softmax cross-entropy and its gradient on a block of rows, in place.

    logits (m, V) becomes dlogits = (softmax - one_hot) / M for those rows and nll (m,) receives
    each row's negative log-likelihood. Rows are independent, so blocks may run side by side.
    """
    logits -= logits.max(axis=1, keepdims=True)
    rows = np.arange(logits.shape[0])
    picked = logits[rows, targets]
    probs = np.exp(logits, out=logits)
    sums = probs.sum(axis=1, keepdims=True)
    np.subtract(np.log(sums[:, 0]), picked, out=nll)
    probs /= sums
    probs[rows, targets] -= 1.0
    probs *= 1.0 / M


def nll_sum(logits, targets):
    """Summed negative log-likelihood in nats (float64), for evaluation: logits (M, V),
    targets (M,).

    Each target's log-probability is log_softmax's to the bit, but only the M of them are formed:
    one (M, V) temporary where log_softmax makes three.
    """
    rows = np.arange(len(targets))
    shifted = logits - logits.max(axis=1, keepdims=True)
    picked = shifted[rows, targets]
    sums = np.exp(shifted, out=shifted).sum(axis=1)
    return float(-(picked - np.log(sums)).sum(dtype=np.float64))


def bits(nats):
    return nats / LN2
