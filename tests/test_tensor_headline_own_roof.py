"""Headline tensor throughput is qualified when the modeled tensor ops are memory-bound
(review 3, defect 10).

vLLM decode (MI300X, CUDA-graph replay): the only modeled tensor op is the LM head
``aten::mm 32x2880 . 2880x201088`` (bf16), one Tensile kernel of 276.678 us. Its FLOPs over
its time are 134.0 TFLOP/s, 10.2% of the 1,307 TFLOP/s bf16 tensor roof, which read as
"tensor cores 10% used"; but it moves 1.17 GB in that time, 4.23 TB/s = 79.9% of the
5.3 TB/s HBM roof: it is memory-bound and near its own roof. The headline now says so and
gives the modeled ops' time-weighted share of their own roofs (78.1%, with two tiny vector
ops). The synthetic training sample's compute-bound GEMMs keep the plain figure.
"""

from __future__ import annotations

import gzip
import json

from conftest import SAMPLES, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics.roofline import roofline
from gpu_trace_analyzer.sections.overview import roofline_rows
from gpu_trace_analyzer.trace import load

_VLLM = "tracelens/inference__vllm_decode_full__graph_execution.json.gz"
_MI300X_HBM_BYTES_PER_S = 5.3e12
_MI300X_BF16_TENSOR_FLOP_PER_S = 1307.4e12


def _tensor_row(path: object) -> list[str]:
    rows = roofline_rows(AnalysisContext(load([path])))  # type: ignore[list-item]
    (row,) = [r for r in rows if r[0] == "achieved tensor throughput"]
    return [str(c) for c in row]


def test_memory_bound_tensor_op_is_not_read_as_tensor_core_use() -> None:
    path = shared_trace(_VLLM)
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    (mm,) = [
        e
        for e in events
        if e.get("name") == "aten::mm"
        and e["args"].get("Input Dims") == [[32, 2880], [2880, 201088]]
    ]
    (gemm,) = [
        e
        for e in events
        if e.get("cat") == "kernel" and e["args"].get("External id") == mm["args"]["External id"]
    ]
    dur_s = float(gemm["dur"]) * 1e-6
    m, k, n = 32, 2880, 201_088
    flops = 2 * m * k * n
    nbytes = 2 * (m * k + k * n + m * n)  # bf16 A, B and C
    tflops = flops / dur_s / 1e12
    pct_tensor_roof = 100 * flops / dur_s / _MI300X_BF16_TENSOR_FLOP_PER_S
    pct_hbm_roof = 100 * nbytes / dur_s / _MI300X_HBM_BYTES_PER_S
    assert round(tflops, 1) == 134.0 and round(pct_tensor_roof, 1) == 10.2
    assert round(pct_hbm_roof, 1) == 79.9
    # Memory-bound: the op's intensity is below the MI300X ridge (peak FLOP/s over bandwidth).
    assert flops / nbytes < _MI300X_BF16_TENSOR_FLOP_PER_S / _MI300X_HBM_BYTES_PER_S

    s = roofline(AnalysisContext(load([path]))).summary
    assert s.tensor_memory_bound_share == 1.0
    assert s.modeled_pct_of_own_roof is not None
    assert 75.0 < s.modeled_pct_of_own_roof <= pct_hbm_roof  # time-weighted with 2 tiny ops

    _name, value, note = _tensor_row(path)
    assert value == "134.0 TFLOP/s (memory-bound ops)"  # was "134.0 TFLOP/s"
    assert "100.0% of the modeled tensor-op time is memory-bound" in note
    assert "no measure of tensor-core use" in note
    assert f"reach {s.modeled_pct_of_own_roof:.1f}% of their own roofs" in note


def test_compute_bound_tensor_ops_keep_the_plain_figure() -> None:
    path = SAMPLES / "synthetic_train.json.gz"
    s = roofline(AnalysisContext(load([path]))).summary
    assert s.tensor_memory_bound_share < 0.5
    _name, value, note = _tensor_row(path)
    assert value.endswith("TFLOP/s") and "memory-bound" not in value
    assert "no measure of tensor-core use" not in note
    assert "of their own roofs (time-weighted)" in note
