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
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


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


def share_work(
    task: Callable[[T], R], items: Iterable[T], helpers: int, in_flight_per_helper: int = 2
) -> list[R]:
    """``task(item)`` for every item, in order, by this process and ``helpers`` spawned ones.

    Items go to the pool while it has room (``in_flight_per_helper`` each: one running, one
    queued so it never idles) and are run here otherwise: this process would only wait on
    the pool, and one process fewer to start saves a tenth of a second. ``items`` is
    consumed lazily, so a producer (a file read chunk by chunk) is never far ahead.
    Raises `BrokenProcessPool` when a worker could not start.
    """
    slots: list[Future[R] | R] = []
    in_flight: deque[Future[R]] = deque()
    room = helpers * in_flight_per_helper
    with process_pool(helpers) as pool:
        for item in items:
            while in_flight and in_flight[0].done():
                in_flight.popleft()
            if len(in_flight) < room:
                in_flight.append(pool.submit(task, item))
                slots.append(in_flight[-1])
            else:
                slots.append(task(item))
        return [slot.result() if isinstance(slot, Future) else slot for slot in slots]
