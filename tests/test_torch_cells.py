"""Each cell against PyTorch's nn.RNN / nn.LSTM / nn.GRU in float64: outputs, final state and
every gradient from autograd. Skipped when PyTorch is absent."""
import numpy as np
import pytest

from charrnn.cells import CELLS
from gradcheck import rel_error

torch = pytest.importorskip("torch")

T, N, D, H = 5, 3, 4, 6
TOL = 1e-8
TORCH_CLASS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
# our gate block at each position of torch's order: torch's LSTM is i, f, g, o, ours i, f, o, g;
# torch's GRU is r, z, n like ours
TORCH_BLOCKS = {"rnn": [0], "lstm": [0, 1, 3, 2], "gru": [0, 1, 2]}


def _columns(name):
    """Indices that reorder our packed gate columns into torch's gate order."""
    return np.concatenate([np.arange(k * H, (k + 1) * H) for k in TORCH_BLOCKS[name]])


def _torch_layer(name, p):
    """A torch layer holding our weights: weight_ih (G, D) = Wx^T, our b in bias_ih, and zero
    bias_hh except the GRU's n block, which is bhn."""
    cols = _columns(name)
    layer = getattr(torch.nn, TORCH_CLASS[name])(D, H, num_layers=1).double()
    bias_hh = np.zeros(len(cols))
    if name == "gru":
        bias_hh[2 * H:] = p["bhn"]
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.from_numpy(p["Wx"][:, cols].T))
        layer.weight_hh_l0.copy_(torch.from_numpy(p["Wh"][:, cols].T))
        layer.bias_ih_l0.copy_(torch.from_numpy(p["b"][cols]))
        layer.bias_hh_l0.copy_(torch.from_numpy(bias_hh))
    return layer


def _torch_run(name, layer, x, state, dhs, dstate):
    """Forward and backward in torch; returns outputs, final state, weight grads, dx, dstate0."""
    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(s[None], requires_grad=True) for s in state]  # (1, N, H): one layer
    hs, final = layer(xt, tuple(st) if name == "lstm" else st[0])
    final = final if name == "lstm" else (final,)
    loss = (hs * torch.from_numpy(dhs)).sum()
    for s, d in zip(final, dstate):
        loss = loss + (s[0] * torch.from_numpy(d)).sum()
    loss.backward()
    grads = {k: v.grad.numpy() for k, v in layer.named_parameters()}
    return (hs.detach().numpy(), [s[0].detach().numpy() for s in final], grads,
            xt.grad.numpy(), [s.grad[0].numpy() for s in st])


def _ours_in_torch_layout(name, grads):
    """Our gradients rearranged as torch's parameter gradients (both biases get db, but the
    GRU's bias_hh n block, which is bhn)."""
    cols = _columns(name)
    bias_hh = grads["b"][cols].copy()
    if name == "gru":
        bias_hh[2 * H:] = grads["bhn"]
    return {"weight_ih_l0": grads["Wx"][:, cols].T, "weight_hh_l0": grads["Wh"][:, cols].T,
            "bias_ih_l0": grads["b"][cols], "bias_hh_l0": bias_hh}


@pytest.mark.parametrize("name", sorted(TORCH_CLASS))  # the min cells: test_torch_min.py
def test_cell_matches_torch(name):
    torch.set_num_threads(1)
    cell = CELLS[name]
    rng = np.random.default_rng(0)
    p = cell.init(rng, D, H, np.float64)
    for k in p:  # larger weights than init so every nonlinearity is exercised
        p[k] = rng.standard_normal(p[k].shape) * 0.5
    x = rng.standard_normal((T, N, D))
    state = tuple(rng.standard_normal((N, H)) for _ in cell.STATE_NAMES)
    dhs = rng.standard_normal((T, N, H))
    dstate = tuple(rng.standard_normal((N, H)) for _ in cell.STATE_NAMES)

    hs, final, cache = cell.forward(p, x, state)
    grads, dx, dstate0 = cell.backward(p, cache, dhs, dstate)
    t_hs, t_final, t_grads, t_dx, t_dstate0 = _torch_run(
        name, _torch_layer(name, p), x, state, dhs, dstate)

    assert rel_error(hs, t_hs) < TOL
    for i, s in enumerate(cell.STATE_NAMES):
        assert rel_error(final[i], t_final[i]) < TOL, ("final", s)
        assert rel_error(dstate0[i], t_dstate0[i]) < TOL, ("d" + s + "0")
    assert rel_error(dx, t_dx) < TOL
    ours = _ours_in_torch_layout(name, grads)
    assert set(ours) == set(t_grads)
    for k in ours:
        assert rel_error(ours[k], t_grads[k]) < TOL, k
