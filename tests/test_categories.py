"""Kernel categories against real kernel names read from the shared traces.

Each expectation below was written by reading the kernel name (what library emits it and
what it computes); the test first checks that names with that prefix really occur in the
traces, so the table cannot drift into invented names.
"""

from __future__ import annotations

import gzip
import json
from functools import cache

import polars as pl
import pytest
from conftest import TRACES, needs_shared
from gpu_trace_analyzer.parsers import categories
from gpu_trace_analyzer.parsers.categories import (
    CATEGORIES,
    FAMILIES,
    categorize,
    category_of,
    families,
    family_of,
    is_communication,
    is_memory_name,
)

FILES = (
    "hta/nccl_parser_config/nccl_data.json.gz",
    "tracelens/b200__eager_trace.json.gz",
    "tracelens/inference__sglang_decode__sglang_Qwen3-8B_decode.json.gz",
    "tracelens/mi300__Falconsai_nsfw_image_detection__1016002.json.gz",
    "tracelens/torch_compile_triton__trace.json.gz",
    "tracelens/inference__vllm_decode_full__graph_execution.json.gz",
    "tracelens/perf_model__normalization__normalization_layer_test.json.gz",
    "hta/mtia_inference_trace/mtia_inference_rank_0.json.gz",
    "tb_plugin/test__gpu_metrics_input.json",
    "hta/amd_trace/mi250_minitoy_train_ROCm6_2_kineto.json.gz",
    "hta/trace_diff/control/control.json.gz",
    "hta/timeline_analysis/sampled_rank-0.json.gz",
    "tracelens/mi300__facebook_timesformer-base-finetuned-k400__1016002.json.gz",
    "tracelens/inference__xdit_flux.1_aiter_sage__profile_trace_rank_0.json.gz",
    "tracelens/inference__xdit_flux.1__capture_traces__capture_trace_rank_0.json.gz",
    "tracelens/h100__Falconsai_nsfw_image_detection__1016002.json.gz",
)

# (name prefix, category): every real kernel whose name starts with the prefix.
EXPECTED = (
    # NCCL collectives, old and new kernel names; PyTorch symmetric-memory all-reduce.
    ("ncclKernel_AllReduce_RING_LL_Sum_float", "comm"),
    ("ncclKernel_Broadcast_RING_LL", "comm"),
    ("ncclDevKernel_AllGather_RING_LL", "comm"),
    ("void (anonymous namespace)::multimem_all_reduce_kernel", "comm"),
    # Attention: TRT-LLM Blackwell FMHA, PyTorch flash, Triton and vLLM attention, ROCm paged.
    ("fmhaSm100aKernel_", "attention"),
    ("attn_fwd", "attention"),
    ("kernel_unified_attention_2d", "attention"),
    ("void paged_attention_ll4mi", "attention"),
    # GEMMs: cuBLAS(Lt), nvjet (Hopper/Blackwell cuBLAS), cutlass, TRT-LLM bmm, hipBLASLt.
    ("ampere_sgemm_", "gemm"),
    ("nvjet_tst_", "gemm"),
    ("void cutlass::Kernel<cutlass_80_tensorop_s1688gemm", "gemm"),
    ("void cublasLt::splitKreduce_kernel", "gemm"),
    ("bmm_Bfloat16_MxE2m1MxE4m3", "gemm"),
    ("Cijk_Alik_Bljk", "gemm"),
    ("volta_sgemm_128x32_nt", "gemm"),
    # Convolutions: cuDNN implicit GEMM (xmma and cutlass), scudnn, cutlass conv templates.
    ("sm80_xmma_fprop_implicit_gemm", "conv"),
    ("sm80_xmma_wgrad_implicit_gemm", "conv"),
    ("sm80_xmma_dgrad_implicit_gemm", "conv"),
    ("cudnn_infer_ampere_scudnn_128x64_relu", "conv"),
    ("_ZN19cutlass_cudnn_train6KernelINS_4conv", "conv"),
    ("void cutlass_cudnn_infer::Kernel<cutlass_tensorop_s1688fprop", "conv"),
    # Normalization: cuDNN batch norm, MIOpen batch norm, ATen layer / batch norm, vLLM RMSNorm.
    ("void cudnn::bn_fw_tr_1C11", "norm"),
    ("void cudnn::bn_bw_1C11", "norm"),
    ("MIOpenBatchNormFwdTrainSpatial", "norm"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel", "norm"),
    ("void at::native::batch_norm_collect_statistics_kernel", "norm"),
    ("void vllm::rms_norm_kernel", "norm"),
    # Copies: concatenation, ATen direct copies inside elementwise templates, MTIA DMA.
    ("void at::native::(anonymous namespace)::CatArrayBatchedCopy_aligned16", "copy"),
    (
        "void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast"
        "<at::native::direct_copy_kernel_cuda",
        "copy",
    ),
    ("dma_request", "copy"),
    # Reductions: ATen reduce_kernel (sum, mean), softmax, Triton reductions.
    ("void at::native::reduce_kernel<", "reduction"),
    ("void (anonymous namespace)::softmax_warp_forward", "reduction"),
    ("triton_red_fused", "reduction"),
    # Elementwise: ATen vectorized / unrolled templates, Triton pointwise, random normal.
    (
        "void at::native::vectorized_elementwise_kernel<4, at::native::AddFunctor<float>",
        "elementwise",
    ),
    ("void at::native::unrolled_elementwise_kernel<at::native::AddFunctor<float>", "elementwise"),
    ("triton_poi_fused", "elementwise"),
    (
        "void at::native::(anonymous namespace)::distribution_elementwise_grid_stride_kernel",
        "elementwise",
    ),
    # Pooling reduces windows; MoE routing histograms and KV-cache writes move data.
    ("void at::native::(anonymous namespace)::max_pool_forward_nchw", "reduction"),
    ("void moe::dev::routing::routingIndicesHistogramKernel", "elementwise"),
    ("void vllm::reshape_and_cache_flash_kernel", "copy"),
    # SageAttention's Q/K quantization pass: elementwise (memory-bound), in the attention family.
    ("sage_quant_kernel", "elementwise"),
)

# (name prefix, family): the finer taxonomy of "Where the time goes".
EXPECTED_FAMILIES = (
    ("void vllm::reshape_and_cache_flash_kernel", "kv_cache"),
    ("void (anonymous namespace)::store_kvcache", "kv_cache"),
    ("void paged_attention_ll4mi_QKV_mfma16_kernel", "attention"),
    ("_matmul_ogs_NNT_bf16xbf16xmxfp4", "moe"),
    ("_combined_routing_compute", "moe"),
    ("void moe::dev::routing::routingIndicesHistogramKernel", "moe"),
    ("void vllm::rotary_embedding_kernel", "rotary"),
    ("void rotary_embedding_kernel", "rotary"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel", "elementwise"),
    ("void multi_tensor_apply_kernel<TensorListMetadata<4>, AdamFunctor", "optimizer"),
    ("void split_embedding_backward_codegen_rowwise_adagrad", "embedding"),
    ("void split_embedding_codegen_forward_unweighted_kernel", "embedding"),
    ("batched_transpose_", "transpose"),
    ("void cudnn::engines_precompiled::nchwToNhwcKernel", "transpose"),
    ("triton_poi_fused__to_copy_add_cat_fmha_v3_fwd", "elementwise"),
    ("triton_red_fused", "reduction"),
    ("triton_per_fused", "reduction"),
    ("_ZN7sgl_hip10activation18act_and_mul_kernel", "elementwise"),
    ("sage_fwd", "attention"),
    ("sage_quant_kernel", "attention"),
    ("Cijk_Alik_Bljk", "gemm"),
    ("aiter::fmha_fwd_hd128", "attention"),
    ("ncclDevKernel_AllGather_RING_LL", "comm"),
)


@cache
def kernel_names() -> frozenset[str]:
    """Every kernel name in `FILES`, read with the standard library."""
    names: set[str] = set()
    for rel in FILES:
        data = (TRACES / rel).read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        for event in json.loads(data)["traceEvents"]:
            if event.get("cat") in {"kernel", "Kernel", "mtia_ccp_events"}:
                names.add(event["name"])
    return frozenset(names)


@needs_shared
@pytest.mark.parametrize(("prefix", "expected"), EXPECTED)
def test_real_kernel_names(prefix: str, expected: str) -> None:
    matching = sorted(n for n in kernel_names() if n.startswith(prefix))
    assert matching, f"no kernel named {prefix!r}... in the traces"
    assert {name: category_of(name) for name in matching} == dict.fromkeys(matching, expected)


@needs_shared
@pytest.mark.parametrize(("prefix", "expected"), EXPECTED_FAMILIES)
def test_real_kernel_families(prefix: str, expected: str) -> None:
    matching = sorted(n for n in kernel_names() if n.startswith(prefix))
    assert matching, f"no kernel named {prefix!r}... in the traces"
    assert {name: family_of(name) for name in matching} == dict.fromkeys(matching, expected)


def test_categories_listed_once_and_cover_every_row() -> None:
    assert len(set(CATEGORIES)) == len(CATEGORIES)
    assert {row[1] for row in categories._RULES} | {"other"} == set(CATEGORIES)
    named = {row[0] for row in categories._RULES} | {"other", "attention_unfused"}
    assert named == set(FAMILIES)


def test_families_vectorized() -> None:
    names = pl.Series(["_matmul_ogs_NNT_x", None, "batched_transpose_4x64_half", "zzz"])
    assert families(names).to_list() == ["moe", "other", "transpose", "other"]


def test_categorize_is_vectorized_and_keeps_order(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = categories.classify

    def counting(name: str) -> tuple[str, str]:
        calls.append(name)
        return original(name)

    monkeypatch.setattr(categories, "classify", counting)
    names = pl.Series(
        "name",
        ["ampere_sgemm_128x64_nn", None, "ncclKernel_AllReduce", "ampere_sgemm_128x64_nn"],
        dtype=pl.Categorical(),
    )
    result = categorize(names)
    assert result.to_list() == ["gemm", "other", "comm", "gemm"]
    assert sorted(calls) == ["ampere_sgemm_128x64_nn", "ncclKernel_AllReduce"]


def test_hta_communication_rule() -> None:
    # HTA: ^nccl.*Kernel is communication; names are not searched elsewhere.
    assert is_communication("ncclKernel_AllReduce_RING_LL_Sum_float(ncclWorkElem)")
    assert is_communication("ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)")
    assert is_communication("rcclKernel_AllReduce")
    assert not is_communication("void (anonymous namespace)::multimem_all_reduce_kernel<float>")
    assert not is_communication("nccl_setup")


def test_hta_memory_rule() -> None:
    assert is_memory_name("Memcpy DtoD (Device -> Device)")
    assert is_memory_name("Memset (Device)")
    assert is_memory_name("dma_request")
    assert not is_memory_name("void at::native::(anonymous namespace)::CatArrayBatchedCopy<float>")
