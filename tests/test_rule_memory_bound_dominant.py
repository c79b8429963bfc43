"""`memory-bound-dominant`: memory-bound share of kernel time and the bandwidth reached, on
synthetic elementwise work run at a known fraction of HBM bandwidth."""

from __future__ import annotations

from pathlib import Path

import pytest
import synthetic
from conftest import needs_shared, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers.kineto import parse
from gpu_trace_analyzer.rules.memory_bound_dominant import MemoryBoundDominant

H100_BYTES_PER_NS = 3350.0  # 3.35 TB/s
MI210_GPU_ONLY = "tracelens/mi210__gpu_only_trace__gpu_only_trace.json.gz"


def _run(path: Path) -> list[Finding]:
    ctx = AnalysisContext(parse(path))
    return list(MemoryBoundDominant().check(ctx, MemoryBoundDominant.Config()))


def _trace(tmp_path: Path, bw_frac: float, with_gemm: bool = False) -> tuple[Path, int, int]:
    """Three steps of bf16 adds on 4096 x 4096 tensors at ``bw_frac`` of HBM bandwidth (and a
    compute-bound 8192^3 GEMM); returns the path, the adds' total time and the GEMMs'."""
    b = synthetic.TraceBuilder()
    adds, gemms = 0, 0
    for _ in range(3):
        with b.step():
            for _ in range(4):
                adds += b.elementwise("aten::add", [4096, 4096], bw_frac=bw_frac).dur_ns
            if with_gemm:
                gemms += b.gemm(8192, 8192, 8192).dur_ns
            b.sync("device")
    return b.write(tmp_path / "adds.json.gz"), adds, gemms


def test_slow_elementwise_work_warns_with_its_bandwidth(tmp_path: Path) -> None:
    path, adds, _ = _trace(tmp_path, bw_frac=0.3)
    # An add reads two bf16 tensors and writes one: 3 x 4096 x 4096 x 2 bytes.
    nbytes = 3 * 4096 * 4096 * 2
    pct_of_roof = 100 * (12 * nbytes / H100_BYTES_PER_NS) / adds
    assert pct_of_roof == pytest.approx(30.0, abs=0.01)
    findings = _run(path)
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.WARNING
    assert f.evidence["memory_bound_share_pct"] == 100.0
    assert f.evidence["memory_bound_ns"] == adds == f.impact_ns
    assert f.evidence["modeled_pct_of_bandwidth_roof"] == pytest.approx(pct_of_roof, abs=0.01)
    assert f.table is not None and f.table.rows[0][0] == "aten::add"
    assert f.table.rows[0][1] == "4096x4096, 4096x4096"
    assert "torch.compile" in f.recommendation


def test_elementwise_work_near_the_roof_is_info(tmp_path: Path) -> None:
    path, _, _ = _trace(tmp_path, bw_frac=0.8)
    findings = _run(path)
    assert len(findings) == 1
    assert findings[0].severity is Severity.INFO
    assert findings[0].evidence["modeled_pct_of_bandwidth_roof"] == pytest.approx(80.0, abs=0.01)


def test_compute_bound_gemms_dominating_is_silent(tmp_path: Path) -> None:
    path, adds, gemms = _trace(tmp_path, bw_frac=0.3, with_gemm=True)
    assert 100 * adds / (adds + gemms) < 50
    assert _run(path) == []


@needs_shared
def test_without_shapes_the_finding_is_info() -> None:
    """No shapes were recorded: bounds come from kernel categories, bandwidth is unknown."""
    findings = _run(shared_trace(MI210_GPU_ONLY))
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.INFO
    assert "modeled_pct_of_bandwidth_roof" not in f.evidence
    assert f.evidence["heuristic_memory_bound_ns"] == f.evidence["memory_bound_ns"]
    assert "record shapes" in f.summary


def test_memory_bound_scenario_matches_its_ground_truth(tmp_path: Path) -> None:
    built = synthetic.memory_bound_elementwise()
    findings = _run(built.write(tmp_path / "membound.json.gz"))
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.WARNING
    assert f.evidence["memory_bound_share_pct"] == pytest.approx(
        built.expect["elementwise_share_pct"], abs=0.01
    )
    assert f.evidence["modeled_pct_of_bandwidth_roof"] == pytest.approx(
        built.expect["achieved_bw_pct"], abs=0.01
    )


@pytest.mark.parametrize("scenario", ["healthy", "gemm_heavy"])
def test_compute_heavy_scenarios_are_silent(tmp_path: Path, scenario: str) -> None:
    built = (
        synthetic.healthy()
        if scenario == "healthy"
        else synthetic.memory_bound_elementwise(elementwise_share=0.2)
    )
    assert _run(built.write(tmp_path / "t.json.gz")) == []
