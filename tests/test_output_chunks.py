"""The output layer and softmax in chunks of rows (model.output_chunks): the same loss, gradients
and scores as one chunk, on one thread and on two."""
import numpy as np
import pytest

from charrnn import evaluate, model, runtime
from charrnn.cells import CELLS

T, N, H, V = 3, 2 * runtime.MIN_ROWS, 5, 7  # 48 rows, enough for two softmax blocks per chunk


def _setup(cell, dtype, dropout):
    spec = model.ModelSpec(cell, V, H, 2, dropout, dtype)
    rng = np.random.default_rng(4)
    params = {k: (rng.standard_normal(v.shape) * 0.5).astype(dtype)
              for k, v in model.init_params(spec, rng).items()}
    x, y = rng.integers(0, V, size=(T, N)), rng.integers(0, V, size=(T, N))
    state = [tuple(rng.standard_normal((N, H)).astype(dtype) for _ in s)
             for s in model.zero_state(spec, N)]
    return spec, params, x, y, state


def _step(spec, params, x, y, state, threads=runtime.ONE_THREAD):
    drop = model.dropout_masks(spec, T, N, np.random.default_rng(7))  # the same every call
    loss, new_state, cache = model.forward(params, spec, x, y, state, drop, threads=threads)
    grads, dstate0 = model.backward(params, spec, cache, threads=threads)
    nats, _ = model.window_nll(params, spec, x, y, state, threads)
    return loss, new_state, grads, dstate0, nats


def test_small_vocabularies_run_as_one_chunk():
    """tiny Shakespeare's 65 characters at the default batch 64 x 100 (and at 4x that) make one
    chunk: the path, and the bits, of a window without chunks."""
    for rows in (64 * 100, 4 * 64 * 100):
        for itemsize in (4, 8):
            assert model.output_chunks(rows, 65, itemsize) == [slice(0, rows)]
    chunks = model.output_chunks(64 * 100, 5000, 4)
    sizes = [c.stop - c.start for c in chunks]
    assert len(chunks) > 1 and chunks[0].start == 0 and chunks[-1].stop == 64 * 100
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:]))
    assert max(sizes) - min(sizes) <= 1
    assert (max(sizes) - 1) * 5000 * 4 <= model.OUTPUT_CHUNK_BYTES  # at most a row over


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("cell, dropout", [("rnn", 0.0), ("lstm", 0.3), ("gru", 0.0)])
def test_chunks_give_the_loss_and_gradients_of_one(monkeypatch, cell, dropout, dtype, tol,
                                                   threads):
    spec, params, x, y, state = _setup(cell, dtype, dropout)
    with runtime.use_threads(threads) as layout:
        one = _step(spec, params, x, y, state, layout)
        # 3 chunks of 16 rows (each in two softmax blocks on two threads), then 5 unequal
        # chunks of 9-10 rows
        itemsize = np.dtype(dtype).itemsize
        for k in (3, 5):
            monkeypatch.setattr(model, "OUTPUT_CHUNK_BYTES", -(-T * N * V * itemsize // k))
            assert len(model.output_chunks(T * N, V, itemsize)) == k
            loss, new_state, grads, dstate0, nats = _step(spec, params, x, y, state, layout)
            assert loss == pytest.approx(one[0], rel=tol)
            assert nats == pytest.approx(one[4], rel=tol)
            assert grads.keys() == one[2].keys()
            for k, g in grads.items():
                assert g.dtype == np.dtype(dtype)
                np.testing.assert_allclose(g, one[2][k], rtol=tol, atol=tol * np.abs(g).max(),
                                           err_msg=k)
            for a, b in zip(dstate0, one[3]):
                for u, v in zip(a, b):
                    np.testing.assert_allclose(u, v, rtol=tol, atol=tol * np.abs(v).max())
            for a, b in zip(new_state, one[1]):  # the layers do not depend on the chunks
                for u, v in zip(a, b):
                    np.testing.assert_array_equal(u, v)


def test_score_in_chunks_equals_one_chunk(monkeypatch):
    """evaluate.score's total over several windows and the leftover characters."""
    spec, params, _, _, _ = _setup("gru", "float64", 0.0)
    ids = np.random.default_rng(5).integers(0, V, size=1000)
    whole = evaluate.score(params, spec, ids, n_streams=8, seq_len=20)
    monkeypatch.setattr(model, "OUTPUT_CHUNK_BYTES", 30 * V * 8)
    assert evaluate.score(params, spec, ids, n_streams=8, seq_len=20) == (
        pytest.approx(whole[0], rel=1e-12), whole[1])


def test_backward_leaves_the_cache_as_it_was():
    """forward keeps the output layer's gradients in the cache; backward returns copies, and
    scales the top layer's dropout on its own copy of dtop: two calls, the same gradients."""
    spec, params, x, y, state = _setup("rnn", "float64", 0.3)
    _, _, cache = model.forward(params, spec, x, y, state,
                                model.dropout_masks(spec, T, N, np.random.default_rng(7)))
    first, _ = model.backward(params, spec, cache)
    for g in first.values():
        g *= 0.5  # as clipping does
    second, _ = model.backward(params, spec, cache)
    for k in first:
        np.testing.assert_array_equal(second[k], 2 * first[k])


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_window_nll_is_the_forward_loss(cell):
    """window_nll scores what forward trains on: the sum of the same per-row losses."""
    spec, params, x, y, state = _setup(cell, "float64", 0.0)
    loss, new_state, _ = model.forward(params, spec, x, y, state)
    nats, scored_state = model.window_nll(params, spec, x, y, state)
    assert nats == pytest.approx(loss * T * N, rel=1e-12)
    for a, b in zip(new_state, scored_state):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_parts_in_chunks_add_up_to_the_batch(monkeypatch):
    """Data-parallel parts (rows of the batch with forward's mean_over) chunked: each part's loss
    and output gradients are its share of the whole batch's mean, so two halves add up to the
    batch in one chunk."""
    spec, params, x, y, state = _setup("gru", "float64", 0.3)
    masks = model.dropout_masks(spec, T, N, np.random.default_rng(7))
    whole_loss, _, whole = model.forward(params, spec, x, y, state, masks)
    whole_grads, _ = model.backward(params, spec, whole)
    monkeypatch.setattr(model, "OUTPUT_CHUNK_BYTES", 5 * V * 8)
    loss, grads = 0.0, {}
    for rows in (slice(0, N // 2), slice(N // 2, N)):
        part_state = [tuple(s[rows] for s in layer) for layer in state]
        part_loss, _, cache = model.forward(params, spec, x[:, rows], y[:, rows], part_state,
                                            masks.rows(rows), mean_over=T * N)
        loss += part_loss
        for k, g in model.backward(params, spec, cache)[0].items():
            grads[k] = grads.get(k, 0) + g
    assert loss == pytest.approx(whole_loss, rel=1e-12)
    for k, g in grads.items():
        np.testing.assert_allclose(g, whole_grads[k], rtol=1e-10, atol=1e-12, err_msg=k)
