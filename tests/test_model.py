"""The whole model: gradients against finite differences, forward against a naive loop, float32
kept, and a generation step equal to the training pass."""
import numpy as np
import pytest

from charrnn import inference, model
from charrnn.cells import CELLS
from gradcheck import numeric_grad, rel_error

T, N, H, V = 4, 3, 5, 7


def _spec(cell, layers=2, dropout=0.0):
    return model.ModelSpec(cell, V, H, layers, dropout, "float64")


def _random_params(spec, rng):
    params = model.init_params(spec, rng)
    for k in params:
        params[k] = rng.standard_normal(params[k].shape) * 0.5
    return params


def _assert_backward_matches_finite_differences(params, spec, x, y, state):
    """Every parameter's and every layer's initial-state gradient from model.backward against
    centred differences of the loss, with the same dropout masks on every call (drawn from a
    fresh generator with a fixed seed; none when the spec has no dropout)."""
    def drop():
        return model.dropout_masks(spec, *x.shape, np.random.default_rng(7))

    def loss():
        return model.forward(params, spec, x, y, state, drop())[0]

    _, _, cache = model.forward(params, spec, x, y, state, drop())
    grads, dstate0 = model.backward(params, spec, cache)
    assert set(grads) == set(params)
    for k in params:
        err = rel_error(grads[k], numeric_grad(loss, params[k]))
        assert err < 1e-7, (k, err)
    for layer, st in enumerate(state):
        for i, s in enumerate(st):
            err = rel_error(dstate0[layer][i], numeric_grad(loss, s))
            assert err < 1e-7, (layer, i, err)


@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_model_backward_matches_finite_differences(name, dropout):
    """Every parameter and every layer's initial state, 2 stacked layers, float64."""
    spec = _spec(name, layers=2, dropout=dropout)
    rng = np.random.default_rng(0)
    params = _random_params(spec, rng)
    x = rng.integers(0, V, size=(T, N))
    y = rng.integers(0, V, size=(T, N))
    state = [tuple(rng.standard_normal((N, H)) for _ in s) for s in model.zero_state(spec, N)]
    _assert_backward_matches_finite_differences(params, spec, x, y, state)


def test_rnn_forward_matches_naive_one_hot_loop():
    """The batched, row-lookup forward equals a per-step loop with explicit one-hot vectors."""
    spec = _spec("rnn", layers=2)
    rng = np.random.default_rng(1)
    params = _random_params(spec, rng)
    x = rng.integers(0, V, size=(T, N))
    y = rng.integers(0, V, size=(T, N))
    loss, final, _ = model.forward(params, spec, x, y, model.zero_state(spec, N))

    hs = [np.zeros((N, H)) for _ in range(2)]
    total = 0.0
    for t in range(T):
        inp = np.eye(V)[x[t]]  # (N, V) one-hot rows
        for layer in range(2):
            p = model.layer_params(params, layer)
            hs[layer] = np.tanh(inp @ p["Wx"] + hs[layer] @ p["Wh"] + p["b"])
            inp = hs[layer]
        logits = inp @ params["Wy"] + params["by"]
        for n in range(N):
            z = logits[n]
            total += np.log(np.sum(np.exp(z - z.max()))) + z.max() - z[y[t, n]]
    assert loss == pytest.approx(total / (T * N), rel=1e-12)
    for layer in range(2):
        np.testing.assert_allclose(final[layer][0], hs[layer], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_float32_stays_float32(name):
    spec = model.ModelSpec(name, V, H, 2, 0.2, "float32")
    rng = np.random.default_rng(3)
    params = model.init_params(spec, rng)
    x = rng.integers(0, V, size=(T, N)).astype(np.uint8)
    _, state, cache = model.forward(params, spec, x, x, model.zero_state(spec, N),
                                    model.dropout_masks(spec, T, N, rng))
    grads, _ = model.backward(params, spec, cache)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert all(s.dtype == np.float32 for layer in state for s in layer)


RESIDUAL = {"residual": dict(stack="residual"),
            "residual-x2-mlp3": dict(stack="residual", expand=2, mlp=3)}


@pytest.mark.parametrize("stack", sorted(RESIDUAL))
@pytest.mark.parametrize("name", ["mingru", "minlstm", "lstm"])
def test_residual_model_backward_with_dropout_matches_finite_differences(name, stack):
    """The residual stack's dropout (on each branch's output) and every parameter, float64."""
    spec = model.ModelSpec(name, V, H, 2, 0.3, "float64", **RESIDUAL[stack])
    rng = np.random.default_rng(5)
    params = _random_params(spec, rng)
    x, y = rng.integers(0, V, size=(T, N)), rng.integers(0, V, size=(T, N))
    state = [tuple(rng.standard_normal(s.shape) for s in st) for st in model.zero_state(spec, N)]
    _assert_backward_matches_finite_differences(params, spec, x, y, state)


@pytest.mark.parametrize("stack", ["plain"] + sorted(RESIDUAL))
@pytest.mark.parametrize("name", sorted(CELLS))
def test_generation_step_equals_the_training_forward_pass(name, stack):
    """model.stepper, one character at a time at batch 1 (what sampling runs), gives the
    logits and state that model.logits gives for the whole text at once (what training and
    scoring run), from a nonzero state."""
    spec = model.ModelSpec(name, V, H, 2, 0.0, "float64", **RESIDUAL.get(stack, {}))
    rng = np.random.default_rng(6)
    params = _random_params(spec, rng)
    ids = rng.integers(0, V, size=12)
    state = [tuple(rng.standard_normal(s.shape) for s in st) for st in model.zero_state(spec, 1)]
    logits, final = inference.logits(params, spec, ids.reshape(-1, 1), state)
    step, s = inference.stepper(params, spec), state
    for t, i in enumerate(ids):
        out, s = step(int(i), s)
        np.testing.assert_allclose(out, logits[t], rtol=1e-12, atol=1e-12)
    for a, b in zip(s, final):
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)
