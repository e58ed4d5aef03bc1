"""The allocator of a long-running process: with glibc, two heaps however many threads query the database at once
(each heap keeps the most it ever held, so a dozen of them made a server's memory grow under load)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from amends.allocator import heaps_in_use

_THREADS_QUERYING = """
import sqlite3, sys, threading
from amends.allocator import heaps_in_use, limit_arenas

limited = limit_arenas() if sys.argv[1] == "limit" else False

def query():  # SQLite allocates while it sorts, outside Python's lock: the threads meet in malloc
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (a, b)")
    db.executemany("INSERT INTO t VALUES (?, ?)", ((i, str(i) * 20) for i in range(20_000)))
    for _ in range(5):
        db.execute("SELECT a, b FROM t ORDER BY random()").fetchall()

threads = [threading.Thread(target=query) for _ in range(16)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(limited, heaps_in_use())
"""

needs_glibc = pytest.mark.skipif(heaps_in_use() is None, reason="the C library is not glibc: it has no arenas to limit")


def _run(mode: str, **env: str) -> tuple[str, int]:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run([sys.executable, "-c", _THREADS_QUERYING, mode], env=environment, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    limited, heaps = done.stdout.split()
    return limited, int(heaps)


@needs_glibc
def test_threads_that_query_at_once_share_two_heaps_once_limited() -> None:
    assert _run("limit") == ("True", 2)
    _, free = _run("free")
    assert free > 2  # without the limit, glibc gives the threads heaps of their own


@needs_glibc
def test_malloc_arena_max_in_the_environment_wins() -> None:
    limited, heaps = _run("limit", MALLOC_ARENA_MAX="1")
    assert limited == "False"
    assert heaps == 1


@needs_glibc
def test_the_limit_holds_for_the_thread_pools_the_web_app_starts_when_it_comes_first() -> None:
    """Importing the web app starts native libraries' thread pools, each of which may take a heap; `amends serve`
    and `amends worker` therefore limit the heaps before importing anything of it."""
    script = "\n".join(
        ("from amends.allocator import heaps_in_use, limit_arenas", "limit_arenas()", "import amends.web",
         "print(heaps_in_use())")
    )  # fmt: skip
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    assert int(done.stdout) <= 2
