"""Keep freed memory in the process between training steps.

A training step allocates its window-sized arrays afresh (the gate pre-activations alone are
T*N*4H floats, 26 MB for a 256-unit LSTM at batch 64, window 100) and frees them when the step
ends. glibc's malloc serves blocks that large with mmap and gives them back to the kernel on
free, or trims them off the top of the heap, so the next step's arrays start as untouched pages
and every page is faulted in and zeroed again: measured here, about a tenth of an LSTM step.
Raising the mmap threshold to its maximum and the trim threshold well above one step's arrays
lets the next step reuse the same memory. The cost is that the process keeps its peak heap.

This is process-wide, so the math core never calls it: the trainer and the benchmarks do.
"""
import ctypes
import ctypes.util

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
