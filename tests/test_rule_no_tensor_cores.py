"""`no-tensor-cores`: the kernel-name table on names from real traces (Volta to Blackwell,
AMD), the fp32 time of a real A100 trace summed here from hand-labelled kernels, and the
op-input-type fallback on a synthetic trace."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import synthetic
from conftest import needs_shared, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers.kineto import parse
from gpu_trace_analyzer.rules.no_tensor_cores import (
    FP32_CONV,
    FP32_GEMM,
    FP32_GEMV,
    TENSOR,
    NoTensorCores,
    kernel_class,
)

ALEXNET_A100 = "hta/critical_path/alexnet/benchmark_result_2869224_1695835535_trace.json.gz"
RESNET_V100 = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"
H100_BF16 = "tracelens/h100__Falconsai_nsfw_image_detection__1016002.json.gz"

#: Kernel names as real traces spell them, labelled by hand.
NAMES: list[tuple[str, str | None]] = [
    ("volta_sgemm_128x32_nt", FP32_GEMM),
    ("ampere_sgemm_32x32_sliced1x4_tn", FP32_GEMM),
    ("ampere_gcgemm_64x64_nt", FP32_GEMM),
    (
        "void cutlass::Kernel2<cutlass_80_simt_sgemm_128x128_8x4_tn_align1>"
        "(cutlass_80_simt_sgemm_128x128_8x4_tn_align1::Params)",
        FP32_GEMM,
    ),
    (
        "sm80_xmma_gemm_f32f32_f32f32_f32_nn_n_tilesize32x32x8_stage3_warpsize1x2x1_ffma_"
        "aligna4_alignc4_execute_kernel__5x_cublas",
        FP32_GEMM,
    ),
    ("cudnn_ampere_scudnn_128x64_relu_xregs_large_nn_v1", FP32_CONV),
    ("volta_scudnn_128x128_stridedB_splitK_small_nn_v1", FP32_CONV),
    (
        "void implicit_convolve_sgemm<float, float, 1024, 6, 7, 3, 3, 5, 1, false, true, true>"
        "(int, int, int, float const*, int, float*, float const*, kernel_conv_params, "
        "unsigned long long, int, float, float, int, float const*, float const*, bool, int, int)",
        FP32_CONV,
    ),
    (
        "void cudnn::detail::dgrad_engine<float, 512, 6, 5, 3, 3, 3, false>(int, int, int)",
        FP32_CONV,
    ),
    ("void cudnn::cnn::wgrad_alg0_engine<float, 128, 6, 7, 3, 3, 5, false, 512>(int)", FP32_CONV),
    (
        "void fft2d_c2r_32x32<float, false, false, 0u, false, false>(float*, float2 const*)",
        FP32_CONV,
    ),
    (
        "void gemv2T_kernel_val<int, int, float, float, float, float, 128, 16, 2, 2, false, "
        "false, cublasGemvParams<cublasGemvTensorStridedBatched<float const>, "
        "cublasGemvTensorStridedBatched<float const>, cublasGemvTensorStridedBatched<float>, "
        "float> >(cublasGemvParams<>, float, float)",
        FP32_GEMV,
    ),
    (
        "void gemmSN_TN_kernel_64addr<float, 128, 16, 2, 4, 8, 9, false, "
        "cublasGemvTensorStridedBatched<float const>, cublasGemvTensorStridedBatched<float> >"
        "(cublasGemmSmallNParams<>)",
        FP32_GEMV,
    ),
    (
        "sm80_xmma_fprop_implicit_gemm_indexed_tf32f32_tf32f32_f32_nhwckrsc_nchw_tilesize128x128"
        "x16_stage4_warpsize2x2x1_g1_tensor16x8x8_alignc4_execute_kernel__5x_cudnn",
        TENSOR,
    ),
    (
        "void cutlass::Kernel<cutlass_80_tensorop_s1688gemm_256x64_16x4_nn_align4>"
        "(cutlass_80_tensorop_s1688gemm_256x64_16x4_nn_align4::Params)",
        TENSOR,
    ),
    ("volta_h884gemm_64x64_ldg8_nn", TENSOR),
    ("volta_fp16_s884gemm_fp16_128x128_ldg8_f2f_nn", TENSOR),
    ("turing_fp16_s1688gemm_fp16_128x128_ldg8_f2f_tn", TENSOR),
    ("ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_64x3_tn", TENSOR),
    (
        "void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_32x32_128x2_tn_"
        "align8>(cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_32x32_128x2_tn_align8::Params)",
        TENSOR,
    ),
    (
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_"
        "execute_segment_k_off_kernel__5x_cublas",
        TENSOR,
    ),
    ("nvjet_tst_64x64_64x16_2x1_2cta_v_bz_bias_TNT", TENSOR),
    (
        "cutlass3x_sm90_tensorop_gemm_bf16_bf16_f32_bf16_bf16_128x128x64_1x1x1_0_tnn_align8_"
        "warpspecialized_cooperative_epi_tma",
        TENSOR,
    ),
    ("sm90_gemm_wgmma_128x128x64_warpspecialized", TENSOR),
    (
        "bmm_Bfloat16_MxE2m1MxE4m3_Fp32_t128x16x256u2_s3_et128x16_m128x16x32_cga1x1x1_16dp256b"
        "_rM_TN_transOut_schedP2x1x2x3_biasM_bN_tmaOpt_clmp_dynBatch_sm100f",
        TENSOR,
    ),
    (
        "Cijk_Alik_Bljk_BBS_BH_Bias_HA_S_SAV_UserArgs_MT256x32x64_MI16x16x1_SN_LDSB1_AFC1_AFEM1",
        TENSOR,
    ),
    (
        "Cijk_Alik_Bljk_SB_Bias_AS_SAV_UserArgs_MT64x16x32_MI16x16x1_SN_LDSB0_AFC1_AFEM1",
        TENSOR,
    ),
    ("igemm_fwd_gtcx2_nhwc_bf16_bx0_ex1_bt256x64x8_wt64x16x4_ws1x1_wr2x2_ta1x8x4x1", TENSOR),
    (
        "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float> >",
        None,
    ),
    (
        "void gemmk1_kernel<float, 256, 5, false, false, false, false, "
        "cublasGemvTensorStridedBatched<__half const>, cublasGemvTensorStridedBatched<__half> >",
        None,
    ),
    ("volta_dgemm_64x64_nn", None),
    ("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)", None),
]


@pytest.mark.parametrize(("name", "expected"), NAMES)
def test_kernel_name_table(name: str, expected: str | None) -> None:
    assert kernel_class(name) == expected


def _run(path: Path) -> list[Finding]:
    return list(NoTensorCores().check(AnalysisContext(parse(path)), NoTensorCores.Config()))


@needs_shared
def test_fires_on_alexnet_a100_with_hand_labelled_time() -> None:
    with gzip.open(shared_trace(ALEXNET_A100)) as fh:
        kernels = [e for e in json.load(fh)["traceEvents"] if e.get("cat") == "kernel"]
    fp32_gemm = ("ampere_sgemm_32x32_sliced1x4_tn", "ampere_gcgemm_64x64_nt")
    fp32_conv = ("cudnn_ampere_scudnn_128x64_relu", "void fft2d_c2r_32x32", "void fft2d_r2c_32x32")
    gemm_us = sum(k["dur"] for k in kernels if k["name"].startswith(fp32_gemm))
    conv_us = sum(k["dur"] for k in kernels if k["name"].startswith(fp32_conv))
    total_us = sum(k["dur"] for k in kernels)  # no communication kernels, no steps
    findings = _run(shared_trace(ALEXNET_A100))
    assert len(findings) == 1
    f = findings[0]
    assert f.evidence["fp32_gemm_ns"] == 1000 * gemm_us
    assert f.evidence["fp32_conv_ns"] == 1000 * conv_us
    assert f.evidence["fp32_share_pct"] == pytest.approx(
        100 * (gemm_us + conv_us) / total_us, abs=0.01
    )
    assert f.severity is Severity.CRITICAL  # 55% >= 40%
    assert f.evidence["compute_capability"] == "8.0"
    assert "set_float32_matmul_precision('high')" in f.recommendation
    assert f.impact_ns == 1000 * (gemm_us + conv_us)


@needs_shared
def test_volta_gets_fp16_autocast_not_tf32() -> None:
    findings = _run(shared_trace(RESNET_V100))
    assert len(findings) == 1
    rec = findings[0].recommendation
    assert "fp16 only" in rec and "torch.float16" in rec and "allow_tf32" not in rec
    assert findings[0].evidence["tensor_over_fp32_peak"] == pytest.approx(125 / 15.7, abs=0.05)


@needs_shared
def test_silent_on_bf16_tensor_core_inference() -> None:
    assert _run(shared_trace(H100_BF16)) == []


def _mm_trace(tmp_path: Path, fp32_ns: int, bf16_ns: int) -> Path:
    """Three steps of the same Triton matmul kernel launched by a float and a bf16 aten::mm."""
    b = synthetic.TraceBuilder()
    for _ in range(3):
        with b.step():
            with b.op("aten::mm", [[512, 512], [512, 512]], ["float", "float"]):
                b.kernel("triton_tem_fused_mm_0", fp32_ns, grid=(264, 1, 1))
            with b.op("aten::mm", [[512, 512], [512, 512]], ["c10::BFloat16", "c10::BFloat16"]):
                b.kernel("triton_tem_fused_mm_0", bf16_ns, grid=(264, 1, 1))
            b.sync("device")
    return b.write(tmp_path / "mm.json.gz")


def test_unnamed_gemm_is_classified_by_its_ops_input_type(tmp_path: Path) -> None:
    findings = _run(_mm_trace(tmp_path, fp32_ns=300_000, bf16_ns=700_000))
    assert kernel_class("triton_tem_fused_mm_0") is None
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.WARNING  # 30% of compute time
    assert f.evidence["fp32_share_pct"] == pytest.approx(30.0)
    assert f.evidence["classified_by_op_dtype_ns"] == 3 * 300_000
    assert f.table is not None and f.table.rows[0][5] == "op input type"
    assert "set_float32_matmul_precision('high')" in f.recommendation  # H100 has TF32


def test_small_fp32_share_is_silent(tmp_path: Path) -> None:
    assert _run(_mm_trace(tmp_path, fp32_ns=50_000, bf16_ns=950_000)) == []  # 5% < 10%


def test_fp32_gemm_scenario_matches_its_ground_truth(tmp_path: Path) -> None:
    built = synthetic.fp32_gemm()
    findings = _run(built.write(tmp_path / "fp32.json.gz"))
    assert len(findings) == 1
    f = findings[0]
    assert f.evidence["fp32_gemm_ns"] == built.expect["gemm_ns"]
    assert f.evidence["fp32_share_pct"] == pytest.approx(built.expect["gemm_share_pct"], abs=0.01)
    assert f.evidence["device"] == "NVIDIA A100-SXM4-80GB"


@pytest.mark.parametrize("scenario", ["healthy", "bf16"])
def test_tensor_core_scenarios_are_silent(tmp_path: Path, scenario: str) -> None:
    built = synthetic.healthy() if scenario == "healthy" else synthetic.fp32_gemm(dtype="bf16")
    assert _run(built.write(tmp_path / "t.json.gz")) == []
