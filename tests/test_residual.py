"""charrnn/residual.py, the residual stack on its own: its gradients against finite differences,
its parameters as param_shapes lists them, and a stack whose branches add nothing passing the
embedding through to the final norm."""
import numpy as np
import pytest

from charrnn import model, positionwise, residual
from charrnn.cells import CELLS
from gradcheck import numeric_grad, rel_error

T, N, H, V = 3, 2, 4, 5


def _spec(cell, mlp=2, expand=2, dropout=0.0, dtype="float64"):
    return model.ModelSpec(cell, V, H, 2, dropout, dtype, "residual", expand, mlp)


def _random(spec, rng):
    params = residual.init_params(spec, rng)
    return {k: rng.standard_normal(v.shape) * 0.5 for k, v in params.items()}


@pytest.mark.parametrize("mlp", [0, 2])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_stack_gradients_match_finite_differences(cell, mlp):
    """residual.backward against centred differences of sum(top * dtop), for every parameter
    and every layer's initial state, float64, no dropout."""
    spec = _spec(cell, mlp)
    rng = np.random.default_rng(0)
    params = _random(spec, rng)
    ids = rng.integers(0, V, size=(T, N))
    state = [tuple(rng.standard_normal(s.shape) for s in layer)
             for layer in model.zero_state(spec, N)]
    dtop = rng.standard_normal((T, N, H))
    _, _, cache = residual.forward(params, spec, ids, state, None)
    grads = {}
    dstate0 = residual.backward(params, spec, cache, dtop, grads)

    def f():
        return float(np.sum(residual.forward(params, spec, ids, state, None)[0] * dtop))

    assert sorted(grads) == sorted(params)
    for k in params:
        assert rel_error(grads[k], numeric_grad(f, params[k])) < 1e-6, k
    for layer, (s, ds) in enumerate(zip(state, dstate0)):
        for i in range(len(s)):
            assert rel_error(ds[i], numeric_grad(f, s[i])) < 1e-6, (layer, i)


@pytest.mark.parametrize("mlp", [0, 3])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_init_makes_the_arrays_param_shapes_lists(cell, mlp):
    spec = _spec(cell, mlp, expand=3, dtype="float32")
    params = residual.init_params(spec, np.random.default_rng(1))
    shapes = residual.param_shapes(spec)
    assert list(params) == list(shapes)
    assert all(params[k].shape == shapes[k] and params[k].dtype == np.float32 for k in params)
    assert residual.cell_keys(spec) == tuple(CELLS[cell].param_shapes(1, 1))
    assert ("l0.W1" in shapes) == bool(mlp)


def test_branches_that_add_nothing_pass_the_embedding_through():
    """With every branch's last product and bias zero the stream stays the embedding: top is
    its final norm, whatever the cells compute; their state still moves on."""
    spec = _spec("gru", mlp=2)
    rng = np.random.default_rng(2)
    params = _random(spec, rng)
    for k in params:
        if k.rsplit(".", 1)[-1] in ("Wo", "bo", "W2", "b2"):
            params[k][...] = 0.0
    ids = rng.integers(0, V, size=(T, N))
    state = model.zero_state(spec, N)
    top, new_state, _ = residual.forward(params, spec, ids, state, None)
    x = params["embed"][ids.reshape(-1)]
    want, _ = positionwise.rms_norm(x, params["norm"])
    np.testing.assert_allclose(top, want.reshape(T, N, H), rtol=1e-12, atol=1e-12)
    assert all(np.abs(h).max() > 0 for (h,) in new_state)


def test_dropout_takes_a_mask_per_branch_and_none_without_masks():
    spec = _spec("mingru", mlp=2, dropout=0.5)
    rng = np.random.default_rng(3)
    params = _random(spec, rng)
    ids = rng.integers(0, V, size=(T, N))
    state = model.zero_state(spec, N)
    masks = model.dropout_masks(spec, T, N, np.random.default_rng(4))
    assert len(masks.layers) == residual.dropout_places(spec) == 2 * spec.layers
    _, _, cache = residual.forward(params, spec, ids, state, masks)
    for layer in cache.layers:
        for mask in (layer.mask, layer.mlp.mask):
            assert mask.shape == (T * N, H) and set(np.unique(mask)) <= {0.0, 2.0}
    _, _, cache = residual.forward(params, spec, ids, state, None)
    assert all(layer.mask is None and layer.mlp.mask is None for layer in cache.layers)
