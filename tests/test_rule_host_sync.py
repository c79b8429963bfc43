"""host-sync: blocking syncs and copies, the ops that made them, and the GPU idle they open.

Ground truth: the synthetic ``host_sync`` scenario (its own list of runtime calls and GPU
activities), Nsight Systems' own ``cuda-sync-api`` rule output for the nsys captures, and
the raw JSON of a real Kineto trace.
"""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import synthetic
from conftest import REFERENCE, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.metrics.host_blocking import with_containing_ops as _with_containing_ops
from gpu_trace_analyzer.parsers import kineto, nsys
from gpu_trace_analyzer.parsers.schema import TraceMeta, TraceTables
from gpu_trace_analyzer.rules.host_sync import HostSync, HostSyncConfig, sync_calls
from hypothesis import example, given, settings
from hypothesis import strategies as st

SYNC_NAMES = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpy")


def _check(tables: TraceTables, **overrides: Any) -> list[Finding]:
    return list(HostSync().check(AnalysisContext(tables), HostSyncConfig(**overrides)))


def _idle_inside_calls_ns(builder: synthetic.TraceBuilder) -> tuple[int, int]:
    """(CPU-blocked ns, GPU idle ns inside the blocking calls), from the builder's records.

    Blocking calls: syncs, `cudaMemcpy`, and `cudaMemcpyAsync` whose copy has a pageable
    side. Gaps: between merged GPU activities, plus the head and tail of the window [first
    step start, max(last step end, last GPU end)]; idle inside = gaps intersected with the
    union of the calls.
    """
    busy = synthetic.merge((a.start_ns, a.end_ns) for a in builder.gpu)
    lo = builder.steps[0].start_ns
    hi = max(builder.steps[-1].end_ns, busy[-1][1])
    gaps = [(lo, busy[0][0]), *((busy[i][1], busy[i + 1][0]) for i in range(len(busy) - 1))]
    gaps.append((busy[-1][1], hi))
    pageable = {a.correlation for a in builder.gpu if a.kind == "memcpy" and "Pageable" in a.name}
    calls = synthetic.merge(
        (c.start_ns, c.end_ns)
        for c in builder.runtime
        if c.name in SYNC_NAMES or (c.name == "cudaMemcpyAsync" and c.correlation in pageable)
    )
    blocked = sum(e - s for s, e in calls)
    inside = sum(
        max(0, min(ge, ce) - max(gs, cs)) for gs, ge in gaps if ge > gs for cs, ce in calls
    )
    return blocked, inside


@pytest.fixture(scope="module")
def stalls(tmp_path_factory: pytest.TempPathFactory) -> tuple[TraceTables, Any]:
    builder = synthetic.host_sync(6)
    path = builder.write(tmp_path_factory.mktemp("sync") / "host_sync.json.gz")
    return kineto.parse(path), builder


def test_fires_on_synthetic_syncs(stalls: tuple[TraceTables, Any]) -> None:
    tables, builder = stalls
    (finding,) = _check(tables)
    calls = builder.truth()["syncs"]["calls"]
    ev = finding.evidence
    # 6 per step over 5 steps, in turn: stream sync, .item(), device sync, blocking .item().
    # The syncs inside .item() (aten::_local_scalar_dense) are reads; the others syncs.
    assert calls["cudaStreamSynchronize"]["count"] == 20
    assert ev["sync_calls"] == 10 + calls["cudaDeviceSynchronize"]["count"] == 15
    assert ev["item_read_calls"] == 10 + calls["cudaMemcpy"]["count"] == 15
    assert ev["blocking_memcpy_calls"] == 0  # every blocking copy here is an .item()
    blocked, inside = _idle_inside_calls_ns(builder)
    assert ev["blocked_ns"] == blocked == sum(c["dur_ns"] for c in calls.values())
    assert ev["gpu_idle_in_calls_ns"] == inside
    assert ev["idle_claimed_ns"] == inside and ev["ledger_causes"] == "sync_wait,blocking_copy"
    assert finding.impact_ns == inside
    window = builder.truth()["steps_window_extended"]["span_ns"]
    pct = 100.0 * inside / window
    assert ev["gpu_idle_in_calls_pct"] == pytest.approx(pct, abs=0.01)
    assert finding.severity is (
        Severity.INFO if pct < 5.0 else Severity.WARNING if pct < 40.0 else Severity.CRITICAL
    )
    assert finding.table is not None
    sites = {(row[0], row[1], row[2]): row[4] for row in finding.table.rows}
    assert sites == {
        ("cudaStreamSynchronize", ".item()-style read", "aten::_local_scalar_dense"): 10,
        ("cudaStreamSynchronize", "synchronization call", "(no CPU op: called directly)"): 10,
        ("cudaMemcpy", ".item()-style read", "aten::_local_scalar_dense"): 5,
        ("cudaDeviceSynchronize", "synchronization call", "(no CPU op: called directly)"): 5,
    }
    blocked_ms = [float(str(row[5])) for row in finding.table.rows]
    assert blocked_ms == sorted(blocked_ms, reverse=True)  # ranked by CPU-blocked time
    if pct < 1.0:  # the GPU barely idles inside the calls: expected waits, no fix
        assert "(expected); not a bottleneck" in finding.summary
        assert finding.recommendation.startswith("Nothing to fix here")
    else:
        assert ".item()" in finding.recommendation
        assert "torch.cuda.synchronize()" in finding.recommendation
    assert "training loop" not in finding.recommendation  # no backward/optimizer ops here


def test_does_not_fire_without_syncs(tmp_path: Path) -> None:
    builder = synthetic.host_sync(0)
    tables = kineto.parse(builder.write(tmp_path / "no_sync.json.gz"))
    assert builder.truth()["syncs"]["count"] == 0
    assert _check(tables) == []


def _nsys_reference(name: str) -> list[dict[str, str]]:
    path = REFERENCE / "nsys" / f"{name}_cuda-sync-api.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with path.open() as f:
        return list(csv.DictReader(f))


def _session_start_ns(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (start,) = db.execute("SELECT utcEpochNs FROM TARGET_INFO_SESSION_START_TIME").fetchone()
    return int(start)


@pytest.mark.parametrize("name", ["h100_2gpu_1s", "mock"])
def test_sync_calls_agree_with_nsight_cuda_sync_api(name: str) -> None:
    path = shared_trace(f"nsys/{name}.sqlite")
    tables = nsys.parse(path)
    origin = _session_start_ns(path)
    calls = sync_calls(AnalysisContext(tables))
    ours = calls.filter(calls["api"].is_in(["cudaStreamSynchronize", "cudaDeviceSynchronize"]))
    mine = sorted(
        (int(r["pid"]), int(r["tid"]), int(r["start_ns"]) - origin, int(r["dur_ns"]))
        for r in ours.iter_rows(named=True)
    )
    reference = sorted(
        (int(r["PID"]), int(r["TID"]), int(r["Start (ns)"]), int(r["Duration (ns)"]))
        for r in _nsys_reference(name)
    )
    assert mine == reference


def test_long_syncs_with_a_busy_gpu_cost_nothing() -> None:
    """h100_2gpu_1s: each process blocks 428 ms in cudaStreamSynchronize (Nsight flags it),
    but the GPU keeps copying the whole time: the idle inside the syncs is under 0.5% of the
    capture, so the finding is only informational (the CPU was blocked, the GPU was not)."""
    path = shared_trace("nsys/h100_2gpu_1s.sqlite")
    tables = nsys.parse(path)
    (finding,) = _check(tables)
    assert finding.severity is Severity.INFO
    assert _check(tables, info_blocked_pct=100.0) == []
    rows = _nsys_reference("h100_2gpu_1s")
    pid = 111 if finding.evidence["rank"] == 0 else 112
    calls = sync_calls(AnalysisContext(tables)).filter(
        (pl.col("rank") == finding.evidence["rank"]) & (pl.col("kind") == "copy")
    )
    assert finding.evidence["blocked_ns"] == sum(
        int(r["Duration (ns)"]) for r in rows if int(r["PID"]) == pid
    ) + int(calls["dur_ns"].sum())  # one thread: the syncs and copies do not overlap
    assert finding.evidence["sync_calls"] == sum(1 for r in rows if int(r["PID"]) == pid)
    assert float(finding.evidence["gpu_idle_in_calls_pct"]) < 0.5


def test_real_kineto_trace_finds_the_if_tensor_sync() -> None:
    """HTA's cuda_event_sync trace: one step with `if tensor:` (aten::is_nonzero >
    aten::_local_scalar_dense > cudaStreamSynchronize), a cudaEventSynchronize and a
    cudaDeviceSynchronize, all inside the step."""
    path = shared_trace("hta/critical_path/cuda_event_sync/event_sync_trace.json.gz")
    (finding,) = _check(kineto.parse(path))
    # The stream sync inside `if tensor:` is a read; the event and device syncs are syncs.
    assert finding.evidence["sync_calls"] == 2
    # `if tensor:` copies the scalar to pageable memory (a blocking cudaMemcpyAsync), then
    # syncs the stream: both are one read.
    assert finding.evidence["item_read_calls"] == 2
    assert finding.evidence["blocking_memcpy_calls"] == 0
    assert finding.table is not None
    apis = sorted(str(row[0]) for row in finding.table.rows)
    assert apis == [
        "cudaDeviceSynchronize",
        "cudaEventSynchronize",
        "cudaMemcpyAsync",
        "cudaStreamSynchronize",
    ]
    stream_row = next(r for r in finding.table.rows if r[0] == "cudaStreamSynchronize")
    assert stream_row[1:3] == [".item()-style read", "aten::_local_scalar_dense"]
    assert "`if tensor:`" in finding.recommendation


_THREAD_OPS = st.lists(
    st.tuples(st.integers(1, 2), st.integers(0, 60), st.integers(0, 40)), max_size=12
)
_CALLS = st.lists(
    st.tuples(st.integers(1, 2), st.integers(0, 80), st.integers(0, 10)), min_size=1, max_size=6
)


@settings(max_examples=150, deadline=None)
@given(ops=_THREAD_OPS, calls=_CALLS, sort_ops=st.booleans())
@example(ops=[(1, 10, 10)], calls=[(1, 10, 10), (1, 20, 0)], sort_ops=True)  # on both edges
def test_containing_ops_agree_with_a_brute_force_search(
    ops: list[tuple[int, int, int]], calls: list[tuple[int, int, int]], sort_ops: bool
) -> None:
    """Per call: the deepest and the outermost CPU op of its own thread whose time span
    holds the call's, else "called directly", checked op by op. Each op has its own depth
    (no ties); ops out of start order take the bounds-only prefilter."""
    rows = sorted(ops, key=lambda o: o[1]) if sort_ops else ops
    table = pl.DataFrame(
        {
            "rank": [0] * len(rows),
            "pid": [1] * len(rows),
            "tid": [tid for tid, _, _ in rows],
            "name": [f"op{i}" for i in range(len(rows))],
            "kind": ["cpu_op"] * len(rows),
            "start_ns": [s for _, s, _ in rows],
            "dur_ns": [d for _, _, d in rows],
            "depth": list(range(len(rows))),
        },
        schema={
            "rank": pl.Int32,
            "pid": pl.Int64,
            "tid": pl.Int64,
            "name": pl.Categorical,
            "kind": pl.Categorical,
            "start_ns": pl.Int64,
            "dur_ns": pl.Int64,
            "depth": pl.Int32,
        },
    )
    ctx = AnalysisContext(TraceTables(meta=TraceMeta(source="test", paths=("x",)), ops=table))
    frame = pl.DataFrame(
        [(0, 1, tid, s, s + d, d) for tid, s, d in calls],
        schema={
            "rank": pl.Int32,
            "pid": pl.Int64,
            "tid": pl.Int64,
            "start_ns": pl.Int64,
            "end_ns": pl.Int64,
            "dur_ns": pl.Int64,
        },
        orient="row",
    ).with_row_index("call")
    got = _with_containing_ops(ctx, frame).sort("call").select("op", "under").rows()
    expected = []
    for tid, s, d in calls:
        around = [
            depth
            for depth, (op_tid, op_s, op_d) in enumerate(rows)
            if op_tid == tid and op_s <= s and op_s + op_d >= s + d
        ]
        if around:
            expected.append((f"op{max(around)}", f"op{min(around)}"))
        else:
            expected.append(("(no CPU op: called directly)",) * 2)
    assert got == expected


def test_real_rocm_pipeline_blocking_copies_are_ranked_with_their_frames() -> None:
    """TraceLens OWLv2 on MI300X (stacks recorded): hipMemcpyWithStream copies block the
    CPU; the longest-blocking site is named by its op and innermost user Python frame, and
    the blocked time equals the raw calls' durations (one thread: no overlap)."""
    import gzip

    import msgspec

    path = shared_trace("tracelens/mi300__google_owlv2-large-patch14-ensemble__1016001.json.gz")
    (finding,) = _check(kineto.parse(path))
    ev = finding.evidence
    assert int(ev["blocking_memcpy_calls"]) >= 60
    assert ev["top_api"] == "hipMemcpyWithStream" and ev["top_op"] == "aten::copy_"
    assert str(ev["top_frame"]).startswith("transformers/models/owlv2/modeling_owlv2.py")
    assert finding.table is not None
    blocked = [float(str(row[5])) for row in finding.table.rows]
    assert blocked == sorted(blocked, reverse=True)
    calls = sync_calls(AnalysisContext(kineto.parse(path)))
    raw = msgspec.json.decode(gzip.decompress(path.read_bytes()))["traceEvents"]
    starts = {int(c) for c in calls["start_ns"].to_list()}
    assert len(starts) == calls.height  # one call per start: the raw sum is comparable
    assert ev["blocked_ns"] == int(calls["dur_ns"].sum())
    names = {e.get("name") for e in raw if e.get("cat") == "cuda_runtime"}
    assert "hipMemcpyWithStream" in names
    assert "with_stack" not in finding.recommendation  # stacks are already in the trace
    assert "torch.cuda.synchronize" not in finding.recommendation  # a 9 us harness sync
