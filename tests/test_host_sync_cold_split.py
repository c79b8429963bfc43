"""host-sync follows the steady-state cost; the ledger splits the first step off (review E3).

tb_plugin ResNet-50 num_workers_4 (V100): the ledger's blocking-copy row is 37.6 ms, of which
36.4 ms is GPU idle inside one first-step pageable ``cudaMemcpyAsync`` of 40.0 ms (later
input copies of that site take a median 3.09 ms): a cold-start cost the cold-start finding reports.
The steady state idles 1.2 ms in blocking copies plus 0.7 ms in syncs (0.22% of the 846.5 ms
window) and blocks the CPU 2.9% of it: under host-sync's info thresholds (0.5% idle, 5%
blocked), so host-sync no longer advises removing blocking calls there.
"""

from __future__ import annotations

import gzip
import json

import pytest
from conftest import shared_trace
from gpu_trace_analyzer import load as analyze
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics import idle_ledger
from gpu_trace_analyzer.trace import load

_NW4 = "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz"
_SGLANG = "tracelens/inference__sglang_decode__sglang_Qwen3-8B_decode.json.gz"


def test_first_step_copy_is_the_slow_one_in_the_raw_trace() -> None:
    events = json.loads(gzip.decompress(shared_trace(_NW4).read_bytes()))["traceEvents"]
    steps = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]), str(e["name"]))
        for e in events
        if str(e.get("name", "")).startswith("ProfilerStep#")
    )
    copies = [e for e in events if e.get("name") == "cudaMemcpyAsync"]
    longest = max(copies, key=lambda e: int(e["dur"]))
    assert int(longest["dur"]) == 39_996  # us
    first_start, first_end, first_name = steps[0]
    assert first_name == "ProfilerStep#5" and first_start <= int(longest["ts"]) < first_end


def test_ledger_splits_blocking_copy_into_cold_start_and_steady_state() -> None:
    ctx = AnalysisContext(load([shared_trace(_NW4)]))
    split = idle_ledger.cold_start_split(ctx).to_dicts()
    assert split == [
        {
            "rank": 0,
            "cause": "blocking_copy",
            "idle_ns": 37_620_000,
            "cold_ns": 36_436_000,
            "steady_ns": 37_620_000 - 36_436_000,
        }
    ]
    # The row is the ledger's own blocking-copy total.
    assert idle_ledger.claimed(ctx, ("blocking_copy",), 0) == 37_620_000


def test_host_sync_is_silent_when_only_the_cold_start_blocks() -> None:
    ids = [f.rule_id for f in analyze(shared_trace(_NW4)).findings]
    assert "host-sync" not in ids  # was INFO advising to remove the blocking calls
    assert "cold-start" in ids  # the one-time cost is reported there


def test_host_sync_still_fires_without_a_cold_start() -> None:
    ctx = AnalysisContext(load([shared_trace(_SGLANG)]))
    (finding,) = [f for f in analyze(shared_trace(_SGLANG)).findings if f.rule_id == "host-sync"]
    assert finding.evidence["cold_start_idle_ns"] == 0
    assert finding.evidence["steady_idle_in_calls_pct"] == pytest.approx(
        finding.evidence["gpu_idle_in_calls_pct"]
    )
    assert idle_ledger.cold_start_split(ctx).height == 0
