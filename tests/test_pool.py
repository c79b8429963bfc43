"""`parsers.pool`: work shared between this process and spawned workers, in order."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from gpu_trace_analyzer.parsers.pool import process_pool, share_items, share_work


def _tagged(item: int) -> tuple[int, int]:
    """The item squared and the process that computed it (slow enough to share)."""
    time.sleep(0.05)
    return item * item, os.getpid()


def test_share_work_keeps_order_and_uses_both_processes() -> None:
    results = share_work(_tagged, iter(range(12)), helpers=1)
    assert [value for value, _ in results] == [i * i for i in range(12)]
    pids = {pid for _, pid in results}
    assert os.getpid() in pids and len(pids) == 2  # this process took its share too


def test_share_work_with_no_items_gives_an_empty_list() -> None:
    assert share_work(_tagged, [], helpers=1) == []
    assert share_items(_tagged, [], helpers=1) == []


@pytest.mark.parametrize("batch", [1, 4])
def test_share_items_runs_each_item_once_in_order_on_both_processes(batch: int) -> None:
    results = share_items(_tagged, list(range(20)), helpers=1, batch=batch)
    assert [value for value, _ in results] == [i * i for i in range(20)]
    pids = [pid for _, pid in results]
    assert os.getpid() in pids and len(set(pids)) == 2


class _WritesAtTeardown:
    """Writes its file when freed: at a worker's teardown, if the worker has one."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __del__(self, _open: Any = open) -> None:  # builtins may be gone by then
        with _open(self.path, "w") as handle:
            handle.write("torn down")


_KEPT: list[_WritesAtTeardown] = []


def _keep_until_exit(path: str) -> int:
    _KEPT.append(_WritesAtTeardown(path))
    return os.getpid()


def test_pool_workers_leave_without_teardown(tmp_path: Path) -> None:
    """Objects a worker still holds when the pool shuts down are never freed one by one
    (a spawned worker would otherwise free everything before exiting)."""
    marker = tmp_path / "marker"
    with process_pool(1) as pool:
        assert pool.submit(_keep_until_exit, str(marker)).result() != os.getpid()
    assert not marker.exists()
