"""Process-level settings for speed: the threads of a training step, the BLAS thread count, and
the malloc setting. Used by the core's threaded loops and by the CLI; never a place for math.

## Threads

Two threads for a training step: the batch halves stepped through a window side by side, and
the large products cut in two.

The recurrence couples the steps of a window, never two rows of the batch, so the per-step loop
of forward and backward can run on rows [0, N/2) and [N/2, N) at once. NumPy releases the GIL
inside BLAS calls and ufunc loops, so both cores then do the small recurrent products *and* the
elementwise work between them. Leaving the parallelism to OpenBLAS instead (one (N, H) product per
step on two BLAS threads) idles one core through the elementwise work, and its threads meet at a
spin-wait barrier after every block of every product: when another process holds a core, each
barrier can cost a scheduler time slice, and a step becomes several times slower. So while these
threads run, OpenBLAS is held to one thread, and the window-wide products are also cut in two
here, by rows or columns of the result, each half a one-thread product.

Each half computes exactly what it would alone, so results never depend on thread timing. Where
the OpenBLAS thread count cannot be controlled (another BLAS, no shared library found), or on one
CPU, everything runs on the calling thread with the BLAS as configured.

## The heap

Keep freed memory in the process between training steps.

A training step allocates its window-sized arrays afresh (the gate pre-activations alone are
T*N*4H floats, 26 MB for a 256-unit LSTM at batch 64, window 100) and frees them when the step
ends. glibc's malloc serves blocks that large with mmap and gives them back to the kernel on
free, or trims them off the top of the heap, so the next step's arrays start as untouched pages
and every page is faulted in and zeroed again: measured here, about a tenth of an LSTM step.
Raising the mmap threshold to its maximum and the trim threshold well above one step's arrays
lets the next step reuse the same memory. The cost is that the process keeps its peak heap.

This is process-wide, so neither the math core nor the library calls it: the CLI and the
benchmarks do.
"""
import contextvars
import ctypes
import ctypes.util
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
    global _pool
    if len(slices) == 1 or not _enabled:
        for rows in slices:
            fn(rows)
        return
    with _lock:  # one window at a time may hold the BLAS at one thread
        if _pool is None:
            _pool = ThreadPoolExecutor(1, thread_name_prefix="charrnn-half")
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


# the heap

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory():
    """Ask glibc to keep freed blocks for reuse; True if it took the settings, False where there
    is no glibc (musl, macOS, Windows), which changes nothing but speed."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.restype, mallopt.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
