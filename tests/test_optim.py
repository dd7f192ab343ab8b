"""Optimizer updates and clipping, checked against values worked out by hand."""
import numpy as np
import pytest

from charrnn import optim


def _one(kind, p0=1.0, g=0.5, steps=1, lr=0.1):
    params = {"w": np.array([p0])}
    state = optim.init_state(kind, params)
    for _ in range(steps):
        optim.apply(kind, params, {"w": np.array([g])}, state, lr)
    return params["w"][0], state


def test_adam_first_step_moves_by_lr():
    # after one step m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps)
    p, state = _one("adam")
    assert p == pytest.approx(1.0 - 0.1 * 0.5 / (0.5 + 1e-8), rel=1e-12)
    assert state["m.w"][0] == pytest.approx(0.05) and state["v.w"][0] == pytest.approx(0.00025)
    assert int(state["t"]) == 1


def test_adam_second_step():
    p, _ = _one("adam", steps=2)
    m = 0.9 * 0.05 + 0.1 * 0.5
    v = 0.999 * 0.00025 + 0.001 * 0.25
    m_hat, v_hat = m / (1 - 0.9 ** 2), v / (1 - 0.999 ** 2)
    first = 1.0 - 0.1 * 0.5 / (0.5 + 1e-8)
    assert p == pytest.approx(first - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8), rel=1e-12)


def test_adagrad_two_steps():
    p, _ = _one("adagrad", steps=2)
    first = 1.0 - 0.1 * 0.5 / np.sqrt(0.25 + 1e-8)
    assert p == pytest.approx(first - 0.1 * 0.5 / np.sqrt(0.5 + 1e-8), rel=1e-12)


def test_sgd_momentum_two_steps():
    p, _ = _one("sgd", steps=2)
    assert p == pytest.approx(1.0 - 0.1 * 0.5 - 0.1 * (0.9 * 0.5 + 0.5), rel=1e-12)


def test_clip_by_global_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([4.0])}
    norm = optim.clip(grads, "norm", 1.0)
    assert norm == pytest.approx(5.0)
    assert optim.global_norm(grads) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(grads["a"], [0.6, 0.0], rtol=1e-5)


def test_clip_leaves_small_gradients_alone_and_clips_values():
    grads = {"a": np.array([0.3, -0.4])}
    optim.clip(grads, "norm", 1.0)
    np.testing.assert_array_equal(grads["a"], [0.3, -0.4])
    grads = {"a": np.array([3.0, -0.4, -7.0])}
    optim.clip(grads, "value", 1.0)
    np.testing.assert_array_equal(grads["a"], [1.0, -0.4, -1.0])
