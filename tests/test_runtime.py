"""charrnn.runtime: the thread layout (runtime.Threads, use_threads, concurrently), the
pipelines' hand-offs (together, Relay, SharedProducts), the BLAS
held and restored around it, and the malloc setting charrnn train makes, which takes effect where
glibc is the libc and is a harmless no-op elsewhere."""
import platform
import threading
import time

import numpy as np
import pytest

from charrnn import blas, runtime

N = 64  # a batch of 4 blocks


def test_keep_freed_memory_takes_on_glibc():
    on_glibc = platform.libc_ver()[0] == "glibc"
    assert runtime.keep_freed_memory() is on_glibc
    assert runtime.keep_freed_memory() is on_glibc  # calling it again is fine


def test_use_threads_yields_its_layout_and_the_default_stays_one_thread():
    with runtime.use_threads(3) as threads:
        assert threads.n == 3 and threads.blocks(N) == runtime.Threads(3).blocks(N)
        with runtime.use_threads(1) as inner:
            assert inner.n == 1
        assert runtime.ONE_THREAD.n == 1  # what a bare call of the core runs on, always


def test_blocks_follow_threads_and_min_rows():
    four = runtime.Threads(4)
    assert len(four.blocks(N)) == 4
    assert len(four.blocks(3 * runtime.MIN_ROWS)) == 3
    assert four.blocks(runtime.MIN_ROWS) == [slice(0, runtime.MIN_ROWS)]
    cut = four.blocks(N + 3)
    assert cut[0].start == 0 and cut[-1].stop == N + 3
    assert all(a.stop == b.start for a, b in zip(cut, cut[1:]))
    assert runtime.ONE_THREAD.blocks(N) == [slice(0, N)]
    with pytest.raises(ValueError):
        runtime.Threads(0)
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
        runtime.Threads(2).each_block(lambda rows: seen.append(_blas_threads()), N)
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
    four = runtime.Threads(4)

    def block(rows):
        for i in range(rows.start, rows.stop):
            four.matmul(a, b, out=out[i])  # on the caller's and the workers' blocks alike
        four.each_block(lambda inner: None, N)

    def go():
        with runtime.use_threads(4):
            four.each_block(block, N)
            with runtime.use_threads(2):  # and a nested layout, on the same thread
                runtime.Threads(2).each_block(block, N)
        return out

    np.testing.assert_allclose(_with_timeout(go), np.broadcast_to(a @ b, out.shape),
                               rtol=1e-10, atol=1e-10)


def test_without_blas_control_the_blocks_still_run_on_threads(monkeypatch):
    no_blas = blas.Blas.__new__(blas.Blas)
    no_blas.libs, no_blas.per_thread = [], False
    monkeypatch.setattr(blas, "_instance", no_blas)
    idents = set()
    with runtime.use_threads(2) as threads:
        threads.each_block(lambda rows: idents.add(threading.get_ident()), N)
    assert len(idents) == 2
    assert "no thread control" in runtime.describe(2, N)


def test_describe_names_the_layout():
    line = runtime.describe(2, N)
    assert line.startswith("threads: 2 (batch in 2 blocks), BLAS: ")
    assert runtime.describe(1, N).startswith("threads: 1 (batch in 1 block), ")
    assert runtime.describe(2, N, paired=True).startswith(
        "threads: 2 (two layers at a time, one per thread), BLAS: ")
    assert runtime.available_cpus() >= 1


@pytest.mark.parametrize("coretype", [None, "Haswell"])
def test_describe_says_when_the_environment_forces_openblas_kernels(monkeypatch, coretype):
    """OPENBLAS_CORETYPE can halve OpenBLAS's speed on an AVX-512 CPU: a run's first line says
    it is set, for an OpenBLAS only."""
    fake = blas.Blas.__new__(blas.Blas)
    fake.libs = [type("Lib", (), {"info": lambda self, api=api: {
        "internal_api": api, "version": "1.0", "architecture": "K"}})() for api in
        ("openblas", "mkl")]
    monkeypatch.setattr(blas, "_instance", fake)
    if coretype is None:
        monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_CORETYPE", coretype)
    line = runtime.describe(1, N)
    forced = "" if coretype is None else ", forced by OPENBLAS_CORETYPE=Haswell"
    assert line.endswith(f"BLAS: openblas 1.0 K{forced}; mkl 1.0 K"), line


def test_together_runs_every_function_and_raises_the_first_real_error():
    """All run (the first on the calling thread) even when one fails; the error raised is the
    failing function's, not the Aborted of a partner it left waiting."""
    ran = []
    relay = runtime.Relay(1)

    def fails():
        ran.append("fails")
        raise KeyError("first")

    def waits():
        ran.append("waits")
        relay.wait(0)

    with pytest.raises(KeyError, match="first"):
        runtime.pipeline((relay,), fails, waits)
    assert sorted(ran) == ["fails", "waits"]
    with pytest.raises(KeyError, match="first"):
        runtime.pipeline((relay,), waits, fails)  # the failure on the pool's side this time
    runtime.together(lambda: ran.append(1), lambda: ran.append(2))
    assert ran[-2:] in ([1, 2], [2, 1])


def test_a_relay_hands_over_in_order_and_abort_releases_its_waits():
    relay = runtime.Relay(3)
    got = []

    def consumer():
        for c in range(3):
            relay.wait(c)
            got.append(c)
    t = threading.Thread(target=consumer)
    t.start()
    for c in range(3):
        relay.ready(c)
    t.join(10)
    assert got == [0, 1, 2] and not t.is_alive()
    stuck = runtime.Relay(2)
    _assert_abort_releases(lambda: stuck.wait(1), stuck.abort)


def _assert_abort_releases(wait, abort):
    """wait() on another thread ends with Aborted once abort() is called."""
    errors = []

    def waiter():
        try:
            wait()
        except runtime.Aborted as e:
            errors.append(e)
    t = threading.Thread(target=waiter)
    t.start()
    abort()
    t.join(10)
    assert not t.is_alive() and len(errors) == 1


@pytest.mark.parametrize("shape", [(600, 40, 30), (30, 600, 400), (64, 64, 64)],
                         ids=["rows", "columns", "square"])
@pytest.mark.parametrize("threads", [2, 3])
def test_split_product(shape, threads):
    """A product cut into pieces by rows or columns of the result: the product, the same bits on
    every call, and into out when given. (Not always the one-piece product's bits: OpenBLAS may
    pick another kernel for the smaller pieces.)"""
    M, K, P = shape
    rng = np.random.default_rng(3)
    a = rng.standard_normal((K, M)).astype(np.float32).T  # a transposed view, as dWh's
    b = rng.standard_normal((K, P)).astype(np.float32)
    layout = runtime.Threads(threads)
    first = layout.matmul(a, b)
    out = np.empty((M, P), dtype=np.float32)
    assert layout.matmul(a, b, out=out) is out
    np.testing.assert_allclose(first, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out, first)


# ---- SharedProducts: the products threads end a pass with, in pieces either takes ------------

def _shared_run(products, parties, helper_first=True):
    """Each product (a, b) through one SharedProducts: with parties=2 a second thread waits in
    finish() first and takes pieces while the caller works through its own. Returns the
    results; fails if the helper does not end."""
    shared = runtime.SharedProducts(parties)
    helper = None
    if parties == 2:
        helper = threading.Thread(target=shared.finish)
        helper.start()
    results = [shared.matmul(a, b) for a, b in products]
    shared.finish()
    if helper is not None:
        helper.join(30)
        assert not helper.is_alive(), "the helper was left waiting"
    return results


@pytest.mark.parametrize("shape", [(8, 640, 12), (640, 8, 12), (12, 8, 640), (3, 5, 7)],
                         ids=["sum cut", "rows cut", "columns cut", "whole"])
def test_shared_products_are_the_products_whichever_thread_runs_the_pieces(monkeypatch, shape):
    """Every way a product is cut gives a @ b to rounding, and the same bits on one thread as
    with a second taking some of its pieces: the cuts depend on the shapes only."""
    monkeypatch.setattr(runtime, "PIECE_FLOPS", 2e3)
    monkeypatch.setattr(runtime, "PIECE_ALIGN", 4)
    M, K, P = shape
    rng = np.random.default_rng(0)
    products = [(rng.standard_normal((M, K)), rng.standard_normal((K, P))) for _ in range(3)]
    products.append((products[0][0][:, ::-1].T.T, products[0][1]))  # a strided view
    alone = _shared_run(products, 1)
    for (a, b), got in zip(products, alone):
        np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12)
    for _ in range(5):  # the helper takes a different share each time
        together = _shared_run(products, 2)
        assert all(np.array_equal(x, y) for x, y in zip(alone, together))


def test_a_failing_piece_fails_its_owner_and_ends_every_wait(monkeypatch):
    """A piece that raises on the helper's thread: the helper's side fails with it, the owner's
    ends (with the same error, or Aborted once the pipeline aborts), and nothing is left
    waiting; the pipeline raises the piece's error."""
    monkeypatch.setattr(runtime, "PIECE_FLOPS", 2e3)
    monkeypatch.setattr(runtime, "PIECE_ALIGN", 4)
    real = np.matmul

    def matmul(*args, **kwargs):
        if threading.current_thread().name.startswith("charrnn-block"):  # the pool's side
            raise KeyError("a piece")
        time.sleep(0.002)  # the owner's pieces are slow enough for the helper to take some
        return real(*args, **kwargs)
    monkeypatch.setattr(runtime.np, "matmul", matmul)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((640, 8)), rng.standard_normal((8, 8))  # 40 pieces of rows
    shared = runtime.SharedProducts(2)
    helper_started = threading.Event()

    def owner():
        helper_started.wait(10)
        time.sleep(0.05)  # the helper is waiting for pieces before they are queued
        for _ in range(3):
            shared.matmul(a, b)
        shared.finish()

    def helper():
        helper_started.set()
        shared.finish()
    done = {}

    def run():
        try:
            runtime.pipeline((shared,), owner, helper)
        except BaseException as e:  # noqa: B036 -- what the pipeline raised is what is checked
            done["error"] = e
    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert not t.is_alive(), "a side was left waiting"
    assert isinstance(done.get("error"), KeyError), done


def test_abort_ends_a_finish_that_waits_for_a_partner():
    shared = runtime.SharedProducts(2)
    _assert_abort_releases(shared.finish, shared.abort)
