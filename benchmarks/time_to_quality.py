"""Validation loss against wall time: charrnn's shipped configs, the same models in PyTorch, and
a small nanoGPT-style character transformer given the same wall time, one after another in one
invocation (each with the machine to itself), scored on the same validation split.

    python benchmarks/time_to_quality.py                      # the full runs (about 1.5 hours)
    python benchmarks/time_to_quality.py --scale 0.05 --out /tmp/ttq.png   # a smoke run

Scoring. The recurrent models, charrnn's and PyTorch's, are scored exactly as charrnn scores
its validation loss during training: the first `eval_chars` characters of the split (the last
`val_frac` of the corpus), cut into `batch_size` streams read window by window with the state
carried, each from a zero state. The transformer has no state to carry: the same characters are
cut into non-overlapping windows of its context, and each character is predicted from the
characters before it in its window (from 0 to context - 1 of them, 32 on average), which is how
nanoGPT-style models are usually scored on a whole split; it is a little harder than what the
recurrent models see.

The PyTorch recurrent models copy charrnn's plain stack of the classic cells (mingru.yaml,
minlstm.yaml and any residual config have no PyTorch copy here; tests/test_torch_min.py checks
their arithmetic against PyTorch instead): one-hot input, nn.RNN/nn.GRU/nn.LSTM with dropout
between layers, dropout on the last layer's output, a linear output layer, Adam with the same
learning rate and schedule (charrnn's own `lr_for`, over the steps that charrnn's run resolved),
gradient clipping by global norm, batches of contiguous streams with the state carried.
Figures depend on this machine's speed; run everything in one invocation and compare the curves,
not a number from another day.
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import charrnn  # noqa: E402
from charrnn import config as config_mod, corpus as corpus_mod, data, optim, schedule  # noqa: E402

CORPUS = os.path.join(ROOT, "data", "tinyshakespeare.txt")
NANOGPT = 1.4697  # nanoGPT's published val loss for its 6-layer char transformer on an A100
TORCH_CELLS = ("rnn", "gru", "lstm")  # the cells with a PyTorch copy (nn.RNN, nn.GRU, nn.LSTM)


def charrnn_curve(config_path, scale):
    cfg = config_mod.load(config_path)
    limit = cfg.time_limit * scale
    points = []
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = charrnn.train(CORPUS, config_path, out=out, time_limit=limit, sample_length=0,
                               progress=False,
                               on_eval=lambda r: points.append((time.perf_counter() - start,
                                                                r["val_loss"], r["step"])))
        resolved = charrnn.load(os.path.join(out, "last.npz")).config
    return {"name": f"charrnn {os.path.basename(config_path)}", "points": points,
            "best": min(p[1] for p in points), "steps": result.step,
            "resolved_steps": resolved.steps, "config": config_mod.to_dict(resolved)}


def _torch_eval_streams(ids, n_streams, seq_len):
    """The (x, y) windows charrnn's validation loss reads: n_streams streams, window by window."""
    L = len(ids)
    n_streams = max(1, min(n_streams, (L - 1) // max(seq_len, 1) or 1))
    S = (L - 1) // n_streams
    xs = ids[:n_streams * S].reshape(n_streams, S)
    ys = ids[1:n_streams * S + 1].reshape(n_streams, S)
    return [(xs[:, p:p + seq_len], ys[:, p:p + seq_len]) for p in range(0, S, seq_len)]


def torch_rnn_curve(cfg_dict, ids, vocab_size):
    import torch
    from torch import nn
    cfg = config_mod.build(cfg_dict)
    torch.manual_seed(cfg.seed)
    V, H = vocab_size, cfg.hidden_size
    kind = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cfg.cell]
    rnn = kind(V, H, num_layers=cfg.layers, dropout=cfg.dropout if cfg.layers > 1 else 0.0)
    head, drop = nn.Linear(H, V), nn.Dropout(cfg.dropout)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=optim.ADAM_BETAS, eps=optim.ADAM_EPS)
    train_ids, val_ids = data.split(np.asarray(ids), cfg.val_frac)
    batches = data.Batches(train_ids, cfg.batch_size, cfg.seq_len)
    val = _torch_eval_streams(val_ids[:cfg.eval_chars or None], cfg.batch_size, cfg.seq_len)

    def forward(x, state):
        onehot = nn.functional.one_hot(torch.from_numpy(x.astype(np.int64)), V).float()
        out, state = rnn(onehot, state)
        return head(drop(out)), state

    def detach(state):
        if state is None:
            return None
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

    def validation_loss():
        rnn.eval(), drop.eval()
        total, n, state = 0.0, 0, None
        with torch.no_grad():
            for x, y in val:
                logits, state = forward(np.ascontiguousarray(x.T), state)
                target = torch.from_numpy(np.ascontiguousarray(y.T).astype(np.int64))
                total += float(nn.functional.cross_entropy(logits.reshape(-1, V),
                                                           target.reshape(-1), reduction="sum"))
                n += target.numel()
        rnn.train(), drop.train()
        return total / n

    points, state, start = [], None, time.perf_counter()
    for step in range(cfg.steps):
        if time.perf_counter() - start >= cfg.time_limit:
            break
        x, y, wrapped = batches.next()
        if wrapped:
            state = None
        for g in opt.param_groups:
            g["lr"] = schedule.lr_for(cfg, step)
        logits, state = forward(x, state)
        state = detach(state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, V),
                                           torch.from_numpy(y.astype(np.int64)).reshape(-1))
        opt.zero_grad()
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        if (step + 1) % cfg.eval_every == 0:
            points.append((time.perf_counter() - start, validation_loss(), step + 1))
    points.append((time.perf_counter() - start, validation_loss(), step + 1))
    return {"name": f"pytorch nn.{kind.__name__} {cfg.layers}x{H}", "points": points,
            "best": min(p[1] for p in points), "steps": points[-1][2]}


def transformer_curve(ids, vocab_size, seconds, val_frac=0.1, eval_chars=1_000_000, layers=4,
                      heads=4, width=128, context=64, batch=64, lr=1e-3, eval_every=250, seed=0):
    """A small nanoGPT-style decoder (pre-norm blocks, learned positions, AdamW, warm-up then
    cosine over the steps that fit `seconds` at the pace of the first 20), trained on random
    windows of the training split."""
    import torch
    from torch import nn
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_ids, val_ids = (np.asarray(a, dtype=np.int64) for a in data.split(np.asarray(ids),
                                                                             val_frac))
    val_ids = val_ids[:eval_chars or None]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                     nn.Linear(4 * width, width))

        def forward(self, x, mask):
            h = self.ln1(x)
            x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab_size, width), nn.Embedding(context, width)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln, self.head = nn.LayerNorm(width), nn.Linear(width, vocab_size)

        def forward(self, x):
            T = x.shape[1]
            mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
            h = self.tok(x) + self.pos(torch.arange(T))
            for block in self.blocks:
                h = block(h, mask)
            return self.head(self.ln(h))

    net = GPT()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.99))

    def batch_windows():
        starts = rng.integers(0, len(train_ids) - context - 1, size=batch)
        w = np.stack([train_ids[s:s + context + 1] for s in starts])
        return torch.from_numpy(w[:, :-1]), torch.from_numpy(w[:, 1:])

    def validation_loss():
        n_win = (len(val_ids) - 1) // context
        x = torch.from_numpy(val_ids[:n_win * context].reshape(n_win, context))
        y = torch.from_numpy(val_ids[1:n_win * context + 1].reshape(n_win, context))
        net.eval()
        total = 0.0
        with torch.no_grad():
            for i in range(0, n_win, 256):
                logits = net(x[i:i + 256])
                total += float(nn.functional.cross_entropy(
                    logits.reshape(-1, vocab_size), y[i:i + 256].reshape(-1), reduction="sum"))
        net.train()
        return total / (n_win * context)

    def step(lr_now):
        for g in opt.param_groups:
            g["lr"] = lr_now
        x, y = batch_windows()
        loss = nn.functional.cross_entropy(net(x).reshape(-1, vocab_size), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    start = time.perf_counter()
    warmup = 100
    for i in range(20):
        step(lr * (i + 1) / warmup)
    pace = (time.perf_counter() - start) / 20
    total = max(21, int(seconds * 0.97 / pace))
    points = []
    for i in range(20, total):
        if time.perf_counter() - start >= seconds:
            break
        progress = min(max(i - warmup, 0) / max(total - warmup, 1), 1.0)
        step(lr * (i + 1) / warmup if i < warmup else
             lr * 0.1 + lr * 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        if (i + 1) % eval_every == 0:
            points.append((time.perf_counter() - start, validation_loss(), i + 1))
    points.append((time.perf_counter() - start, validation_loss(), i + 1))
    return {"name": f"pytorch transformer {layers}x{width}, {heads} heads, context {context}",
            "points": points, "best": min(p[1] for p in points), "steps": points[-1][2]}


def plot(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for c in curves:
        t, v = zip(*[(p[0] / 60, p[1]) for p in c["points"]])
        ax.plot(t, v, marker=".", label=f"{c['name']} (best {c['best']:.4f})")
    ax.axhline(NANOGPT, color="grey", linestyle="--", label=f"nanoGPT on an A100 ({NANOGPT})")
    ax.set_xlabel("wall time, minutes")
    ax.set_ylabel("validation loss, nats/char")
    ax.set_ylim(top=min(3.0, ax.get_ylim()[1]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("tiny Shakespeare: validation loss against wall time, one machine, one run")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["rnn", "gru", "lstm", "mingru", "minlstm"],
                    help="names of configs/*.yaml")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply every time limit (0.05 for a smoke run)")
    ap.add_argument("--no-torch", action="store_true", help="charrnn's curves only")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "time_to_quality.png"))
    ap.add_argument("--json", help="also write the curves to this JSON file")
    args = ap.parse_args()
    text = corpus_mod.open_corpus([CORPUS])
    curves = []
    for name in args.configs:
        c = charrnn_curve(os.path.join(ROOT, "configs", f"{name}.yaml"), args.scale)
        print(f"{c['name']}: best {c['best']:.4f} at {c['steps']} steps", flush=True)
        curves.append(c)
        if not args.no_torch and c["config"]["cell"] in TORCH_CELLS and \
                c["config"]["stack"] == "plain":
            cfg = dict(c["config"], steps=c["resolved_steps"])
            t = torch_rnn_curve(cfg, text.ids, len(text.vocab))
            print(f"{t['name']}: best {t['best']:.4f} at {t['steps']} steps", flush=True)
            curves.append(t)
    if not args.no_torch:
        seconds = max(c["points"][-1][0] for c in curves)
        t = transformer_curve(text.ids, len(text.vocab), seconds)
        print(f"{t['name']}: best {t['best']:.4f} at {t['steps']} steps", flush=True)
        curves.append(t)
    plot(curves, args.out)
    print(f"wrote {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: v for k, v in c.items() if k != "config"} for c in curves], f)


if __name__ == "__main__":
    main()
