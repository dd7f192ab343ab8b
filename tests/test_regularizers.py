"""The regularizers (weight_drop, locked dropout, weight_decay, ema): the reference's gradients
with their masks against finite differences, the fast model and optimizer against the reference
(and PyTorch, skipped when absent), the masks' shapes and rates, and the checkpoint's ema."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import charrnn
from charrnn import checkpoint, config, model, optim, reference
from charrnn.cells import CELLS
from charrnn.dropconnect import has_recurrent_weights
from charrnn.errors import CharrnnError
from clihelp import QUICK, SHAKESPEARE, assert_one_line_error, run
from gradcheck import numeric_grad, rel_error

T, N, H, V = 4, 3, 5, 7
FD_TOL = 1e-7  # finite differences against an analytic gradient
EXACT = 1e-10  # two analytic computations of the same float64 numbers
BIG_N = 40  # at N >= 32 the fast cells run the batch in two halves on two threads
RECURRENT = sorted(c for c in CELLS if has_recurrent_weights(c))  # rnn, lstm, gru
STACKS = {"plain": {}, "residual": {"stack": "residual", "expand": 2, "mlp": 2}}


def _case(name, n, stack, dropout_mode="locked", seed=1):
    """A float64 2-layer model with large random weights and a carried state, and masks from
    model.dropout_masks: dropout 0.3 in dropout_mode, and weight_drop 0.4 where the cell has
    Wh."""
    rng = np.random.default_rng(seed)
    spec = model.ModelSpec(name, V, H, 2, 0.3, "float64", dropout_mode=dropout_mode,
                           weight_drop=0.4 if has_recurrent_weights(name) else 0.0,
                           **STACKS[stack])
    params = {k: rng.standard_normal(v.shape) * 0.5
              for k, v in model.init_params(spec, rng).items()}
    x, y = rng.integers(0, V, size=(T, n)), rng.integers(0, V, size=(T, n))
    state = [tuple(rng.standard_normal(s.shape) for s in layer)
             for layer in model.zero_state(spec, n)]
    masks = model.dropout_masks(spec, T, n, np.random.default_rng(seed + 10))
    return spec, params, x, y, state, masks


def _reference(spec, params, x, y, state, masks):
    return reference.model_forward(params, spec.cell, spec.layers, x, y, state, spec.stack,
                                   masks.layers, masks.recurrent)


@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("name", sorted(CELLS))
def test_reference_with_masks_matches_finite_differences(name, stack):
    """Every parameter (Wh through its weight_drop mask) and every initial state."""
    spec, params, x, y, state, masks = _case(name, N, stack)

    def loss():
        return _reference(spec, params, x, y, state, masks)[0]

    grads, dstate0 = reference.model_backward(_reference(spec, params, x, y, state, masks)[2])
    assert set(grads) == set(params)
    for k in params:
        assert rel_error(grads[k], numeric_grad(loss, params[k])) < FD_TOL, (name, k)
    for layer, (st_, dst) in enumerate(zip(state, dstate0)):
        for s, ds in zip(st_, dst):
            assert rel_error(ds, numeric_grad(loss, s)) < FD_TOL, (name, layer)


@pytest.mark.parametrize("mode", ["step", "locked"])
@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("n", [N, BIG_N], ids=["N3", "N40"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_fast_model_with_masks_equals_reference(name, n, stack, mode):
    spec, params, x, y, state, masks = _case(name, n, stack, mode, seed=3)
    ref_loss, ref_state, ref_cache = _reference(spec, params, x, y, state, masks)
    ref_grads, ref_dstate0 = reference.model_backward(ref_cache)
    loss, new_state, cache = model.forward(params, spec, x, y, state, masks)
    grads, dstate0 = model.backward(params, spec, cache)
    assert abs(loss - ref_loss) <= EXACT * max(1.0, abs(ref_loss))
    for k in params:
        err = np.max(np.abs(grads[k] - ref_grads[k])) / max(1.0, np.max(np.abs(ref_grads[k])))
        assert err <= EXACT, (k, err)
    for ours, ref in zip(new_state + dstate0, ref_state + ref_dstate0):
        for a, b in zip(ours, ref):
            assert np.max(np.abs(a - b)) <= EXACT * max(1.0, np.max(np.abs(b)))


@pytest.mark.parametrize("name", RECURRENT)
def test_the_weight_mask_changes_the_loss_and_only_through_wh(name):
    """The masks are used: dropping Wh's entries changes the loss, and the dropped entries of
    Wh get no gradient."""
    spec, params, x, y, state, masks = _case(name, N, "plain")
    dropped, _, cache = model.forward(params, spec, x, y, state, model.Masks(None,
                                                                          masks.recurrent))
    grads, _ = model.backward(params, spec, cache)
    assert dropped != pytest.approx(model.forward(params, spec, x, y, state)[0], rel=1e-6)
    for k in range(spec.layers):
        assert np.all(grads[f"l{k}.Wh"][masks.recurrent[k] == 0] == 0)


# ---- the masks ---------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, derandomize=True)
@given(cell=st.sampled_from(sorted(CELLS)), stack=st.sampled_from(["plain", "residual"]),
       layers=st.integers(1, 3), hidden=st.integers(1, 6), t=st.integers(1, 5),
       n=st.integers(1, 5), dropout=st.sampled_from([0.0, 0.1, 0.5, 0.9]),
       mode=st.sampled_from(["step", "locked"]), weight_drop=st.sampled_from([0.0, 0.2, 0.7]),
       mlp=st.integers(0, 2), seed=st.integers(0, 2**32 - 1))
def test_masks_have_the_shapes_and_values_of_their_places(cell, stack, layers, hidden, t, n,
                                                          dropout, mode, weight_drop, mlp, seed):
    weight_drop = weight_drop if has_recurrent_weights(cell) else 0.0
    residual = stack == "residual"
    spec = model.ModelSpec(cell, V, hidden, layers, dropout, "float32", stack=stack,
                           mlp=mlp if residual else 0, expand=2 if residual else 1,
                           dropout_mode=mode, weight_drop=weight_drop)
    masks = model.dropout_masks(spec, t, n, np.random.default_rng(seed))
    if dropout == 0 and weight_drop == 0:
        assert masks is None
        return
    if dropout:
        assert len(masks.layers) == (layers * (2 if mlp else 1) if residual else layers)
        for m in masks.layers:
            assert m.shape == (t, n, hidden) and m.dtype == np.float32
            assert set(np.unique(m)) <= {0.0, np.float32(1 / (1 - dropout))}
            if mode == "locked":  # one mask per stream for the whole window
                assert (m == m[:1]).all()
    else:
        assert masks.layers is None
    if weight_drop:
        D = V if not residual else hidden
        wh = CELLS[cell].param_shapes(D, spec.cell_size)["Wh"]
        assert [m.shape for m in masks.recurrent] == [wh] * layers
        for m in masks.recurrent:
            assert set(np.unique(m)) <= {0.0, np.float32(1 / (1 - weight_drop))}
    else:
        assert masks.recurrent is None
    # rows of the batch: their activation masks, and the same weight masks for every row
    part = masks.rows(slice(0, max(1, n // 2)))
    if dropout:
        assert all(np.array_equal(p, m[:, :max(1, n // 2)]) for p, m in zip(part.layers,
                                                                           masks.layers))
    assert part.recurrent is masks.recurrent


@settings(max_examples=12, deadline=None, derandomize=True)
@given(rate=st.floats(0.05, 0.9), mode=st.sampled_from(["step", "locked"]),
       seed=st.integers(0, 2**32 - 1))
def test_masks_drop_their_rate(rate, mode, seed):
    """The share of zeros is the rate, within 5 standard deviations of a binomial draw."""
    spec = model.ModelSpec("gru", V, 64, 1, rate, "float64", dropout_mode=mode, weight_drop=rate)
    masks = model.dropout_masks(spec, 50, 100, np.random.default_rng(seed))
    drawn = [masks.layers[0][:1] if mode == "locked" else masks.layers[0], masks.recurrent[0]]
    for m in drawn:
        sd = np.sqrt(rate * (1 - rate) / m.size)
        assert abs(np.mean(m == 0) - rate) < 5 * sd, (m.shape, np.mean(m == 0))


def test_no_regularizer_draws_what_it_drew_before():
    """dropout_mode step with no weight_drop draws exactly the (T, N, H) masks of a plain
    Bernoulli draw per layer, in order, so the shipped configs keep their bits."""
    spec = model.ModelSpec("lstm", V, H, 2, 0.25, "float32")
    masks = model.dropout_masks(spec, T, N, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    for m in masks.layers:
        expected = (rng.random((T, N, H), dtype=np.float32) < 0.75).astype(np.float32)
        np.testing.assert_array_equal(m, expected * np.float32(1 / 0.75))
    assert masks.recurrent is None


def test_weight_drop_on_a_cell_without_wh_is_refused(tmp_path):
    for cell in ("mingru", "minlstm"):
        with pytest.raises(CharrnnError, match="weight_drop.*has none"):
            config.load({"cell": cell, "weight_drop": 0.2})
    assert config.load({"cell": "gru", "weight_drop": 0.2}).weight_drop == 0.2
    result = run("train", SHAKESPEARE, *QUICK, "--cell", "mingru", "--weight-drop", 0.2,
                 "--out", tmp_path / "run")
    assert_one_line_error(result, "'weight_drop'", "mingru has none", before="nothing")


# ---- decoupled weight decay and the moving average ---------------------------------------------

def _weights(rng):
    return {"l0.Wx": rng.standard_normal((4, 6)), "l0.b": rng.standard_normal(6),
            "norm": rng.standard_normal(4), "Wy": rng.standard_normal((4, 3))}


def test_adamw_equals_the_reference_and_spares_biases_and_gains():
    rng = np.random.default_rng(0)
    params = _weights(rng)
    ref = {k: (v.copy(), np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}
    state = optim.init_state("adam", params)
    for t in range(1, 6):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        lr = 0.01 * t
        optim.apply("adam", params, grads, state, lr, weight_decay=0.3)
        ref = {k: reference.adamw_step(p, grads[k], m, v, t, lr, 0.3, decayed=p.ndim >= 2)
               for k, (p, m, v) in ref.items()}
        for k in params:
            np.testing.assert_allclose(params[k], ref[k][0], rtol=EXACT, atol=EXACT, err_msg=k)
    assert [k for k in params if optim.decays(params[k])] == ["l0.Wx", "Wy"]


def test_weight_decay_shrinks_matrices_alone_when_nothing_else_moves():
    """Zero gradients: Adam moves nothing, so only the decay acts, on the matrices alone."""
    params = _weights(np.random.default_rng(1))
    before = {k: v.copy() for k, v in params.items()}
    optim.apply("sgd", params, {k: np.zeros_like(v) for k, v in params.items()},
                optim.init_state("sgd", params), 0.1, weight_decay=0.5)
    for k in params:
        expected = before[k] * (1 - 0.05) if before[k].ndim >= 2 else before[k]
        np.testing.assert_array_equal(params[k], expected)


def test_weight_decay_zero_keeps_the_bits():
    rng = np.random.default_rng(2)
    a = {k: v.astype(np.float32) for k, v in _weights(rng).items()}
    b = {k: v.copy() for k, v in a.items()}
    grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in a.items()}
    sa, sb = optim.init_state("adam", a), optim.init_state("adam", b)
    optim.apply("adam", a, grads, sa, 3e-3)
    optim.apply("adam", b, grads, sb, 3e-3, weight_decay=0.0)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_adamw_equals_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    params = _weights(rng)
    leaves = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    groups = [{"params": [leaves[k] for k in params if params[k].ndim >= 2],
               "weight_decay": 0.2},
              {"params": [leaves[k] for k in params if params[k].ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=0.05, betas=optim.ADAM_BETAS, eps=optim.ADAM_EPS)
    state = optim.init_state("adam", params)
    for _ in range(5):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        for k, leaf in leaves.items():
            leaf.grad = torch.tensor(grads[k])
        opt.step()
        optim.apply("adam", params, grads, state, 0.05, weight_decay=0.2)
    for k, leaf in leaves.items():
        np.testing.assert_allclose(params[k], leaf.detach().numpy(), rtol=1e-12, atol=1e-14,
                                   err_msg=k)


def test_ema_equals_the_reference():
    rng = np.random.default_rng(4)
    params = _weights(rng)
    ema = {k: v.copy() for k, v in params.items()}
    ref = {k: v.copy() for k, v in params.items()}
    for step in range(1, 30):
        for v in params.values():
            v += rng.standard_normal(v.shape) * 0.1
        optim.ema_update(ema, params, 0.9, step)
        ref = {k: reference.ema_step(ref[k], params[k], 0.9, step) for k in params}
    for k in params:
        np.testing.assert_allclose(ema[k], ref[k], rtol=EXACT, atol=EXACT, err_msg=k)
        assert not np.allclose(ema[k], params[k])  # an average, not the last weights


# ---- the checkpoint's ema ----------------------------------------------------------------------

def _checkpoint(ema, record=None):
    cfg = config.load({"cell": "gru", "hidden_size": 4, "layers": 1, "ema": ema})
    spec = model.spec_of(cfg, 3)
    params = model.init_params(spec, np.random.default_rng(0))
    ema_params = {k: v + 1 for k, v in params.items()} if ema else None
    return checkpoint.Checkpoint(params=params, ema_params=ema_params, step=4, config=cfg,
                                 vocab="abc", record=record)


def test_ema_round_trips_and_is_what_a_loaded_model_uses_when_it_scored(tmp_path):
    for weights in ("raw", "ema"):
        path = tmp_path / f"{weights}.npz"
        checkpoint.save(path, _checkpoint(0.99, {"step": 4, "weights": weights}))
        ck = checkpoint.load(path)
        for k, v in ck.params.items():
            np.testing.assert_array_equal(ck.ema_params[k], v + 1)
        expected = ck.ema_params if weights == "ema" else ck.params
        used = charrnn.load(path).params
        assert all(np.array_equal(used[k], expected[k]) for k in expected)


def test_a_checkpoint_without_ema_loads_and_ema_without_its_config_is_refused(tmp_path):
    path = tmp_path / "old.npz"
    checkpoint.save(path, _checkpoint(0.0))
    assert checkpoint.load(path).ema_params is None
    arrays = checkpoint.to_arrays(_checkpoint(0.99))
    assert any(k.startswith("ema/") for k in arrays)
    bad = {**checkpoint.to_arrays(_checkpoint(0.0)),
           **{k: v for k, v in arrays.items() if k.startswith("ema/")}}
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(CharrnnError, match="ema/ arrays but its config's ema is 0"):
        checkpoint.load(tmp_path / "bad.npz")
    arrays["ema/Wy"] = arrays["ema/Wy"][:1]
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(CharrnnError, match="ema/Wy has shape"):
        checkpoint.load(tmp_path / "shape.npz")
