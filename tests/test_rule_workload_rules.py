"""The rules of issue 12 (`unfused-attention`, `misaligned-gemm`, `rocm-tuning`) fire and stay
quiet on synthetic traces whose numbers are known, and the rewritten advice of `small-batch`,
`memory-bound-dominant` and `comm-overhead` follows the workload profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
import scenarios_workload as sc
import synthetic
from conftest import needs_shared, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding
from gpu_trace_analyzer.metrics.roofline import roofline
from gpu_trace_analyzer.metrics.workload import WorkloadProfile
from gpu_trace_analyzer.rules.comm_overhead import CommOverheadConfig
from gpu_trace_analyzer.rules.comm_overhead import _recommendation as comm_advice
from gpu_trace_analyzer.rules.memory_bound_dominant import MemoryBoundDominant
from gpu_trace_analyzer.rules.misaligned_gemm import MisalignedGemm, misaligned_dims
from gpu_trace_analyzer.rules.rocm_tuning import RocmTuning
from gpu_trace_analyzer.rules.small_batch import SmallBatch
from gpu_trace_analyzer.rules.unfused_attention import UnfusedAttention
from gpu_trace_analyzer.trace import load


def _run(rule: Any, path: Path) -> list[Finding]:
    return list(rule().check(AnalysisContext(load([path])), rule.Config()))


def test_unfused_attention_fires_with_its_share(tmp_path: Path) -> None:
    s = sc.unfused_attention(tmp_path)
    [f] = _run(UnfusedAttention, s.path)
    assert f.evidence["chains"] == 2
    assert f.evidence["unfused_attention_ns"] == s.truth["unfused_attention_ns"]
    assert f.evidence["unfused_attention_share_pct"] == round(
        s.truth["unfused_attention_share_pct"], 2
    )
    assert (f.evidence["top_q_len"], f.evidence["top_head_dim"]) == (sc.SEQ, sc.HEAD_DIM)
    assert "scaled_dot_product_attention" in f.recommendation


def test_unfused_attention_quiet_with_sdpa(tmp_path: Path) -> None:
    assert _run(UnfusedAttention, sc.unfused_attention(tmp_path, sdpa=True).path) == []


def test_small_batch_does_not_claim_attention_matmuls(tmp_path: Path) -> None:
    # The eager-attention bmms are memory-bound at 1.1% of peak; they are attention's, not
    # the batch's: small-batch must not report them.
    for f in _run(SmallBatch, sc.unfused_attention(tmp_path).path):
        assert f.evidence["top_op"] != "aten::bmm"


def _gemm_trace(tmp_path: Path, m_odd: int, slow_ns: int) -> Path:
    """Aligned 1024x4096x4096 GEMMs at 60% of peak, and one (m_odd)x4096x4096 GEMM."""
    b = synthetic.TraceBuilder()
    with b.step():
        for _ in range(4):
            b.gemm(1024, 4096, 4096, op="aten::mm")
        for _ in range(2):
            b.gemm(m_odd, 4096, 4096, op="aten::mm", dur_ns=slow_ns)
        b.sync("device")
    return b.write(tmp_path / f"gemm_{m_odd}.json.gz", with_truth=False)


def test_misaligned_gemm_fires_on_slow_odd_shape(tmp_path: Path) -> None:
    # 1001 x 4096 x 4096 bf16 is 33.6 GFLOP: at 400 us it reaches 84 TFLOP/s, 8.5% of the
    # 989 TFLOP/s roof, where the aligned GEMMs run at 60% of it.
    [f] = _run(MisalignedGemm, _gemm_trace(tmp_path, 1001, 400_000))
    assert (f.evidence["top_m"], f.evidence["top_n"], f.evidence["top_k"]) == (1001, 4096, 4096)
    flops = 2 * 1001 * 4096 * 4096
    assert f.evidence["top_pct_of_roof"] == pytest.approx(
        100.0 * flops / 400e-6 / 989.4e12, rel=0.02
    )
    assert f.evidence["sibling_pct_of_roof"] == pytest.approx(60.0, rel=0.05)
    assert "multiple of 8" in f.recommendation


def test_misaligned_gemm_quiet_when_shape_aligned_or_fast(tmp_path: Path) -> None:
    assert _run(MisalignedGemm, _gemm_trace(tmp_path, 1024, 400_000)) == []
    # Misaligned but as fast as its siblings: the shape costs nothing, no finding.
    assert _run(MisalignedGemm, _gemm_trace(tmp_path, 1001, 60_000)) == []
    assert misaligned_dims((1, 1001, 4096, 4096), "bf16") == ["M"]
    assert misaligned_dims((1, 1024, 4104, 4096), "fp8") == ["N"]


def _transposes(tmp_path: Path, rocm: bool) -> Path:
    """Convolutions with MIOpen layout transposes around them (30% of GPU time)."""
    b = synthetic.TraceBuilder(name="miopen")
    with b.step():
        for _ in range(3):
            with b.op("aten::miopen_convolution"):
                b.kernel("batched_transpose_32x32_half", 30_000, (64, 1, 1), label="copy")
                b.kernel("igemm_fwd_gtcx2_nhwc_fp16_bx0", 70_000, (304, 1, 1), label="conv")
        b.sync("device")
    doc = b.to_json()
    if rocm:
        doc.pop("cuda_runtime_version", None)
        doc["hip_runtime_version"] = "60443483"
        doc["roctracer_version"] = "4.1"
    path = tmp_path / f"miopen_{rocm}.json.gz"
    synthetic.write_json(path, doc)
    return path


def test_rocm_tuning_fires_on_miopen_transposes(tmp_path: Path) -> None:
    [f] = _run(RocmTuning, _transposes(tmp_path, rocm=True))
    assert f.evidence["transpose_share_pct"] == pytest.approx(30.0)
    assert "channels_last" in f.recommendation


def test_rocm_tuning_quiet_off_rocm(tmp_path: Path) -> None:
    assert _run(RocmTuning, _transposes(tmp_path, rocm=False)) == []


def test_memory_bound_dominant_never_advises_what_runs(tmp_path: Path) -> None:
    s = sc.inductor_launch_overhead(tmp_path)
    [f] = _run(MemoryBoundDominant, s.path)
    assert "FlashAttention" not in f.recommendation
    assert "optimizer" not in f.recommendation  # inference
    assert "Inductor kernels" in f.recommendation  # compiled already: look for graph breaks


@needs_shared
def test_memory_bound_dominant_on_owlv2_leaves_attention_to_its_rule() -> None:
    path = shared_trace("tracelens/mi300__google_owlv2-large-patch14-ensemble__1016001.json.gz")
    ctx = AnalysisContext(load([path]))
    kernels = roofline(ctx).kernels
    memory_ns = int(kernels.filter(pl.col("bound") == "memory")["dur_ns"].sum())
    memory_pct = 100.0 * memory_ns / int(kernels["dur_ns"].sum())
    assert memory_pct > 80.0  # memory-bound work dominates the trace as a whole ...
    findings = list(MemoryBoundDominant().check(ctx, MemoryBoundDominant.Config()))
    # ... but the softmax and bmm of unfused attention are explained by `unfused-attention`;
    # what remains is under the 50% threshold.
    assert findings == []


def test_comm_advice_follows_the_profile() -> None:
    cfg = CommOverheadConfig()
    stats: dict[str, float | int | str] = {"median_message_bytes": 4096}
    ddp = WorkloadProfile("training", frameworks=("DDP",), collectives=("allreduce",))
    text = comm_advice(cfg, 80.0, stats, ddp, "NCCL")
    assert "DDP" in text and "bucket_cap_mb" in text and "gradient accumulation" in text
    serving = WorkloadProfile("inference", frameworks=("vLLM",), collectives=("allreduce",))
    text = comm_advice(cfg, 80.0, stats, serving, "RCCL")
    assert "DDP" not in text and "gradient" not in text and "tensor-parallel" in text
    a2a = WorkloadProfile("training", frameworks=("TorchRec",), collectives=("all_to_all",))
    text = comm_advice(cfg, 80.0, stats, a2a, "NCCL")
    assert text.startswith("All-to-all dominates") and "DDP" not in text


def _rocm_gemms(tmp_path: Path, m: int, n: int, k: int, efficiency: float) -> Path:
    """ROCm (MI300X) trace of GEMMs at ``efficiency`` of the tensor peak."""
    b = synthetic.TraceBuilder(device="AMD Instinct MI300X", num_sms=304, name="rocm_gemm")
    with b.step():
        for _ in range(4):
            b.gemm(m, n, k, op="aten::mm", kernel="nvjet", efficiency=efficiency)
        b.sync("device")
    doc = b.to_json()
    doc.pop("cuda_runtime_version", None)
    doc["hip_runtime_version"] = "60443483"
    path = tmp_path / f"rocm_{m}.json.gz"
    synthetic.write_json(path, doc)
    return path


def test_rocm_tuning_fires_on_large_gemms_far_below_roof(tmp_path: Path) -> None:
    # 8192^3 GEMMs fill every CU; at 10% of the builder's peak they sit far below the roof.
    [f] = _run(RocmTuning, _rocm_gemms(tmp_path, 8192, 8192, 8192, 0.1))
    assert f.evidence["slow_gemm_share_pct"] == pytest.approx(100.0)
    assert "PYTORCH_TUNABLEOP_ENABLED=1" in f.recommendation


def test_rocm_tuning_quiet_on_gemms_too_small_to_fill_the_device(tmp_path: Path) -> None:
    # 788 x 768 output: 35 tiles of 128 x 128 for 304 CUs; tuning cannot fix idle CUs.
    assert _run(RocmTuning, _rocm_gemms(tmp_path, 788, 768, 768, 0.1)) == []
