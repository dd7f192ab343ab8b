"""The BLAS, found and controlled through threadpoolctl: its thread count held and put back (at
the cost of a few microseconds, cheap enough per generated character), and its name, version
and kernel for the first line of a run. Works with OpenBLAS, MKL, BLIS and FlexiBLAS; where
threadpoolctl finds none, every hold is a no-op and the line says so. Process-level, never math.
"""
import ctypes
import os
import threading


class Blas:
    """The BLAS libraries threadpoolctl can control, found once (a scan of the loaded libraries
    takes milliseconds); getting and setting their thread counts then costs microseconds."""

    def __init__(self):
        try:
            from threadpoolctl import ThreadpoolController
            self.libs = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # threadpoolctl missing, or a platform it cannot scan
            self.libs = []
        # an OpenBLAS on OpenMP takes its thread count per calling thread, not per process
        self.per_thread = any(getattr(lib, "threading_layer", None) == "openmp"
                              for lib in self.libs)
        self.calls = [_direct(lib) or (lib.get_num_threads, lib.set_num_threads)
                      for lib in self.libs]

    def hold(self, n):
        """Set every BLAS to n threads; returns what restore() needs."""
        old = [get() for get, _ in self.calls]
        for (_, set_), k in zip(self.calls, old):
            if k != n:
                set_(n)
        return old

    def restore(self, old, held):
        """Undo hold(held), given what it returned."""
        for (_, set_), k in zip(self.calls, old):
            if k != held:
                set_(k)

    def describe(self):
        if not self.libs:
            return ("BLAS: no thread control found (threadpoolctl sees none); "
                    "the loops run with the BLAS as it is")
        parts = []
        for lib in self.libs:
            info = lib.info()
            kernel = info.get("architecture") or info.get("threading_layer") or ""
            part = " ".join(str(s) for s in (info["internal_api"], info["version"], kernel) if s)
            parts.append(part + _forced(info["internal_api"]))
        return "BLAS: " + "; ".join(parts)


def _forced(api):
    """', forced by OPENBLAS_CORETYPE=X' for an OpenBLAS when the environment names its kernels,
    else ''. OpenBLAS then runs those instead of the CPU's best: on an AVX-512 CPU, Haswell's
    AVX2 kernels ran a square float32 product at half the speed (126 against 237 GFLOP/s a core
    on an AMD EPYC Zen 5, benchmarks/RESULTS.md 2026-12-07), and a run should say why it is
    slow."""
    forced = os.environ.get("OPENBLAS_CORETYPE") if api == "openblas" else None
    return f", forced by OPENBLAS_CORETYPE={forced}" if forced else ""


def _direct(lib):
    """(get, set) of an OpenBLAS on its own threads (pthreads) as plain ctypes calls into the
    library threadpoolctl found, or None for any other BLAS.

    The controller's own methods check, on every call, which Python thread may set OpenBLAS's
    process-wide count; that nearly doubles the cost of a hold (7.0 against 4.2 us measured here), a
    quarter of a batch-1 generation step, which holds once per character. Every hold here is
    undone before its caller returns, so that bookkeeping has nothing to protect.
    """
    if lib.internal_api != "openblas" or getattr(lib, "threading_layer", None) == "openmp":
        return None
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64"):
            get = getattr(lib.dynlib, f"{prefix}openblas_get_num_threads{suffix}", None)
            set_ = getattr(lib.dynlib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                return get, set_
    return None


_instance = None
_blas_lock = threading.Lock()


def get():
    global _instance
    if _instance is None:
        with _blas_lock:
            if _instance is None:
                _instance = Blas()
    return _instance


class one_blas_thread:
    """Context in which the BLAS uses one thread: for products too small to share (batch-1
    generation), where more BLAS threads only add their barrier, and its stalls on a busy
    machine. Cheap enough to enter once per generated character."""

    def __enter__(self):
        blas = get()
        self.old = blas.hold(1) if blas.libs else None

    def __exit__(self, *exc):
        if self.old is not None:
            get().restore(self.old, 1)


def describe():
    """'BLAS: ' and the BLAS's name, version and kernel, or that none could be controlled."""
    return get().describe()
