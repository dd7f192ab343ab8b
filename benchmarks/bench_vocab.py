"""Large vocabularies: the input gradient's two methods, training on a corpus of thousands of
distinct characters, and sampling over them.

    python benchmarks/bench_vocab.py onehot     # dense 0/1 product against sorted segment sums
    python benchmarks/bench_vocab.py train      # steps/s and peak memory at V = 5,000
    python benchmarks/bench_vocab.py sample     # next_id with top-k / top-p at V = 5,000
    python benchmarks/bench_vocab.py chunks     # the output layer's chunk size: ms/step, memory

The corpus is generated: a Zipf-distributed stream of "words" of 1-4 characters, each
character itself Zipf-distributed over 5,000 CJK code points from U+4E00 (exponent 1 for
both), so a few hundred characters make most of the text and thousands appear rarely, as in
Chinese or Japanese text.
"""
import argparse
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from charrnn import data, inference, model, runtime  # noqa: E402
from charrnn.cells import _input  # noqa: E402
from charrnn.sample import next_id  # noqa: E402
from common import trainer, vocab_of  # noqa: E402


def zipf(rng, n, size, s=1.0):
    """size draws from ranks 0..n-1 with P(rank k) proportional to 1 / (k + 1)^s."""
    p = 1.0 / np.arange(1, n + 1) ** s
    return rng.choice(n, size=size, p=p / p.sum())


def cjk_corpus(n_chars, V=5000, words=20000, seed=0):
    """Text of about n_chars characters over V CJK code points, with word-like runs: a lexicon
    of `words` words of 1-4 characters, each character Zipf-drawn over V, and the text a
    Zipf-drawn sequence of those words (both exponent 1)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 5, size=words)
    lexicon = np.split(zipf(rng, V, int(lengths.sum())), np.cumsum(lengths)[:-1])
    picks = zipf(rng, words, n_chars // 2)
    ids = np.concatenate([lexicon[w] for w in picks])[:n_chars]
    # every code point at least once, so the vocabulary has all V characters
    ids = np.concatenate([np.arange(V), ids])
    return "".join(map(chr, (0x4E00 + ids).tolist()))


def best(fn, repeat=5):
    fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def onehot(args):
    rng = np.random.default_rng(0)
    M = 64 * 100
    print(f"one_hot(ids)^T da, M = {M} rows (batch 64 x window 100), float32, "
          f"{args.threads} threads; ms, best of 5")
    print(f"{'G':>5s} {'V':>6s} {'dense':>8s} {'segments':>9s}  dense/segments")
    saved = _input.DENSE_MAX_V
    try:
        with runtime.use_threads(args.threads) as threads:
            for G in args.gates:
                da = rng.standard_normal((M, G)).astype(np.float32)
                for V in args.vocab:
                    ids = np.minimum(rng.zipf(1.1, size=M) - 1, V - 1)
                    _input.DENSE_MAX_V = 10 ** 9
                    dense = best(lambda: _input.one_hot_transpose_product(ids, da, V, threads))
                    _input.DENSE_MAX_V = 0
                    seg = best(lambda: _input.one_hot_transpose_product(ids, da, V, threads))
                    print(f"{G:5d} {V:6d} {1e3 * dense:8.2f} {1e3 * seg:9.2f}  {dense / seg:.2f}",
                          flush=True)
    finally:
        _input.DENSE_MAX_V = saved


def train(args):
    text = cjk_corpus(args.chars)
    vocab = vocab_of(text)
    ids = data.encode(text, vocab)
    V = len(vocab)
    counts = np.bincount(ids, minlength=V)
    top = np.sort(counts)[::-1]
    print(f"corpus: {len(text):,} characters, V = {V:,}; the 100 most frequent make "
          f"{top[:100].sum() / len(ids):.0%} of it, {int((counts <= 2).sum()):,} occur at most "
          f"twice")
    N, T = args.batch_size, args.seq_len
    spec = model.ModelSpec(args.cell, V, args.hidden_size, args.layers, 0.0, "float32")
    saved = _input.DENSE_MAX_V
    try:
        for method, limit in (("segments", saved), ("dense", 10 ** 9)):
            _input.DENSE_MAX_V = limit
            step = trainer(spec, ids, N, T, threads=runtime.Threads(args.threads))

            with runtime.use_threads(args.threads):
                step()
                tracemalloc.start()
                step()
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                t = best(step, args.steps)
            print(f"{method:9s} {args.cell} {args.layers}x{args.hidden_size}, batch {N} x {T}: "
                  f"{1e3 * t:7.1f} ms/step, {N * T / t:9,.0f} chars/s; peak of NumPy "
                  f"allocations in a step (tracemalloc) {peak / 2**20:6.1f} MB", flush=True)
    finally:
        _input.DENSE_MAX_V = saved


def chunks(args):
    """A training step (forward, backward, clip, Adam) at each OUTPUT_CHUNK_BYTES in --chunk-mb
    (0: the whole window in one chunk), in alternating rounds so that a change of load hits every
    setting alike: the median and spread of each round's best ms/step, each setting's ratio to
    the first one's in the same round, the same for the process's CPU time per step (all threads,
every step of a round), and the peak of NumPy allocations in a step."""
    V, N, T = args.vocab_size, args.batch_size, args.seq_len
    if V <= 256:
        with open(os.path.join(ROOT, "data", "tinyshakespeare.txt"), encoding="utf-8") as f:
            text = f.read()
        vocab = vocab_of(text)
        ids = data.encode(text, vocab)[:args.chars]
        ids = ids % V if V < len(vocab) else ids
    else:
        text = cjk_corpus(args.chars, V)
        ids = data.encode(text, vocab_of(text))
    spec = model.ModelSpec(args.cell, V, args.hidden_size, args.layers, 0.0, "float32")
    sizes = [int(mb * 2**20) if mb else 2**62 for mb in args.chunk_mb]
    names = [f"{mb:g} MB" if mb else "one chunk" for mb in args.chunk_mb]
    steps, peaks = [], []
    for _ in sizes:
        steps.append(trainer(spec, ids, N, T, threads=runtime.Threads(args.threads)))
    saved = model.OUTPUT_CHUNK_BYTES
    times, cpus = [[] for _ in sizes], [[] for _ in sizes]
    print(f"{args.cell} {args.layers}x{args.hidden_size}, V = {V:,}, batch {N} x {T}, "
          f"{args.threads} threads; per round the best of {args.steps} steps")
    try:
        with runtime.use_threads(args.threads):
            for i, (size, step) in enumerate(zip(sizes, steps)):
                model.OUTPUT_CHUNK_BYTES = size
                step()
                tracemalloc.start()
                step()
                peaks.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
            for _ in range(args.rounds):
                for i, (size, step) in enumerate(zip(sizes, steps)):
                    model.OUTPUT_CHUNK_BYTES = size
                    cpu = time.process_time()
                    times[i].append(best(step, args.steps))
                    cpus[i].append((time.process_time() - cpu) / (args.steps + 1))
    finally:
        model.OUTPUT_CHUNK_BYTES = saved
    for name, size, ts, cs, peak in zip(names, sizes, times, cpus, peaks):
        k = -(-N * T * V * 4 // size)
        ratios = [a / b for a, b in zip(ts, times[0])]
        cpu_ratios = [a / b for a, b in zip(cs, cpus[0])]
        print(f"  {name:>9s} ({k:3d} chunks): {1e3 * statistics.median(ts):8.1f} ms/step "
              f"({1e3 * min(ts):.1f}-{1e3 * max(ts):.1f}); to {names[0]}: "
              f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}); CPU "
              f"{1e3 * statistics.median(cs):.1f} ms/step, to {names[0]}: "
              f"{statistics.median(cpu_ratios):.3f} ({min(cpu_ratios):.3f}-"
              f"{max(cpu_ratios):.3f}); peak {peak / 2**20:6.1f} MB", flush=True)


def next_id_candidates(logits, temperature, top_k, top_p, rng, u=None):
    """A proposed next_id for large vocabularies: with top_k set, the softmax, the top-p sort
    and the draw run over the k candidates (kept in id order, ties at the cut included, so the
    same u draws the same id) instead of all V logits."""
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64)
    if temperature != 1:
        z /= temperature
    ids = None
    if top_k and top_k < len(z):
        ids = np.flatnonzero(z >= np.partition(z, -top_k)[-top_k])
        z = z[ids]
    z -= z.max()
    probs = np.exp(z, out=z)
    if top_p and top_p < 1.0:
        order = np.argsort(-probs)
        cum = np.cumsum(probs[order])
        keep = order[:int(np.searchsorted(cum, top_p * cum[-1])) + 1]
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept
    cum = np.cumsum(probs, out=probs)
    u = rng.random() if u is None else u
    i = int(min(cum.searchsorted(u * cum[-1], side="right"), len(cum) - 1))
    return int(ids[i]) if ids is not None else i


def sample(args):
    rng = np.random.default_rng(0)
    V = 5000
    logits = (rng.standard_normal(V) * 3).astype(np.float32)
    print(f"next_id over V = {V:,}, float32 logits; us per call, best of 5 x 2,000 calls")
    for label, k, p in (("plain", 0, 0.0), ("top-k 40", 40, 0.0), ("top-p 0.9", 0, 0.9),
                        ("top-k 40 + top-p 0.9", 40, 0.9)):
        us = best(lambda: [next_id(logits, 0.8, k, p, rng, 0.5) for _ in range(2000)]) / 2000
        alt = best(lambda: [next_id_candidates(logits, 0.8, k, p, rng, 0.5)
                            for _ in range(2000)]) / 2000
        draws = rng.random(2000)
        same = sum(next_id(logits, 0.8, k, p, rng, u) == next_id_candidates(logits, 0.8, k, p,
                                                                              rng, u)
                   for u in draws)
        print(f"  {label:22s} {1e6 * us:7.1f} us; over the k candidates only {1e6 * alt:7.1f} us"
              f" (the same id for {same} of 2,000 draws)")
    spec = model.ModelSpec("rnn", V, 256, 1, 0.0, "float32")
    params = model.init_params(spec, rng)
    step = inference.stepper(params, spec)
    state = model.zero_state(spec, 1)
    us = best(lambda: [step(7, state) for _ in range(2000)]) / 2000
    print(f"  a model step (rnn 1x256, V = {V:,}) for comparison: {1e6 * us:.1f} us")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["onehot", "train", "sample", "chunks"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gates", nargs="+", type=int, default=[32, 256, 1024])
    ap.add_argument("--vocab", nargs="+", type=int, default=[65, 96, 128, 192, 256, 512, 5000])
    ap.add_argument("--chars", type=int, default=2_000_000)
    ap.add_argument("--cell", default="rnn", choices=["rnn", "lstm", "gru"])
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--vocab-size", type=int, default=5000, help="chunks: V (tiny Shakespeare's "
                    "ids when at most 256, else the generated corpus)")
    ap.add_argument("--chunk-mb", nargs="+", type=float, default=[0, 2, 4, 8, 16, 32],
                    help="chunks: OUTPUT_CHUNK_BYTES in MB to compare, 0 for one chunk")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runtime.keep_freed_memory()
    print(runtime.describe(args.threads, args.batch_size),
          f"; load {open('/proc/loadavg').read().split()[0]}")
    {"onehot": onehot, "train": train, "sample": sample, "chunks": chunks}[args.what](args)


if __name__ == "__main__":
    main()
