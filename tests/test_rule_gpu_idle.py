"""gpu-idle: the idle ledger's summary; fires on idle GPUs with the right numbers, stays
quiet on busy ones, claims only the ledger rows no other rule explains.

Ground truth: the synthetic generator's own records (``truth()`` and its lists of GPU
activities, runtime calls and CPU events, run through the plain-Python ledger
``scenarios_steps.builder_ledger``), and for the real tb_plugin ResNet-50 traces an
independent re-computation from the raw JSON below (union of GPU intervals inside the
steps window), plus the trace authors' statement that ``num_workers_0`` is
input-pipeline bound and ``num_workers_4`` is not.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import msgspec
import pytest
import scenarios_steps
import synthetic
from conftest import shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.metrics import idle_ledger
from gpu_trace_analyzer.parsers import kineto
from gpu_trace_analyzer.parsers.schema import TraceTables
from gpu_trace_analyzer.rules.gpu_idle import GpuIdle, GpuIdleConfig

WORKERS_0 = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"
WORKERS_4 = "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz"


def _check(tables: TraceTables, **overrides: Any) -> list[Finding]:
    return list(GpuIdle().check(AnalysisContext(tables), GpuIdleConfig(**overrides)))


@pytest.fixture(scope="module")
def idle30(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[TraceTables, dict[str, Any], synthetic.TraceBuilder]:
    builder = synthetic.gpu_idle(0.3)
    path = builder.write(tmp_path_factory.mktemp("idle") / "idle30.json.gz")
    return kineto.parse(path), builder.truth(), builder


def test_fires_on_synthetic_idle_with_generator_truth(
    idle30: tuple[TraceTables, dict[str, Any], synthetic.TraceBuilder],
) -> None:
    tables, truth, builder = idle30
    (finding,) = _check(tables)
    window = truth["steps_window_extended"]  # [first step start, max(last step end, GPU end)]
    ev = finding.evidence
    assert ev["idle_ns"] == window["idle_ns"]
    assert ev["span_ns"] == window["span_ns"]
    assert ev["busy_ns"] == window["busy_ns"]
    assert ev["idle_pct"] == pytest.approx(100.0 * window["idle_ns"] / window["span_ns"], abs=0.01)
    assert ev["steps"] == 5
    expected = scenarios_steps.builder_ledger(builder)
    assert sum(expected.values()) == window["idle_ns"]
    ledger = idle_ledger.by_cause(AnalysisContext(tables))
    assert dict(zip(ledger["cause"], ledger["idle_ns"], strict=True)) == expected
    # gpu-idle claims only the rows no dedicated rule explains.
    own = ("dependency_wait", "queued_boundary", "cpu_work", "other")
    claimed = sum(expected.get(c, 0) for c in own)
    assert ev["idle_claimed_ns"] == claimed == finding.impact_ns
    assert ev["ledger_causes"] == ",".join(own)
    assert ev["dominant_cause"] == max(expected, key=lambda c: expected[c])
    own_pct = 100.0 * claimed / window["span_ns"]  # severity follows its own share
    assert finding.severity is (
        Severity.CRITICAL if own_pct >= 40 else Severity.WARNING if own_pct >= 15 else Severity.INFO
    )
    assert finding.title == "GPU idle for a large share of the analysis window"
    assert "with_stack=True" in finding.recommendation or "see the" in finding.recommendation


def test_thresholds_move_the_severity(
    idle30: tuple[TraceTables, dict[str, Any], synthetic.TraceBuilder],
) -> None:
    tables, truth, _ = idle30
    idle_pct = truth["steps_window_extended"]["idle_pct"]
    assert _check(tables, warning_idle_pct=idle_pct + 1.0) == []
    (critical,) = _check(tables, critical_idle_pct=0.0)
    assert critical.severity is Severity.CRITICAL


def test_does_not_fire_on_healthy(tmp_path: Path) -> None:
    builder = synthetic.healthy()
    tables = kineto.parse(builder.write(tmp_path / "healthy.json.gz"))
    assert builder.truth()["steps_window_extended"]["idle_pct"] < 15.0
    assert _check(tables) == []


def _raw_idle(path: Path) -> tuple[int, int]:
    """(span_ns, idle_ns) over the steps window, straight from the 2021-schema JSON.

    Window: first ProfilerStep start to the later of the last step's end and the end of the
    GPU work whose launching Runtime call (matched on args.correlation) started inside the
    steps. Idle: window minus the union of Kernel/Memcpy/Memset intervals clipped to it.
    """
    with gzip.open(path, "rb") as f:
        events = msgspec.json.decode(f.read())["traceEvents"]
    steps = [e for e in events if str(e.get("name", "")).startswith("ProfilerStep#")]
    lo = min(e["ts"] for e in steps)
    last_end = max(e["ts"] + e["dur"] for e in steps)
    launch = {
        e["args"]["correlation"]: e["ts"]
        for e in events
        if e.get("cat") == "Runtime" and "correlation" in e.get("args", {})
    }
    gpu = [e for e in events if e.get("cat") in ("Kernel", "Memcpy", "Memset")]
    ends = [
        e["ts"] + e["dur"]
        for e in gpu
        if lo <= launch.get(e["args"].get("correlation"), e["ts"]) < last_end
    ]
    hi = max(last_end, *ends)
    busy = scenarios_steps.merge(
        [(max(e["ts"], lo), min(e["ts"] + e["dur"], hi)) for e in gpu if e["ts"] < hi]
    )
    busy_us = sum(e - s for s, e in busy if e > s)
    return (hi - lo) * 1000, (hi - lo - busy_us) * 1000


def test_fires_on_input_bound_resnet_and_points_at_the_dataloader() -> None:
    path = shared_trace(WORKERS_0)
    (finding,) = _check(kineto.parse(path))
    span_ns, idle_ns = _raw_idle(path)
    assert (finding.evidence["span_ns"], finding.evidence["idle_ns"]) == (span_ns, idle_ns)
    # 461,995 us of 1,065,553 us = 43.4% idle, but most of it is the DataLoader's (claimed by
    # dataloader-stall): this finding's own share is small, so it only summarizes.
    assert finding.severity is Severity.INFO
    assert finding.evidence["dominant_cause"] == "dataloader"
    assert float(finding.evidence["idle_dataloader_pct"]) > 50.0
    assert "dataloader-stall" in finding.recommendation  # that finding explains it
    assert "DataLoader" in finding.summary
    # The DataLoader row is dataloader-stall's: not claimed here.
    assert "dataloader" not in str(finding.evidence["ledger_causes"])
    assert int(finding.evidence["idle_claimed_ns"]) < idle_ns / 2


def test_resnet_with_workers_is_not_blamed_on_the_dataloader() -> None:
    path = shared_trace(WORKERS_4)
    (finding,) = _check(kineto.parse(path))
    span_ns, idle_ns = _raw_idle(path)
    assert (finding.evidence["span_ns"], finding.evidence["idle_ns"]) == (span_ns, idle_ns)
    assert float(finding.evidence["idle_pct"]) > 15.0  # 232,129 us of 846,542 us = 27.4%
    assert finding.evidence["dominant_cause"] != "dataloader"
    assert float(finding.evidence.get("idle_dataloader_pct", 0.0)) < 5.0
    assert "num_workers" not in finding.recommendation
