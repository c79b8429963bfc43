"""Cold-start call baseline compares like with like (review 3, defect 9).

tb_plugin ResNet-50 num_workers_4: every step makes one 19.3 MB input ``cudaMemcpyAsync`` and
then one 256 B label copy from the same site (``aten::copy_``). The first step's input copy
(40.0 ms) was judged against the median of both kinds in the later steps (1.52 ms); keyed on
the call's index within its step it is judged against the later input copies (median
3.09 ms), so the one-time cost is 36.9 ms, not 38.5 ms.
"""

from __future__ import annotations

import gzip
import json
import statistics

from conftest import shared_trace
from gpu_trace_analyzer import load as analyze
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics import host_blocking
from gpu_trace_analyzer.trace import load

_NW4 = "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz"
_NW0 = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"


def _copies_per_step(rel: str) -> list[list[tuple[int, int]]]:
    """Per profiled step, its cudaMemcpyAsync calls in order as (dur us, bytes of the copy)."""
    events = json.loads(gzip.decompress(shared_trace(rel).read_bytes()))["traceEvents"]
    steps = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if str(e.get("name", "")).startswith("ProfilerStep#")
    )
    nbytes = {
        e["args"].get("correlation"): int(e["args"].get("bytes", 0))
        for e in events
        if e.get("cat") in ("Memcpy", "gpu_memcpy")
    }
    calls = sorted((e for e in events if e.get("name") == "cudaMemcpyAsync"), key=lambda e: e["ts"])
    return [
        [
            (int(c["dur"]), nbytes.get(c["args"].get("correlation"), 0))
            for c in calls
            if s <= c["ts"] < e
        ]
        for s, e in steps
    ]


def test_first_input_copy_is_judged_against_later_input_copies() -> None:
    per_step = _copies_per_step(_NW4)
    first_dur, first_bytes = per_step[0][0]
    assert (first_dur, first_bytes) == (39_996, 19_267_584)
    later_inputs = [s[0][0] for s in per_step[1:]]
    assert all(s[0][1] == first_bytes and s[1][1] == 256 for s in per_step)
    steady_us = int(statistics.median(later_inputs))  # 3,088 us
    mixture_us = statistics.median([d for s in per_step[1:] for d, _ in s])  # ~1.55 ms
    assert steady_us == 3_088 and mixture_us < 2_000

    out = host_blocking.first_step_outliers(AnalysisContext(load([shared_trace(_NW4)])))
    assert out.height == 1
    row = out.row(0, named=True)
    assert row["dur_ns"] == first_dur * 1000
    assert row["median_ns"] == steady_us * 1000  # was 1.52 ms, the input/label mixture
    assert row["excess_ns"] == (first_dur - steady_us) * 1000  # 36.9 ms

    (cold,) = [f for f in analyze(shared_trace(_NW4)).findings if f.rule_id == "cold-start"]
    assert cold.evidence["steady_call_median_ns"] == 3_088_000
    assert cold.evidence["cold_call_excess_ns"] == 36_908_000
    assert "3.09 ms" in cold.summary and "36.9 ms" in cold.summary


def test_no_outlier_when_first_step_copies_match_the_later_ones() -> None:
    per_step = _copies_per_step(_NW0)
    later = [s[0][0] for s in per_step[1:] if s]
    # The first step's k-th copy stays within 3x of the later k-th copies' median.
    assert per_step[0] and per_step[0][0][0] < 3 * statistics.median(later)
    out = host_blocking.first_step_outliers(AnalysisContext(load([shared_trace(_NW0)])))
    assert out.height == 0
