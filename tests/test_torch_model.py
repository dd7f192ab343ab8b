"""The whole model (one-hot input, 2 stacked layers, linear output, mean cross-entropy) against
the same model built from PyTorch modules in float64. Skipped when PyTorch is absent."""
import numpy as np
import pytest

from charrnn import model

torch = pytest.importorskip("torch")

T, N, H, V, LAYERS = 6, 3, 5, 7, 2
# where each of torch's gate blocks sits in our packed layout (see the cells' docstrings)
TORCH_BLOCKS = {"rnn": [0], "lstm": [0, 1, 3, 2], "gru": [0, 1, 2]}
TORCH_CLASS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _cols(name):
    return np.concatenate([np.arange(k * H, (k + 1) * H) for k in TORCH_BLOCKS[name]])


def _torch_tensors(name, params):
    """Our flat params as torch's (weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k},
    output weight (V, H), output bias) leaves that require gradients."""
    cols, leaves = _cols(name), {}
    for k in range(LAYERS):
        p = model.layer_params(params, k)
        bias_hh = np.zeros(len(cols))
        if name == "gru":
            bias_hh[2 * H:] = p["bhn"]
        leaves[f"weight_ih_l{k}"] = p["Wx"][:, cols].T
        leaves[f"weight_hh_l{k}"] = p["Wh"][:, cols].T
        leaves[f"bias_ih_l{k}"] = p["b"][cols]
        leaves[f"bias_hh_l{k}"] = bias_hh
    leaves["out.weight"] = params["Wy"].T
    leaves["out.bias"] = params["by"]
    return {k: torch.tensor(np.ascontiguousarray(v), requires_grad=True) for k, v in leaves.items()}


@pytest.mark.parametrize("name", sorted(TORCH_CLASS))  # the min cells: test_torch_min.py
def test_model_loss_and_gradients_match_torch(name):
    torch.set_num_threads(1)
    spec = model.ModelSpec(name, V, H, LAYERS, 0.0, "float64")
    rng = np.random.default_rng(0)
    params = model.init_params(spec, rng)
    for k in params:
        params[k] = rng.standard_normal(params[k].shape) * 0.5
    x = rng.integers(0, V, size=(T, N))
    y = rng.integers(0, V, size=(T, N))
    state = [tuple(rng.standard_normal((N, H)) for _ in s) for s in model.zero_state(spec, N)]

    loss, _, cache = model.forward(params, spec, x, y, state)
    grads, _ = model.backward(params, spec, cache)

    rnn = getattr(torch.nn, TORCH_CLASS[name])(V, H, num_layers=LAYERS).double()
    leaves = _torch_tensors(name, params)
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(x), V).double()  # (T, N, V)
    h0 = torch.tensor(np.stack([s[0] for s in state]))
    init = (h0, torch.tensor(np.stack([s[1] for s in state]))) if name == "lstm" else h0
    weights = {k: v for k, v in leaves.items() if not k.startswith("out.")}
    hs, _ = torch.func.functional_call(rnn, weights, (one_hot, init))
    logits = hs.reshape(T * N, H) @ leaves["out.weight"].T + leaves["out.bias"]
    torch_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y).reshape(-1))
    torch_loss.backward()

    assert loss == pytest.approx(torch_loss.item(), rel=1e-12)
    ours = {k: v.detach().numpy() for k, v in _torch_tensors(name, grads).items()}
    cols = _cols(name)
    for k in range(LAYERS):
        # torch's two biases enter the same pre-activation, so each gets our db, except the
        # GRU's n block of bias_hh, which is our bhn
        db = grads[f"l{k}.b"][cols]
        ours[f"bias_hh_l{k}"] = np.concatenate([db[:2 * H], grads[f"l{k}.bhn"]]) if name == "gru" else db
    for k, leaf in leaves.items():
        np.testing.assert_allclose(ours[k], leaf.grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=k)


@pytest.mark.parametrize("name", sorted(TORCH_CLASS))
def test_weight_drop_and_locked_dropout_match_torch(name):
    """With the masks of model.dropout_masks (locked dropout 0.3, weight_drop 0.4): torch runs
    each layer as its own module on weight_hh * mask (AWD-LSTM's WeightDrop) and multiplies its
    output by the dropout mask; autograd's gradients are the leaves'."""
    torch.set_num_threads(1)
    spec = model.ModelSpec(name, V, H, LAYERS, 0.3, "float64", dropout_mode="locked",
                           weight_drop=0.4)
    rng = np.random.default_rng(1)
    params = {k: rng.standard_normal(v.shape) * 0.5
              for k, v in model.init_params(spec, rng).items()}
    x, y = rng.integers(0, V, size=(T, N)), rng.integers(0, V, size=(T, N))
    state = [tuple(rng.standard_normal((N, H)) for _ in s) for s in model.zero_state(spec, N)]
    masks = model.dropout_masks(spec, T, N, rng)

    loss, _, cache = model.forward(params, spec, x, y, state, masks)
    grads, _ = model.backward(params, spec, cache)

    leaves, cols = _torch_tensors(name, params), _cols(name)
    inp = torch.nn.functional.one_hot(torch.from_numpy(x), V).double()
    for k in range(LAYERS):
        layer = getattr(torch.nn, TORCH_CLASS[name])(V if k == 0 else H, H).double()
        weights = {f"{w}_l0": leaves[f"{w}_l{k}"] for w in ("weight_ih", "bias_ih", "bias_hh")}
        mask = torch.tensor(np.ascontiguousarray(masks.recurrent[k][:, cols].T))
        weights["weight_hh_l0"] = leaves[f"weight_hh_l{k}"] * mask
        h0 = torch.tensor(state[k][0][None])
        init = (h0, torch.tensor(state[k][1][None])) if name == "lstm" else h0
        hs, _ = torch.func.functional_call(layer, weights, (inp, init))
        inp = hs * torch.tensor(np.ascontiguousarray(masks.layers[k]))
    logits = inp.reshape(T * N, H) @ leaves["out.weight"].T + leaves["out.bias"]
    torch_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y).reshape(-1))
    torch_loss.backward()

    assert loss == pytest.approx(torch_loss.item(), rel=1e-12)
    ours = {k: v.detach().numpy() for k, v in _torch_tensors(name, grads).items()}
    for k in range(LAYERS):
        np.testing.assert_allclose(ours[f"weight_hh_l{k}"],
                                   leaves[f"weight_hh_l{k}"].grad.numpy(), rtol=1e-8, atol=1e-10,
                                   err_msg=k)
    for k in ("weight_ih_l0", "weight_ih_l1", "out.weight", "out.bias"):
        np.testing.assert_allclose(ours[k], leaves[k].grad.numpy(), rtol=1e-8, atol=1e-10,
                                   err_msg=k)
