"""Optimizer updates, clipping and the learning-rate schedules, checked against values worked
out by hand; the annealing schedules for any length, warmup and floor."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_lr_schedules():
    assert optim.lr_at(0, 1e-3) == optim.lr_at(10**6, 1e-3) == 1e-3
    warm = [optim.lr_at(s, 1.0, "constant", warmup_steps=4) for s in range(6)]
    assert warm == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cos = dict(lr=1.0, schedule="cosine", total_steps=110, warmup_steps=10, lr_min=0.1)
    assert optim.lr_at(9, **cos) == 1.0 and optim.lr_at(10, **cos) == 1.0
    assert optim.lr_at(60, **cos) == pytest.approx(0.55)  # halfway: the mean of lr and lr_min
    assert optim.lr_at(110, **cos) == pytest.approx(0.1) == optim.lr_at(500, **cos)
    values = [optim.lr_at(s, **cos) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    step = dict(lr=1.0, schedule="step", decay=0.5, decay_every=100)
    assert [optim.lr_at(s, **step) for s in (0, 99, 100, 250)] == [1.0, 1.0, 0.5, 0.25]
    wsd = dict(lr=1.0, schedule="wsd", total_steps=110, warmup_steps=10, lr_min=0.1,
               decay_frac=0.2)  # held for 80 of the 100 steps after warmup, then 20 down
    assert [optim.lr_at(s, **wsd) for s in (10, 89, 90)] == [1.0, 1.0, 1.0]
    assert optim.lr_at(100, **wsd) == pytest.approx(0.55)  # halfway down the line
    assert optim.lr_at(110, **wsd) == pytest.approx(0.1) == optim.lr_at(500, **wsd)
    with pytest.raises(ValueError):
        optim.lr_at(0, 1.0, "linear")


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(schedule=st.sampled_from(["cosine", "wsd"]), total=st.integers(1, 5000),
       warmup=st.integers(0, 5000), lr_min_share=st.floats(0.0, 1.0),
       decay_frac=st.floats(0.0, 1.0, exclude_min=True))
def test_annealing_schedules_fall_from_lr_to_lr_min(schedule, total, warmup, lr_min_share,
                                                     decay_frac):
    """Any cosine or wsd schedule: after warmup it never rises, never leaves [lr_min, lr], and
    is at lr_min from total_steps on; wsd is at full rate until its decay starts."""
    lr, lr_min = 3e-3, 3e-3 * lr_min_share
    at = dict(lr=lr, schedule=schedule, total_steps=total, warmup_steps=warmup, lr_min=lr_min,
              decay_frac=decay_frac)
    steps = sorted({warmup, warmup + 1, total - 1, total, total + 1, (warmup + total) // 2,
                    int(total - decay_frac * (total - warmup)) - 1})
    values = [optim.lr_at(s, **at) for s in steps if s >= warmup]
    assert all(a >= b - 1e-12 for a, b in zip(values, values[1:]))
    assert all(lr_min - 1e-12 <= v <= lr + 1e-12 for v in values)
    if total > warmup:
        assert optim.lr_at(total, **at) == pytest.approx(lr_min, abs=1e-12)
        if schedule == "wsd":
            hold = (1 - decay_frac) * (total - warmup)
            held = [s for s in range(warmup, total) if s - warmup <= hold]
            assert all(optim.lr_at(s, **at) == lr for s in held[:50] + held[-50:])
