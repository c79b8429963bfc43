"""The benchmark's trace builder makes valid traces: 11 copies hold 11x the source's events.

Counts are taken from the source file with the standard library's JSON decoder; the built
trace goes through our parser. The benchmark itself (timings) is never run here.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SAMPLES
from gpu_trace_analyzer.parsers.kineto import parse

sys.path.insert(0, str(REPO / "bench"))
import build_trace

SOURCE = SAMPLES / "synthetic_train.json.gz"
COPIES = 11


def _raw_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(gzip.decompress(SOURCE.read_bytes()))["traceEvents"]
    return events


def _kernels(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("ph") == "X" and e.get("cat") == "kernel"]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "trace.json"
    return build_trace.build_single(build_trace.load_source(SOURCE), COPIES, out)


def test_copies_hold_eleven_times_the_kernels(single: Path) -> None:
    source_kernels = _kernels(_raw_events())
    tables = parse(single)
    assert tables.kernels.height == COPIES * len(source_kernels)
    built = json.loads(single.read_bytes())["traceEvents"]
    assert len(_kernels(built)) == COPIES * len(source_kernels)


def test_copies_follow_each_other_with_their_own_ids_and_steps(single: Path) -> None:
    events = _raw_events()
    source_steps = sorted(
        {
            int(e["name"].split("#")[1])
            for e in events
            if e.get("cat") == "user_annotation" and e.get("name", "").startswith("ProfilerStep#")
        }
    )
    tables = parse(single)
    steps = tables.steps["step"].to_list()
    first = source_steps[0]
    assert steps == list(range(first, first + COPIES * len(source_steps)))
    correlations = {e["args"]["correlation"] for e in _kernels(events)}
    assert tables.kernels["correlation"].n_unique() == COPIES * len(correlations)
    timed = [e for e in events if e.get("ph") != "M" and isinstance(e.get("ts"), int | float)]
    source_span_us = max(e["ts"] + e.get("dur", 0) for e in timed) - min(e["ts"] for e in timed)
    starts = tables.steps["start_ns"].to_list()
    copy_shift_ns = starts[len(source_steps)] - starts[0]
    assert source_span_us * 1000 <= copy_shift_ns <= (source_span_us + 2) * 1000


def test_rank_files_each_hold_one_copy(tmp_path: Path) -> None:
    paths = build_trace.build_ranks(build_trace.load_source(SOURCE), 3, tmp_path / "ranks")
    assert [p.name for p in paths] == ["rank-0.json", "rank-1.json", "rank-2.json"]
    tables = parse(tmp_path / "ranks")
    assert tables.ranks() == [0, 1, 2]
    assert tables.kernels.height == 3 * len(_kernels(_raw_events()))
    assert {r.world_size for r in tables.meta.ranks} == {3}
