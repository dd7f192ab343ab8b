"""Train 5 steps of a small model and write the weights, so that two checkouts (or two thread
counts) can be compared bit for bit.

    python benchmarks/bits_check.py --threads 2 --out /tmp/new.npz
    git worktree add /tmp/base dba4acc
    (cd /tmp && PYTHONPATH=/tmp/base python $OLDPWD/benchmarks/bits_check.py --out /tmp/old.npz)
    python benchmarks/bits_check.py --compare /tmp/old.npz /tmp/new.npz

With --runs, whole runs instead: `charrnn.train` of each cell (2 layers, dropout, 30 steps with
an evaluation every 10) on the first 200,000 characters of the shipped corpus, and every array of
its last.npz and best.npz but the timing (`elapsed`): what a refactor of the training loop,
the checkpoint or the run folder must leave bit for bit as it was.

The model is that of tests/test_thread_bits.py (configs/tiny.yaml's hidden size 32 and window 20,
batch 64, 2 layers, dropout 0.1, float32, Adam at 5e-3), for every cell. A checkout without
runtime.use_threads (before issue 12) runs with its own default layout.
"""
import argparse
import contextlib
import os
import tempfile

import numpy as np

import charrnn
from charrnn import model, optim, runtime

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                      "tinyshakespeare.txt")

T, N, H, V = 20, 64, 32, 65


def train(cell, threads, steps=5):
    spec = model.ModelSpec(cell, V, H, 2, 0.1, "float32")
    rng = np.random.default_rng(1)
    params = model.init_params(spec, rng)
    opt = optim.init_state("adam", params)
    ids = rng.integers(0, V, size=(steps, T + 1, N))
    drop = np.random.default_rng(2)
    state = model.zero_state(spec, N)
    layout = (runtime.use_threads(threads) if hasattr(runtime, "use_threads")
              else contextlib.nullcontext())
    with layout:
        for x in ids:
            _, state, cache = model.forward(params, spec, x[:-1], x[1:], state, drop)
            grads, _ = model.backward(params, spec, cache)
            optim.clip(grads, "norm", 5.0)
            optim.apply("adam", params, grads, opt, 5e-3)
    return {f"{cell}/{k}": v for k, v in params.items()}


def run(cell, threads, folder):
    """The arrays of a whole run's last.npz and best.npz, without the timing."""
    os.makedirs(folder, exist_ok=True)
    text = os.path.join(folder, "corpus.txt")
    if not os.path.exists(text):
        with open(CORPUS, encoding="utf-8") as f, open(text, "w", encoding="utf-8") as g:
            g.write(f.read(200_000))
    out = os.path.join(folder, cell)
    charrnn.train(text, progress=False, cell=cell, hidden_size=H, layers=2, dropout=0.1,
                  batch_size=N, seq_len=T, lr=5e-3, steps=30, eval_every=10, sample_length=20,
                  threads=threads, out=out, cache_dir=os.path.join(folder, "cache"), overwrite=True)
    found = {}
    for name in ("last", "best"):
        with np.load(os.path.join(out, f"{name}.npz"), allow_pickle=False) as z:
            found.update({f"{cell}/{name}/{k}": z[k] for k in z.files if k != "elapsed"})
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
    ap.add_argument("--runs", action="store_true", help="whole charrnn.train runs, not 5 steps")
    args = ap.parse_args()
    if args.compare:
        a, b = (np.load(path) for path in args.compare)
        assert sorted(a.files) == sorted(b.files)
        differ = [k for k in a.files if not np.array_equal(a[k], b[k])]
        worst = max((float(np.abs(a[k] - b[k]).max()) for k in a.files
                     if a[k].dtype.kind in "fiu" and a[k].shape == b[k].shape), default=0.0)
        print(f"{len(a.files) - len(differ)} of {len(a.files)} arrays equal bit for bit; "
              f"max |difference| {worst:.3g}" + (f"; differ: {', '.join(differ)}" if differ else ""))
        return
    weights = {}
    # one fixed folder: the config in a checkpoint names its run directory and cache
    folder = os.path.join(tempfile.gettempdir(), "charrnn-bits-check")
    for cell in ("rnn", "lstm", "gru"):
        weights.update(run(cell, args.threads, folder) if args.runs else train(cell, args.threads))
    np.savez(args.out, **weights)
    print(f"wrote {len(weights)} arrays to {args.out}")


if __name__ == "__main__":
    main()
