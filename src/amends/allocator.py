"""The C allocator of a long-running process (`amends serve`, `amends worker`), kept from growing with its threads.

glibc's malloc gives each thread that finds the allocator busy a heap (an arena) of its own, up to eight per core,
and a heap keeps the most it has ever held. A server reads the database from a pool of threads, and SQLite's page
cache and sorters allocate in whichever thread runs the query, so each of a dozen heaps grew to its own high-water
mark of 30-40 MiB, and the server's memory kept rising under load. With two heaps it levels off, and the load test
ran no slower (docs/benchmarks.md#load).

`MALLOC_ARENA_MAX` in the environment is glibc's own way to say the same and wins. On another C library (musl,
macOS) there is nothing to do.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from pathlib import Path

__all__ = ["SERVER_ARENAS", "heaps_in_use", "limit_arenas"]

SERVER_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter (glibc's malloc.h)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_info") else None


def limit_arenas(arenas: int = SERVER_ARENAS) -> bool:
    """Keep malloc to `arenas` heaps from now on; call it before the process starts its threads. False when nothing
    was changed: `MALLOC_ARENA_MAX` is set, or the C library is not glibc."""
    libc = _glibc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def heaps_in_use() -> int | None:
    """How many heaps malloc has made so far (from glibc's `malloc_info`); None on another C library."""
    libc = _glibc()
    if libc is None:
        return None
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "malloc.xml"
        stream = libc.fopen(str(path).encode(), b"w")
        if not stream:
            return None
        try:
            libc.malloc_info(0, stream)
        finally:
            libc.fclose(stream)
        return len(re.findall(r'<heap nr="\d+">', path.read_text()))
