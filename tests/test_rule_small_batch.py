"""`small-batch`: memory-bound GEMMs far below the tensor peak, on synthetic GEMMs whose FLOPs,
bytes and durations are known, and on a real H100 BERT inference trace (shapes hand-checked)."""

from __future__ import annotations

from pathlib import Path

import pytest
import synthetic
from conftest import needs_shared, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers.kineto import parse
from gpu_trace_analyzer.rules.small_batch import SmallBatch, gemm_dims

H100_BF16_TFLOPS = 989.4
H100_TB_S = 3.35
BERT_H100 = "tracelens/h100__gaunernst_bert-small-uncased__1016001.json.gz"


def _run(path: Path) -> list[Finding]:
    return list(SmallBatch().check(AnalysisContext(parse(path)), SmallBatch.Config()))


def _trace(tmp_path: Path, small_per_step: int) -> tuple[Path, list[int], list[int]]:
    """Three steps: ``small_per_step`` bf16 GEMMs of 64 x 4096 x 4096 and one 8192^3 GEMM."""
    b = synthetic.TraceBuilder()
    small: list[int] = []
    big: list[int] = []
    for _ in range(3):
        with b.step():
            small.extend(
                b.gemm(64, 4096, 4096, kernel="nvjet_small").dur_ns for _ in range(small_per_step)
            )
            big.append(b.gemm(8192, 8192, 8192).dur_ns)
            b.sync("device")
    return b.write(tmp_path / "gemms.json.gz"), small, big


def test_small_gemms_fire_with_hand_computed_roofline(tmp_path: Path) -> None:
    path, small, big = _trace(tmp_path, small_per_step=20)
    flops = 2 * 64 * 4096 * 4096
    nbytes = (64 * 4096 + 4096 * 4096 + 64 * 4096) * 2
    findings = _run(path)
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.WARNING
    assert f.evidence["small_gemm_share_pct"] == pytest.approx(
        100 * sum(small) / (sum(small) + sum(big)), abs=0.01
    )
    assert f.evidence["small_gemm_calls"] == 60
    assert f.evidence["top_min_dim"] == 64
    assert f.evidence["top_intensity_flop_per_byte"] == pytest.approx(flops / nbytes, abs=0.05)
    assert f.evidence["top_ridge_flop_per_byte"] == pytest.approx(
        H100_BF16_TFLOPS / H100_TB_S, abs=0.05
    )
    achieved = flops * len(small) / (sum(small) * 1e-9) / 1e12
    assert f.evidence["top_pct_of_peak"] == pytest.approx(
        100 * achieved / H100_BF16_TFLOPS, abs=0.01
    )
    assert f.impact_ns == sum(small)
    assert f.table is not None and f.table.rows[0][2] == "64 x 4096 x 4096"
    # The trace runs forward GEMMs only (no backward, no optimizer): inference wording.
    assert "more inputs per forward pass" in f.recommendation
    assert "gradient" not in f.recommendation and "micro-batch" not in f.recommendation


def test_large_gemms_are_silent(tmp_path: Path) -> None:
    path, small, big = _trace(tmp_path, small_per_step=5)  # about 3% of kernel time
    assert 100 * sum(small) / (sum(small) + sum(big)) < 10
    assert _run(path) == []


@pytest.mark.parametrize(
    ("op", "shapes", "dims"),
    [
        ("aten::mm", "1x2880, 2880x25136", (1, 1, 25136, 2880)),
        ("aten::addmm", "768, 788x768, 768x3072", (1, 788, 3072, 768)),
        ("aten::bmm", "16x128x64, 16x64x128", (16, 128, 128, 64)),
        ("aten::linear", "4x197x768, 3072x768, 3072", (1, 788, 3072, 768)),
        ("aten::mm", "()", None),
    ],
)
def test_gemm_dims_from_shapes(op: str, shapes: str, dims: tuple[int, ...] | None) -> None:
    assert gemm_dims(op, shapes) == dims


@needs_shared
def test_fires_on_bert_small_inference() -> None:
    findings = _run(shared_trace(BERT_H100))
    assert len(findings) == 1
    f = findings[0]
    # 141 tokens through 512 x 512 projections with a bias (aten::addmm, bf16):
    flops = 2 * 141 * 512 * 512 + 141 * 512
    nbytes = (512 + 141 * 512 + 512 * 512 + 141 * 512) * 2
    assert f.evidence["top_shapes"] == "512, 141x512, 512x512"
    assert f.evidence["top_min_dim"] == 141
    assert f.evidence["top_intensity_flop_per_byte"] == pytest.approx(flops / nbytes, abs=0.05)
    assert f.severity is Severity.CRITICAL


def test_small_batch_scenario_matches_its_ground_truth(tmp_path: Path) -> None:
    built = synthetic.small_batch_gemm()
    findings = _run(built.write(tmp_path / "small_batch.json.gz"))
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.CRITICAL  # nothing but small GEMMs
    assert f.evidence["top_intensity_flop_per_byte"] == pytest.approx(
        built.expect["intensity_flop_per_byte"], abs=0.05
    )
    assert f.evidence["top_ridge_flop_per_byte"] == pytest.approx(
        built.expect["ridge_flop_per_byte"], abs=0.05
    )
    assert f.evidence["small_gemm_calls"] == built.expect["gemm_count"]


@pytest.mark.parametrize("scenario", ["healthy", "large_m"])
def test_scenarios_without_small_gemms_are_silent(tmp_path: Path, scenario: str) -> None:
    built = synthetic.healthy() if scenario == "healthy" else synthetic.small_batch_gemm(m=4096)
    assert _run(built.write(tmp_path / "t.json.gz")) == []
