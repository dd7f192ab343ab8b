"""Data-parallel training without MPI: a batch shared out in parts (rows of the batch, the
whole batch's dropout masks cut to them, the loss a share of the batch's mean) gives losses and
gradients that add up to the whole batch's, and a group of one changes nothing (the blocks of
an evaluation's streams are tests/test_evaluate.py's). tests/test_mpi.py runs the real thing."""
import numpy as np
import pytest

from charrnn import data, distributed, model

T, N, H, V = 6, 12, 8, 11


def _setup(cell, dropout, dtype="float64", **stack):
    spec = model.ModelSpec(cell, V, H, 2, dropout, dtype, **stack)
    rng = np.random.default_rng(0)
    params = model.init_params(spec, rng)
    x = rng.integers(0, V, size=(T + 1, N))
    state = [tuple(rng.standard_normal(a.shape).astype(dtype) for a in s)
             for s in model.zero_state(spec, N)]
    return spec, params, x, state


def _window(spec, params, x, state, rows, seed):
    """Loss, gradients and new state of rows of the batch (None: all of it, as one process
    trains it), the whole batch's dropout masks drawn from seed and cut to the rows."""
    masks = model.dropout_masks(spec, T, N, np.random.default_rng(seed))
    if rows is None:
        loss, new_state, cache = model.forward(params, spec, x[:-1], x[1:], state, masks)
    else:
        loss, new_state, cache = model.forward(
            params, spec, x[:-1, rows], x[1:, rows],
            [tuple(s[rows] for s in layer) for layer in state], masks.rows(rows),
            mean_over=T * N)
    grads, _ = model.backward(params, spec, cache)
    return loss, grads, new_state


RESIDUAL = dict(stack="residual", expand=2, mlp=2)


@pytest.mark.parametrize("cell, stack", [("rnn", {}), ("lstm", {}), ("gru", {}), ("mingru", {}),
                                         ("minlstm", {}), ("mingru", RESIDUAL),
                                         ("gru", RESIDUAL)],
                         ids=["rnn", "lstm", "gru", "mingru", "minlstm", "mingru-residual",
                              "gru-residual"])
@pytest.mark.parametrize("K", [2, 3, 5])
def test_parts_add_up_to_the_whole_batch(cell, stack, K):
    spec, params, x, state = _setup(cell, dropout=0.3, **stack)
    loss, grads, new_state = _window(spec, params, x, state, None, seed=7)
    parts = [_window(spec, params, x, state, data.block(N, k, K), seed=7) for k in range(K)]
    assert sum(p[0] for p in parts) == pytest.approx(loss, rel=1e-13)
    for name, g in grads.items():
        np.testing.assert_allclose(sum(p[1][name] for p in parts), g, rtol=1e-11, atol=1e-14,
                                   err_msg=name)
    for layer, whole in enumerate(new_state):  # each part's rows of the new state, same masks
        for i, s in enumerate(whole):
            np.testing.assert_allclose(np.concatenate([p[2][layer][i] for p in parts]), s,
                                       rtol=1e-13, atol=1e-15)


def test_a_part_of_all_rows_is_the_whole_batch_bit_for_bit():
    spec, params, x, state = _setup("lstm", dropout=0.2, dtype="float32")
    whole = _window(spec, params, x, state, None, seed=3)
    part = _window(spec, params, x, state, slice(0, N), seed=3)
    assert part[0] == whole[0]
    for name in whole[1]:
        np.testing.assert_array_equal(part[1][name], whole[1][name])


def test_blocks_cover_the_rows_once_in_order():
    for n in range(0, 20):
        for K in range(1, 7):
            rows = [data.block(n, k, K) for k in range(K)]
            assert rows[0].start == 0 and rows[-1].stop == n
            assert all(a.stop == b.start for a, b in zip(rows, rows[1:]))
            sizes = [r.stop - r.start for r in rows]
            assert max(sizes) - min(sizes) <= 1


def test_a_group_of_one_is_the_identity():
    group = distributed.ALONE
    assert (group.rank, group.size, group.leader) == (0, 1, True)
    assert group.rows(7) == slice(0, 7)
    grads, votes = {"a": np.ones(3)}, np.zeros(3, dtype=np.int64)
    assert group.sum_step(grads, 1.5, votes) == (grads, 1.5, votes)
    assert group.sum_here(votes) is votes  # a vote to stop is known before the step
    assert group.sum(2.5) == 2.5 and group.bcast("x") == "x"
    assert group.on_leader(lambda: 4) == 4 and group.everywhere(lambda: 5) == 5
    error = group.error("boom")
    assert isinstance(error, distributed.GroupError) and error.shown


def test_a_leader_only_object_runs_on_the_one_process():
    calls = []

    class Writer:
        def write(self, text):
            calls.append(text)
            return len(text)
    writer = distributed.ALONE.leader_only(Writer)
    assert writer.write("abc") == 3 and calls == ["abc"]


# each regularizer that draws masks, on the stacks and cells it applies to (weight_decay and
# ema act after the group's sum on the same weights everywhere: tests/test_mpi.py runs them)
REGULARIZED = {"weight_drop": dict(weight_drop=0.4), "locked": dict(dropout_mode="locked"),
               "both": dict(weight_drop=0.4, dropout_mode="locked")}


@pytest.mark.parametrize("cell, stack", [("lstm", {}), ("gru", {}), ("rnn", {}),
                                         ("gru", RESIDUAL)],
                         ids=["lstm", "gru", "rnn", "gru-residual"])
@pytest.mark.parametrize("regularizer", sorted(REGULARIZED))
def test_parts_add_up_to_the_whole_batch_with_each_regularizer(cell, stack, regularizer):
    """The recurrent masks are the whole batch's, shared by every part (Masks.rows keeps them
    whole), the locked masks cut to each part's rows like the step ones."""
    spec, params, x, state = _setup(cell, dropout=0.3, **stack, **REGULARIZED[regularizer])
    loss, grads, _ = _window(spec, params, x, state, None, seed=7)
    parts = [_window(spec, params, x, state, data.block(N, k, 3), seed=7) for k in range(3)]
    assert sum(p[0] for p in parts) == pytest.approx(loss, rel=1e-13)
    for name, g in grads.items():
        np.testing.assert_allclose(sum(p[1][name] for p in parts), g, rtol=1e-11, atol=1e-14,
                                   err_msg=name)
