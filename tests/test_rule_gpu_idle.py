"""gpu-idle: fires on idle GPUs with the right numbers and cause, stays quiet on busy ones.

Ground truth: the synthetic generator's own measurements (``truth()``), and for the real
tb_plugin ResNet-50 traces an independent re-computation from the raw JSON below
(union of GPU intervals inside the steps window), plus the trace authors' statement that
``num_workers_0`` is input-pipeline bound and ``num_workers_4`` is not.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from random import Random
from typing import Any

import msgspec
import polars as pl
import pytest
import synthetic
from conftest import shared_trace
from hypothesis import example, given, settings
from hypothesis import strategies as st

from analyzer.context import AnalysisContext
from analyzer.findings import Finding, Severity
from parsers import kineto
from parsers.schema import TraceMeta, TraceTables, table_from_columns
from rules.gpu_idle import GpuIdle, GpuIdleConfig, _packed_key, _pair_runs, attribute_gaps

WORKERS_0 = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"
WORKERS_4 = "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz"


def _check(tables: TraceTables, **overrides: Any) -> list[Finding]:
    return list(GpuIdle().check(AnalysisContext(tables), GpuIdleConfig(**overrides)))


@pytest.fixture(scope="module")
def idle30(tmp_path_factory: pytest.TempPathFactory) -> tuple[TraceTables, dict[str, Any]]:
    builder = synthetic.gpu_idle(0.3)
    path = builder.write(tmp_path_factory.mktemp("idle") / "idle30.json.gz")
    return kineto.parse(path), builder.truth()


def test_fires_on_synthetic_idle_with_generator_truth(
    idle30: tuple[TraceTables, dict[str, Any]],
) -> None:
    tables, truth = idle30
    (finding,) = _check(tables)
    window = truth["steps_window_extended"]  # [first step start, max(last step end, GPU end)]
    ev = finding.evidence
    assert ev["idle_ns"] == window["idle_ns"]
    assert ev["span_ns"] == window["span_ns"]
    assert ev["busy_ns"] == window["busy_ns"]
    assert ev["idle_pct"] == pytest.approx(100.0 * window["idle_ns"] / window["span_ns"], abs=0.01)
    assert ev["steps"] == 5
    assert finding.severity is Severity.WARNING  # 15% <= idle < 40%
    assert finding.impact_ns == window["idle_ns"]
    # The four gaps between steps are the generator's idle() gaps, exactly; each step ends
    # in torch.cuda.synchronize(), so the GPU drains while the host waits: a sync cause.
    between = sorted(truth["expect"]["gaps_between_steps_ns"], reverse=True)
    assert finding.table is not None
    assert [row[1] for row in finding.table.rows[:4]] == [round(g / 1e6, 3) for g in between]
    assert ev["longest_gap_ns"] == between[0]
    assert {row[4] for row in finding.table.rows[:4]} == {"sync"}
    assert ev["dominant_cause"] == "sync"
    assert "synchroniz" in finding.recommendation
    assert finding.title == "GPU idle for a large share of the profiled steps"


def test_thresholds_move_the_severity(idle30: tuple[TraceTables, dict[str, Any]]) -> None:
    tables, truth = idle30
    idle_pct = 100.0 * truth["steps_window_extended"]["idle_pct"] / 100.0
    assert _check(tables, warning_idle_pct=idle_pct + 1.0) == []
    (critical,) = _check(tables, critical_idle_pct=idle_pct - 1.0)
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
    intervals = sorted(
        (max(e["ts"], lo), min(e["ts"] + e["dur"], hi))
        for e in gpu
        if e["ts"] < hi and e["ts"] + e["dur"] > lo
    )
    busy, cur_s, cur_e = 0, intervals[0][0], intervals[0][1]
    for s, e in intervals[1:]:
        if s > cur_e:
            busy, cur_s, cur_e = busy + cur_e - cur_s, s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    return (hi - lo) * 1000, (hi - lo - busy) * 1000


def test_fires_on_input_bound_resnet_and_blames_the_dataloader() -> None:
    path = shared_trace(WORKERS_0)
    (finding,) = _check(kineto.parse(path))
    span_ns, idle_ns = _raw_idle(path)
    assert (finding.evidence["span_ns"], finding.evidence["idle_ns"]) == (span_ns, idle_ns)
    assert finding.severity is Severity.CRITICAL  # 461,995 us of 1,065,553 us = 43.4%
    assert finding.evidence["dominant_cause"] == "dataloader"
    assert float(finding.evidence["idle_dataloader_pct"]) > 50.0
    assert finding.table is not None
    assert all("DataLoader" in str(row[2]) for row in finding.table.rows)
    assert "num_workers" in finding.recommendation


def test_resnet_with_workers_is_not_blamed_on_the_dataloader() -> None:
    path = shared_trace(WORKERS_4)
    (finding,) = _check(kineto.parse(path))
    span_ns, idle_ns = _raw_idle(path)
    assert (finding.evidence["span_ns"], finding.evidence["idle_ns"]) == (span_ns, idle_ns)
    assert finding.severity is Severity.WARNING  # 232,129 us of 846,542 us = 27.4%
    assert finding.evidence["dominant_cause"] != "dataloader"
    assert float(finding.evidence.get("idle_dataloader_pct", 0.0)) < 5.0
    assert "num_workers" not in finding.recommendation


def _nested_ops() -> AnalysisContext:
    """One thread: ProfilerStep#1 [0, 200) > aten::outer [10, 110) > aten::inner [20, 60)."""
    ops = table_from_columns(
        "ops",
        {
            "rank": [0, 0, 0],
            "op_id": [0, 1, 2],
            "pid": [1, 1, 1],
            "tid": [1, 1, 1],
            "name": ["ProfilerStep#1", "aten::outer", "aten::inner"],
            "kind": ["user_annotation", "cpu_op", "cpu_op"],
            "start_ns": [0, 10, 20],
            "dur_ns": [200, 100, 40],
            "depth": [0, 1, 2],
        },
    )
    return AnalysisContext(TraceTables(meta=TraceMeta(source="test", paths=("x",)), ops=ops))


@pytest.mark.parametrize("overlapping", [False, True])
def test_gap_attribution_by_hand(overlapping: bool) -> None:
    """Disjoint gaps (found by binary search) and, with a gap overlapping two others (an
    inequality join), the same per-gap answers, each worked out by hand."""
    spans = [(20, 40), (100, 130), (150, 160)] + ([(30, 120)] if overlapping else [])
    gaps = pl.DataFrame(
        {"start_ns": [s for s, _ in spans], "end_ns": [e for _, e in spans]}
    ).with_columns((pl.col("end_ns") - pl.col("start_ns")).alias("dur_ns"))
    out = attribute_gaps(_nested_ops(), 0, gaps, GpuIdleConfig())
    rows = [
        (r["cpu_op"], r["inner_op"], round(r["cpu_op_pct"], 2)) for r in out.iter_rows(named=True)
    ]
    expected = [
        ("aten::outer", "aten::inner", 100.0),  # both ops cover all of [20, 40)
        ("aten::outer", None, round(100 * 10 / 30, 2)),  # outer covers [100, 110) of 30 ns
        ("(no CPU op on the main thread)", None, 0.0),  # only the step annotation runs
    ]
    if overlapping:  # [30, 120): outer covers 80 of 90 ns, inner 30 (under half)
        expected.append(("aten::outer", None, round(100 * 80 / 90, 2)))
    assert rows == expected


_OPS = st.lists(
    st.tuples(st.integers(0, 80), st.integers(1, 40), st.integers(0, 3)),
    max_size=12,
    unique_by=lambda op: op[0],  # distinct starts: "the earlier op" is then well defined
)
_GAPS = st.lists(st.tuples(st.integers(1, 15), st.integers(1, 20)), max_size=8)


def _expected_attribution(
    ops: list[tuple[int, int, int]], start: int, end: int
) -> tuple[str, str | None, float]:
    """`attribute_gaps`' documented pick for one gap, op by op in plain Python."""
    shares = [
        (100.0 * (min(end, s + d) - max(start, s)) / (end - start), depth, s, f"op{s}")
        for s, d, depth in ops
        if s < end and s + d > start
    ]
    covering = sorted((depth, s, name, pct) for pct, depth, s, name in shares if pct >= 50.0)
    if covering:
        outer, inner = covering[0], covering[-1]
        return outer[2], (inner[2] if inner[2] != outer[2] else None), outer[3]
    if shares:
        pct, _, _, name = min(shares, key=lambda x: (-x[0], x[1], x[2]))
        return name, None, pct
    return "(no CPU op on the main thread)", None, 0.0


@settings(max_examples=150, deadline=None)
@given(ops=_OPS, gaps=_GAPS, shuffle=st.randoms(use_true_random=False))
@example(ops=[(10, 5, 0)], gaps=[(5, 5)], shuffle=Random(0))  # the op starts as the gap ends
@example(ops=[(2, 6, 1), (12, 5, 0)], gaps=[(5, 10)], shuffle=Random(0))  # 30% each: less deep
def test_gap_attribution_agrees_with_a_brute_force_pick(
    ops: list[tuple[int, int, int]], gaps: list[tuple[int, int]], shuffle: Any
) -> None:
    """Random ops on the main thread and disjoint gaps given in any order: per gap the
    outermost / innermost op covering half of it, else the op covering most of it, as the
    docstring defines them (ties: least deep, then earliest), found pair by pair."""
    spans, at = [], 0
    for pause, length in gaps:
        at += pause
        spans.append((at, at + length))
        at += length
    shuffle.shuffle(spans)
    ordered = sorted(ops)
    table = table_from_columns(
        "ops",
        {
            "rank": [0] * len(ordered),
            "op_id": list(range(len(ordered))),
            "pid": [1] * len(ordered),
            "tid": [1] * len(ordered),
            "name": [f"op{s}" for s, _, _ in ordered],
            "kind": ["cpu_op"] * len(ordered),
            "start_ns": [s for s, _, _ in ordered],
            "dur_ns": [d for _, d, _ in ordered],
            "depth": [depth for _, _, depth in ordered],
        },
    )
    ctx = AnalysisContext(TraceTables(meta=TraceMeta(source="test", paths=("x",)), ops=table))
    frame = pl.DataFrame(
        {"start_ns": [s for s, _ in spans], "end_ns": [e for _, e in spans]},
        schema={"start_ns": pl.Int64, "end_ns": pl.Int64},
    ).with_columns((pl.col("end_ns") - pl.col("start_ns")).alias("dur_ns"))
    out = attribute_gaps(ctx, 0, frame, GpuIdleConfig())
    got = [(r["cpu_op"], r["inner_op"], r["cpu_op_pct"]) for r in out.iter_rows(named=True)]
    expected = [_expected_attribution(ordered, s, e) for s, e in spans]
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    assert [g[2] for g in got] == pytest.approx([e[2] for e in expected], rel=1e-12)


def test_pair_runs_pairs_each_item_with_its_run_once() -> None:
    """Item a pairs with rows 1-2, b with none, c with row 0, d with rows 0-2: six pairs,
    each once, ordered's columns first."""
    ordered = pl.DataFrame({"row": [0, 1, 2]})
    items = pl.DataFrame({"item": ["a", "b", "c", "d"]})
    first = pl.Series([1, 2, 0, 0], dtype=pl.UInt32)
    stop = pl.Series([3, 2, 1, 3], dtype=pl.UInt32)
    pairs = _pair_runs(ordered, items, first, stop)
    assert pairs.columns == ["row", "item"]
    assert sorted(pairs.rows()) == [(0, "c"), (0, "d"), (1, "a"), (1, "d"), (2, "a"), (2, "d")]


def test_packed_key_orders_like_its_columns() -> None:
    frame = pl.DataFrame({"gap": [1, 0, 1, 0], "depth": [0, 2, 0, 1], "op": [5, 9, 4, 9]})
    key = _packed_key(frame, ["gap", "depth", "op"])
    assert key is not None
    assert frame.sort(key).rows() == frame.sort("gap", "depth", "op").rows()
    assert _packed_key(frame.with_columns(pl.col("op") - 6), ["gap", "op"]) is None  # negative
    wide = pl.DataFrame({"a": [2**40], "b": [2**30]})
    assert _packed_key(wide, ["a", "b"]) is None  # 41 + 31 bits do not fit
