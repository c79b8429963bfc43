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


def _union(spans: list[tuple[int, int]]) -> int:
    total, end = 0, None
    for s, e in sorted(spans):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def test_concurrent_htod_on_one_host_is_aggregated() -> None:
    """Review 2, defect 11: both H100s (ranks 0 and 1, one nsys report, hostname ``modal``)
    copy HtoD at 27.66 GB/s each, at the same time: the host moves the sum. Overlap and
    aggregate recomputed from the raw CUPTI memcpy rows."""
    path = shared_trace(_NSYS)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "select deviceId, start, end, bytes from CUPTI_ACTIVITY_KIND_MEMCPY where copyKind = 1"
        ).fetchall()
    spans = {d: [(s, e) for dd, s, e, _ in rows if dd == d] for d in (0, 1)}
    overlap = _union(spans[0]) + _union(spans[1]) - _union(spans[0] + spans[1])
    aggregate = sum(r[3] for r in rows) / _union(spans[0] + spans[1])
    (finding,) = _run(path)
    ev = finding.evidence
    assert ev["HtoD_gpus_on_host"] == 2
    assert ev["HtoD_overlap_ns"] == overlap
    assert overlap / 1e6 == pytest.approx(906.7, abs=0.1)
    assert ev["HtoD_aggregate_gbps"] == pytest.approx(aggregate, abs=0.01)
    assert ev["HtoD_per_gpu_gbps_equal"] == 1
    assert "The 2 GPUs of this host copy HtoD at the same time (906.7 ms" in finding.summary
    assert "a limit they share upstream" in finding.summary


def test_no_aggregate_for_gpus_on_other_hosts() -> None:
    """Not firing: the same copies, but the ranks on different hosts (hostnames differ), or a
    single GPU: no concurrency sentence."""
    from dataclasses import replace

    from gpu_trace_analyzer.rules.copy_bound import concurrent_host_copies, same_host_ranks

    tables = load([shared_trace(_NSYS)])
    meta = tables.meta
    assert same_host_ranks(meta, 0) == [0, 1]
    apart = replace(
        meta,
        ranks=tuple(replace(r, hostname=f"node{r.rank}") for r in meta.ranks),
    )
    assert same_host_ranks(apart, 0) == [0]
    ctx = AnalysisContext(tables)
    from gpu_trace_analyzer.metrics.host_blocking import copies_with_callers

    copies = copies_with_callers(ctx)
    row = {"rank": 0, "device": 0}
    assert concurrent_host_copies(copies, row, "HtoD", [0]) == {}
    assert concurrent_host_copies(copies, row, "DtoD", [0, 1]) == {}  # not the host link
