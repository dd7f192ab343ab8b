"""The same-machine PyTorch anchors (benchmarks/anchor_*.py) score as charrnn scores: charrnn's
GRU copied into the anchor's nn.GRU gives charrnn's stream and window figures, the transformer's
stream reads every character once with at least half its context, and the transformer sees no
character after the one it predicts. Skipped when PyTorch is absent."""
import math
import os
import sys

import numpy as np
import pytest

from charrnn import evaluate, model

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import anchor_nanogpt  # noqa: E402
import anchor_torch_gru  # noqa: E402
import anchors  # noqa: E402

H, V, LAYERS = 6, 9, 2


def _charrnn_gru_in_torch():
    """A random float64 charrnn GRU and the anchor's CharGRU holding the same weights (torch's
    gate blocks r, z, n are charrnn's column blocks in the same order; torch's bias_hh is zero
    except its n block, charrnn's bhn)."""
    spec = model.ModelSpec("gru", V, H, LAYERS, 0.0, "float64")
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(v.shape) * 0.5
              for k, v in model.init_params(spec, rng).items()}
    net = anchor_torch_gru.CharGRU(V, H, LAYERS, 0.0).double()
    with torch.no_grad():
        for k in range(LAYERS):
            p = model.layer_params(params, k)
            getattr(net.gru, f"weight_ih_l{k}").copy_(torch.from_numpy(p["Wx"].T.copy()))
            getattr(net.gru, f"weight_hh_l{k}").copy_(torch.from_numpy(p["Wh"].T.copy()))
            getattr(net.gru, f"bias_ih_l{k}").copy_(torch.from_numpy(p["b"]))
            getattr(net.gru, f"bias_hh_l{k}").copy_(torch.from_numpy(
                np.concatenate([np.zeros(2 * H), p["bhn"]])))
        net.head.weight.copy_(torch.from_numpy(params["Wy"].T.copy()))
        net.head.bias.copy_(torch.from_numpy(params["by"]))
    net.eval()
    return spec, params, net


def test_the_gru_anchor_scores_charrnns_model_as_charrnn_does(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(anchor_torch_gru.CharGRU, "forward", _double_forward)
    spec, params, net = _charrnn_gru_in_torch()
    ids = np.random.default_rng(1).integers(0, V, size=700).astype(np.int64)
    total, n = evaluate.score(params, spec, ids, n_streams=1)
    assert anchor_torch_gru.score_stream(net, ids, chunk=128) == pytest.approx(total / n,
                                                                               rel=1e-10)
    total, n = evaluate.score_windows(params, spec, ids, 40, 70, seed=3)
    theirs = anchors.score_windows(
        lambda x, y: anchors.nll_sum(net(x.T.contiguous())[0], y.T.contiguous()), ids, 40, 70, 3)
    assert theirs == pytest.approx(total / n, rel=1e-10)


def _double_forward(self, ids, state=None):
    """CharGRU.forward in float64, for a comparison to 1e-10."""
    x = torch.nn.functional.one_hot(ids, self.vocab_size).double()
    out, state = self.gru(x, state)
    return self.head(self.drop(out)), state


@pytest.mark.parametrize("L", [5, 17, 33, 64, 65, 66, 200])
@pytest.mark.parametrize("context", [8, 16])
def test_the_context_stream_scores_each_character_once_with_half_a_context(L, context):
    """A fake model: uniform at the first context - context // 2 positions of a window, a bigram
    table after. Each character scored once, and after the first window's own opening only
    with at least context - context // 2 characters before it, gives this total exactly."""
    rng = np.random.default_rng(L)
    table = torch.from_numpy(rng.standard_normal((V, V)))
    known = context - context // 2

    def logits_of(x):
        out = table[x].clone()
        out[:, :known] = 0.0
        return out

    ids = rng.integers(0, V, size=L).astype(np.int64)
    logp = torch.log_softmax(table, dim=1).numpy()
    expected = sum(math.log(V) if j <= known else -logp[ids[j - 1], ids[j]] for j in range(1, L))
    assert anchors.score_context_stream(logits_of, ids, context) == pytest.approx(
        expected / (L - 1), rel=1e-12)


@pytest.mark.parametrize("window", [5, 8, 20, 33])
def test_a_window_longer_than_the_context_is_its_own_stream_from_a_zero_state(window):
    """The fake model of the test above, on windows of up to four times its context: each
    window's first `known` targets are uniform (nothing before the window is read), the rest
    the bigram's, and no pass reads more than the context."""
    context, known = 8, 4
    rng = np.random.default_rng(window)
    table = torch.from_numpy(rng.standard_normal((V, V)))

    def logits_of(x):
        assert x.shape[1] <= context
        out = table[x].clone()
        out[:, :known] = 0.0
        return out

    ids = rng.integers(0, V, size=300).astype(np.int64)
    logp = torch.log_softmax(table, dim=1).numpy()
    starts = evaluate.window_starts(len(ids), window, 70, 3)
    expected = sum(math.log(V) if j < known else -logp[ids[s + j], ids[s + j + 1]]
                   for s in starts for j in range(window))
    got = anchors.score_windows(anchors.context_window_nll(logits_of, context), ids, window,
                                70, 3)
    assert got == pytest.approx(expected / (70 * window), rel=1e-12)


def test_the_transformer_sees_nothing_after_the_character_it_predicts():
    torch.manual_seed(0)
    net = anchor_nanogpt.CharTransformer(V, 16, 12, 2, 2, 0.0).double().eval()
    x = torch.randint(0, V, (3, 16))
    changed = x.clone()
    changed[:, 9:] = (changed[:, 9:] + 1) % V
    with torch.no_grad():
        a, b = net(x), net(changed)
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=1e-12, atol=1e-12)
    assert (a[:, 9:] - b[:, 9:]).abs().max() > 1e-6
    assert net.head.weight is net.tokens.weight


def test_warmup_then_cosine_reaches_lr_min_at_the_last_step():
    rates = [anchors.warmup_cosine(i, 50, 1e-3, 1e-4, 10) for i in range(51)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert rates[10] == pytest.approx(1e-3) and rates[50] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert anchors.warmup_cosine(30, None, 1e-3, 1e-4, 10) == 1e-3  # before the steps are known


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("10m", 600), ("1.5h", 5400),
                                           ("90", 90)])
def test_durations(text, seconds):
    assert anchors.seconds(text) == seconds
