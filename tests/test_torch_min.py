"""minGRU and minLSTM, alone and in the residual stack, against the same equations written with
PyTorch tensors in float64 and differentiated by autograd: an oracle that shares no backward
code with ours. Skipped when PyTorch is absent."""
import numpy as np
import pytest

from charrnn import model
from charrnn.cells import CELLS
from charrnn.positionwise import NORM_EPS

torch = pytest.importorskip("torch")

T, N, D, H, V = 5, 3, 4, 6, 7
MIN_CELLS = ("mingru", "minlstm")


def torch_cell(name, p, x, h):
    """The textbook recurrence over x (T, N, D) from h (N, H): -> hs (T, N, H), h_T."""
    a = x @ p["Wx"] + p["b"]
    E = h.shape[1]
    if name == "mingru":
        z, n = torch.sigmoid(a[..., :E]), torch.tanh(a[..., E:])
    else:
        f, i = torch.sigmoid(a[..., :E]), torch.sigmoid(a[..., E:2 * E])
        n = torch.tanh(a[..., 2 * E:])
        z = i / (f + i)
    hs = []
    for t in range(len(x)):
        h = (1 - z[t]) * h + z[t] * n[t]
        hs.append(h)
    return torch.stack(hs), h


def _leaves(arrays):
    return {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}


@pytest.mark.parametrize("name", MIN_CELLS)
def test_min_cell_matches_torch_autograd(name):
    cell = CELLS[name]
    rng = np.random.default_rng(0)
    p = {k: rng.standard_normal(v.shape) * 0.5 for k, v in cell.init(rng, D, H, "float64").items()}
    x, h0 = rng.standard_normal((T, N, D)), rng.standard_normal((N, H))
    dhs, dhT = rng.standard_normal((T, N, H)), rng.standard_normal((N, H))

    hs, (hT,), cache = cell.forward(p, x, (h0,))
    grads, dx, (dh0,) = cell.backward(p, cache, dhs, (dhT,))

    tp, tx, th0 = _leaves(p), torch.tensor(x, requires_grad=True), torch.tensor(h0,
                                                                               requires_grad=True)
    t_hs, t_hT = torch_cell(name, tp, tx, th0)
    ((t_hs * torch.from_numpy(dhs)).sum() + (t_hT * torch.from_numpy(dhT)).sum()).backward()
    np.testing.assert_allclose(hs, t_hs.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hT, t_hT.detach().numpy(), rtol=1e-12, atol=1e-12)
    for k in p:
        np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dh0, th0.grad.numpy(), rtol=1e-9, atol=1e-11)


def torch_model_loss(name, spec, tp, ids_x, ids_y, state):
    """The residual stack and output layer of charrnn/residual.py in torch -> mean loss."""
    def norm(x, g):
        return g * x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + NORM_EPS)

    x = tp["embed"][torch.from_numpy(ids_x)]  # (T, N, H)
    for k in range(spec.layers):
        cp = {"Wx": tp[f"l{k}.Wx"], "b": tp[f"l{k}.b"]}
        hs, _ = torch_cell(name, cp, norm(x, tp[f"l{k}.norm"]), state[k])
        x = x + hs @ tp[f"l{k}.Wo"] + tp[f"l{k}.bo"]
        if spec.mlp:
            a1 = norm(x, tp[f"l{k}.mlp_norm"]) @ tp[f"l{k}.W1"] + tp[f"l{k}.b1"]
            m = torch.nn.functional.gelu(a1, approximate="tanh")
            x = x + m @ tp[f"l{k}.W2"] + tp[f"l{k}.b2"]
    logits = norm(x, tp["norm"]) @ tp["Wy"] + tp["by"]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, spec.vocab_size),
                                             torch.from_numpy(ids_y).reshape(-1))


@pytest.mark.parametrize("expand, mlp", [(1, 0), (2, 3)])
@pytest.mark.parametrize("name", MIN_CELLS)
def test_residual_model_matches_torch_autograd(name, expand, mlp):
    torch.set_num_threads(1)
    spec = model.ModelSpec(name, V, H, 2, 0.0, "float64", "residual", expand, mlp)
    rng = np.random.default_rng(1)
    params = {k: rng.standard_normal(v.shape) * 0.5 for k, v in
              model.init_params(spec, rng).items()}
    x, y = rng.integers(0, V, size=(T, N)), rng.integers(0, V, size=(T, N))
    state = [(rng.standard_normal((N, spec.cell_size)),) for _ in range(spec.layers)]

    loss, _, cache = model.forward(params, spec, x, y, state)
    grads, dstate0 = model.backward(params, spec, cache)

    tp = _leaves(params)
    t_state = [torch.tensor(s[0], requires_grad=True) for s in state]
    t_loss = torch_model_loss(name, spec, tp, x, y, t_state)
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    for k in params:
        np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-8, atol=1e-11,
                                   err_msg=k)
    for k in range(spec.layers):
        np.testing.assert_allclose(dstate0[k][0], t_state[k].grad.numpy(), rtol=1e-8,
                                   atol=1e-11)
