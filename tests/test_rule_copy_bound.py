"""copy-bound: memory copies take most of the GPU's busy time (review #2).

Ground truth: the Nsight export's own CUPTI_ACTIVITY_KIND_MEMCPY rows, read here with sqlite3
(bytes and end - start per device and copy kind), and the review's figures (25.48 GB HtoD in
920.9 ms per GPU, 27.7 GB/s, issued under FSDP::pre_forward ranges).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.metrics.workload import workload_profile
from gpu_trace_analyzer.rules.copy_bound import CopyBound, CopyBoundConfig
from gpu_trace_analyzer.trace import load

_NSYS = "nsys/h100_2gpu_1s.sqlite"


def _run(path: Path, **overrides: Any) -> list[Finding]:
    ctx = AnalysisContext(load([path]))
    return list(CopyBound().check(ctx, CopyBoundConfig(**overrides)))


def _memcpy_totals(path: Path, device: int, kind: int) -> tuple[int, int, int]:
    """(copies, bytes, summed ns) of one device's copies of one CUPTI copy kind."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        row = db.execute(
            "select count(*), sum(bytes), sum(end - start) from CUPTI_ACTIVITY_KIND_MEMCPY "
            "where deviceId = ? and copyKind = ?",
            (device, kind),
        ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def test_fires_critical_on_fsdp_offload_copies() -> None:
    path = shared_trace(_NSYS)
    (finding,) = _run(path)
    ev = finding.evidence
    assert finding.severity is Severity.CRITICAL
    assert ev["rank"] == 0 and ev["device"] == 0
    assert ev["top_direction"] == "HtoD"
    copies, n_bytes, dur_ns = _memcpy_totals(path, 0, 1)  # 1 = CUDA_MEMCPY_KIND_HTOD
    assert ev["HtoD_bytes"] == n_bytes == 25_475_253_792
    assert ev["HtoD_gpu_ns"] == dur_ns
    assert ev["HtoD_gbps"] == pytest.approx(n_bytes / dur_ns, abs=0.01)
    assert ev["HtoD_gbps"] == pytest.approx(27.7, abs=0.05)
    _, dtod_bytes, _ = _memcpy_totals(path, 0, 8)  # 8 = CUDA_MEMCPY_KIND_DTOD
    assert ev["DtoD_bytes"] == dtod_bytes
    assert float(ev["copy_busy_pct"]) > 95.0
    assert str(ev["top_issuing_range"]).startswith("FSDP::pre_forward")
    assert f"{copies} copies" in finding.summary
    assert "offload_params=True" in finding.recommendation
    assert "backward_prefetch" not in finding.recommendation  # a forward-only run


def test_quiet_when_copies_are_a_small_share() -> None:
    path = shared_trace("hta/trace_filter/sampled_rank-0.json.gz")
    assert _run(path) == []
    # The nsys trace stays quiet when the bar is above its 97.7% copy share.
    assert _run(shared_trace(_NSYS), warning_busy_pct=99.0) == []


def test_nvtx_ranges_make_the_workload_profile() -> None:
    """The Nsight export's NVTX ranges (emit_nvtx aten ops, FSDP::*) are its CPU ops: the
    run is forward-only FSDP, not 'no CPU ops recorded'."""
    profile = workload_profile(load([shared_trace(_NSYS)]))
    assert profile.mode == "inference"
    assert "no CPU ops recorded" not in profile.evidence
    assert profile.data_parallel == "FSDP"
