"""The thread layout of a training step: the same bits for the same thread count, the BLAS setting
restored, no deadlock when a block's code asks for threads itself, and a loop that still runs
threaded where no BLAS can be controlled."""
import threading

import numpy as np
import pytest

from charrnn import blas, model, optim, runtime
from charrnn.cells import _input

T, N, H = 20, 64, 32  # configs/tiny.yaml's hidden size and window; a batch of 4 blocks


def _train(cell, V, threads, steps=5, **stack):
    """Weights after `steps` Adam updates of a 2-layer model with dropout, on `threads`."""
    spec = model.ModelSpec(cell, V, H, 2, 0.1, "float32", **stack)
    rng = np.random.default_rng(1)
    params = model.init_params(spec, rng)
    opt = optim.init_state("adam", params)
    ids = rng.integers(0, V, size=(steps, T + 1, N))
    drop = np.random.default_rng(2)
    state = model.zero_state(spec, N)
    with runtime.use_threads(threads):
        for x in ids:
            loss, state, cache = model.forward(params, spec, x[:-1], x[1:], state,
                                               model.dropout_masks(spec, T, N, drop))
            grads, _ = model.backward(params, spec, cache)
            optim.clip(grads, "norm", 5.0)
            optim.apply("adam", params, grads, opt, 5e-3)
    return params


RESIDUAL = dict(stack="residual", expand=2, mlp=2)


@pytest.mark.parametrize("cell, V, stack", [
    ("rnn", 65, {}), ("lstm", 65, {}), ("gru", 65, {}), ("rnn", 2 * _input.DENSE_MAX_V, {}),
    ("mingru", 65, {}), ("minlstm", 65, {}), ("mingru", 65, RESIDUAL), ("gru", 65, RESIDUAL)],
    ids=["rnn", "lstm", "gru", "rnn-large-vocab", "mingru", "minlstm", "mingru-residual",
         "gru-residual"])
def test_thread_counts_agree_and_each_repeats_its_bits(cell, V, stack):
    """The same thread count gives the same bits on every run. Different counts agree to a few
    float32 ulps of the gradients, not to the bit: OpenBLAS's sgemm computes the rows in the
    last, partial tile of its kernel (12 rows for its Haswell kernels) and the columns near a
    piece's edge with other code than the same rows of a larger product, so cutting a product
    (or a batch) into pieces moves the last bit of some rows; 5 Adam steps at lr 5e-3 turn that
    into weight differences of about 1e-5 (measured: RESULTS.md, 2026-12-01)."""
    runs = {n: _train(cell, V, n, **stack) for n in (1, 2, 3, 4)}
    again = _train(cell, V, 3, **stack)
    for k, v in runs[3].items():
        np.testing.assert_array_equal(again[k], v, err_msg=k)
    for n in (2, 3, 4):
        for k, v in runs[1].items():
            np.testing.assert_allclose(runs[n][k], v, rtol=0, atol=1e-4,
                                       err_msg=f"{k} at {n} threads")


def test_blocks_follow_threads_and_min_rows():
    with runtime.use_threads(4):
        assert len(runtime.blocks(N)) == 4
        assert len(runtime.blocks(3 * runtime.MIN_ROWS)) == 3
        assert runtime.blocks(runtime.MIN_ROWS) == [slice(0, runtime.MIN_ROWS)]
        cut = runtime.blocks(N + 3)
        assert cut[0].start == 0 and cut[-1].stop == N + 3
        assert all(a.stop == b.start for a, b in zip(cut, cut[1:]))
    with runtime.use_threads(1):
        assert runtime.blocks(N) == [slice(0, N)]
    with pytest.raises(ValueError):
        with runtime.use_threads(0):
            pass


def _blas_threads():
    return [lib.get_num_threads() for lib in blas.get().libs]


@pytest.mark.skipif(not blas.get().libs, reason="no BLAS threadpoolctl can control")
def test_blas_held_in_a_window_and_restored_after():
    before = _blas_threads()
    seen = []
    with runtime.use_threads(2):
        assert _blas_threads() == [2] * len(before)
        runtime.run(lambda rows: seen.append(_blas_threads()), runtime.blocks(N))
        assert _blas_threads() == [2] * len(before)
    assert _blas_threads() == before
    assert seen and all(s == [1] * len(before) for s in seen if s)
    with blas.one_blas_thread():
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before


def _with_timeout(fn, seconds=20):
    result = []
    worker = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "deadlock"
    return result[0]


def test_a_threaded_product_inside_a_window_does_not_deadlock():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((400, 300)), rng.standard_normal((300, 200))
    out = np.zeros((N, 400, 200))

    def block(rows):
        for i in range(rows.start, rows.stop):
            runtime.matmul(a, b, out=out[i])  # on the caller's and the workers' blocks alike
        runtime.run(lambda inner: None, runtime.blocks(N))

    def go():
        with runtime.use_threads(4):
            runtime.run(block, runtime.blocks(N))
            with runtime.use_threads(2):  # and a nested layout, on the same thread
                runtime.run(block, runtime.blocks(N))
        return out

    np.testing.assert_allclose(_with_timeout(go), np.broadcast_to(a @ b, out.shape),
                               rtol=1e-10, atol=1e-10)


def test_without_blas_control_the_blocks_still_run_on_threads(monkeypatch):
    no_blas = blas.Blas.__new__(blas.Blas)
    no_blas.libs, no_blas.per_thread = [], False
    monkeypatch.setattr(blas, "_instance", no_blas)
    idents = set()
    with runtime.use_threads(2):
        runtime.run(lambda rows: idents.add(threading.get_ident()), runtime.blocks(N))
    assert len(idents) == 2
    assert "no thread control" in runtime.describe(2, N)


def test_describe_names_the_layout():
    line = runtime.describe(2, N)
    assert line.startswith("threads: 2 (batch in 2 blocks), BLAS: ")
    assert runtime.describe(1, N).startswith("threads: 1 (batch in 1 block), ")
    assert runtime.available_cpus() >= 1


@pytest.mark.parametrize("D", [_input.DENSE_MAX_V, _input.DENSE_MAX_V + 1, 3000])
def test_one_hot_transpose_product_is_the_scatter(D):
    """Both methods (dense below the threshold, sorted segment sums above) sum the right rows."""
    rng = np.random.default_rng(4)
    ids = rng.integers(0, D // 2, size=500) * 2  # half the ids never occur
    da2 = rng.standard_normal((500, 40))
    expected = np.zeros((D, 40))
    np.add.at(expected, ids, da2)
    np.testing.assert_allclose(_input.one_hot_transpose_product(ids, da2, D), expected,
                               rtol=1e-12, atol=1e-12)


def test_train_fixes_and_records_its_thread_count(tmp_path):
    """charrnn.train on tiny.yaml with a batch of 4 blocks: the thread count it used is in
    config.yaml, the checkpoint and every metrics line, and the same count repeats the bits."""
    import json
    import os

    import charrnn
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    corpus = os.path.join(root, "data", "tinyshakespeare.txt")
    tiny = os.path.join(root, "configs", "tiny.yaml")
    runs = {}
    for name, threads in (("a", 3), ("b", 3), ("default", None)):
        out = tmp_path / name
        charrnn.train(corpus, tiny, out=out, batch_size=64, steps=5, eval_every=5,
                      sample_length=0, threads=threads, progress=False)
        runs[name] = charrnn.load(out / "last.npz")
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        expect = threads or runtime.available_cpus()
        assert runs[name].config.threads == expect
        assert [rec["threads"] for rec in lines] == [expect]
    for k, v in runs["a"].params.items():
        np.testing.assert_array_equal(v, runs["b"].params[k], err_msg=k)
