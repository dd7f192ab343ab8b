"""Centred finite differences in float64, contracted with a random upstream gradient, and the
whole-array softmax cross-entropy the model's blocked one is checked against."""
import numpy as np

from charrnn.loss import softmax_cross_entropy_rows


def numeric_grad(f, x, eps=1e-6):
    """d f() / d x by centred differences, perturbing x in place; f returns a scalar."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * eps)
    return grad


def rel_error(a, b):
    """max |a - b| / max(|a| + |b|), with a floor so an all-zero pair compares as zero."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a) + np.abs(b)), 1e-12))


def softmax_cross_entropy(logits, targets):
    """Mean negative log-likelihood of targets (M,) under logits (M, V), and its gradient
    dlogits = (softmax - one_hot) / M, on the whole array at once; logits is left unchanged."""
    M = logits.shape[0]
    dlogits = logits.copy()
    nll = np.empty(M, dtype=logits.dtype)
    softmax_cross_entropy_rows(dlogits, targets, M, nll)
    return float(np.mean(nll)), dlogits
