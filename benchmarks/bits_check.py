"""Train 5 steps of a small model and write the weights, so that two checkouts (or two thread
counts) can be compared bit for bit.

    python benchmarks/bits_check.py --threads 2 --out /tmp/new.npz
    git worktree add /tmp/base dba4acc
    (cd /tmp && PYTHONPATH=/tmp/base python $OLDPWD/benchmarks/bits_check.py --out /tmp/old.npz)
    python benchmarks/bits_check.py --compare /tmp/old.npz /tmp/new.npz

The same with --runs (and a --folder of their own when another check may run on the machine);
a base checkout without a worktree: `mkdir /tmp/base && git archive BASE | tar -x -C /tmp/base`.

With --runs, whole runs instead: `charrnn.train` of rnn, lstm, gru, mingru and the residual
stack (mingru, expand 2, mlp 2) (2 layers, dropout, 30 steps with an evaluation every 10) on the
first 200,000 characters of the shipped corpus; the gru run again stopped at step 20 and resumed
to 30; and the lstm run under `mpiexec -n 2` (one thread per rank; skipped without mpi4py and
mpiexec), with every array of each run's last.npz and best.npz but the timing (`elapsed`): what a
refactor of the training loop, the checkpoint or the run folder must leave bit for bit as it was.

The model is that of tests/test_thread_bits.py (configs/tiny.yaml's hidden size 32 and window 20,
batch 64, 2 layers, dropout 0.1, float32, Adam at 5e-3), for every cell. A checkout without
runtime.use_threads (before issue 12) runs with its own default layout.
"""
import argparse
import contextlib
import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
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
    # a checkout before the layout was an argument reads it from use_threads
    passed = "threads" in inspect.signature(model.forward).parameters
    with layout as held:
        kw = {"threads": held} if passed else {}
        for x in ids:
            # a checkout before issue 29 draws the masks inside forward, from the generator
            masks = (model.dropout_masks(spec, T, N, drop) if hasattr(model, "dropout_masks")
                     else drop)
            _, state, cache = model.forward(params, spec, x[:-1], x[1:], state, masks, **kw)
            grads, _ = model.backward(params, spec, cache, **kw)
            optim.clip(grads, "norm", 5.0)
            optim.apply("adam", params, grads, opt, 5e-3)
    return {f"{cell}/{k}": v for k, v in params.items()}


RUNS = {"rnn": {}, "lstm": {}, "gru": {}, "mingru": {},
        "residual": dict(cell="mingru", stack="residual", expand=2, mlp=2)}


def _corpus(folder):
    os.makedirs(folder, exist_ok=True)
    text = os.path.join(folder, "corpus.txt")
    if not os.path.exists(text):
        with open(CORPUS, encoding="utf-8") as f, open(text, "w", encoding="utf-8") as g:
            g.write(f.read(200_000))
    return text


def _train_run(name, threads, folder, steps=30, **kw):
    """charrnn.train of RUNS[name] (or the `cell` name) into folder/name."""
    model_kw = {"cell": name, **RUNS.get(name, {})}
    out = os.path.join(folder, name)
    charrnn.train(_corpus(folder), progress=False, hidden_size=H, layers=2, dropout=0.1,
                  batch_size=N, seq_len=T, lr=5e-3, steps=steps, eval_every=10, sample_length=20,
                  threads=threads, out=out, cache_dir=os.path.join(folder, "cache"),
                  **{**model_kw, **kw})
    return out


def _arrays(out, name):
    """The arrays of out's last.npz and best.npz, without the timing, keyed name/file/key."""
    found = {}
    for file in ("last", "best"):
        with np.load(os.path.join(out, f"{file}.npz"), allow_pickle=False) as z:
            found.update({f"{name}/{file}/{k}": z[k] for k in z.files if k != "elapsed"})
    return found


def run(name, threads, folder):
    """The arrays of a whole run's last.npz and best.npz, without the timing."""
    return _arrays(_train_run(name, threads, folder, overwrite=True), name)


def resumed_run(threads, folder):
    """The gru run stopped at step 20 and resumed from its last.npz to step 30."""
    out = _train_run("gru", threads, os.path.join(folder, "resumed"), steps=20, overwrite=True)
    charrnn.train(_corpus(os.path.join(folder, "resumed")), progress=False, steps=30,
                  resume=os.path.join(out, "last.npz"))
    return _arrays(out, "gru-resumed")


def _mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


def mpi_run(folder):
    """The lstm run under `mpiexec -n 2`, one thread per rank; {} without mpi4py or mpiexec."""
    mpiexec = _mpiexec()
    if importlib.util.find_spec("mpi4py") is None or mpiexec is None:
        print("no mpi4py or mpiexec: the MPI run is left out")
        return {}
    mpi_folder = os.path.join(folder, "mpi")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([mpiexec, "-n", "2", sys.executable, os.path.abspath(__file__),
                    "--mpi-child", mpi_folder], check=True, env=env)
    return _arrays(os.path.join(mpi_folder, "lstm"), "lstm-mpi2")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
    ap.add_argument("--runs", action="store_true", help="whole charrnn.train runs, not 5 steps")
    ap.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "charrnn-bits-check"),
                    help="where the runs go: the same for both checkouts (a checkpoint's config "
                         "names its run directory and cache)")
    ap.add_argument("--mpi-child", metavar="FOLDER", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mpi_child:  # one rank of mpi_run's job
        _train_run("lstm", 1, args.mpi_child, overwrite=True)
        return
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
    folder = args.folder
    if args.runs:
        for name in RUNS:
            weights.update(run(name, args.threads, folder))
        weights.update(resumed_run(args.threads, folder))
        weights.update(mpi_run(folder))
    else:
        for cell in ("rnn", "lstm", "gru"):
            weights.update(train(cell, args.threads))
    np.savez(args.out, **weights)
    print(f"wrote {len(weights)} arrays to {args.out}")


if __name__ == "__main__":
    main()
