"""Process-level settings for speed: the thread layout a training step runs on (Threads, and
the pipelines' hand-offs: Relay, SharedProducts), the BLAS thread count it holds meanwhile, and
glibc's malloc thresholds; and the memory the process may still take (available_memory,
check_memory). Used by the core's threaded loops and by the CLI; never a place for math.
"""
import collections
import contextlib
import contextvars
import ctypes
import ctypes.util
import functools
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
# product on the BLAS's n threads. With a core to spare the two are as fast; with both cores
# busy the BLAS's threads stall at their barriers and cut products kept an RNN step 1.6x faster
# (benchmarks/bench_threads.py products; RESULTS.md 2026-12-01)
PRODUCTS = "cut"


def available_cpus():
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def step_threads(threads, group_size=1):
    """The threads a training step runs on for the config value `threads`: itself when set;
    for `threads: none`, every CPU this process may use when it trains alone, and one when it
    is one process of a group (a launcher starts one process per core)."""
    return threads or (available_cpus() if group_size == 1 else 1)


# ---------------------------------------------------------------- the layout

_in_window = contextvars.ContextVar("charrnn_in_window", default=False)


class Threads:
    """A thread layout: n threads for a training step.

    The recurrence couples the steps of a window, never two rows of the batch, so a per-step
    loop runs on K = min(n, N // MIN_ROWS) row blocks of the batch at once (each_block), and a
    window-wide product is cut into up to n one-thread pieces (matmul): NumPy releases the GIL
    in BLAS calls and ufunc loops, so every thread does both the small products and the
    elementwise work between them, which BLAS threads alone would leave to one core.

    Each block computes what it would compute alone, so the same n gives the same bits whatever
    the timing. Different n agree to rounding only: OpenBLAS computes the rows of a product's
    last, partial kernel tile with other code than the same rows inside a larger product, so
    where a cut falls moves the last bit of some rows (tests/test_thread_bits.py).
    """

    def __init__(self, n):
        if n < 1:
            raise ValueError(f"threads must be at least 1, got {n}")
        self._n = int(n)

    @property
    def n(self):
        return self._n

    def __repr__(self):
        return f"Threads({self.n})"

    def blocks(self, N):
        """The slices of range(N) the per-step loops run on: K = min(n, N // MIN_ROWS) blocks
        (at least one), as equal as integers allow."""
        return _cut(N, max(1, min(self.n, N // MIN_ROWS)))

    def each_block(self, fn, N):
        """fn(rows) for every slice of blocks(N), concurrently; returns when all are done."""
        concurrently(fn, self.blocks(N))

    def matmul(self, a, b, out=None):
        """a (M, K) @ b (K, P) -> (M, P), written into out when given.

        The result is cut into up to n pieces, by rows or, when it has more columns than rows,
        by columns, each piece a one-thread product; products under MIN_FLOPS stay whole, and so
        do all of them with PRODUCTS = "blas" (one product on the BLAS's own threads).
        """
        M, P = a.shape[0], b.shape[1]
        if out is None:
            out = np.empty((M, P), dtype=np.result_type(a, b))
        pieces = min(self.n, 1 + int(2.0 * M * P * a.shape[1] // MIN_FLOPS), max(M, P))
        if pieces < 2 or min(M, P) < 2 or PRODUCTS == "blas" or _in_window.get():
            return np.matmul(a, b, out=out)
        if M >= P:
            concurrently(lambda rows: np.matmul(a[rows], b, out=out[rows]), _cut(M, pieces))
        else:
            concurrently(lambda cols: np.matmul(a, b[:, cols], out=out[:, cols]), _cut(P, pieces))
        return out


# the default layout of every function of the core that takes one: a bare call runs serially
# and gives the same bits on any machine; training passes the layout of its thread count
ONE_THREAD = Threads(1)


@contextlib.contextmanager
def use_threads(n):
    """Hold the BLAS at n threads for the products inside that are not cut, a process-wide
    setting, and yield Threads(n), the layout to pass to the core; on exit the BLAS thread count
    is what it was before."""
    threads = Threads(n)
    blas = blas_mod.get()
    old = blas.hold(threads.n) if blas.libs else None
    try:
        yield threads
    finally:
        if old is not None:
            blas.restore(old, threads.n)


def _cut(n, k):
    return [slice(i * n // k, (i + 1) * n // k) for i in range(k)]


# The pool of workers outlives use_threads (idle workers wait on a queue and cost no CPU); a
# window that needs more workers replaces it with a larger one.
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


def _in_worker(fn, blas):
    """fn() on a worker thread: where the BLAS counts threads per caller, hold it there too."""
    if not blas.per_thread:
        return fn()
    old = blas.hold(1)
    try:
        return fn()
    finally:
        blas.restore(old, 1)


def concurrently(fn, slices):
    """fn(rows) for every slice of rows, concurrently (together); returns when all are done."""
    together(*(functools.partial(fn, rows) for rows in slices))


def together(*fns):
    """fn() for every fn at once, the first on the calling thread and the others on the pool,
    the BLAS held at one thread meanwhile (its threads would meet at a barrier after every
    small product, and a barrier costs a time slice whenever another process holds a core);
    returns when all are done, and raises the first error any raised (not an Aborted one, which
    only says that a partner failed: Relay).

    A call from inside another call's window (a threaded product in a block's code) runs its
    functions one after the other on its own thread: the BLAS is already held and the pool busy.
    """
    if len(fns) == 1 or _in_window.get():
        for fn in fns:
            fn()
        return
    blas = blas_mod.get()
    with _window_lock:  # one window at a time holds the BLAS; re-entrant for the same thread
        pool = _workers(len(fns) - 1)
        old = blas.hold(1) if blas.libs else None
        token = _in_window.set(True)
        try:
            # each worker runs in a copy of this context: NumPy's errstate and the window flag
            # hold there too
            others = [pool.submit(contextvars.copy_context().run, _in_worker, fn, blas)
                      for fn in fns[1:]]
            errors = []
            try:
                fns[0]()
            except BaseException as e:  # the others are waited for first, then it is raised
                errors.append(e)
            for other in others:
                try:
                    other.result()
                except BaseException as e:
                    errors.append(e)
            if errors:
                raise next((e for e in errors if not isinstance(e, Aborted)), errors[0])
        finally:
            _in_window.reset(token)
            if old is not None:
                blas.restore(old, 1)


class Aborted(Exception):
    """Raised on a side of a pipeline whose partner failed; together reports the partner's."""


class Relay:
    """The hand-offs of a pipeline between threads, one per chunk of its work: the producing
    side calls ready(c) when chunk c is done, the consuming side wait(c) before it uses it.
    abort() releases every wait with Aborted, so that a side that fails (or is interrupted)
    never leaves its partner waiting for ever."""

    def __init__(self, chunks):
        self._ready = [threading.Event() for _ in range(chunks)]
        self._aborted = False

    def ready(self, c):
        self._ready[c].set()

    def wait(self, c):
        self._ready[c].wait()
        if self._aborted:
            raise Aborted()

    def abort(self):
        self._aborted = True
        for event in self._ready:
            event.set()


# flops per piece of a SharedProducts product: 2-3 ms on one core, so the threads end within
# about that of each other, while each piece stays a product of hundreds of columns
PIECE_FLOPS = 4e8
PIECE_ALIGN = 64  # columns (or rows) a cut between pieces falls on a multiple of
# pieces of a product cut along its sum at most: each but the first holds a partial result of
# the product's size until the end (3 more dWh, 5 MB, at GRU 384)
MAX_PARTIALS = 4


class SharedProducts:
    """A layout for the window-wide products with which threads end a pass (the cells'
    Backward.result: dWh, dWx), shared between them: each product is cut into pieces of about
    PIECE_FLOPS, along its sum (at most MAX_PARTIALS partial products), its rows or its columns,
    and queued; the thread that asked for it then runs queued pieces, its own or another
    thread's, until its own are done, and finish() runs them until every party has finished. A
    thread that ends its loops first so takes part of the other's products instead of waiting
    for them (wavefront.backward). The cuts depend on the shapes only, so which thread runs a
    piece never changes the bits.

    Anything else a cell asks of its layout (each_block) runs on the calling thread, as inside
    a window. abort() (runtime.pipeline, when a side fails) ends every wait with Aborted.
    """

    n = 1

    def __init__(self, parties):
        self._cond = threading.Condition()
        self._queue = collections.deque()  # (piece, group) in the order they were asked for
        self._parties = parties  # threads that have not finished yet
        self._aborted = False

    def blocks(self, N):
        return [slice(0, N)]

    def each_block(self, fn, N):
        fn(slice(0, N))

    def matmul(self, a, b, out=None):
        """a (M, K) @ b (K, P) -> (M, P), written into out when given, by whichever threads
        are free; returns once every piece is done."""
        (M, K), P = a.shape, b.shape[1]
        if out is None:
            out = np.empty((M, P), dtype=np.result_type(a, b))
        k = max(1, int(2.0 * M * P * K // PIECE_FLOPS))
        partials = []
        if K >= max(M, P):
            # a weight gradient, summed over the window's T*N rows: cut that sum, each piece a
            # partial product added up in order at the end. Cut by columns instead, each piece
            # packs all of a again, and 8 pieces of dWh at 256 x 1,024 took 18% longer than one
            # product; 4 partial sums took as long as it, 8 2-3% longer (RESULTS.md, 2026-12-07)
            cuts = _aligned_cut(K, min(k, MAX_PARTIALS))
            partials = [np.empty_like(out) for _ in cuts[1:]]
            pieces = [functools.partial(np.matmul, a[:, ks], b[ks], out=part)
                      for ks, part in zip(cuts, [out] + partials)]
        elif M >= P:
            pieces = [functools.partial(np.matmul, a[rows], b, out=out[rows])
                      for rows in _aligned_cut(M, k)]
        else:
            pieces = [functools.partial(np.matmul, a, b[:, cols], out=out[:, cols])
                      for cols in _aligned_cut(P, k)]
        group = _Group(len(pieces))
        with self._cond:
            self._queue.extend((piece, group) for piece in pieces)
            self._cond.notify_all()
        self._work(lambda: group.left == 0)
        if group.error is not None:
            raise group.error
        for part in partials:
            out += part
        return out

    def finish(self):
        """This thread has no more products of its own: run others' pieces until every party
        has finished."""
        with self._cond:
            self._parties -= 1
            self._cond.notify_all()
        self._work(lambda: self._parties == 0)

    def abort(self):
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def _work(self, done):
        """Run queued pieces until done() holds (checked under the lock)."""
        while True:
            with self._cond:
                while not done():
                    if self._aborted:
                        raise Aborted()
                    if self._queue:
                        break
                    self._cond.wait()
                else:
                    return
                piece, group = self._queue.popleft()
            try:
                piece()
            except BaseException as e:  # the piece's owner raises it too, once its wait ends
                group.error = group.error or e
                raise
            finally:
                with self._cond:
                    group.left -= 1
                    self._cond.notify_all()


class _Group:
    """The pieces of one SharedProducts product still to run, and the first error of one."""

    def __init__(self, left):
        self.left, self.error = left, None


def _aligned_cut(n, k):
    """range(n) cut into at most k slices whose inner bounds are multiples of PIECE_ALIGN."""
    k = max(1, min(k, n // PIECE_ALIGN))
    bounds = sorted({0, n} | {round(i * n / k / PIECE_ALIGN) * PIECE_ALIGN for i in range(1, k)})
    return [slice(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def pipeline(relays, *sides):
    """Run sides (functions of no arguments) together, each on its own thread, passing chunks
    to each other through relays (Relay, or anything a failure must release: SharedProducts);
    any side that raises aborts every relay first."""
    def guarded(side):
        def run():
            try:
                side()
            except BaseException:
                for relay in relays:
                    relay.abort()
                raise
        return run
    together(*(guarded(side) for side in sides))


def describe(n, N, paired=False):
    """One line for the first lines of a training run: the thread layout for batch N on n
    threads (paired: the model runs its layers two at a time, one per thread, model.layer_groups),
    and the BLAS (name, version, kernel) or that none could be controlled."""
    K = len(Threads(n).blocks(N))
    layout = f"threads: {n} (batch in {K} block{'s' if K > 1 else ''})"
    if paired:
        layout = f"threads: {n} (two layers at a time, one per thread)"
    return f"{layout}, {blas_mod.describe()}"


# ---------------------------------------------------------------- the heap
# A training step allocates its window-sized arrays afresh (the gate pre-activations alone are
# T*N*4H floats, 26 MB for a 256-unit LSTM at batch 64, window 100) and frees them when it ends.
# glibc serves blocks that large with mmap and gives them back on free, or trims them off the
# top of the heap, so the next step's arrays start as untouched pages, each faulted in and
# zeroed again: about a tenth of an LSTM step, measured here. The maximum mmap threshold and a
# trim threshold well above one step's arrays let the next step reuse the same memory, at the
# cost of keeping the peak heap. This is process-wide, so the CLI and the benchmarks call it,
# never the library.

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
