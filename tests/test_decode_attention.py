"""Decode attention is memory-bound, not compute-bound by its "attention" name (review E1).

Decode attention reads each sequence's whole KV cache per generated token at about 2 x
(query heads per KV head) / (bytes per element) FLOP/byte: SGLang's Qwen3-8B (32 query, 8 KV
heads, bf16) runs at 4 FLOP/byte against MI300X's ridge of 1307 / 5.3 = 247. The report used
to call SGLang's decode "22% compute-bound": that 22% was the ROCm paged-attention kernels
(``paged_attention_ll4mi_QKV_*`` and its ``_reduce_kernel``), classified compute by name.
Ground truth: kernel durations recounted from the raw JSON.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from conftest import shared_trace
from gpu_trace_analyzer.context import AnalysisContext, AnalysisOptions
from gpu_trace_analyzer.metrics.roofline import compute, roofline
from gpu_trace_analyzer.parsers.categories import decode_attention, is_decode_attention
from gpu_trace_analyzer.parsers.schema import DeviceInfo, TraceMeta, TraceTables, table_from_columns
from gpu_trace_analyzer.trace import load

_SGLANG = "tracelens/inference__sglang_decode__sglang_Qwen3-8B_decode.json.gz"
_VLLM = "tracelens/inference__vllm_decode_full__graph_execution.json.gz"
_B200_PREFILL = "tracelens/b200__eager_trace.json.gz"
_FLUX = "tracelens/inference__xdit_flux.1_aiter_sage__profile_trace_rank_0.json.gz"


def _raw_kernels(path: Path) -> list[tuple[str, float]]:
    """(name, dur in us) of every kernel event, read with the standard library."""
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    return [(str(e["name"]), float(e["dur"])) for e in events if e.get("cat") == "kernel"]


def _us(kernels: list[tuple[str, float]], part: str = "") -> float:
    return sum(dur for name, dur in kernels if part in name)


@pytest.mark.parametrize(
    ("name", "decode"),
    [
        ("void paged_attention_ll4mi_QKV_mfma16_kernel<0, __hip_bfloat16>", True),
        ("void paged_attention_ll4mi_reduce_kernel<__hip_bfloat16>", True),
        ("void vllm::paged_attention_v2_kernel<__nv_bfloat16>", True),
        ("void vllm::paged_attention_v2_reduce_kernel<__nv_bfloat16>", True),
        ("_ZN10flashinfer33BatchDecodeWithPagedKVCacheKernelILNS_15PosEncodingMode", True),
        ("_fwd_grouped_kernel_stage1", True),
        ("_fwd_kernel_stage2", True),
        ("void flash::flash_fwd_splitkv_combine_kernel<Flash_fwd_kernel_traits<128>>", True),
        # Kernels that serve prefill too: decode only by the trace's served steps.
        ("kernel_unified_attention_2d", False),
        ("kernel_unified_attention_3d", False),
        ("void flash::flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128>>", False),
        ("flashinfer::BatchPrefillWithPagedKVCacheKernel", False),
        # TRT-LLM context (prefill) FMHA on a paged cache; prefill and training flash kernels.
        (
            "fmhaSm100aKernel_QkvE4m3OBfloat16H64PagedKvCausalP16VarSeqQ128Kv128PersistentContext",
            False,
        ),
        ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>", False),
        ("attn_fwd", False),
        # "decode" outside attention (not an attention kernel at all).
        ("nvjpeg_decode_kernel", False),
    ],
)
def test_decode_attention_by_name(name: str, decode: bool) -> None:
    assert is_decode_attention(name) is decode
    assert decode_attention(pl.Series([name]))[0] is decode


def _tables(names: list[str], annotations: list[str]) -> TraceTables:
    """One kernel per name (10 us each, back to back), H100, optional step annotations."""
    n = len(names)
    kernels = table_from_columns(
        "kernels",
        {
            "rank": [0] * n,
            "device": [0] * n,
            "stream": [7] * n,
            "name": names,
            "category": ["attention"] * n,
            "start_ns": [i * 10_000 for i in range(n)],
            "dur_ns": [10_000] * n,
            "external_id": [None] * n,
            "correlation": list(range(1, n + 1)),
        },
    )
    m = len(annotations)
    ops = table_from_columns(
        "ops",
        {
            "rank": [0] * m,
            "op_id": list(range(1, m + 1)),
            "pid": [1] * m,
            "tid": [1] * m,
            "name": annotations,
            "kind": ["user_annotation"] * m,
            "start_ns": [0] * m,
            "dur_ns": [n * 10_000] * m,
            "external_id": [None] * m,
            "depth": [0] * m,
            "parent": [None] * m,
            "input_dims": [None] * m,
            "input_types": [None] * m,
        },
    )
    info = DeviceInfo(rank=0, device=0, name="NVIDIA H100 80GB HBM3", num_sms=132)
    meta = TraceMeta(source="kineto", paths=("synthetic.json",), devices=(info,))
    return TraceTables(meta=meta, kernels=kernels, ops=ops).validate()


_MIXED = ["void vllm::paged_attention_v2_kernel<bf16>", "kernel_unified_attention_2d", "attn_fwd"]


def _bounds(tables: TraceTables) -> dict[str, str]:
    k = compute(tables, AnalysisOptions()).kernels
    return dict(zip(k["name"].to_list(), k["bound"].to_list(), strict=True))


def test_frame_paged_attention_is_memory_bound_by_name_alone() -> None:
    r = compute(_tables(_MIXED, []), AnalysisOptions())
    bounds = dict(zip(r.kernels["name"].to_list(), r.kernels["bound"].to_list(), strict=True))
    assert bounds == {_MIXED[0]: "memory", _MIXED[1]: "compute", _MIXED[2]: "compute"}
    assert r.summary.decode_attention_share == pytest.approx(1 / 3)
    assert r.summary.memory_bound_share == pytest.approx(1 / 3)
    assert r.summary.compute_bound_share == pytest.approx(2 / 3)
    assert "names say decode" in r.summary.decode_attention_note


def test_frame_every_attention_kernel_of_an_all_decode_trace_is_memory_bound() -> None:
    r = compute(_tables(_MIXED, ["step[DECODE bs=32]"]), AnalysisOptions())
    assert set(r.kernels["bound"].to_list()) == {"memory"}
    assert r.summary.decode_attention_share == pytest.approx(1.0)
    assert r.summary.compute_bound_share == 0.0
    assert "every served step is decode" in r.summary.decode_attention_note


def test_frame_prefill_steps_keep_attention_compute_bound() -> None:
    # A trace with a prefill step is not all-decode: only the paged kernel is decode.
    bounds = _bounds(_tables(_MIXED, ["step[DECODE bs=32]", "step[EXTEND bs=4]"]))
    assert bounds[_MIXED[0]] == "memory"
    assert bounds[_MIXED[1]] == bounds[_MIXED[2]] == "compute"


def test_sglang_decode_paged_attention_is_memory_bound() -> None:
    path = shared_trace(_SGLANG)
    r = roofline(AnalysisContext(load([path])))
    kernels = _raw_kernels(path)
    total_us = _us(kernels)
    paged_us = _us(kernels, "paged_attention")
    flashinfer_us = _us(kernels, "flashinfer_kv_indices")
    # 1949.6 us of QKV + 178.3 us of reduce over 9.78 ms of kernels (the report said 22%).
    assert paged_us / total_us == pytest.approx(0.2175, abs=0.001)
    s = r.summary
    assert s.decode_attention_share == pytest.approx(
        (paged_us + flashinfer_us) / total_us, abs=1e-3
    )
    assert s.compute_bound_share == 0.0
    assert s.memory_bound_share == pytest.approx(0.408, abs=0.002)
    attention = r.kernels.filter(pl.col("name").str.contains("paged_attention"))
    assert attention.height == 72 and set(attention["bound"].to_list()) == {"memory"}


def test_vllm_decode_unified_attention_is_memory_bound() -> None:
    path = shared_trace(_VLLM)
    r = roofline(AnalysisContext(load([path])))
    kernels = _raw_kernels(path)
    total_us = _us(kernels)
    unified_us = _us(kernels, "unified_attention")
    assert unified_us / total_us == pytest.approx(0.061, abs=0.001)  # was compute-bound
    assert r.summary.decode_attention_share == pytest.approx(unified_us / total_us, abs=1e-3)
    assert r.summary.compute_bound_share == 0.0
    assert "every served step is decode" in r.summary.decode_attention_note


@pytest.mark.parametrize("rel", [_B200_PREFILL, _FLUX])
def test_prefill_and_diffusion_attention_stays_compute_bound(rel: str) -> None:
    r = roofline(AnalysisContext(load([shared_trace(rel)])))
    assert r.summary.decode_attention_share == 0.0 and r.summary.decode_attention_note == ""
    attention = r.kernels.filter(
        (pl.col("category") == "attention") & (pl.col("basis") == "heuristic")
    )
    assert attention.height > 0
    assert set(attention["bound"].to_list()) == {"compute"}
