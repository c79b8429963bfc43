"""launch-bound: tiny kernels launched more slowly than the GPU runs them.

Ground truth: the synthetic ``launch_bound`` scenario (2,000 kernels of 3/4/5 us, each
launched by a 7 us cudaLaunchKernel) and counts taken from the raw JSON of real traces.
"""

from __future__ import annotations

import gzip
from typing import Any

import msgspec
import pytest
import synthetic
from conftest import shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers import kineto
from gpu_trace_analyzer.parsers.schema import TraceTables
from gpu_trace_analyzer.rules.launch_bound import LaunchBound, LaunchBoundConfig

ANNOTATED = "hta/with_gpu_user_annotation/step_based_trace_2543932.json.gz"
NORMALIZATION = "tracelens/perf_model__normalization__normalization_layer_test.json.gz"
WORKERS_4 = "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz"


def _check(tables: TraceTables, **overrides: Any) -> list[Finding]:
    return list(LaunchBound().check(AnalysisContext(tables), LaunchBoundConfig(**overrides)))


def _events(rel: str) -> list[dict[str, Any]]:
    with gzip.open(shared_trace(rel), "rb") as f:
        events: list[dict[str, Any]] = msgspec.json.decode(f.read())["traceEvents"]
    return events


def _union_us(intervals: list[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            total += 0.0 if cur_e is None or cur_s is None else cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_s is not None and cur_e is not None:
        total += cur_e - cur_s
    return total


def _short_gaps_ns(builder: synthetic.TraceBuilder) -> int:
    """The idle ledger's launch_overhead row from the builder's own records: gaps under
    30 us between two merged GPU activities, less the time inside blocking calls (syncs)."""
    busy = synthetic.merge((a.start_ns, a.end_ns) for a in builder.gpu)
    gaps = [(busy[i][1], busy[i + 1][0]) for i in range(len(busy) - 1)]
    short = [(s, e) for s, e in gaps if 0 < e - s < 30_000]
    syncs = synthetic.merge(
        (c.start_ns, c.end_ns) for c in builder.runtime if "Synchronize" in c.name
    )
    inside = sum(max(0, min(e, ce) - max(s, cs)) for s, e in short for cs, ce in syncs)
    return sum(e - s for s, e in short) - inside


@pytest.fixture(scope="module")
def launch_trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[TraceTables, dict[str, Any]]:
    builder = synthetic.launch_bound()
    path = builder.write(tmp_path_factory.mktemp("launch") / "launch.json.gz")
    truth = builder.truth()
    truth["short_gaps_ns"] = _short_gaps_ns(builder)
    return kineto.parse(path), truth


def test_fires_on_synthetic_launch_bound(launch_trace: tuple[TraceTables, Any]) -> None:
    tables, truth = launch_trace
    (finding,) = _check(tables)
    ev, expect = finding.evidence, truth["expect"]
    assert ev["kernels"] == expect["kernels"] == 2000
    assert ev["short_kernels"] == 2000  # 3, 4 and 5 us are all under 10 us
    assert ev["median_kernel_ns"] == 4000  # the middle of 3/4/5 us in equal numbers
    assert ev["launch_calls"] == 2000
    assert ev["launch_ns"] == expect["launch_ns"] == 2000 * 7_000
    assert ev["gpu_busy_ns"] == expect["gpu_busy_ns"]
    assert ev["median_launch_ns"] == 7_000
    span = truth["steps_window_extended"]["span_ns"]
    excess_pct = 100.0 * (expect["launch_ns"] - expect["gpu_busy_ns"]) / span
    assert ev["excess_launch_pct"] == pytest.approx(excess_pct, abs=0.05)
    gaps = truth["short_gaps_ns"]
    assert ev["idle_claimed_ns"] == gaps and ev["ledger_causes"] == "launch_overhead"
    assert finding.impact_ns == gaps
    gap_pct = 100.0 * gaps / span
    assert finding.severity is (Severity.CRITICAL if gap_pct >= 25 else Severity.WARNING)
    assert str(round(gaps / 1e6, 2)) in finding.summary
    assert finding.table is not None
    assert finding.table.rows[0][1] == 2000  # one kernel name, all 2,000 calls
    assert "CUDA/HIP graph" in finding.recommendation
    assert "optimizer" not in finding.recommendation  # no training ops in this trace


def test_thresholds_on_the_gaps_and_the_launch_cost(
    launch_trace: tuple[TraceTables, Any],
) -> None:
    tables, truth = launch_trace
    gap_pct = 100.0 * truth["short_gaps_ns"] / truth["steps_window_extended"]["span_ns"]
    # Either signal fires on its own: the short gaps, or the launch cost over busy time.
    assert _check(tables, min_kernels=2001, warning_gap_pct=gap_pct + 1) == []
    (info,) = _check(tables, warning_gap_pct=gap_pct + 1)
    assert info.severity is Severity.INFO  # busy/launch = 8.0/14.0 = 0.57 alone
    assert _check(tables, warning_busy_to_launch=0.5, warning_gap_pct=gap_pct + 1) == []


def test_no_graph_advice_when_graphs_already_run(
    launch_trace: tuple[TraceTables, Any],
) -> None:
    from gpu_trace_analyzer.metrics.workload import WorkloadProfile
    from gpu_trace_analyzer.rules.launch_bound import _recommendation

    ctx = AnalysisContext(launch_trace[0])
    with_graphs = _recommendation(ctx, WorkloadProfile("inference", graph_launches=12))
    assert "already run" in with_graphs and "reduce-overhead" not in with_graphs
    assert "reduce-overhead" in _recommendation(ctx, WorkloadProfile("inference"))


def test_fires_on_real_tiny_kernel_trace() -> None:
    events = _events(ANNOTATED)
    kernels = [e for e in events if e.get("cat") == "kernel"]
    launches = [e for e in events if e.get("name") == "cudaLaunchKernel"]
    gpu = [e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    busy_ns = round(_union_us([(e["ts"], e["ts"] + e["dur"]) for e in gpu]) * 1000)
    (finding,) = _check(kineto.parse(shared_trace(ANNOTATED)))
    ev = finding.evidence
    assert ev["kernels"] == len(kernels) == 130
    assert ev["short_kernels"] == sum(1 for e in kernels if e["dur"] < 10)
    assert ev["launch_calls"] == len(launches)
    assert ev["launch_ns"] == round(sum(e["dur"] for e in launches) * 1000)
    assert ev["gpu_busy_ns"] == busy_ns


def test_does_not_fire_on_large_kernels() -> None:
    assert _check(kineto.parse(shared_trace(WORKERS_4))) == []


def test_lazy_module_loads_are_not_launch_overhead() -> None:
    """One hipLaunchKernel takes 331 ms (code object loading on first use): left out, the
    launch calls take about 1 ms of a 1,069 ms window, which is not a launch bottleneck."""
    events = _events(NORMALIZATION)
    launches = [
        e["dur"]
        for e in events
        if str(e.get("name", "")).startswith("hip") and "Launch" in e["name"]
    ]
    assert max(launches) > 300_000  # us
    tables = kineto.parse(shared_trace(NORMALIZATION))
    assert _check(tables) == []
    assert _check(tables, min_launch_share_pct=0.0) != []  # short kernels, launch > busy
