"""Learning quality per step: short runs of model variants on tiny Shakespeare, compared by
validation loss at equal steps (a measure a shared machine does not disturb, unlike wall time),
with each variant's parameters and matrix-product flops per character, from which wall time can
be estimated on a quiet machine.

    python benchmarks/min_quality.py --list
    python benchmarks/min_quality.py mingru-3x256 mingru-3x256-plain --steps 400 --out q.jsonl
    python benchmarks/min_quality.py --table q.jsonl

Every variant trains with `charrnn.train` on one thread (`threads: 1`, leaving the other core
to others) from the same seed and batches (BASE below: 64 streams x 100 characters, Adam, cosine
from 2e-3 after 50 warm-up steps), scored on the whole validation split at every evaluation.
Wall time on a shared machine says little; the CPU time of the whole run (training and its
evaluations, one thread) says more.
A variant is config overrides, and optionally a patch of the code for a choice that is not a
config key (the candidate's activation in mingru/minlstm, the MLP's activation, the norm), made
here so that the measurement that decided it can be run again. (Until the candidate became tanh,
the cells' candidate was linear: results recorded before then name the linear cell "mingru-3x256"
and the tanh one "mingru-3x256-tanh".)
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import charrnn  # noqa: E402
from charrnn import config as config_mod, model, positionwise  # noqa: E402
from charrnn.cells import _activations, _scan  # noqa: E402

CORPUS = os.path.join(ROOT, "data", "tinyshakespeare.txt")
BASE = dict(batch_size=64, seq_len=100, optimizer="adam", lr=2e-3, lr_schedule="cosine",
            warmup_steps=50, lr_min=1e-4, clip=5.0, dropout=0.0, threads=1, sample_length=0,
            eval_chars=0, seed=0, dtype="float32")


def _residual(cell, H, L, expand=1, mlp=0, **more):
    return dict(cell=cell, hidden_size=H, layers=L, stack="residual", expand=expand, mlp=mlp,
                **more)


VARIANTS = {
    # the classic reference at the size of configs/best.yaml
    "gru-2x256": dict(cell="gru", hidden_size=256, layers=2),
    "gru-2x256-residual": _residual("gru", 256, 2),
    # minGRU: plain stack against the residual one, depth, width, expansion, MLP
    "mingru-2x256-plain": dict(cell="mingru", hidden_size=256, layers=2),
    "mingru-3x256-plain": dict(cell="mingru", hidden_size=256, layers=3),
    "mingru-3x256": _residual("mingru", 256, 3),
    "mingru-3x256-linear": dict(_residual("mingru", 256, 3), patch="linear"),
    "mingru-3x256-g": dict(_residual("mingru", 256, 3), patch="g"),
    "mingru-3x256-no-norm": dict(_residual("mingru", 256, 3), patch="no-norm"),
    "mingru-3x256-x2": _residual("mingru", 256, 3, expand=2),
    "mingru-3x256-mlp2": _residual("mingru", 256, 3, mlp=2),
    "mingru-3x256-mlp2-relu": dict(_residual("mingru", 256, 3, mlp=2), patch="relu"),
    "mingru-3x256-mlp4": _residual("mingru", 256, 3, mlp=4),
    "mingru-6x256": _residual("mingru", 256, 6),
    "mingru-4x384": _residual("mingru", 384, 4),
    "minlstm-3x256": _residual("minlstm", 256, 3),
    "minlstm-3x256-plain": dict(cell="minlstm", hidden_size=256, layers=3),
}


# ---- patches for the choices that are not config keys ------------------------------------------

def _patch_candidate(act, slope):
    """The min cells' candidate n = act(pre-activation) in place of tanh, and its slope (from
    the output) for the backward."""
    def candidate(n):
        n[...] = act(n)

    def candidate_backward(n, dn):
        dn *= slope(n)

    _scan.candidate, _scan.candidate_backward = candidate, candidate_backward


def _g(a):
    """The paper's g: a + 1/2 for a >= 0, sigmoid(a) below (positive, continuous at 0)."""
    return np.where(a >= 0, a + 0.5, _activations.sigmoid(a, out=np.empty_like(a)))


def _patch_relu():
    def relu(a, threads=None):
        return np.maximum(a, 0), a

    def relu_backward(a, t, dout, threads=None):
        dout *= a > 0
        return dout

    positionwise.gelu, positionwise.gelu_backward = relu, relu_backward


def _patch_no_norm():
    """The residual stack without its normalisation: each norm is its gain alone, g * x."""
    def scale(x, g, threads=None):
        return x * g, positionwise.NormCache(x, None)

    def scale_backward(g, cache, dy, dx, threads=None):
        dx += dy * g
        return np.sum(dy * cache.xhat, axis=0)

    positionwise.rms_norm, positionwise.rms_norm_backward = scale, scale_backward


PATCHES = {
    "linear": lambda: _patch_candidate(lambda a: a, lambda n: 1.0),
    "no-norm": _patch_no_norm,
    "g": lambda: _patch_candidate(_g, lambda n: np.where(n >= 0.5, 1.0, n * (1 - n))),
    "relu": _patch_relu,
}


# ---- flops ------------------------------------------------------------------------------------

def flops_per_char(spec):
    """Matrix-product flops per character of one training step, forward and backward: 2 per
    multiply-add, so 6 K P for every K x P weight (x W, then dW and dx), the recurrent and
    output weights too; a one-hot input's lookup and its gradient's scatter (the embedding, the
    plain stack's l0.Wx) count as free. The elementwise work is left out."""
    shapes = model.param_shapes(spec)
    total = 0
    for name, shape in shapes.items():
        if len(shape) != 2 or name == "embed" or (spec.stack == "plain" and name == "l0.Wx"):
            continue
        total += 6 * shape[0] * shape[1]
    return total


# ---- running ---------------------------------------------------------------------------------

def run(name, steps, eval_every, settings):
    variant = dict(VARIANTS[name])
    patch = variant.pop("patch", None)
    if patch:
        PATCHES[patch]()
    overrides = dict(BASE, **variant, steps=steps, eval_every=eval_every)
    overrides.update(settings)
    if settings:
        name += " " + " ".join(f"{k}={v}" for k, v in settings.items())
    cfg = config_mod.load(overrides)
    spec = model.spec_of(cfg, 65)
    points = []
    with tempfile.TemporaryDirectory() as out:
        start, cpu = time.perf_counter(), time.process_time()
        charrnn.train(CORPUS, overrides, out=out, progress=False,
                      on_eval=lambda r: points.append((r["step"], r["val_loss"], r["train_loss"])))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"name": name, "spec": str(spec), "patch": patch, "steps": steps,
            "settings": settings,
            "params": model_size(spec), "flops_per_char": flops_per_char(spec),
            "points": points, "wall": wall, "cpu": cpu, "final_val": points[-1][1]}


def model_size(spec):
    return int(sum(np.prod(s) for s in model.param_shapes(spec).values()))


def table(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    print(f"{'variant':34s} {'params':>9s} {'MFLOP/char':>10s} {'steps':>5s}  val loss at each "
          f"evaluation")
    for r in rows:
        vals = " ".join(f"{v:.4f}" for _, v, _ in r["points"])
        print(f"{r['name']:34s} {r['params']:9,d} {r['flops_per_char'] / 1e6:10.2f} "
              f"{r['steps']:5d}  {vals}   ({r['wall']:.0f} s wall"
              + (f", {r['cpu']:.0f} s CPU)" if "cpu" in r else ")"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--out", help="append each variant's result to this JSON-lines file")
    ap.add_argument("--table", help="print the results in this JSON-lines file")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config value over BASE and the variant's, e.g. --set lr=4e-3")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for name, v in VARIANTS.items():
            print(f"{name:26s} {v}")
    if args.table:
        table(args.table)
    if len(args.variants) > 1 and any(VARIANTS[v].get("patch") for v in args.variants):
        ap.error("a patched variant changes this process's code: run it on its own")
    for name in args.variants:
        r = run(name, args.steps, args.eval_every, dict(kv.split("=", 1) for kv in args.set))
        print(json.dumps(r), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
