"""Sampling speed on one thread: the exported ONNX model run by ONNX Runtime, one session.run per
character with the loop of docs/export.md, against charrnn's own sampling (what `charrnn sample`
runs), alternating rounds in one process.

Both sample the same freshly initialised model (the speed of a step does not depend on what the
weights have learnt) at batch 1, temperature 1, from the same seed, and must print the same text.
ONNX Runtime gets one intra-op and one inter-op thread; charrnn's generation holds its BLAS at
one thread by itself. Each figure is chars/s over a round; the ratio is of the best rounds.

    python benchmarks/bench_onnx.py
    python benchmarks/bench_onnx.py --model gru:2x384 --length 3000 --rounds 5
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.modules["torch"] = None  # bench_train imports PyTorch when it can: none is measured here

import onnxruntime as ort  # noqa: E402

from bench_sample import corpus_vocab  # noqa: E402
from bench_train import CORPUS, blas_setup, machine_line  # noqa: E402
from charrnn import api, checkpoint, config, model  # noqa: E402
from charrnn.onnxgraph import to_onnx  # noqa: E402

MODELS = ["rnn:1x384", "gru:2x384", "lstm:2x256", "mingru:3x256:residual"]


def build(name, vocab, dtype):
    """'gru:2x384' (':residual' for that stack) -> a Model of fresh weights."""
    cell, size, *stack = name.split(":")
    layers, hidden = map(int, size.split("x"))
    cfg = config.build({"cell": cell, "layers": layers, "hidden_size": hidden, "dtype": dtype,
                        "stack": stack[0] if stack else "plain"})
    spec = model.spec_of(cfg, len(vocab))
    params = model.init_params(spec, np.random.default_rng(0))
    return api.Model(checkpoint.Checkpoint(config=cfg, vocab=vocab, params=params))


def onnx_sampler(m):
    """sample(length, seed) through ONNX Runtime on one thread, docs/export.md's loop at
    temperature 1 without a prime."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(to_onnx(m.checkpoint).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()[1:]]
    spec, vocab = m.spec, m.vocab

    def sample(length, seed):
        rng = np.random.default_rng(seed)
        state = {n: np.zeros((spec.layers, 1, spec.cell_size), spec.dtype) for n in names}
        last, text = vocab.index("\n"), []
        for u in rng.random(length):
            logits, *new = session.run(None, {"ids": np.array([last]), **state})
            state = dict(zip(names, new))
            z = logits[0].astype(np.float64)
            cum = np.exp(z - z.max()).cumsum()
            last = min(int(cum.searchsorted(u * cum[-1], side="right")), len(cum) - 1)
            text.append(vocab[last])
        return "".join(text)

    return sample


def bench(name, args, vocab):
    m = build(name, vocab, args.dtype)
    runners = {"charrnn": lambda length, seed: m.sample(length, seed=seed),
               "onnxruntime": onnx_sampler(m)}
    texts = {k: run(200, 1) for k, run in runners.items()}
    if len(set(texts.values())) != 1:
        print(f"  {name}: the two samplers' texts differ (rounding at a draw's edge)")
    times = {k: [] for k in runners}
    for r in range(args.rounds):
        for k, run in runners.items():
            t0 = time.perf_counter()
            run(args.length, r)
            times[k].append(time.perf_counter() - t0)
    best = {k: args.length / min(ts) for k, ts in times.items()}
    med = {k: args.length / statistics.median(ts) for k, ts in times.items()}
    print(f"  {name:22s} {best['charrnn']:9,.0f} {med['charrnn']:9,.0f}   "
          f"{best['onnxruntime']:9,.0f} {med['onnxruntime']:9,.0f}   "
          f"{best['onnxruntime'] / best['charrnn']:5.2f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help=f"cell:LxH[:residual] (default: "
                                                      f"{' '.join(MODELS)})")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--length", type=int, default=2000, help="characters per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    print(machine_line())
    print(blas_setup(1, 1))
    print(f"onnxruntime {ort.__version__}, 1 thread; {args.dtype}; {args.rounds} alternating "
          f"rounds of {args.length:,} characters, chars/s (best, median)")
    print(f"  {'model':22s} {'charrnn':>9s} {'':9s}   {'onnxrt':>9s} {'':9s}   onnx/charrnn")
    vocab = corpus_vocab(CORPUS)
    for name in args.model or MODELS:
        bench(name, args, vocab)


if __name__ == "__main__":
    main()
