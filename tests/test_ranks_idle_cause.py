"""Ranks table: no largest idle cause named for a device idle under 1% (review 3, 13c).

vLLM decode (CUDA-graph replay): the GPU runs 10.72 of the 10.74 ms between its first and last
op (0.24% idle). The cell read "launch overhead 100.0%" for 0.02 ms of idle time, naming a
cause as if it mattered; it now reads "n/a (idle 0.2%)". ResNet-50 num_workers_4 idles 27.4%
of its window and keeps its cause.
"""

from __future__ import annotations

import gzip
import json

from conftest import shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.report.model import Table
from gpu_trace_analyzer.sections.overview import RANK_IDLE_CAUSE_MIN_PCT, ranks_section
from gpu_trace_analyzer.trace import load

_VLLM = "tracelens/inference__vllm_decode_full__graph_execution.json.gz"
_NW4 = "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz"


def _raw_idle_pct(rel: str) -> float:
    """Idle share of the span of the GPU ops, from the union of their raw intervals."""
    events = json.loads(gzip.decompress(shared_trace(rel).read_bytes()))["traceEvents"]
    spans = sorted(
        (float(e["ts"]), float(e["ts"]) + float(e["dur"]))
        for e in events
        if str(e.get("cat", "")).lower()
        in ("kernel", "gpu_memcpy", "gpu_memset", "memcpy", "memset")
    )
    busy, cur_s, cur_e = 0.0, spans[0][0], spans[0][1]
    for s, e in spans[1:]:
        if s > cur_e:
            busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    return 100.0 * (1 - busy / (spans[-1][1] - spans[0][0]))


def _cells(rel: str) -> list[str]:
    section = ranks_section(AnalysisContext(load([shared_trace(rel)])))
    assert section is not None
    table = section.blocks[0]
    assert isinstance(table, Table)
    return [str(row[-1]) for row in table.rows]


def test_no_cause_named_when_idle_is_negligible() -> None:
    assert _raw_idle_pct(_VLLM) < 0.3 < RANK_IDLE_CAUSE_MIN_PCT
    assert _cells(_VLLM) == ["n/a (idle 0.2%)"]  # was "launch overhead 100.0%"


def test_cause_named_when_idle_matters() -> None:
    assert _raw_idle_pct(_NW4) > 20
    (cell,) = _cells(_NW4)
    assert cell.startswith("CPU work ") and not cell.startswith("n/a")
