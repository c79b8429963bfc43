"""Convolution kernels are counted from the op that launched them (review #9).

cuDNN runs many convolutions as ``*sgemm*`` / ``implicit_gemm`` engines. On
``hta/ns_resolution_trace`` (V100, fp32 ResNet-style training) the review found 116.9 of the
117.3 ms of GEMM-named kernels launched by ``aten::convolution_backward`` and
``aten::cudnn_convolution``. Ground truth here: the raw JSON, joined by hand (kernel
``External id`` -> the CPU ops carrying it).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from conftest import shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics.op_families import family_time
from gpu_trace_analyzer.parsers.categories import family_of
from gpu_trace_analyzer.rules.no_tensor_cores import NoTensorCores, NoTensorCoresConfig
from gpu_trace_analyzer.trace import load

_TRACE = "hta/ns_resolution_trace"
_CONV_OPS = re.compile(r"^aten::(cudnn_convolution\w*|convolution_backward\w*)$")


def _raw_gemm_named_by_conv_ops(path: Path) -> tuple[float, float]:
    """(ms of GEMM-named kernels launched by conv ops, ms of all GEMM-named kernels)."""
    (trace,) = sorted(path.glob("*.json.gz"))
    events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    conv_ext = {
        e["args"]["External id"]
        for e in events
        if e.get("cat") == "cpu_op" and _CONV_OPS.match(e["name"]) and "External id" in e["args"]
    }
    by_conv = total = 0.0
    for e in events:
        if e.get("cat") != "kernel" or family_of(e["name"]) != "gemm":
            continue
        total += e["dur"]
        if e["args"].get("External id") in conv_ext:
            by_conv += e["dur"]
    return by_conv / 1e3, total / 1e3


def test_gemm_named_kernels_of_conv_ops_count_as_convolution() -> None:
    path = shared_trace(_TRACE)
    by_conv_ms, gemm_named_ms = _raw_gemm_named_by_conv_ops(path)
    assert by_conv_ms == pytest.approx(116.9, abs=0.1)  # the review's figure
    fam = family_time(load([path]))
    assert fam.ns("gemm") / 1e6 == pytest.approx(gemm_named_ms - by_conv_ms, abs=0.01)
    assert fam.share("conv") == pytest.approx(63.5, abs=0.1)
    gemm = fam.table.filter(fam.table["family"] == "gemm")
    assert not any(_CONV_OPS.match(op) for op in gemm["top_ops"][0])


def test_no_tensor_cores_splits_fp32_gemm_and_conv_by_the_launching_op() -> None:
    path = shared_trace(_TRACE)
    ctx = AnalysisContext(load([path]))
    (finding,) = NoTensorCores().check(ctx, NoTensorCoresConfig())
    assert float(finding.evidence["fp32_gemm_ns"]) / 1e6 < 1.0  # aten::mm/addmm only
    assert float(finding.evidence["fp32_conv_ns"]) / 1e6 > 290.0
    assert "fp32 GEMMs (0.341 ms) and convolutions (297 ms)" in finding.summary
