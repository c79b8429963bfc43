"""pageable-memcpy: copies touching pageable host memory.

Ground truth: the synthetic ``pageable_memcpy`` scenario, Nsight Systems' own
``cuda-async-memcpy`` rule output for the nsys captures, and the raw JSON of the tb_plugin
ResNet-50 trace (its input batches are copied from pageable memory: pin_memory was off).
"""

from __future__ import annotations

import csv
import gzip
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest
import synthetic
from conftest import REFERENCE, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers import kineto, nsys
from gpu_trace_analyzer.parsers.schema import TraceTables
from gpu_trace_analyzer.rules.pageable_memcpy import (
    PageableMemcpy,
    PageableMemcpyConfig,
    pageable_copies,
)

PAGEABLE_HTOD = "Memcpy HtoD (Pageable -> Device)"
WORKERS_0 = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"


def _check(tables: TraceTables, **overrides: Any) -> list[Finding]:
    return list(PageableMemcpy().check(AnalysisContext(tables), PageableMemcpyConfig(**overrides)))


def test_fires_on_synthetic_pageable_batches(tmp_path: Path) -> None:
    builder = synthetic.pageable_memcpy(pageable=True)
    tables = kineto.parse(builder.write(tmp_path / "pageable.json.gz"))
    (finding,) = _check(tables)
    truth = builder.truth()
    row = truth["memcpy"]["by_name"][PAGEABLE_HTOD]
    ev = finding.evidence
    assert ev["copies"] == row["count"] == 5
    assert ev["bytes"] == row["bytes"] == 5 * 4096 * 1024 * 2  # [4096, 1024] bf16 per step
    assert ev["gpu_copy_ns"] == row["dur_ns"]
    assert ev["median_copy_bytes"] == 4096 * 1024 * 2
    # The CPU-blocked time: the cudaMemcpyAsync calls of the pageable copies (they block).
    pageable = {a.correlation for a in builder.gpu if a.name == PAGEABLE_HTOD}
    blocked = sum(c.end_ns - c.start_ns for c in builder.runtime if c.correlation in pageable)
    assert ev["cpu_blocked_ns"] == blocked
    window = builder.truth()["steps_window_extended"]["span_ns"]
    pct = 100.0 * blocked / window
    assert ev["cpu_blocked_pct"] == pytest.approx(pct, abs=0.001)
    expected = Severity.CRITICAL if pct >= 25 else Severity.WARNING if pct >= 5 else Severity.INFO
    assert finding.severity is expected
    assert finding.impact_ns == blocked
    assert "idle_claimed_ns" not in ev  # host-sync claims the idle inside these calls
    assert finding.table is not None
    assert finding.table.rows[0][:5] == ["HtoD", "pageable -> device", "aten::copy_", "aten::to", 5]
    assert "pin_memory=True" in finding.recommendation


def test_does_not_fire_on_pinned_batches(tmp_path: Path) -> None:
    builder = synthetic.pageable_memcpy(pageable=False)
    tables = kineto.parse(builder.write(tmp_path / "pinned.json.gz"))
    assert PAGEABLE_HTOD not in builder.truth()["memcpy"]["by_name"]
    assert _check(tables) == []


def test_real_resnet_input_copies() -> None:
    path = shared_trace(WORKERS_0)
    with gzip.open(path, "rb") as f:
        events = msgspec.json.decode(f.read())["traceEvents"]
    raw = [e for e in events if e.get("cat") == "Memcpy" and "Pageable" in e["name"]]
    (finding,) = _check(kineto.parse(path))
    ev = finding.evidence
    assert ev["copies"] == len(raw) == 12
    assert ev["bytes"] == sum(e["args"]["bytes"] for e in raw)
    assert ev["gpu_copy_ns"] == sum(e["dur"] for e in raw) * 1000
    ids = {e["args"]["correlation"] for e in raw}
    calls = [e for e in events if e.get("cat") == "Runtime" and e["args"].get("correlation") in ids]
    assert ev["cpu_blocked_ns"] == sum(e["dur"] for e in calls) * 1000
    # 12 calls blocking about 12 ms of a 1,066 ms window: about 1%, under the 5% warning.
    assert finding.severity is Severity.INFO
    assert "DataLoader(..., pin_memory=True)" in finding.recommendation


def _session_start_ns(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (start,) = db.execute("SELECT utcEpochNs FROM TARGET_INFO_SESSION_START_TIME").fetchone()
    return int(start)


@pytest.mark.parametrize("name", ["h100_2gpu_1s", "mock"])
def test_agrees_with_nsight_cuda_async_memcpy(name: str) -> None:
    reference_path = REFERENCE / "nsys" / f"{name}_cuda-async-memcpy.csv"
    if not reference_path.exists():
        pytest.skip(f"{reference_path} is absent")
    with reference_path.open() as f:
        reference = sorted(
            (
                int(r["Device ID"]),
                int(r["Stream ID"]),
                int(r["Start (ns)"]),
                int(r["Duration (ns)"]),
                r["Src Kind"].lower(),
                r["Dst Kind"].lower(),
            )
            for r in csv.DictReader(f)
        )
    path = shared_trace(f"nsys/{name}.sqlite")
    origin = _session_start_ns(path)
    copies = pageable_copies(AnalysisContext(nsys.parse(path)))
    ours = sorted(
        (r["device"], r["stream"], r["start_ns"] - origin, r["dur_ns"], r["src_mem"], r["dst_mem"])
        for r in copies.iter_rows(named=True)
    )
    assert ours == reference
    findings = _check(nsys.parse(path))
    assert len(findings) == (1 if reference else 0)
    if findings:  # 1 KB scalar-sized uploads: reported, as Nsight does, at info level
        assert findings[0].severity is Severity.INFO
        assert "tiny" in findings[0].recommendation
