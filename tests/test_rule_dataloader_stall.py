"""`dataloader-stall` on tb_plugin's ResNet-50 traces (num_workers=0 stalls, num_workers=4
does not), with the shares recomputed here from the raw JSON, and on synthetic traces."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import msgspec
import pytest
import synthetic
from conftest import needs_shared, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers.kineto import parse
from gpu_trace_analyzer.rules.dataloader_stall import DataloaderStall

WORKERS_0 = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"
WORKERS_4 = "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz"
_GPU_CATS = ("Kernel", "Memcpy", "Memset")


def _run(path: Path) -> list[Finding]:
    return list(DataloaderStall().check(AnalysisContext(parse(path)), DataloaderStall.Config()))


def _union(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


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


def _raw(rel: str) -> dict[str, Any]:
    """From the raw JSON: per step the DataLoader time inside the ProfilerStep annotation and
    the CPU step time (the annotation's length); and the GPU idle time during the loader
    (the idle ledger's dataloader row: nothing of higher precedence overlaps it here)."""
    events = msgspec.json.decode(gzip.decompress(shared_trace(rel).read_bytes()), type=_Doc)
    events_list = events.traceEvents
    steps = sorted((e.ts, e.ts + e.dur) for e in events_list if e.name.startswith("ProfilerStep#"))
    loader = [
        (e.ts, e.ts + e.dur) for e in events_list if e.name.startswith("enumerate(DataLoader)")
    ]
    gpu = [(-1, e.ts, e.ts + e.dur) for e in events_list if e.cat in _GPU_CATS and e.args]
    step_us, loader_us = [], []
    for s, e in steps:
        step_us.append(e - s)  # the CPU step time
        loader_us.append(sum(min(le, e) - max(ls, s) for ls, le in loader if ls < e and le > s))
    busy = _union([(g_start, g_end) for _, g_start, g_end in gpu])
    in_loader = sum(
        min(le, be) - max(ls, bs) for ls, le in loader for bs, be in busy if bs < le and be > ls
    )
    return {
        "step_us": step_us,
        "loader_us": loader_us,
        "idle_us": sum(le - ls for ls, le in loader) - in_loader,
    }


@needs_shared
def test_fires_critical_on_num_workers_0() -> None:
    raw = _raw(WORKERS_0)
    share = 100 * sum(raw["loader_us"]) / sum(raw["step_us"])
    assert 35 < share < 45  # tb_plugin's README: about 40% of step time
    findings = _run(shared_trace(WORKERS_0))
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.CRITICAL
    assert f.evidence["dataloader_share_pct"] == pytest.approx(share, abs=0.01)
    assert f.evidence["dataloader_ns"] == 1000 * sum(raw["loader_us"])
    assert f.evidence["steps"] == 6
    assert f.evidence["gpu_idle_during_dataloader_ns"] == 1000 * raw["idle_us"]
    assert f.evidence["iterator"] == "_SingleProcessDataLoaderIter"
    assert "num_workers=0" in f.recommendation
    assert f.table is not None and len(f.table.rows) == 6
    assert f.impact_ns == 1000 * raw["idle_us"]


@needs_shared
def test_silent_on_num_workers_4() -> None:
    raw = _raw(WORKERS_4)
    share = 100 * sum(raw["loader_us"]) / sum(raw["step_us"])
    assert share < 5.0
    assert _run(shared_trace(WORKERS_4)) == []


def _trace(tmp_path: Path, *, loader_ns: int, hidden: bool) -> tuple[Path, synthetic.TraceBuilder]:
    """Three steps: a 6 ms kernel and the next batch's fetch, then a device sync.

    ``hidden``: the fetch runs while the kernel is still on the GPU; else the GPU has
    drained first (fetch, then kernel).
    """
    b = synthetic.TraceBuilder()
    for _ in range(3):
        with b.step():
            if hidden:
                b.kernel("long_kernel", 6_000_000, grid=(528, 1, 1))
                b.dataloader(loader_ns, workers=False)
            else:
                b.dataloader(loader_ns, workers=True)
                b.kernel("long_kernel", 6_000_000, grid=(528, 1, 1))
            b.sync("device")
    return b.write(tmp_path / "loader.json.gz"), b


def test_exposed_loader_warns_with_exact_share(tmp_path: Path) -> None:
    path, b = _trace(tmp_path, loader_ns=1_000_000, hidden=False)
    findings = _run(path)
    step_ns = sum(s.end_ns - s.start_ns for s in b.steps)  # the sync ends each step on the CPU
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.WARNING  # 1 ms of ~7 ms: 5% < share <= 25%
    assert f.evidence["dataloader_share_pct"] == pytest.approx(100 * 3_000_000 / step_ns, abs=0.005)
    assert f.evidence["gpu_idle_during_dataloader_pct"] == 100.0
    assert f.evidence["iterator"] == "_MultiProcessingDataLoaderIter"
    assert "num_workers=0" not in f.recommendation


def test_loader_hidden_behind_gpu_work_is_info(tmp_path: Path) -> None:
    path, b = _trace(tmp_path, loader_ns=2_000_000, hidden=True)
    findings = _run(path)
    assert len(findings) == 1
    assert findings[0].severity is Severity.INFO
    # The fetch starts when the 5 us launch call returns; the kernel starts 6 us after the
    # call began: the GPU is idle for the first 1 us of each 2 ms fetch.
    idle = 3 * (b.timing.queue_ns - b.timing.launch_ns)
    assert idle == 3_000
    assert findings[0].evidence["gpu_idle_during_dataloader_ns"] == idle
    assert findings[0].impact_ns == idle


def test_small_loader_share_is_silent(tmp_path: Path) -> None:
    path, _ = _trace(tmp_path, loader_ns=200_000, hidden=False)  # 0.2 of ~6.2 ms: 3%
    assert _run(path) == []


def test_dataloader_scenario_matches_its_ground_truth(tmp_path: Path) -> None:
    built = synthetic.dataloader_stall()
    findings = _run(built.write(tmp_path / "loader.json.gz"))
    assert len(findings) == 1
    assert findings[0].evidence["dataloader_share_pct"] == pytest.approx(
        built.expect["dataloader_share_pct"], abs=0.005
    )
    assert findings[0].severity is Severity.CRITICAL  # 30% > 25%


@pytest.mark.parametrize("scenario", ["healthy", "two_percent"])
def test_scenarios_with_a_fast_loader_are_silent(tmp_path: Path, scenario: str) -> None:
    built = synthetic.healthy() if scenario == "healthy" else synthetic.dataloader_stall(0.02)
    assert _run(built.write(tmp_path / "t.json.gz")) == []


@needs_shared
def test_hugging_face_pipeline_loader_is_preprocessing() -> None:
    """TraceLens OWLv2 (inference, stacks recorded): the DataLoader is the pipeline's own,
    its time is image resizing in scipy; the advice says preprocessing, names the frame and
    uses no training words."""
    findings = _run(
        shared_trace("tracelens/mi300__google_owlv2-large-patch14-ensemble__1016001.json.gz")
    )
    (f,) = findings
    assert f.severity is Severity.CRITICAL
    assert f.evidence["top_frame"] == "scipy/ndimage/_interpolation.py(739): zoom"
    assert "preprocessing" in f.recommendation and "zoom" in f.recommendation
    assert "training" not in f.recommendation + f.summary + f.title
    assert "with_stack" not in f.recommendation
    assert f.evidence["idle_claimed_ns"] == f.evidence["gpu_idle_during_dataloader_ns"]
