"""Two threads for a training step.

A step's time goes to 2T small recurrent products, the elementwise work between them, and a
few window-wide products (weight gradients, the output layer, the next layer's input). Left to
OpenBLAS (two BLAS threads per product) one core idles through all the elementwise work, and the
two BLAS threads meet at a spin-wait barrier after every block of every product: when another
process holds a core, each barrier can cost a scheduler time slice, and a step becomes several
times slower. So OpenBLAS is held to one thread while a step runs, and charrnn keeps the second
core busy itself, two ways:

- helper(): the time loop runs on the calling thread over the whole batch while a helper thread
  does, a few steps behind it (or ahead of it), the work that needs only finished steps: the
  output layer and its gradients, the next layer's input projection, the weight gradients, the
  LSTM's gate factors. Pieces are CHUNK steps; the helper does them in the order handed.
- run() over halves(N): the per-step loop on rows [0, N/2) and [N/2, N) side by side (the
  recurrence couples steps, never batch rows); matmul() cuts one product in two. The GRU uses
  these.

NumPy releases the GIL inside BLAS calls and ufunc loops, so both threads compute at once. Each
piece of work computes the same thing whatever the thread timing, and sums are taken in a fixed
order, so results are the same bits on every run. Where the OpenBLAS thread count cannot be
controlled (another BLAS, no shared library found), or on one CPU, everything runs on the
calling thread with the BLAS as configured.
"""
import contextlib
import contextvars
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MIN_ROWS = 16  # rows per half below which a thread hand-off costs more than it saves
MIN_FLOPS = 2e6  # and the size of product below which it does

# (getter, setter) symbol names of the thread count, for the OpenBLAS builds NumPy ships with
_SYMBOLS = [("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
            ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
            ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
            ("openblas_get_num_threads", "openblas_set_num_threads")]


def _find_openblas():
    """(get, set) of the thread count of the OpenBLAS loaded into this process, or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return None
    # NumPy's own copy first, should another library have brought a second one
    for path in sorted(paths, key=lambda path: "numpy" not in path):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _SYMBOLS:
            get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is not None and set_ is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                return get, set_
    return None


def _cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_blas = _find_openblas()
_enabled = _blas is not None and _cpus() >= 2
_pool = None
_lock = threading.Lock()
_worker = None  # ident of the pool's thread
_depth = 0  # helper() contexts open on the calling thread
CHUNK = 10  # time steps per piece of work handed to the helper thread


def _mark_worker():
    global _worker
    _worker = threading.get_ident()


def _get_pool():
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(1, thread_name_prefix="charrnn-helper", initializer=_mark_worker)
    return _pool


def _on_worker():
    return threading.get_ident() == _worker


def set_enabled(flag):
    """Turn the two-thread paths on or off (off where they cannot run); returns the old value."""
    global _enabled
    old = _enabled
    _enabled = bool(flag) and _blas is not None and _cpus() >= 2
    return old


def halves(N):
    """The row slices the per-step loop runs on: two halves of N when the two-thread path is on
    and N is large enough, else all of N in one."""
    if not _enabled or N < 2 * MIN_ROWS:
        return [slice(0, N)]
    return _two(N)


def run(fn, slices):
    """fn(rows) for every slice of rows, on two threads when enabled; returns when all are done."""
    if len(slices) == 1 or not _enabled or _on_worker():
        for rows in slices:
            fn(rows)
        return
    with _lock:  # one window at a time may hold the BLAS at one thread
        _get_pool()
        get, set_ = _blas
        threads = get()
        set_(1)
        try:
            # the worker runs in a copy of the caller's context, so NumPy's errstate holds there too
            other = _pool.submit(contextvars.copy_context().run, fn, slices[1])
            try:
                fn(slices[0])
            finally:
                other.result()
        finally:
            set_(threads)


class one_blas_thread:
    """Context in which OpenBLAS uses one thread: for products too small to share (batch-1
    generation), where two BLAS threads only add their barrier, and its stalls on a busy machine."""

    def __enter__(self):
        if _blas is not None:
            self.threads = _blas[0]()
            _blas[1](1)

    def __exit__(self, *exc):
        if _blas is not None:
            _blas[1](self.threads)


def _two(n):
    return [slice(0, n // 2), slice(n // 2, n)]


def matmul(a, b, out=None):
    """a (M, K) @ b (K, P) -> (M, P), written into out when given.

    With the two-thread path on, each thread computes half the rows of the result or, when it
    has more columns than rows, half the columns, as a one-thread product.
    """
    M, P = a.shape[0], b.shape[1]
    if out is None:
        out = np.empty((M, P), dtype=np.result_type(a, b))
    if not _enabled or 2.0 * M * P * a.shape[1] < MIN_FLOPS or min(M, P) < 2:
        return np.matmul(a, b, out=out)
    if M >= P:
        run(lambda rows: np.matmul(a[rows], b, out=out[rows]), _two(M))
    else:
        run(lambda cols: np.matmul(a, b[:, cols], out=out[:, cols]), _two(P))
    return out


class Helper:
    """Work handed to the helper thread, done in the order handed while the caller goes on."""

    def __init__(self, threaded):
        self.threaded = threaded
        self.futures = []

    def submit(self, fn, *args):
        """fn(*args) on the helper thread (at once, here, when not threaded); returns a handle
        for wait()."""
        if not self.threaded:
            fn(*args)
            return None
        future = _get_pool().submit(contextvars.copy_context().run, fn, *args)
        self.futures.append(future)
        return future

    @staticmethod
    def wait(handle):
        if handle is not None:
            handle.result()

    def wait_all(self):
        futures, self.futures = self.futures, []
        for future in futures:
            future.result()


@contextlib.contextmanager
def helper():
    """A Helper for the duration of a window's time loop; on exit, waits for all it was handed.
    Inside, OpenBLAS runs at one thread: both threads call it."""
    global _depth
    h = Helper(_enabled and not _on_worker())
    if not h.threaded:
        yield h
        return
    if _depth == 0:
        saved = _blas[0]()
        _blas[1](1)
    _depth += 1
    try:
        yield h
    finally:
        try:
            h.wait_all()
        finally:
            _depth -= 1
            if _depth == 0:
                _blas[1](saved)


def chunks(T, descending=False):
    """(t0, t1) pieces of CHUNK steps covering range(T), in time order or reversed."""
    pieces = [(t0, min(t0 + CHUNK, T)) for t0 in range(0, T, CHUNK)]
    return pieces[::-1] if descending else pieces
