"""`step-variance`: coefficient of variation of device-aware step times, checked against step
times recomputed here from the raw JSON of real traces, and on synthetic traces."""

from __future__ import annotations

import gzip
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
import synthetic
from conftest import needs_shared, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers.kineto import parse
from gpu_trace_analyzer.rules.step_variance import StepVariance
from raw_steps import own_steps

WORKERS_4 = "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz"
NS_RESOLUTION = "hta/ns_resolution_trace/rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz"
_RUNTIME = ("Runtime", "cuda_runtime", "cuda_driver")
_GPU = ("Kernel", "Memcpy", "Memset", "kernel", "gpu_memcpy", "gpu_memset")
_CPU = ("Operator", "cpu_op", "user_annotation")


def _run(path: Path, **overrides: Any) -> list[Finding]:
    ctx = AnalysisContext(parse(path))
    return list(StepVariance().check(ctx, StepVariance.Config(**overrides)))


class _Args(msgspec.Struct):
    correlation: int | None = None


class _Event(msgspec.Struct):
    """The fields of a raw trace event these checks read (times in us)."""

    name: str = ""
    cat: str = ""
    ph: str = ""
    ts: float = 0.0
    dur: float = 0.0
    args: _Args | None = None


class _Doc(msgspec.Struct):
    traceEvents: list[_Event]


def _events(rel: str) -> list[_Event]:
    raw = gzip.decompress(shared_trace(rel).read_bytes())
    return msgspec.json.decode(raw, type=_Doc).traceEvents


def _raw_steps(events: list[_Event]) -> list[dict[str, Any]]:
    """Each step's own time from raw events (`raw_steps.own_steps`), times in us: ``dur``
    is the step's own time, ``cpu_dur`` its CPU range."""
    steps = [
        (e.ts, e.ts + e.dur, int(e.name.split("#")[1]))
        for e in events
        if e.name.startswith("ProfilerStep#")
    ]
    runtime = [
        (e.ts, e.ts + e.dur, e.name, e.args.correlation if e.args else None)
        for e in events
        if e.cat in _RUNTIME
    ]
    gpu = [
        (e.ts, e.ts + e.dur, e.args.correlation if e.args else None)
        for e in events
        if e.cat in _GPU
    ]
    return [{**s, "dur": s["own"], "cpu_dur": s["cpu"]} for s in own_steps(steps, runtime, gpu)]


def _cv(values: Sequence[float]) -> float:
    return 100 * statistics.pstdev(values) / statistics.fmean(values)


def _cpu_ops(events: list[_Event]) -> list[tuple[float, float, str]]:
    """(start, end, name) of the CPU ops and annotations."""
    return [(e.ts, e.ts + e.dur, e.name) for e in events if e.cat in _CPU and e.ph == "X"]


def _children_time(ops: list[tuple[float, float, str]], step: dict[str, Any]) -> dict[str, float]:
    """Total time per name of the ops directly inside the step's ProfilerStep annotation."""
    inside = sorted(
        (start, start - end, name)
        for start, end, name in ops
        if step["start"] <= start and end <= step["end"]
    )
    totals: dict[str, float] = defaultdict(float)
    stack: list[float] = []  # ends of the open ops
    for start, neg_dur, name in inside:
        while stack and stack[-1] <= start:
            stack.pop()
        if len(stack) == 1:  # directly under the ProfilerStep annotation
            totals[name] += -neg_dur
        stack.append(start - neg_dur)
    return totals


@needs_shared
def test_fires_on_resnet_num_workers_4_with_raw_cv_and_culprit_op() -> None:
    events = _events(WORKERS_4)
    steps = _raw_steps(events)[1:]  # six steps: the first is left to cold-start
    cv = _cv([s["dur"] for s in steps])
    assert cv >= 10.0
    slowest = max(steps, key=lambda s: s["dur"])
    ops = _cpu_ops(events)
    per_step = [_children_time(ops, s) for s in steps]
    names = set().union(*per_step)
    extra = {
        n: per_step[steps.index(slowest)].get(n, 0.0)
        - statistics.median(p.get(n, 0.0) for p in per_step)
        for n in names
    }
    culprit = max(extra, key=lambda n: extra[n])
    findings = _run(shared_trace(WORKERS_4))
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.WARNING
    assert f.evidence["cv_pct"] == pytest.approx(cv, abs=0.01)
    assert f.evidence["steps"] == 5
    assert f.evidence["slowest_step"] == slowest["step"]
    assert f.evidence["median_step_ns"] == pytest.approx(
        1000 * statistics.median(s["dur"] for s in steps)
    )
    assert f.evidence["top_extra_op"] == culprit
    assert f.evidence["top_extra_op_ns"] == pytest.approx(1000 * extra[culprit])
    assert "on the host" in f.summary


@needs_shared
def test_cpu_run_ahead_is_not_variance() -> None:
    """The host runs ahead of the GPU in the first steps: CPU step times spread (35 to 96 ms)
    while the device-aware ones do not."""
    steps = _raw_steps(_events(NS_RESOLUTION))
    assert _cv([s["cpu_dur"] for s in steps[1:]]) >= 10.0
    assert _cv([s["dur"] for s in steps[1:]]) < 10.0
    assert _run(shared_trace(NS_RESOLUTION)) == []


def _periodic(tmp_path: Path, extra_ns: dict[int, int]) -> tuple[Path, synthetic.TraceBuilder]:
    """Six steps of one 5 ms kernel and a device sync; step i also runs a host-side
    `checkpoint_save` annotation of ``extra_ns[i]`` before its kernel."""
    b = synthetic.TraceBuilder()
    for i in range(6):
        with b.step():
            if i in extra_ns:
                with b.annotation("checkpoint_save", dur_ns=extra_ns[i]):
                    pass
            b.kernel("train_kernel", 5_000_000, grid=(528, 1, 1))
            b.sync("device")
    return b.write(tmp_path / "steps.json.gz"), b


def test_periodic_slow_step_is_critical_and_names_the_op(tmp_path: Path) -> None:
    path, b = _periodic(tmp_path, {4: 10_000_000})
    durations = [s.end_ns - s.start_ns for s in b.steps][1:]  # the sync ends each step
    findings = _run(path)
    assert len(findings) == 1
    f = findings[0]
    assert f.evidence["cv_pct"] == pytest.approx(_cv(durations), abs=0.01)
    assert f.severity is Severity.CRITICAL  # one 15 ms step among 5 ms ones: CV ~ 57%
    assert f.evidence["slowest_step"] == 4
    assert f.evidence["top_extra_op"] == "checkpoint_save"
    assert f.evidence["top_extra_op_ns"] == 10_000_000
    assert f.impact_ns == sum(max(0, d - statistics.median(durations)) for d in durations)
    assert "on the host" in f.summary and "`checkpoint_save`" in f.recommendation


def test_fast_outlier_is_named_without_a_culprit(tmp_path: Path) -> None:
    path, b = _periodic(tmp_path, {1: 3_000_000, 2: 3_000_000, 3: 3_000_000, 4: 3_000_000})
    durations = [s.end_ns - s.start_ns for s in b.steps][1:]  # steps 1-4 slow, 5 fast
    findings = _run(path)
    assert len(findings) == 1
    f = findings[0]
    assert f.evidence["cv_pct"] == pytest.approx(_cv(durations), abs=0.01)
    assert "step 5" in f.summary and "faster than the median" in f.summary
    assert "top_extra_op" not in f.evidence


def test_steady_steps_are_silent(tmp_path: Path) -> None:
    path, _ = _periodic(tmp_path, {})
    assert _run(path) == []


def test_step_variance_scenario_names_the_period_and_the_kernels(tmp_path: Path) -> None:
    built = synthetic.step_variance()
    findings = _run(built.write(tmp_path / "variance.json.gz"))
    assert len(findings) == 1
    f = findings[0]
    # The scenario's CV (0.25) is over its 8 steps; the rule leaves the first one out.
    assert f.evidence["cv_pct"] == pytest.approx(_cv(built.expect["step_ns"][1:]), abs=0.01)
    assert f.evidence["slow_steps"] == "2, 4, 6"
    assert "every 2 steps" in f.summary
    # Long steps scale every kernel by 1.25: the extra time is GPU work, named by kernel.
    assert "top_extra_kernel" in f.evidence and "top_extra_op" not in f.evidence
    assert "extra time is GPU work" in f.summary


@pytest.mark.parametrize("scenario", ["healthy", "cv_5_pct"])
def test_steady_scenarios_are_silent(tmp_path: Path, scenario: str) -> None:
    built = synthetic.healthy() if scenario == "healthy" else synthetic.step_variance(cv=0.05)
    assert _run(built.write(tmp_path / "t.json.gz")) == []
