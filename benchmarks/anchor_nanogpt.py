"""A same-machine anchor: nanoGPT's shakespeare_char recipe (a character transformer) in PyTorch,
trained for a wall-time budget on this machine's cores and scored under both of charrnn's
protocols (benchmarks/anchors.py), one JSON line on stdout.

    python benchmarks/anchor_nanogpt.py --time 30m --threads 2 --width 128
    python benchmarks/anchor_nanogpt.py --time 30s --width 64          # a smoke run

The recipe, as its published configuration sets it: 6 pre-norm blocks of causal self-attention
and a 4x GELU MLP, learned positions, context (block) 256, batch 64 random windows of the
training split, dropout 0.2, no biases, the output layer tied to the token embedding, weights
drawn N(0, 0.02) (the residual projections 0.02 / sqrt(2 x layers)), AdamW at 1e-3 with betas
(0.9, 0.99) and weight decay 0.1 on the matrices only, gradients clipped at norm 1, 100 warm-up
steps, then a cosine to 1e-4 at the last step. Its width is 384 (6 heads of 64), sized for a
GPU: on two CPU cores a step of it takes seconds, so the anchor for a budget is the best of a
few narrower widths (--width; width // 64 heads, at least one), each run separately:

    for w in 64 128 192 256; do python benchmarks/anchor_nanogpt.py --time 30m --width $w; done

nanoGPT's README gives a smaller recipe for a CPU (4 layers of 128 with 4 heads, block 64,
batch 12, no dropout), the one a user of nanoGPT on a laptop runs; it is one more candidate:

    python benchmarks/anchor_nanogpt.py --time 30m --width 128 --layers 4 --heads 4 \
        --context 64 --batch 12 --dropout 0

A model whose context is shorter than the window protocol's 256 reads each window as its own
short stream from a zero state (anchors.context_window_nll): no character before the window,
at most `context` at a time.

The steps are sized to --time at the pace of the first ones (the cosine ends at the last step
that fits); the scoring afterwards is not counted in it. nanoGPT keeps its best evaluation; this
scores the last step only (the cosine has annealed by then and nothing else is measured).
"""
import argparse
import math

import torch
from torch import nn
from torch.nn import functional as F

import anchors


class CausalSelfAttention(nn.Module):
    def __init__(self, width, heads, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.out_drop = nn.Dropout(dropout)

    def forward(self, x):
        N, T, C = x.shape
        q, k, v = (t.view(N, T, self.heads, C // self.heads).transpose(1, 2)
                   for t in self.qkv(x).split(C, dim=2))  # each (N, heads, T, C / heads)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_drop(self.proj(y.transpose(1, 2).reshape(N, T, C)))


class Block(nn.Module):
    def __init__(self, width, heads, dropout):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width, bias=False), nn.LayerNorm(width, bias=False)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width, bias=False), nn.GELU(),
                                 nn.Linear(4 * width, width, bias=False), nn.Dropout(dropout))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CharTransformer(nn.Module):
    """ids (N, T) -> logits (N, T, V), T <= context."""

    def __init__(self, vocab_size, context, width, layers, heads, dropout):
        super().__init__()
        self.context = context
        self.tokens, self.positions = nn.Embedding(vocab_size, width), nn.Embedding(context, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width, bias=False)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.tokens.weight  # tied: one (V, width) matrix reads and writes
        for name, p in self.named_parameters():
            if p.dim() == 2:
                deep = name.endswith("proj.weight") or name.endswith("mlp.2.weight")
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers) if deep else 0.02)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.drop(self.tokens(ids) + self.positions(torch.arange(T)))  # (N, T, width)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def optimizer(net, lr, weight_decay):
    """AdamW with weight decay on the matrices (embeddings included), none on the norms' gains."""
    params = [p for p in net.parameters() if p.requires_grad]
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2],
                               "weight_decay": weight_decay},
                              {"params": [p for p in params if p.dim() < 2],
                               "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    anchors.add_common_args(ap)
    ap.add_argument("--width", type=int, default=384, help="n_embd")
    ap.add_argument("--layers", type=int, default=6, help="n_layer")
    ap.add_argument("--heads", type=int, help="n_head  [default: width / 64, at least 1]")
    ap.add_argument("--context", type=int, default=256, help="block_size")
    ap.add_argument("--batch", type=int, default=64, help="batch_size")
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-min", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    args = ap.parse_args()
    heads = args.heads or max(1, args.width // 64)
    if args.width % heads:
        ap.error(f"--width {args.width} is not a multiple of {heads} heads")
    return args, heads


def main():
    args, heads = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    train_ids, val_ids, vocab = anchors.splits(args.corpus, args.val_frac)
    train_t = torch.from_numpy(train_ids)
    net = CharTransformer(len(vocab), args.context, args.width, args.layers, heads, args.dropout)
    opt = optimizer(net, args.lr, args.weight_decay)
    offsets = torch.arange(args.context + 1)

    def step(lr):
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(len(train_t) - args.context, (args.batch,), generator=gen)
        w = train_t[starts[:, None] + offsets]  # (N, T + 1)
        logits = net(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    steps, planned, took = anchors.train_for(
        args.time, step, lambda i, total: anchors.warmup_cosine(i, total, args.lr, args.lr_min,
                                                                args.warmup))
    net.eval()
    stream = anchors.score_context_stream(net, val_ids, args.context)
    windows = anchors.score_windows(anchors.context_window_nll(net, args.context), val_ids,
                                    args.window, args.num_windows, args.window_seed)
    anchors.report("nanogpt", args, steps, planned, took, steps * args.batch * args.context,
                   stream, windows,
                   {"model": f"transformer {args.layers} x {args.width}, {heads} heads, "
                             f"context {args.context}",
                    "params": sum(p.numel() for p in net.parameters()), "width": args.width})


if __name__ == "__main__":
    main()
