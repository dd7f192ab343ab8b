"""charrnn.runtime: the malloc setting charrnn train makes takes effect where glibc is the libc, and
is a harmless no-op elsewhere."""
import platform

from charrnn import runtime


def test_keep_freed_memory_takes_on_glibc():
    on_glibc = platform.libc_ver()[0] == "glibc"
    assert runtime.keep_freed_memory() is on_glibc
    assert runtime.keep_freed_memory() is on_glibc  # calling it again is fine
