"""A same-machine anchor: PyTorch's nn.GRU trained with charrnn's recipe (a config file's sizes,
batch, window, rate schedule, dropout and clipping, charrnn's split) for a wall-time budget on
this machine's cores, scored under both of charrnn's protocols (benchmarks/anchors.py), one
JSON line on stdout.

    python benchmarks/anchor_torch_gru.py --time 30m --threads 2                 # best.yaml
    python benchmarks/anchor_torch_gru.py --time 10m --config configs/gru.yaml
    python benchmarks/anchor_torch_gru.py --time 30s --num-windows 256           # a smoke run

The model is charrnn's plain GRU stack with PyTorch's cell and initialisation: one-hot input,
nn.GRU with the config's dropout between layers, the same dropout on the top layer's output, a
linear output layer. Training reads the training split as charrnn does (data.Batches: batch_size
contiguous streams, window after window, the state carried and reset when the streams wrap), with
Adam (charrnn's betas and epsilon), the config's schedule (charrnn's own lr_for, warm-up
included) and gradient clipping. Its steps are sized to --time at the pace of the first ones, as
`steps: auto` sizes charrnn's (the config's steps and time_limit are not read); the scoring
afterwards is not counted in it. The stream score is `charrnn eval`'s: one pass over the
validation split from a zero state, the state carried.
"""
import argparse
import dataclasses
import os

import torch
from torch import nn

import anchors
from charrnn import config as config_mod, data, optim, schedule


class CharGRU(nn.Module):
    """ids (T, N) and a state (layers, N, H) or None -> logits (T, N, V) and the new state."""

    def __init__(self, vocab_size, hidden_size, layers, dropout):
        super().__init__()
        self.vocab_size = vocab_size
        self.gru = nn.GRU(vocab_size, hidden_size, num_layers=layers,
                          dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids, state=None):
        x = nn.functional.one_hot(ids, self.vocab_size).float()  # (T, N, V)
        out, state = self.gru(x, state)
        return self.head(self.drop(out)), state


def recipe(path):
    """The config at path, checked to be one this anchor copies: a plain GRU stack under Adam."""
    cfg = config_mod.load(path)
    if (cfg.cell, cfg.stack, cfg.optimizer) != ("gru", "plain", "adam"):
        raise SystemExit(f"{path}: the anchor copies a plain GRU stack trained with Adam, not "
                         f"{cfg.cell} ({cfg.stack}) with {cfg.optimizer}")
    return cfg


@torch.no_grad()
def score_stream(net, ids, chunk=1000):
    """charrnn eval's score: mean nats of ids[1:], one pass from a zero state, state carried."""
    total, state = 0.0, None
    for p in range(0, len(ids) - 1, chunk):
        x = torch.from_numpy(ids[p:p + chunk][:len(ids) - 1 - p]).reshape(-1, 1)
        logits, state = net(x, state)
        total += anchors.nll_sum(logits, torch.from_numpy(ids[p + 1:p + chunk + 1]))
    return total / (len(ids) - 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    anchors.add_common_args(ap)
    ap.add_argument("--config", default=os.path.join(anchors.ROOT, "configs", "best.yaml"),
                    help="the charrnn config whose recipe to copy  [default: configs/best.yaml]")
    args = ap.parse_args()
    cfg = recipe(args.config)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_ids, val_ids, vocab = anchors.splits(args.corpus, cfg.val_frac)
    args.val_frac = cfg.val_frac
    net = CharGRU(len(vocab), cfg.hidden_size, cfg.layers, cfg.dropout)
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=optim.ADAM_BETAS, eps=optim.ADAM_EPS)
    batches = data.Batches(train_ids, cfg.batch_size, cfg.seq_len)
    carried = [None]

    def step(lr):
        for g in opt.param_groups:
            g["lr"] = lr
        x, y, wrapped = batches.next()
        logits, state = net(torch.from_numpy(x), None if wrapped else carried[0])
        carried[0] = state.detach()
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(vocab)),
                                           torch.from_numpy(y).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip and cfg.clip_mode == "norm":
            nn.utils.clip_grad_norm_(params, cfg.clip)
        elif cfg.clip:
            nn.utils.clip_grad_value_(params, cfg.clip)
        opt.step()

    def lr_at(i, total):
        return schedule.lr_for(dataclasses.replace(cfg, steps=total or 10**9), i)

    steps, planned, took = anchors.train_for(args.time, step, lr_at)
    net.eval()
    stream = score_stream(net, val_ids)
    windows = anchors.score_windows(
        lambda x, y: anchors.nll_sum(net(x.T.contiguous())[0], y.T.contiguous()), val_ids,
        args.window, args.num_windows, args.window_seed)
    anchors.report("torch_gru", args, steps, planned, took,
                   steps * cfg.batch_size * cfg.seq_len, stream, windows,
                   {"model": f"nn.GRU {cfg.layers} x {cfg.hidden_size}, dropout {cfg.dropout}",
                    "params": sum(p.numel() for p in params),
                    "config": os.path.relpath(args.config, anchors.ROOT)})


if __name__ == "__main__":
    main()
