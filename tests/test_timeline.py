"""Timeline metrics on hand-built tables, every expected number worked out by hand."""

from __future__ import annotations

import polars as pl
import synthetic
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.metrics import timeline
from parsers.schema import TraceMeta, TraceTables, table_from_columns

US = 1_000


def _tables() -> TraceTables:
    """One rank, one device, two streams.

    Step 1 runs [0, 100) us on the CPU, step 2 [100, 200) us.
    Stream 7: gemm [10, 40), gemm [50, 60) (launched at 45, after gemm 1 ended: host wait),
    elementwise [62, 70) (launched at 20, 2 us gap: kernel wait).
    Stream 20: nccl [30, 80) overlapping the gemms.
    Memcpy on stream 7 [120, 130) launched at 110, inside step 2.
    """
    kernels = table_from_columns(
        "kernels",
        {
            "rank": [0, 0, 0, 0],
            "device": [0, 0, 0, 0],
            "stream": [7, 20, 7, 7],
            "name": ["gemm_a", "ncclDevKernel_AllReduce", "gemm_b", "elementwise"],
            "category": ["gemm", "comm", "gemm", "elementwise"],
            "start_ns": [10 * US, 30 * US, 50 * US, 62 * US],
            "dur_ns": [30 * US, 50 * US, 10 * US, 8 * US],
            "correlation": [1, 2, 3, 4],
        },
    )
    memops = table_from_columns(
        "memops",
        {
            "rank": [0],
            "device": [0],
            "stream": [7],
            "name": ["Memcpy HtoD (Pinned -> Device)"],
            "kind": ["HtoD"],
            "bytes": [1024],
            "start_ns": [120 * US],
            "dur_ns": [10 * US],
            "correlation": [5],
        },
    )
    runtime = table_from_columns(
        "runtime",
        {
            "rank": [0] * 5,
            "name": ["cudaLaunchKernel"] * 4 + ["cudaMemcpyAsync"],
            "start_ns": [5 * US, 8 * US, 20 * US, 45 * US, 110 * US],
            "dur_ns": [2 * US] * 5,
            "correlation": [1, 2, 4, 3, 5],
        },
    ).sort("start_ns")
    steps = table_from_columns(
        "steps",
        {"rank": [0, 0], "step": [1, 2], "start_ns": [0, 100 * US], "end_ns": [100 * US, 200 * US]},
    )
    ops = table_from_columns(
        "ops",
        {
            "rank": [0],
            "op_id": [0],
            "name": ["enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__"],
            "kind": ["user_annotation"],
            "start_ns": [140 * US],
            "dur_ns": [30 * US],
        },
    )
    meta = TraceMeta(source="test", paths=("x",))
    return TraceTables(
        meta=meta, kernels=kernels, memops=memops, runtime=runtime, steps=steps, ops=ops
    ).validate()


def test_merge_intervals_unions_overlaps_and_keeps_gaps() -> None:
    df = pl.DataFrame({"g": [1, 1, 1, 2], "start_ns": [0, 5, 20, 0], "end_ns": [10, 12, 30, 4]})
    merged = timeline.merge_intervals(df, ["g"]).sort("g", "start_ns")
    assert merged.rows() == [(1, 0, 12), (1, 20, 30), (2, 0, 4)]


def test_breakdown_over_steps_window() -> None:
    row = timeline.breakdown(_tables(), window="steps").row(0, named=True)
    # Window: first step start (0) to max(last step end 200, GPU end of step 2 work 130).
    assert (row["window_start_ns"], row["window_end_ns"]) == (0, 200 * US)
    # Busy union: [10, 80) + [120, 130) = 70 + 10 us.
    assert row["busy_ns"] == 80 * US
    # Compute union: [10,40) + [50,60) + [62,70) = 30 + 10 + 8.
    assert row["compute_ns"] == 48 * US
    assert row["comm_ns"] == 50 * US
    assert row["memory_ns"] == 10 * US
    # Comm [30, 80) minus compute overlap [30,40) [50,60) [62,70) = 50 - 28.
    assert row["exposed_comm_ns"] == 22 * US
    assert row["idle_ns"] == 120 * US
    assert abs(row["idle_pct"] - 60.0) < 1e-9
    assert row["kernel_count"] == 4


def test_breakdown_over_trace_window() -> None:
    row = timeline.breakdown(_tables(), window="trace").row(0, named=True)
    assert (row["window_start_ns"], row["window_end_ns"]) == (10 * US, 130 * US)
    assert row["idle_ns"] == 120 * US - 80 * US


def test_gaps_longest_first_including_edges() -> None:
    g = timeline.gaps(_tables())
    assert g["dur_ns"].to_list() == [70 * US, 40 * US, 10 * US]
    assert g.row(0, named=True)["start_ns"] == 130 * US


def test_step_stats() -> None:
    s = timeline.step_stats(_tables()).rows(named=True)
    assert [r["gpu_busy_ns"] for r in s] == [70 * US, 10 * US]
    assert [r["comm_ns"] for r in s] == [50 * US, 0]
    assert [r["dataloader_ns"] for r in s] == [0, 30 * US]
    assert [r["gpu_idle_ns"] for r in s] == [30 * US, 90 * US]


def test_step_windows_gpu_end() -> None:
    w = timeline.step_windows(_tables())
    assert w["gpu_end_ns"].to_list() == [80 * US, 130 * US]


def test_idle_breakdown_follows_hta_categories() -> None:
    rows = {r["stream"]: r for r in timeline.idle_breakdown(_tables()).rows(named=True)}
    s7 = rows[7]
    # gemm_b: launched at 45 > previous end 40 -> host wait of 10 us;
    # memcpy: launched at 110 > previous end 70 -> host wait of 50 us more.
    assert s7["host_wait_ns"] == (10 + 50) * US
    # elementwise: launched at 20 < previous end 60, gap 2 us < 30 us -> kernel wait.
    assert s7["kernel_wait_ns"] == 2 * US
    assert s7["other_ns"] == 0
    assert rows[20]["idle_ns"] == 0


_TIMES = st.integers(min_value=0, max_value=60)
_INTERVALS = st.lists(
    st.tuples(st.integers(0, 1), st.integers(0, 1), _TIMES, st.integers(0, 15)), max_size=25
)


@settings(max_examples=150, deadline=None)
@given(rows=_INTERVALS)
def test_merge_intervals_agrees_with_a_plain_sweep(rows: list[tuple[int, int, int, int]]) -> None:
    """Unsorted input, one or several groups: the same intervals as a sort-and-sweep per group
    (`synthetic.merge`), ordered by group then start."""
    df = pl.DataFrame(
        [(r, d, s, s + length) for r, d, s, length in rows],
        schema={"rank": pl.Int32, "device": pl.Int32, "start_ns": pl.Int64, "end_ns": pl.Int64},
        orient="row",
    )
    for by in ([], ["rank"], ["rank", "device"]):
        groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for r, d, s, length in rows:
            key = (r, d)[: len(by)]
            groups.setdefault(key, []).append((s, s + length))
        expected = [
            (*key, start, end)
            for key in sorted(groups)
            for start, end in synthetic.merge(groups[key])
        ]
        assert timeline.merge_intervals(df, by).rows() == expected


_WINDOWS = st.lists(
    st.tuples(st.integers(0, 1), st.integers(1, 4), _TIMES, st.integers(0, 30)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(rows=_INTERVALS, windows=_WINDOWS)
def test_union_within_steps_agrees_with_clipping_every_interval(
    rows: list[tuple[int, int, int, int]], windows: list[tuple[int, int, int, int]]
) -> None:
    """Per (rank, step): the union of every interval of the rank clipped to the step's
    windows (a step may be listed twice), computed pair by pair in plain Python."""
    intervals = pl.DataFrame(
        [(r, s, s + length) for r, _, s, length in rows],
        schema={"rank": pl.Int32, "start_ns": pl.Int64, "end_ns": pl.Int64},
        orient="row",
    )
    steps = pl.DataFrame(
        [(r, step, s, s + length) for r, step, s, length in windows],
        schema={"rank": pl.Int32, "step": pl.Int64, "start_ns": pl.Int64, "end_ns": pl.Int64},
        orient="row",
    )
    got = {
        (r, step): n
        for r, step, n in timeline._union_within_steps(intervals, steps).iter_rows()
        if n
    }
    expected: dict[tuple[int, int], int] = {}
    for rank, step in {(r, step) for r, step, _, _ in windows}:
        mine = [(s, s + length) for r, _, s, length in rows if r == rank]
        pieces = [
            piece
            for r, k, lo, length in windows
            if (r, k) == (rank, step)
            for piece in synthetic.clip(mine, lo, lo + length)
        ]
        if synthetic.union_ns(pieces):
            expected[(rank, step)] = synthetic.union_ns(pieces)
    assert got == expected
