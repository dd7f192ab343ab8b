"""charrnn/positionwise.py, the residual stack's RMS norm and GELU: against the plain reference
(which is itself checked against finite differences), row by row whatever the thread layout,
and an all-zero row normalised to zero."""
import numpy as np
import pytest

from charrnn import positionwise, reference, runtime
from gradcheck import numeric_grad, rel_error

M, H = 3 * runtime.MIN_ROWS + 1, 6  # rows enough for 3 blocks on 3 threads, one left over


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((M, H)), rng.standard_normal(H), rng.standard_normal((M, H))


def test_the_reference_rms_norm_matches_finite_differences():
    x, g, dy = _arrays()
    dg, dx = reference.rms_norm_backward(g, reference.rms_norm_forward(x, g)[1], dy)

    def f():
        return float(np.sum(reference.rms_norm_forward(x, g)[0] * dy))
    assert rel_error(dx, numeric_grad(f, x)) < 1e-7
    assert rel_error(dg, numeric_grad(f, g)) < 1e-7


def test_the_reference_gelu_matches_finite_differences():
    a, _, dout = _arrays(1)
    da = reference.gelu_backward(reference.gelu_forward(a)[1], dout)
    assert rel_error(da, numeric_grad(lambda: float(np.sum(reference.gelu_forward(a)[0] * dout)),
                                      a)) < 1e-7


@pytest.mark.parametrize("threads", [1, 3])
def test_rms_norm_and_its_gradients_are_the_reference(threads):
    x, g, dy = _arrays(2)
    layout = runtime.Threads(threads)
    y, cache = positionwise.rms_norm(x, g, layout)
    want_y, want_cache = reference.rms_norm_forward(x, g)
    np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-12)
    dx = np.ones_like(x)  # the norm adds its gradient into what the stream above left there
    dg = positionwise.rms_norm_backward(g, cache, dy, dx, layout)
    want_dg, want_dx = reference.rms_norm_backward(g, want_cache, dy)
    np.testing.assert_allclose(dg, want_dg, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, 1.0 + want_dx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 3])
def test_gelu_and_its_gradient_are_the_reference(threads):
    a, _, dout = _arrays(3)
    layout = runtime.Threads(threads)
    out, t = positionwise.gelu(a, layout)
    want, cache = reference.gelu_forward(a)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    da = positionwise.gelu_backward(a, t, dout.copy(), layout)
    np.testing.assert_allclose(da, reference.gelu_backward(cache, dout), rtol=1e-12, atol=1e-12)


def test_a_row_does_not_depend_on_how_the_rows_are_cut():
    """Each function works row by row, so one thread and three give the same bits for every
    row; the gain's gradient, a sum over rows, is summed block by block in row order: the same
    bits on every call of one layout, another layout's to rounding."""
    x, g, dy = _arrays(4)
    x, g, dy = x.astype(np.float32), g.astype(np.float32), dy.astype(np.float32)

    def everything(layout):
        y, cache = positionwise.rms_norm(x, g, layout)
        dx = np.zeros_like(x)
        dg = positionwise.rms_norm_backward(g, cache, dy, dx, layout)
        out, t = positionwise.gelu(x, layout)
        da = positionwise.gelu_backward(x, t, dy.copy(), layout)
        return [y, dx, out, da], dg

    rows_one, dg_one = everything(runtime.ONE_THREAD)
    rows_three, dg_three = everything(runtime.Threads(3))
    for one, three in zip(rows_one, rows_three):
        np.testing.assert_array_equal(one, three)
    np.testing.assert_array_equal(everything(runtime.Threads(3))[1], dg_three)
    np.testing.assert_allclose(dg_three, dg_one, rtol=1e-5)


def test_an_all_zero_row_normalises_to_zero():
    x = np.zeros((2, H))
    x[1] = 1.0
    y, _ = positionwise.rms_norm(x, np.full(H, 2.0))
    assert np.all(y[0] == 0.0) and np.all(np.isfinite(y))
    np.testing.assert_allclose(y[1], 2.0 / np.sqrt(1.0 + positionwise.NORM_EPS))
