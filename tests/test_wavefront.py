"""charrnn.wavefront: two layers at a time on two threads. It must give the gradients of the plain
schedule (to rounding, float64), against centred finite differences too, for any window and
batch shape, chunk count and odd layer count; and a side that fails or is interrupted must end
the pass with its own error, never leave the other thread waiting."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from charrnn import model, runtime, wavefront
from charrnn.cells import CELLS
from gradcheck import numeric_grad, rel_error

PAIRED = ("rnn", "lstm", "gru")
TWO = runtime.Threads(2)
EPS = 1e-5


def _setup(cell, layers, T, N, dropout=0.0, weight_drop=0.0, seed=0, V=7, H=5):
    spec = model.ModelSpec(cell, V, H, layers, dropout, "float64", weight_drop=weight_drop)
    rng = np.random.default_rng(seed)
    params = model.init_params(spec, rng)
    for k in params:
        params[k] = rng.standard_normal(params[k].shape) * 0.5
    x, y = rng.integers(0, V, size=(T, N)), rng.integers(0, V, size=(T, N))
    state = [tuple(rng.standard_normal((N, H)) for _ in s) for s in model.zero_state(spec, N)]
    return spec, params, x, y, state


def _pass(spec, params, x, y, state, threads):
    masks = model.dropout_masks(spec, *x.shape, np.random.default_rng(7))
    loss, new_state, cache = model.forward(params, spec, x, y, state, masks, threads=threads)
    grads, dstate0 = model.backward(params, spec, cache, threads=threads)
    return loss, new_state, grads, dstate0


def test_it_takes_plain_stacks_of_two_or_more_layers_on_two_threads_only():
    def spec(cell="lstm", layers=2, stack="plain"):
        extra = dict(expand=2, mlp=2) if stack == "residual" else {}
        return model.ModelSpec(cell, 7, 8, layers, 0.0, "float32", stack, **extra)
    assert wavefront.applies(spec(), TWO)
    assert model.layer_groups(spec(layers=3), TWO) == [(0, 1), (2,)]
    assert model.layer_groups(spec(layers=4), TWO) == [(0, 1), (2, 3)]
    for other in (runtime.ONE_THREAD, runtime.Threads(3)):
        assert model.layer_groups(spec(), other) == [(0,), (1,)]
    assert not wavefront.applies(spec(layers=1), TWO)
    assert not wavefront.applies(spec("mingru"), TWO)
    assert not wavefront.applies(spec("gru", stack="residual"), TWO)


@settings(max_examples=30, deadline=None)
@given(cell=st.sampled_from(PAIRED), layers=st.integers(2, 4),
       T=st.integers(1, 3 * wavefront.STEPS + 1), N=st.integers(1, 9),
       dropout=st.sampled_from([0.0, 0.3]),
       weight_drop=st.sampled_from([0.0, 0.2]), seed=st.integers(0, 2**16))
def test_it_gives_the_plain_schedules_numbers(cell, layers, T, N, dropout, weight_drop, seed):
    """Loss, new state, every gradient and d(initial state) on two threads (the wavefront)
    equal one thread's to float64 rounding: one chunk or many, a last chunk of one step (whose
    first half is empty), an odd layer left alone, one row."""
    spec, params, x, y, state = _setup(cell, layers, T, N, dropout, weight_drop, seed)
    one = _pass(spec, params, x, y, state, runtime.ONE_THREAD)
    with runtime.use_threads(2) as threads:
        two = _pass(spec, params, x, y, state, threads)
    assert two[0] == pytest.approx(one[0], rel=1e-12)
    for a, b in zip(one[1], two[1]):
        for u, v in zip(a, b):
            np.testing.assert_allclose(v, u, rtol=1e-12, atol=1e-14)
    for k in one[2]:
        np.testing.assert_allclose(two[2][k], one[2][k], rtol=1e-10, atol=1e-13, err_msg=k)
    for a, b in zip(one[3], two[3]):
        for u, v in zip(a, b):
            np.testing.assert_allclose(v, u, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("cell", PAIRED)
def test_its_gradients_match_finite_differences(cell):
    """Three layers (a pair and one alone) with dropout between them, on two threads, float64,
    a window of three chunks: every parameter and initial state against centred differences of
    the loss. The step is 1e-5, not gradcheck's 1e-6: over 19 steps the loss's rounding divided
    by 1e-6 came to 1e-7 of the smaller gradients (the same at one thread)."""
    spec, params, x, y, state = _setup(cell, 3, 2 * wavefront.STEPS + 3, 3, dropout=0.3)
    masks = model.dropout_masks(spec, *x.shape, np.random.default_rng(7))
    with runtime.use_threads(2) as threads:
        def loss():
            return model.forward(params, spec, x, y, state, masks, threads=threads)[0]

        _, _, cache = model.forward(params, spec, x, y, state, masks, threads=threads)
        grads, dstate0 = model.backward(params, spec, cache, threads=threads)
        for k in params:
            err = rel_error(grads[k], numeric_grad(loss, params[k], EPS))
            assert err < 1e-7, (k, err)
        for layer, s in enumerate(state):
            for i, part in enumerate(s):
                err = rel_error(dstate0[layer][i], numeric_grad(loss, part, EPS))
                assert err < 1e-7, (layer, i, err)


def _fails_on(monkeypatch, cls, method, on_caller, error, caller=threading.main_thread):
    """Make cls.method raise error on the thread that calls the pass (on_caller: caller(), the
    main thread unless given) or on the pool's."""
    real = getattr(cls, method)

    def failing(self, *args, **kwargs):
        if (threading.current_thread() is caller()) == on_caller:
            raise error
        return real(self, *args, **kwargs)
    monkeypatch.setattr(cls, method, failing)


def _in_a_thread(fn, timeout=60):
    """fn() on a fresh thread (so that the main-thread test above means the pool's side); its
    error or result, or a failure if it is still running after timeout seconds (a hang)."""
    found = {}

    def run():
        try:
            found["result"] = fn()
        except BaseException as e:  # noqa: B036 -- what the pass raised is what is checked
            found["error"] = e
    t = threading.Thread(target=run)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the pass did not end: a side was left waiting"
    return found


@pytest.mark.parametrize("cell", PAIRED)
@pytest.mark.parametrize("piece", ["Forward.loop", "Forward.project", "Backward.loop",
                                   "Backward.input_grad", "Backward.result"])
@pytest.mark.parametrize("on_caller", [True, False], ids=["caller's side", "pool's side"])
def test_a_failing_side_ends_the_pass_with_its_error(monkeypatch, cell, piece, on_caller):
    """Whichever side fails, in whichever piece, the pass raises that error (not the partner's
    Aborted) and returns; and the next pass runs normally (no thread is left waiting)."""
    spec, params, x, y, state = _setup(cell, 2, 2 * wavefront.STEPS + 1, 4)
    cls_name, method = piece.split(".")
    calling = []  # the thread a_pass runs on: _in_a_thread's, not the main one
    _fails_on(monkeypatch, getattr(CELLS[cell], cls_name), method, on_caller,
              KeyError("the failing side"), caller=lambda: calling[-1])

    def a_pass():
        calling.append(threading.current_thread())
        with runtime.use_threads(2) as threads:
            return _pass(spec, params, x, y, state, threads)
    found = _in_a_thread(a_pass)
    assert isinstance(found.get("error"), KeyError), found
    monkeypatch.undo()
    found = _in_a_thread(a_pass)
    assert "result" in found, found


def test_an_interrupt_on_the_callers_side_ends_the_pass(monkeypatch):
    """Ctrl-C reaches the main thread: raised there inside a forward pass's chunk, it ends the
    pass with KeyboardInterrupt while the other side is waiting for that chunk."""
    spec, params, x, y, state = _setup("lstm", 2, 3 * wavefront.STEPS, 4)
    _fails_on(monkeypatch, CELLS["lstm"].Forward, "loop", True, KeyboardInterrupt())
    with runtime.use_threads(2) as threads, pytest.raises(KeyboardInterrupt):
        _pass(spec, params, x, y, state, threads)
    monkeypatch.undo()
    with runtime.use_threads(2) as threads:
        loss = _pass(spec, params, x, y, state, threads)[0]
    assert np.isfinite(loss)
