"""Process-level settings for speed: the threads of a training step, the BLAS thread count, and
the malloc setting; and the memory the process may still take (available_memory, check_memory).
Used by the core's threaded loops and by the CLI; never a place for math.

## Threads

`use_threads(n)` gives a training step n threads. The recurrence couples the steps of a window,
never two rows of the batch, so the per-step loops of forward and backward run on K = min(n,
N // MIN_ROWS) row blocks of the batch at once: the caller takes the first block and a pool of
K - 1 workers the others. NumPy releases the GIL inside BLAS calls and ufunc loops, so every
core does both the small recurrent products *and* the elementwise work between them. Leaving the
parallelism to the BLAS instead (one (N, H) product per step on n BLAS threads) idles n - 1 cores
through the elementwise work, and the BLAS threads meet at a barrier after every product: when
another process holds a core, each barrier can cost a scheduler time slice. So while the blocks
run, the BLAS is held to one thread. The window-wide products (output layer, weight gradients)
are cut the same way, into n pieces by rows or columns of the result, each piece a one-thread
product, and so is the softmax. Measured here (benchmarks/bench_threads.py products,
bench_train.py --compare-products): on a machine with a core to spare the BLAS's own threads
are as fast or, for some shapes, faster; with both cores taken by other work the cut products
kept an RNN step 1.6x faster than the same step with the products on the BLAS's threads, whose
barriers stall whenever a thread loses its core. PRODUCTS = "blas" switches to the latter.

Each block computes what it would compute alone, so results never depend on thread timing: the
same thread count gives the same bits. Different thread counts agree to rounding, not to the
bit: OpenBLAS computes the rows of a product's last, partial kernel tile (and the columns near
a piece's edge) with other code than the same rows inside a larger product, so where a cut
falls moves the last bit of some rows (tests/test_threads.py). For batches of 32 or more, two
threads cut exactly where earlier versions did, so they give earlier versions' bits.

The BLAS is found and controlled through threadpoolctl, so this works with OpenBLAS, MKL, BLIS
and FlexiBLAS on every platform. Where threadpoolctl finds no BLAS it can control, the blocks
still run on their threads with the BLAS left as it is. The BLAS setting is restored at the end
of every window that held it and when use_threads exits.

Outside any use_threads block the layout is that of earlier versions: 2 threads where the BLAS
can be controlled and the process may use 2 CPUs or more, else everything on the calling
thread; the BLAS keeps its own setting for the products that are not cut.

The pool of workers is kept when use_threads exits (idle workers wait on a queue and cost no
CPU); a later block with more threads replaces it with a larger one.

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
import contextlib
import contextvars
import ctypes
import ctypes.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import blas as blas_mod
from .errors import CharrnnError

# rows per block below which a block's thread costs more than it saves. Measured with
# `benchmarks/bench_threads.py min-rows` (RESULTS.md, 2026-12-01): at H = 256 a second block pays
# from 2-4 rows (1.3-1.6x at 8 rows, RNN and LSTM); at H = 64 only from 32 rows, since what
# decides is a block's product per step against the fixed cost of its ~10 NumPy calls. 8 keeps
# the default sizes' gain with margin and keeps configs/tiny.yaml's batch of 8 in one block.
MIN_ROWS = 8
MIN_FLOPS = 2e6  # flops per piece below which cutting a product does not pay
# how window-wide products use n threads: "cut" into n one-thread pieces, or "blas", one
# product on the BLAS's n threads (benchmarks/bench_threads.py products; RESULTS.md 2026-12-01)
PRODUCTS = "cut"


def available_cpus():
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------- the layout

_default = None
_layout = contextvars.ContextVar("charrnn_threads", default=None)  # use_threads' n
_in_window = contextvars.ContextVar("charrnn_in_window", default=False)


def threads():
    """The thread count of the current layout: use_threads' n, else the default."""
    global _default
    n = _layout.get()
    if n is not None:
        return n
    if _default is None:
        _default = 2 if blas_mod.get().libs and available_cpus() >= 2 else 1
    return _default


@contextlib.contextmanager
def use_threads(n):
    """Run the training steps inside on n threads (see the module docstring); on exit the BLAS
    thread count and the layout are what they were before."""
    if n < 1:
        raise ValueError(f"threads must be at least 1, got {n}")
    blas = blas_mod.get()
    old = blas.hold(n) if blas.libs else None
    token = _layout.set(int(n))
    try:
        yield
    finally:
        _layout.reset(token)
        if old is not None:
            blas.restore(old, n)


def blocks(N):
    """The row slices of a batch of N the per-step loops run on: K = min(threads, N // MIN_ROWS)
    blocks (at least one), as equal as integers allow."""
    K = max(1, min(threads(), N // MIN_ROWS))
    return _cut(N, K)


def _cut(n, k):
    return [slice(i * n // k, (i + 1) * n // k) for i in range(k)]


_pool = None
_pool_size = 0
_pool_lock = threading.Lock()
_window_lock = threading.RLock()


def _workers(k):
    """A pool with at least k workers."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool_size < k:
            old = _pool
            _pool = ThreadPoolExecutor(k, thread_name_prefix="charrnn-block")
            _pool_size = k
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def _in_worker(fn, rows, blas):
    """A block on a worker thread: where the BLAS counts threads per caller, hold it there too."""
    if not blas.per_thread:
        return fn(rows)
    old = blas.hold(1)
    try:
        return fn(rows)
    finally:
        blas.restore(old, 1)


def run(fn, slices):
    """fn(rows) for every slice of rows, the first on the calling thread and the others on the
    pool, the BLAS held at one thread meanwhile; returns when all are done.

    A call from inside another run's window (a threaded product in a block's code) runs its
    slices one after the other on its own thread: the BLAS is already held and the pool busy.
    """
    if len(slices) == 1 or _in_window.get():
        for rows in slices:
            fn(rows)
        return
    blas = blas_mod.get()
    with _window_lock:  # one window at a time holds the BLAS; re-entrant for the same thread
        pool = _workers(len(slices) - 1)
        old = blas.hold(1) if blas.libs else None
        token = _in_window.set(True)
        try:
            # each worker runs in a copy of this context: NumPy's errstate and the window flag
            # hold there too
            others = [pool.submit(contextvars.copy_context().run, _in_worker, fn, rows, blas)
                      for rows in slices[1:]]
            try:
                fn(slices[0])
            finally:
                for other in others:
                    other.result()
        finally:
            _in_window.reset(token)
            if old is not None:
                blas.restore(old, 1)


def matmul(a, b, out=None):
    """a (M, K) @ b (K, P) -> (M, P), written into out when given.

    On n threads the result is cut into up to n pieces, by rows or, when it has more columns
    than rows, by columns, each piece a one-thread product; products under MIN_FLOPS stay whole
    (on two threads this is the cut in two of earlier versions, to the bit).
    """
    M, P = a.shape[0], b.shape[1]
    if out is None:
        out = np.empty((M, P), dtype=np.result_type(a, b))
    pieces = min(threads(), 1 + int(2.0 * M * P * a.shape[1] // MIN_FLOPS), max(M, P))
    if pieces < 2 or min(M, P) < 2 or PRODUCTS == "blas" or _in_window.get():
        return np.matmul(a, b, out=out)
    if M >= P:
        run(lambda rows: np.matmul(a[rows], b, out=out[rows]), _cut(M, pieces))
    else:
        run(lambda cols: np.matmul(a, b[:, cols], out=out[:, cols]), _cut(P, pieces))
    return out


def describe(n, N):
    """One line for the first lines of a training run: the thread layout for batch N on n
    threads, and the BLAS (name, version, kernel) or that none could be controlled."""
    K = max(1, min(n, N // MIN_ROWS))
    layout = f"threads: {n} (batch in {K} block{'s' if K > 1 else ''})"
    return f"{layout}, {blas_mod.describe()}"


# ---------------------------------------------------------------- the heap

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


## Memory

def available_memory():
    """Bytes this process may still allocate, as far as the machine says: the least of the
    kernel's MemAvailable, what the address-space limit (ulimit -v, prlimit --as) leaves above
    the process's present size, and what its cgroup's memory limit leaves; None where none of
    them can be read. The kernel lends more than it has, so an allocation above this figure
    may succeed and be ended later by the out-of-memory killer, with no message: the commands
    that make arrays a text can make arbitrarily large compare their need with it first."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            found.append(limit - _address_space())
    except (ImportError, OSError, ValueError):
        pass
    found += _cgroup_room()
    return max(0, min(found)) if found else None


def _address_space():
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _cgroup_room():
    """[limit - usage] of this process's memory cgroup (v2, or v1's memory controller), or []."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            mount, names = "/sys/fs/cgroup", ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            mount = "/sys/fs/cgroup/memory"
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        # its own folder, or the mount's root where a container shows only its own cgroup
        for folder in (os.path.join(mount, path.lstrip("/")), mount):
            try:
                with open(os.path.join(folder, names[0]), encoding="ascii") as f:
                    limit = f.read().strip()
                with open(os.path.join(folder, names[1]), encoding="ascii") as f:
                    usage = int(f.read())
            except (OSError, ValueError):
                continue
            if limit.isdigit() and int(limit) < 2**60:  # v1 writes "no limit" as a huge number
                return [int(limit) - usage]
            break
    return []


def check_memory(need, what, lower):
    """Raise CharrnnError when `need` bytes are more than available_memory(): one line naming
    what needs them, both figures, and `lower`, what to do to need less."""
    room = available_memory()
    if room is not None and need > room:
        raise CharrnnError(f"{what} needs about {_size(need)} of memory, more than the "
                           f"{_size(room)} available here: {lower}")


def _size(n):
    return f"{n / 2**30:,.1f} GB" if n >= 2**30 else f"{n / 2**20:,.0f} MB"
