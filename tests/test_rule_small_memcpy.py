"""small-memcpy: many small copies, each paying a fixed cost.

Ground truth: the synthetic ``small_memcpy`` scenario (the builder's own lists of copies and
runtime calls) and SQL counts straight from the Nsight Systems SQLite files.
"""

from __future__ import annotations

import sqlite3
import statistics
from pathlib import Path
from typing import Any

import pytest
import synthetic
from conftest import shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers import kineto, nsys
from gpu_trace_analyzer.parsers.schema import TraceTables
from gpu_trace_analyzer.rules.small_memcpy import SmallMemcpy, SmallMemcpyConfig

SMALL = 65_536


def _check(tables: TraceTables, **overrides: Any) -> list[Finding]:
    return list(SmallMemcpy().check(AnalysisContext(tables), SmallMemcpyConfig(**overrides)))


def test_fires_on_synthetic_small_copies(tmp_path: Path) -> None:
    builder = synthetic.small_memcpy(copies_per_step=100, nbytes=64)
    tables = kineto.parse(builder.write(tmp_path / "small.json.gz"))
    (finding,) = _check(tables)
    # From the builder's records: every memcpy of at most 64 KiB, and per copy the larger
    # of its GPU time and its cudaMemcpyAsync's time (matched on the correlation id).
    calls = {c.correlation: c.end_ns - c.start_ns for c in builder.runtime}
    small = [a for a in builder.gpu if a.kind == "memcpy" and a.nbytes <= SMALL]
    costs = [max(a.dur_ns, calls.get(a.correlation, 0)) for a in small]
    ev = finding.evidence
    assert len(small) == 505  # 100 x 64 B uploads + one 4 B loss.item() download, per step
    assert ev["small_copies"] == len(small)
    assert ev["copies_per_step"] == 101.0
    assert ev["median_copy_bytes"] == statistics.median(a.nbytes for a in small) == 64
    assert ev["bytes"] == sum(a.nbytes for a in small)
    assert ev["median_copy_cost_ns"] == statistics.median(costs) == 6_000  # the 6 us call
    assert ev["cost_ns"] == len(small) * 6_000
    window = builder.truth()["steps_window_extended"]["span_ns"]
    assert ev["cost_pct"] == pytest.approx(100.0 * len(small) * 6_000 / window, abs=0.001)
    assert finding.severity is Severity.WARNING  # over 2% of the window
    assert finding.table is not None
    assert finding.table.rows[0][:4] == ["HtoD", "aten::copy_", "aten::to", 500]
    assert "Batch the copies" in finding.recommendation


def test_few_copies_per_step_do_not_fire(tmp_path: Path) -> None:
    builder = synthetic.small_memcpy(copies_per_step=10, nbytes=64)
    tables = kineto.parse(builder.write(tmp_path / "few.json.gz"))
    assert _check(tables) == []  # 11 small copies per step, under 20
    assert len(_check(tables, min_copies_per_step=10.0)) == 1


def _sql_small_copies(path: Path) -> dict[int, int]:
    """Memcpy rows of at most 64 KiB per process, straight from the export."""
    query = (
        "SELECT (globalPid >> 24) & 16777215, count(*) FROM CUPTI_ACTIVITY_KIND_MEMCPY "
        "WHERE bytes <= ? GROUP BY 1"
    )
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {int(pid): int(n) for pid, n in db.execute(query, (SMALL,))}


def test_real_nsys_capture_with_many_small_copies() -> None:
    path = shared_trace("nsys/mfu_2gpu_before.sqlite")
    counts = _sql_small_copies(path)
    (finding,) = _check(nsys.parse(path))
    assert finding.evidence["small_copies"] == max(counts.values()) == 306
    assert finding.evidence["ranks_with_small_copies"] == len(counts) == 2
    assert finding.severity is Severity.INFO  # about 0.6% of the capture


def test_cheap_small_copies_are_not_reported() -> None:
    """h100_2gpu_1s: 172 small copies per process, but at a few microseconds each they
    cost well under 0.5% of the 0.97 s capture."""
    path = shared_trace("nsys/h100_2gpu_1s.sqlite")
    assert set(_sql_small_copies(path).values()) == {172}
    tables = nsys.parse(path)
    assert _check(tables) == []
    (info,) = _check(tables, info_time_pct=0.0)
    assert info.evidence["small_copies"] == 172
    assert float(info.evidence["cost_pct"]) < 0.5
