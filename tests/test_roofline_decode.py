"""Name-only GEMM/MoE kernels in decode steps are unclassified, not compute-bound (review #5).

vLLM decode with 32 sequences (``execute_32_context_0(...)_generation_32``, gpt-oss on
MI300X, graph replay): 97.3% of kernel time has no shapes. The one modeled GEMM of the same
class (``aten::mm`` 32x2880 x 2880x201088) is memory-bound in the report itself; the
name-only ``matmul_ogs`` expert GEMMs used to default to compute-bound (82% of kernel time).
Ground truth: the kernel names in the raw JSON, categorized by hand with the parser's table.
"""

from __future__ import annotations

import gzip
import json

import polars as pl
import pytest
from conftest import shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics.roofline import roofline
from gpu_trace_analyzer.metrics.workload import serving_decode
from gpu_trace_analyzer.parsers.categories import category_of
from gpu_trace_analyzer.trace import load

_VLLM = "tracelens/inference__vllm_decode_full__graph_execution.json.gz"
_B200_PREFILL = "tracelens/b200__eager_trace.json.gz"


def test_decode_gemms_by_name_are_unclassified() -> None:
    path = shared_trace(_VLLM)
    tables = load([path])
    assert serving_decode(tables) is not None
    result = roofline(AnalysisContext(tables))
    s = result.summary
    assert "decode" in s.unclassified_note
    assert s.decode_step.startswith("execute_32_context_0")
    # No name-only kernel of the GEMM category is called compute-bound any more.
    gemm = result.kernels.filter((pl.col("basis") == "heuristic") & (pl.col("category") == "gemm"))
    assert gemm.height > 0 and set(gemm["bound"].to_list()) == {"unclassified"}
    assert (gemm.filter(pl.col("name").str.contains("matmul_ogs"))["dur_ns"].sum() or 0) > 0
    # Hand count from the raw trace: the GEMM-category kernel time.
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    kernels = [e for e in events if e.get("cat") == "kernel"]
    gemm_us = sum(e["dur"] for e in kernels if category_of(e["name"]) == "gemm")
    total_us = sum(e["dur"] for e in kernels)
    assert gemm_us / total_us > 0.5
    assert s.compute_bound_share < 1.0 - gemm_us / total_us + 0.01
    assert s.unclassified_share >= gemm_us / total_us - 0.03  # less the modeled aten::mm


def test_prefill_steps_keep_the_name_heuristic() -> None:
    tables = load([shared_trace(_B200_PREFILL)])
    assert serving_decode(tables) is None  # execute_context_1(888...)_generation_0: prefill
    s = roofline(AnalysisContext(tables)).summary
    assert s.unclassified_note == ""
    assert s.heuristic_compute_bound_share == pytest.approx(0.55, abs=0.05)
