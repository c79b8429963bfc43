"""Process pools for parsing, whose workers start clean and stop at once.

Workers are spawned, not forked: polars is not fork-safe. A spawned worker ends with
``sys.exit``, which frees every module and object one by one; for a worker that has just
built a large trace's frames that is a few tenths of a second, which `shutdown` would wait
for. The workers here skip that teardown (their results have already been sent).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that exit without teardown."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_without_teardown,
    )


def _exit_without_teardown() -> None:
    """Worker initializer: at exit, leave at once (exit handlers run first, last in)."""
    atexit.register(os._exit, 0)
