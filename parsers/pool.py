"""Process pools for parsing, and work shared between this process and the pool.

Workers are spawned, not forked: polars is not fork-safe. A spawned worker ends with
``sys.exit``, which frees every module and object one by one; for a worker that has just
built a large trace's frames that is a few tenths of a second, which `shutdown` would wait
for. The workers here skip that teardown (their results have already been sent).

This process works too instead of waiting on the pool (with 2 CPUs: one spawned worker,
not two and an idle parent). Handing work to the pool goes through threads of this
process, which get the interpreter lock only between this process's own steps (a msgspec
decode of a chunk holds it for tens of milliseconds); a worker fed one item at a time sat
idle for a third of the time. So when the items are known up front (`share_items`), every
process claims the next item from a shared counter, and a worker's task runs several
items before it returns; only items produced on the fly (a gzip file's chunks) are handed
over one by one (`share_work`).

Ctrl-C: a terminal sends SIGINT to every process of the group. Workers ignore it; this
process gets the `KeyboardInterrupt`, cancels what is queued, terminates the workers (no
worker prints a traceback, none runs on) and removes its spool folder, then lets the
interrupt through (the CLI exits 130).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import pickle
import signal
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing.sharedctypes import Synchronized
from typing import Any, Final, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_SPAWN: Final = multiprocessing.get_context("spawn")
#: The index of the next item to claim, shared by this process and its workers (set in a
#: worker when it starts).
_next_item: Synchronized[int] | None = None


def process_pool(workers: int, counter: Synchronized[int] | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that exit without teardown and share
    ``counter`` (`share_items`).

    All workers are started here, with SIGINT blocked: a spawned interpreter inherits the
    blocked signal, so a Ctrl-C while it is still importing cannot kill it mid-start (with
    a "Fatal Python error" on stderr); its initializer then ignores SIGINT for good. Here,
    an interrupt that came meanwhile is delivered once the signal is unblocked.
    """
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_SPAWN,
        initializer=_start_worker,
        initargs=(counter,),
    )
    try:
        with _sigint_deferred():
            for _ in range(workers):  # each submit to a pool without idle workers spawns one
                pool.submit(_ready)
    except BaseException:
        halt(pool)
        raise
    return pool


def _ready() -> None:
    """No-op task: makes the pool start its workers at once."""


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """SIGINT blocked in this thread (and so in processes it spawns) for the block."""
    blockable = hasattr(signal, "pthread_sigmask") and (
        threading.current_thread() is threading.main_thread()
    )
    if not blockable:
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _start_worker(counter: Synchronized[int] | None) -> None:
    """Worker initializer: keep the shared counter; at exit, leave at once (exit handlers
    run last in, first out, so this one runs first)."""
    global _next_item
    _next_item = counter
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    atexit.register(os._exit, 0)


def halt(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now (on Ctrl-C or an error): queued work cancelled, workers terminated."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)
    pool.shutdown(wait=True)  # the pool's thread and queues end now: nothing leaks at exit


def share_items(
    task: Callable[[T], R], items: Sequence[T], helpers: int, batch: int = 4
) -> list[R]:
    """``task(item)`` for every item, in order, by this process and ``helpers`` spawned
    ones, each claiming the next unclaimed item.

    A worker's task claims up to ``batch`` items before it returns, and two such tasks per
    worker are queued, so a worker never waits for this process to hand it more. Workers
    leave their results in files (pickled) and return only their indices: a large result
    sent through the pool's pipe would block the worker until this process, busy with its
    own items, read it. Raises `BrokenProcessPool` when a worker could not start.
    """
    counter = _SPAWN.Value("q", 0)
    done: dict[int, R] = {}
    with (
        tempfile.TemporaryDirectory(prefix="analyze-parse-") as spool,
        process_pool(helpers, counter) as pool,
    ):

        def submit() -> Future[list[int]]:
            return pool.submit(_claim_and_run, task, items, batch, spool)

        try:
            queued = deque(submit() for _ in range(2 * helpers))
            while (index := _claim(counter, len(items))) is not None:
                done[index] = task(items[index])
                while queued and queued[0].done():  # read back meanwhile, not at the end
                    done.update((i, _unspool(spool, i)) for i in queued.popleft().result())
                    queued.append(submit())
            for future in queued:
                done.update((i, _unspool(spool, i)) for i in future.result())
        except BaseException:
            halt(pool)
            raise
    return [done[index] for index in range(len(items))]


def _claim(counter: Synchronized[int], count: int) -> int | None:
    """The next unclaimed item's index, or None when all are claimed."""
    with counter.get_lock():
        index = counter.value
        if index >= count:
            return None
        counter.value = index + 1
    return index


def _claim_and_run(task: Callable[[T], R], items: Sequence[T], batch: int, spool: str) -> list[int]:
    """Worker task: run up to ``batch`` unclaimed items, each result pickled into
    ``spool``; the indices of the items run."""
    if _next_item is None:
        raise RuntimeError("worker started without the shared item counter")
    ran: list[int] = []
    while len(ran) < batch and (index := _claim(_next_item, len(items))) is not None:
        result = task(items[index])
        with open(os.path.join(spool, f"{index}.pickle"), "wb") as handle:
            pickle.dump(result, handle, protocol=pickle.HIGHEST_PROTOCOL)
        ran.append(index)
    return ran


def _unspool(spool: str, index: int) -> Any:
    """A worker's result, read back (and its file removed at once: memory, not disk)."""
    path = os.path.join(spool, f"{index}.pickle")
    with open(path, "rb") as handle:
        result = pickle.load(handle)
    os.remove(path)
    return result


def share_work(
    task: Callable[[T], R], items: Iterable[T], helpers: int, in_flight_per_helper: int = 2
) -> list[R]:
    """``task(item)`` for every item, in order, by this process and ``helpers`` spawned
    ones, for items produced on the fly.

    Items go to the pool while it has room (``in_flight_per_helper`` each: one running,
    one queued) and are run here otherwise. ``items`` is consumed lazily, so a producer (a
    file read chunk by chunk) is never far ahead. Raises `BrokenProcessPool` when a worker
    could not start.
    """
    slots: list[Future[R] | R] = []
    in_flight: deque[Future[R]] = deque()
    room = helpers * in_flight_per_helper
    with process_pool(helpers) as pool:
        try:
            for item in items:
                while in_flight and in_flight[0].done():
                    in_flight.popleft()
                if len(in_flight) < room:
                    in_flight.append(pool.submit(task, item))
                    slots.append(in_flight[-1])
                else:
                    slots.append(task(item))
            return [slot.result() if isinstance(slot, Future) else slot for slot in slots]
        except BaseException:
            halt(pool)
            raise
