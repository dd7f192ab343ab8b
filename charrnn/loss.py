"""Softmax cross-entropy over the vocabulary, in nats per character."""
import numpy as np

LN2 = float(np.log(2.0))


def log_softmax(logits):
    """(M, V) -> (M, V), stable for logits of any magnitude (max subtracted first)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(logits, targets):
    """Mean negative log-likelihood and its gradient.

    logits (M, V), targets (M,) ints -> (loss in nats/char, dlogits (M, V)) where the loss is the
    mean over the M characters, so dlogits = (softmax - one_hot) / M.
    """
    M = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    rows = np.arange(M)
    picked = shifted[rows, targets]
    probs = np.exp(shifted, out=shifted)  # in place: one (M, V) array fewer per window
    sums = probs.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(sums[:, 0]) - picked))
    probs /= sums
    probs[rows, targets] -= 1.0
    probs *= 1.0 / M
    return loss, probs


def nll_sum(logits, targets):
    """Summed negative log-likelihood in nats (float64), for evaluation: logits (M, V), targets (M,)."""
    lp = log_softmax(logits)
    return float(-lp[np.arange(len(targets)), targets].sum(dtype=np.float64))


def bits(nats):
    return nats / LN2
