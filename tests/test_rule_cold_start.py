"""`cold-start`: the first profiled step against the median of the others, on synthetic traces
with a known warm-up and on tb_plugin's ResNet-50 traces (step times recomputed here from the
raw JSON)."""

from __future__ import annotations

import functools
import gzip
import statistics
from pathlib import Path
from typing import Any

import msgspec
import pytest
import synthetic
from conftest import needs_shared, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers.kineto import parse
from gpu_trace_analyzer.parsers.schema import TraceTables
from gpu_trace_analyzer.rules.cold_start import ColdStart
from raw_steps import own_steps

WORKERS_0 = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"
WORKERS_4 = "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz"


@functools.cache
def _parsed(path: Path) -> TraceTables:
    return parse(path)


def _run(path: Path, **overrides: Any) -> list[Finding]:
    ctx = AnalysisContext(_parsed(path))
    return list(ColdStart().check(ctx, ColdStart.Config(**overrides)))


class _Args(msgspec.Struct):
    correlation: int | None = None


class _Event(msgspec.Struct):
    """The fields of a raw 2021-era trace event these checks read (integer us)."""

    name: str = ""
    cat: str = ""
    ts: int = 0
    dur: int = 0
    args: _Args | None = None


class _Doc(msgspec.Struct):
    traceEvents: list[_Event]


def _raw_step_us(rel: str) -> list[float]:
    """Each step's own time (`raw_steps.own_steps`) from the raw JSON, in us."""
    doc = msgspec.json.decode(gzip.decompress(shared_trace(rel).read_bytes()), type=_Doc)
    events = doc.traceEvents
    steps = [
        (e.ts, e.ts + e.dur, int(e.name.split("#")[1]))
        for e in events
        if e.name.startswith("ProfilerStep#")
    ]
    runtime = [
        (e.ts, e.ts + e.dur, e.name, e.args.correlation if e.args else None)
        for e in events
        if e.cat == "Runtime"
    ]
    gpu = [
        (e.ts, e.ts + e.dur, e.args.correlation if e.args else None)
        for e in events
        if e.cat in ("Kernel", "Memcpy", "Memset")
    ]
    return [s["own"] for s in own_steps(steps, runtime, gpu)]


@needs_shared
@pytest.mark.parametrize("rel", [WORKERS_0, WORKERS_4])
def test_silent_on_resnet_traces_whose_first_step_is_warm(rel: str) -> None:
    """The step as a whole is under the ratio on both; num_workers=4's first step holds one
    one-time 40 ms pageable input copy (1.5 ms later): an informational call-site finding."""
    steps = _raw_step_us(rel)
    assert steps[0] / statistics.median(steps[1:]) < 1.5
    found = _run(shared_trace(rel))
    if rel == WORKERS_0:
        assert found == []
        return
    (finding,) = found
    assert finding.severity is Severity.INFO
    assert finding.evidence["cold_call_ns"] == 39_996_000  # the review's raw-data figure


@needs_shared
def test_evidence_on_resnet_num_workers_4_under_a_lower_threshold() -> None:
    steps = _raw_step_us(WORKERS_4)
    median = statistics.median(steps[1:])
    ratio = steps[0] / median
    assert 1.4 < ratio < 1.5  # step 5: 182 ms against a 126 ms median
    findings = _run(shared_trace(WORKERS_4), warning_ratio=1.4)
    assert len(findings) == 1
    f = findings[0]
    assert f.evidence["first_step"] == 5
    assert f.evidence["first_step_ns"] == 1000 * steps[0]
    assert f.evidence["median_step_ns"] == 1000 * median
    assert f.evidence["ratio"] == pytest.approx(ratio, abs=1e-3)
    assert f.impact_ns == 1000 * (steps[0] - median)
    assert f.evidence["excess_share_of_steps_pct"] == pytest.approx(
        100 * (steps[0] - median) / sum(steps), abs=0.01
    )


def _trace(
    tmp_path: Path, *, host_warmup_ns: int = 0, gpu_warmup_ns: int = 0
) -> tuple[Path, synthetic.TraceBuilder]:
    """Five steps of one 4 ms kernel and a device sync; the first also pays a host-side
    warm-up (compilation) and/or GPU-side warm-up kernels (autotuning)."""
    b = synthetic.TraceBuilder()
    for i in range(5):
        with b.step():
            if i == 0 and host_warmup_ns:
                b.cpu(host_warmup_ns)
            if i == 0 and gpu_warmup_ns:
                b.kernel("autotune_candidate", gpu_warmup_ns, grid=(528, 1, 1))
            b.kernel("train_kernel", 4_000_000, grid=(528, 1, 1))
            b.sync("device")
    return b.write(tmp_path / "cold.json.gz"), b


def test_host_side_warmup_fires_with_exact_ratio(tmp_path: Path) -> None:
    path, b = _trace(tmp_path, host_warmup_ns=20_000_000)
    durations = [s.end_ns - s.start_ns for s in b.steps]  # the sync ends each step on the CPU
    median = statistics.median(durations[1:])
    findings = _run(path)
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.WARNING
    assert f.evidence["first_step"] == 0
    assert f.evidence["first_step_ns"] == durations[0]
    assert f.evidence["median_step_ns"] == median
    assert f.evidence["ratio"] == pytest.approx(durations[0] / median, abs=1e-3)
    assert f.evidence["excess_ns"] == durations[0] - median
    assert f.evidence["first_step_gpu_busy_ns"] == f.evidence["median_step_gpu_busy_ns"]
    assert "CPU side" in f.recommendation and "torch.compile" in f.recommendation


def test_gpu_side_warmup_points_at_autotuning(tmp_path: Path) -> None:
    path, _ = _trace(tmp_path, gpu_warmup_ns=12_000_000)
    findings = _run(path)
    assert len(findings) == 1
    f = findings[0]
    first, median = f.evidence["first_step_gpu_busy_ns"], f.evidence["median_step_gpu_busy_ns"]
    assert isinstance(first, int) and isinstance(median, int)
    assert first - median == 12_000_000
    assert "cudnn.benchmark" in f.recommendation


def test_small_warmup_is_silent(tmp_path: Path) -> None:
    path, b = _trace(tmp_path, host_warmup_ns=1_000_000)  # 5 ms against 4 ms: 1.25x
    durations = [s.end_ns - s.start_ns for s in b.steps]
    assert durations[0] / statistics.median(durations[1:]) < 1.5
    assert _run(path) == []


def test_cold_start_scenario_matches_its_ground_truth(tmp_path: Path) -> None:
    built = synthetic.cold_start()
    findings = _run(built.write(tmp_path / "cold.json.gz"))
    assert len(findings) == 1
    f = findings[0]
    assert f.evidence["first_step_ns"] == built.expect["first_step_ns"]
    assert f.evidence["median_step_ns"] == built.expect["median_step_ns"]
    assert f.evidence["ratio"] == pytest.approx(built.expect["ratio"], abs=1e-3)


@pytest.mark.parametrize("scenario", ["healthy", "factor_1_2"])
def test_scenarios_without_cold_start_are_silent(tmp_path: Path, scenario: str) -> None:
    built = synthetic.healthy() if scenario == "healthy" else synthetic.cold_start(factor=1.2)
    assert _run(built.write(tmp_path / "t.json.gz")) == []
