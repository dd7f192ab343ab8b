"""What one time step of charrnn's LSTM costs outside and inside its recurrent product.

Times, on one thread and one half batch (the work each of a training step's two threads does per
time step), the pieces of the forward and backward time loops with the cell's own functions:
the recurrent product, adding it to the input projection, the gate arithmetic, and backward's
dh update, gate derivatives and product. It then adds up the non-product part over a training
step (every layer, T steps forward and T back) as the two threads would run it side by side.
Together with bench_train.py's GEMM-only bound (the products alone) this gives a floor for a
NumPy LSTM step that assumes no overhead at all between the calls.

    python benchmarks/lstm_step_parts.py --hidden-size 256 --layers 2
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from charrnn import blas  # noqa: E402
from charrnn.cells import lstm  # noqa: E402
from charrnn.cells._input import gate_major  # noqa: E402


def best_of(rounds, fn):
    """fn() -> tuple of seconds per part; the tuple of the fastest round."""
    results = [fn() for _ in range(rounds)]
    return min(results, key=sum)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)

    H, T, n = args.hidden_size, args.seq_len, args.batch_size // 2
    G = 4 * H
    rng = np.random.default_rng(0)
    f32 = np.float32
    scale = lstm.gate_scale(H, f32)
    Wh = (rng.uniform(-1, 1, (H, G)) / np.sqrt(H)).astype(f32) * scale
    WhT = np.ascontiguousarray(Wh.T)
    Wh4 = gate_major(Wh, lstm.GATES)  # (4, H, H), as lstm.forward's
    projections = rng.standard_normal((lstm.GATES, T, n, H)).astype(f32)
    dhs = (rng.standard_normal((T, n, H)) * 0.01).astype(f32)
    clock = time.perf_counter
    saved = {}  # forward's outputs, which backward runs on

    def forward():
        acts = projections.copy()
        hs = np.zeros((T + 1, n, H), f32)
        cs = np.zeros_like(hs)
        tanh_cs = np.empty((T, n, H), f32)
        rec, tmp = np.empty((lstm.GATES, n, H), f32), np.empty((n, H), f32)
        spent = np.zeros(3)
        for t in range(T):
            t0 = clock()
            np.matmul(hs[t], Wh4, out=rec)
            t1 = clock()
            acts[:, t] += rec
            t2 = clock()
            lstm._activate(acts[:, t], cs[t], cs[t + 1], tanh_cs[t], hs[t + 1], tmp)
            spent += (t1 - t0, t2 - t1, clock() - t2)
        saved.update(acts=acts, cs=cs, tanh_cs=tanh_cs)
        return tuple(spent / T)

    def backward():
        acts, cs, tanh_cs = saved["acts"], saved["cs"], saved["tanh_cs"]
        da = np.empty((T, n, G), f32)
        dh, dc = np.zeros((n, H), f32), np.zeros((n, H), f32)
        tmp = np.empty((n, H), f32)
        da_t, work = np.empty((lstm.GATES, n, H), f32), np.empty((lstm.GATES, n, H), f32)
        spent = np.zeros(3)
        for t in range(T - 1, -1, -1):
            t0 = clock()
            dh += dhs[t]
            t1 = clock()
            lstm._backward_step(acts[:, t], cs[t], tanh_cs[t], dh, dc, da_t, tmp, work)
            np.copyto(da[t].reshape(n, lstm.GATES, H).transpose(1, 0, 2), da_t)
            t2 = clock()
            np.matmul(da[t], WhT, out=dh)
            spent += (t1 - t0, t2 - t1, clock() - t2)
        return tuple(spent / T)

    with blas.one_blas_thread():
        fwd = best_of(args.rounds, forward)
        bwd = best_of(args.rounds, backward)
    us = [1e6 * x for x in fwd + bwd]
    print(f"LSTM H={H}, one thread, half batch ({n} rows), per time step, best of {args.rounds}:")
    print(f"  forward:  product {us[0]:6.1f} us, + projection {us[1]:5.1f} us, "
          f"gates {us[2]:5.1f} us")
    print(f"  backward: dh += {us[3]:5.1f} us, gates and their copy into the product's rows "
          f"{us[4]:5.1f} us, product {us[5]:6.1f} us")
    outside = (fwd[1] + fwd[2] + bwd[0] + bwd[1]) * T * args.layers
    print(f"  outside the products, per training step ({args.layers} layers x {T} steps each "
          f"way, the two halves side by side): {1e3 * outside:.1f} ms")


if __name__ == "__main__":
    main()
