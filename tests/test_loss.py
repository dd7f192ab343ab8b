"""charrnn/loss.py: the softmax cross-entropy and its gradient, finite for logits of any size,
the evaluation's summed NLL to the bit of log_softmax's, and nats in bits."""
import math

import numpy as np
import pytest

from charrnn.loss import bits, log_softmax, nll_sum
from gradcheck import numeric_grad, rel_error, softmax_cross_entropy

V = 7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_is_finite_for_huge_logits(dtype):
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0]], dtype=dtype)
    loss, dlogits = softmax_cross_entropy(logits, np.array([1, 2]))
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    assert loss == pytest.approx(1000.0, rel=1e-6)  # row 0 pays 2000 nats, row 1 pays 0
    assert dlogits.dtype == dtype


def test_softmax_cross_entropy_gradient():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, V))
    targets = rng.integers(0, V, size=6)
    _, d = softmax_cross_entropy(logits.copy(), targets)
    num = numeric_grad(lambda: softmax_cross_entropy(logits.copy(), targets)[0], logits)
    assert rel_error(d, num) < 1e-7


def test_a_uniform_guess_costs_log_v():
    loss, dlogits = softmax_cross_entropy(np.zeros((4, V)), np.arange(4))
    assert loss == pytest.approx(math.log(V), rel=1e-12)
    np.testing.assert_allclose(dlogits.sum(axis=1), 0.0, atol=1e-15)  # softmax and one-hot sum to 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nll_sum_is_log_softmax_to_the_bit(dtype):
    rng = np.random.default_rng(6)
    logits = (rng.standard_normal((50, 300)) * 20).astype(dtype)
    logits[3, :] = 1e4
    targets = rng.integers(0, 300, size=50)
    kept = logits.copy()
    lp = log_softmax(logits)
    assert nll_sum(logits, targets) == float(-lp[np.arange(50), targets].sum(dtype=np.float64))
    np.testing.assert_array_equal(logits, kept)


def test_log_softmax_rows_are_distributions():
    logits = np.array([[0.0, 1.0, 2.0], [1e4, -1e4, 0.0]])
    lp = log_softmax(logits)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(np.isfinite(lp[0])) and lp[1, 0] == 0.0


def test_bits_are_nats_over_ln_2():
    assert bits(math.log(2)) == pytest.approx(1.0, rel=1e-15)
    assert bits(math.log(65)) == pytest.approx(math.log2(65), rel=1e-15)
