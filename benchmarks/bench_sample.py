"""Sampling speed at batch 1: charrnn's generate against the usual PyTorch sampling loop, and
the wall time of the `charrnn sample` command a user runs.

Both sides generate from the same-sized model (one-hot input -> cell -> Linear -> softmax, one
draw from the full distribution per character, temperature 1) in alternating rounds in one
process; each figure is the median over rounds. The models are freshly initialised: the speed of
a step does not depend on what the weights have learnt.

    python benchmarks/bench_sample.py --cell rnn --hidden-size 256
    python benchmarks/bench_sample.py --cell lstm --hidden-size 256 --layers 2
    python benchmarks/bench_sample.py --cell rnn --hidden-size 256 --cli --cli-length 100000

Without PyTorch installed only charrnn's figures are printed.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from charrnn import model  # noqa: E402
from charrnn.sample import generate  # noqa: E402
from bench_train import CORPUS, blas_setup, machine_line, torch  # noqa: E402
from common import vocab_of  # noqa: E402


def corpus_vocab(path):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return vocab_of(f.read())
    return "".join(chr(c) for c in range(32, 97))  # 65 printable characters


def charrnn_sampler(spec, vocab, seed=0):
    params = model.init_params(spec, np.random.default_rng(seed))
    rng = np.random.default_rng(seed)

    def sample(length):
        return "".join(generate(params, spec, vocab, length, rng))

    return sample


def torch_sampler(spec, vocab, seed=0):
    """The PyTorch loop: one-hot step through nn.RNN/LSTM/GRU and Linear, softmax, multinomial."""
    nn = torch.nn
    torch.manual_seed(seed)
    dtype = getattr(torch, spec.dtype)
    cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[spec.cell]
    V, H = spec.vocab_size, spec.hidden_size
    rnn = cls(V, H, num_layers=spec.layers).to(dtype).eval()
    head = nn.Linear(H, V).to(dtype).eval()
    eye = torch.eye(V, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)

    @torch.inference_mode()
    def sample(length):
        last = vocab.find("\n") if "\n" in vocab else 0
        state, out = None, []
        for _ in range(length):
            h, state = rnn(eye[last].view(1, 1, V), state)
            probs = torch.softmax(head(h[0, 0]), dim=0)
            last = int(torch.multinomial(probs, 1, generator=gen))
            out.append(vocab[last])
        return "".join(out)

    return sample


def bench_core(args):
    vocab = corpus_vocab(args.corpus)
    spec = model.ModelSpec(args.cell, len(vocab), args.hidden_size, args.layers, 0.0, args.dtype)
    runners = {"charrnn": charrnn_sampler(spec, vocab)}
    if torch is not None and not args.no_torch:
        runners["pytorch"] = torch_sampler(spec, vocab)
    for sample in runners.values():
        sample(200)
    times = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, sample in runners.items():
            time.sleep(0.3)  # the previous runner's idle threads stop spinning
            t0 = time.perf_counter()
            text = sample(args.length)
            times[name].append(time.perf_counter() - t0)
            assert len(text) == args.length
    print(f"\n{args.cell} {args.layers}x{args.hidden_size}, V={len(vocab)}, batch 1, {args.dtype}; "
          f"{args.rounds} alternating rounds of {args.length:,} characters:")
    # on a shared machine the best round is the least disturbed one: ratios come from it
    best = {name: min(ts) for name, ts in times.items()}
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"  {'':8s} {'best':>10s} {'median':>10s}  chars/s   (us/char, best)")
    for name in times:
        print(f"  {name:8s} {args.length / best[name]:10,.0f} {args.length / med[name]:10,.0f}"
              f"            ({1e6 * best[name] / args.length:.1f})")
    if "pytorch" in best:
        print(f"  charrnn / pytorch: {best['pytorch'] / best['charrnn']:.2f}x "
              f"(medians {med['pytorch'] / med['charrnn']:.2f}x)")
    else:
        print("  no PyTorch run (not installed, or --no-torch): no comparison")


def bench_cli(args):
    """Wall time of `charrnn sample --length L` on the checkpoint of a one-step `charrnn train`."""
    with tempfile.TemporaryDirectory() as out:
        train = [sys.executable, "-m", "charrnn", "train", args.corpus, "--cell", args.cell,
                 "--hidden-size", str(args.hidden_size), "--layers", str(args.layers),
                 "--steps", "1", "--eval-every", "1", "--sample-length", "0", "--out", out]
        subprocess.run(train, check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
        ckpt = os.path.join(out, "last.npz")
        walls = {}
        for length in (0, args.cli_length):
            cmd = [sys.executable, "-m", "charrnn", "sample", "--ckpt", ckpt,
                   "--length", str(length), "--seed", "1"]
            best = float("inf")
            for _ in range(args.cli_repeat):
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
                best = min(best, time.perf_counter() - t0)
            walls[length] = best
    L = args.cli_length
    print(f"\n$ charrnn sample --ckpt <{args.cell} {args.layers}x{args.hidden_size}> --length {L} "
          f"--seed 1 > /dev/null   (best of {args.cli_repeat})")
    print(f"  {walls[L]:.2f} s wall; with --length 0 {walls[0]:.2f} s (start-up and checkpoint "
          f"load), so {L / (walls[L] - walls[0]):,.0f} chars/s once started")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", default="rnn", choices=["rnn", "lstm", "gru"])
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--length", type=int, default=5000, help="characters per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--corpus", default=CORPUS)
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--cli", action="store_true", help="also time `charrnn sample` end to end")
    ap.add_argument("--cli-only", action="store_true", help="time only `charrnn sample`")
    ap.add_argument("--cli-length", type=int, default=100_000)
    ap.add_argument("--cli-repeat", type=int, default=3)
    args = ap.parse_args(argv)

    print(machine_line())
    print(blas_setup(args.threads, 1))  # generation runs at batch 1
    if torch is not None and not args.no_torch:
        torch.set_num_threads(args.threads)
        print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    if not args.cli_only:
        bench_core(args)
    if args.cli or args.cli_only:
        bench_cli(args)


if __name__ == "__main__":
    main()
