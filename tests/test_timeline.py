"""Timeline metrics on hand-built tables, every expected number worked out by hand."""

from __future__ import annotations

from unittest.mock import patch

import polars as pl
import synthetic
from gpu_trace_analyzer.metrics import timeline
from gpu_trace_analyzer.parsers.schema import TraceMeta, TraceTables, table_from_columns
from hypothesis import example, given, settings
from hypothesis import strategies as st

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


_KEYED = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 12)), max_size=20)


@settings(max_examples=150, deadline=None)
@given(left=_KEYED, right=_KEYED, sort_left=st.booleans(), how=st.sampled_from(["inner", "left"]))
def test_join_within_rank_agrees_with_a_dict_lookup(
    left: list[tuple[int, int]],
    right: list[tuple[int, int]],
    sort_left: bool,
    how: str,
) -> None:
    """One rank or two, keys sorted or not, unique on the right: each left row (in its
    order) gets the right row with its (rank, id), found here with a plain dict. Sorted
    unique keys on one rank take the merge path, the rest a hash join; both must agree."""
    rows = sorted(left, key=lambda r: r[1]) if sort_left else left
    lookup = {(r, k): 10 * k + r for r, k in sorted(set(right))}  # unique (rank, id) pairs
    left_df = pl.DataFrame(rows, schema={"rank": pl.Int32, "id": pl.Int64}, orient="row")
    right_df = pl.DataFrame(
        [(r, k, v) for (r, k), v in lookup.items()],
        schema={"rank": pl.Int32, "id": pl.Int64, "value": pl.Int64},
        orient="row",
    ).sort("id", "rank")
    got = timeline.join_within_rank(left_df, right_df, ["id"], how=how)  # type: ignore[arg-type]
    expected = [(r, k, lookup.get((r, k))) for r, k in rows if how == "left" or (r, k) in lookup]
    assert got.select("rank", "id", "value").rows() == expected


def test_join_on_key_merge_path_matches_hash_join() -> None:
    """Sorted ids on the left, strictly increasing ids on the right: the merge pass; ids 3
    and 9 have no partner (null value in a left join, dropped in an inner one)."""
    left = pl.DataFrame({"id": [1, 1, 3, 4, 9], "x": [10, 11, 12, 13, 14]})
    right = pl.DataFrame({"id": [0, 1, 4, 7], "value": ["a", "b", "c", "d"]})
    assert timeline.strictly_increasing(right["id"])
    left_join = timeline.join_on_key(left, right, "id", how="left")
    assert left_join.rows() == [
        (1, 10, "b"),
        (1, 11, "b"),
        (3, 12, None),
        (4, 13, "c"),
        (9, 14, None),
    ]
    inner = timeline.join_on_key(left, right, "id", how="inner")
    assert inner.rows() == [(1, 10, "b"), (1, 11, "b"), (4, 13, "c")]


def test_strictly_increasing_and_one_value() -> None:
    assert timeline.strictly_increasing(pl.Series([1, 2, 5]))
    assert not timeline.strictly_increasing(pl.Series([1, 2, 2]))  # a repeat
    assert not timeline.strictly_increasing(pl.Series([2, 1]))
    assert not timeline.strictly_increasing(pl.Series([1, None, 3]))
    assert timeline.strictly_increasing(pl.Series([], dtype=pl.Int64))
    assert timeline.one_value(pl.Series([3, 3]), pl.Series([3]), pl.Series([], dtype=pl.Int64))
    assert not timeline.one_value(pl.Series([3, 4]))
    assert not timeline.one_value(pl.Series([3]), pl.Series([4]))
    assert not timeline.one_value(pl.Series([3, None]))
    assert not timeline.one_value(pl.Series([], dtype=pl.Int64))


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), _TIMES), max_size=20),
    windows=st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 1), _TIMES, st.integers(0, 30)),
        max_size=4,
        unique_by=lambda w: (w[0], w[1]),
    ),
)
@example(rows=[(0, 0, 30), (0, 0, 0)], windows=[(0, 0, 0, 30)])  # on both edges of one window
@example(rows=[(0, 0, 30), (1, 0, 5)], windows=[(0, 0, 0, 30), (1, 0, 5, 1)])
def test_in_windows_and_attach_agree_with_plain_filtering(
    rows: list[tuple[int, int, int]], windows: list[tuple[int, int, int, int]]
) -> None:
    """Rows keep their order and those in their own window [start, end) stay, by rank or by
    (rank, device); `attach` adds the window's columns to every row that has one. One
    window over one rank takes the constant-columns path, the rest a join."""
    df = pl.DataFrame(
        rows, schema={"rank": pl.Int32, "device": pl.Int32, "start_ns": pl.Int64}, orient="row"
    )
    bounds = {(r, d): (s, s + n) for r, d, s, n in windows}
    per_device = pl.DataFrame(
        [(r, d, s, e) for (r, d), (s, e) in bounds.items()],
        schema={
            "rank": pl.Int32,
            "device": pl.Int32,
            "window_start_ns": pl.Int64,
            "window_end_ns": pl.Int64,
        },
        orient="row",
    )
    inside = timeline.in_windows(df, per_device, by=("rank", "device"), keep_bounds=True)
    assert inside.rows() == [
        (r, d, s, *bounds[(r, d)])
        for r, d, s in rows
        if (r, d) in bounds and bounds[(r, d)][0] <= s < bounds[(r, d)][1]
    ]
    per_rank = per_device.unique("rank", keep="first", maintain_order=True).drop("device")
    rank_bounds = {r: (s, e) for r, s, e in per_rank.iter_rows()}
    assert timeline.in_windows(df, per_rank).rows() == [
        (r, d, s)
        for r, d, s in rows
        if r in rank_bounds and rank_bounds[r][0] <= s < rank_bounds[r][1]
    ]
    assert timeline.attach(df, per_rank, ["rank"]).rows() == [
        (r, d, s, *rank_bounds[r]) for r, d, s in rows if r in rank_bounds
    ]


def test_distinct_rows_and_kernel_devices() -> None:
    one = pl.DataFrame({"rank": [2, 2, 2], "device": [1, 1, 1], "x": [1, 2, 3]})
    assert timeline.distinct_rows(one, ["rank", "device"]).rows() == [(2, 1)]
    many = pl.DataFrame({"rank": [1, 0, 1, None], "device": [0, 3, 0, 1]})
    assert timeline.distinct_rows(many, ["rank", "device"]).rows() == [(None, 1), (0, 3), (1, 0)]
    assert timeline.kernel_devices(_tables()).rows() == [(0, 0)]


def test_as_strings_equals_a_plain_cast() -> None:
    df = pl.DataFrame(
        {"name": ["b", None, "a", "b"], "n": [1, 2, 3, 4]},
        schema={"name": pl.Categorical, "n": pl.Int64},
    )
    out = timeline.as_strings(df, ["name"])
    assert out.schema["name"] == pl.String
    assert out["name"].to_list() == ["b", None, "a", "b"]
    assert out.equals(df.with_columns(pl.col("name").cast(pl.String)))


def test_table_name_matches_looks_at_the_whole_table() -> None:
    """The regex runs over the table's distinct names; the expression also filters any frame
    cut from the table (here: rows of another kind)."""
    t = _tables()
    matches = timeline.table_name_matches(t, "ops", r"DataLoader")
    assert t.ops.filter(matches).height == 1
    assert t.ops.filter(pl.col("kind") == "cpu_op").filter(matches).height == 0
    assert t.runtime.filter(timeline.table_name_matches(t, "runtime", r"Memcpy")).height == 1


def test_idle_gaps_are_the_gaps_in_start_order() -> None:
    t = _tables()
    by_time = timeline.idle_gaps(t)
    # Busy [10, 80) and [120, 130) in the window [0, 200): gaps [0,10), [80,120), [130,200).
    assert by_time.select("start_ns", "end_ns").rows() == [
        (0, 10 * US),
        (80 * US, 120 * US),
        (130 * US, 200 * US),
    ]
    assert timeline.gaps(t).equals(by_time.sort("dur_ns", descending=True))


def _two_rank_tables() -> TraceTables:
    """`_tables` twice: rank 0 as is, rank 1 shifted by 1000 us (the multi-rank paths)."""
    t = _tables()
    shift = 1000 * US

    def both(frame: pl.DataFrame, *times: str) -> pl.DataFrame:
        moved = frame.with_columns(pl.col("rank") + 1, *(pl.col(c) + shift for c in times))
        return pl.concat([frame, moved]).sort("start_ns" if "start_ns" in times else "rank")

    return TraceTables(
        meta=t.meta,
        kernels=both(t.kernels, "start_ns"),
        memops=both(t.memops, "start_ns"),
        runtime=both(t.runtime, "start_ns"),
        steps=both(t.steps, "start_ns", "end_ns"),
        ops=both(t.ops, "start_ns"),
    ).validate()


def test_work_issued_at_a_step_start_belongs_to_that_step() -> None:
    """The memcpy's launch moved to 100 us, where step 2 starts (step 1 ends there): it is
    step 2's work, on one rank and on two."""
    t = _tables()
    moved = t.runtime.with_columns(
        pl.when(pl.col("correlation") == 5)
        .then(100 * US)
        .otherwise(pl.col("start_ns"))
        .alias("start_ns")
    )
    one = TraceTables(
        meta=t.meta, kernels=t.kernels, memops=t.memops, runtime=moved, steps=t.steps, ops=t.ops
    )
    assert timeline.step_windows(one)["gpu_end_ns"].to_list() == [80 * US, 130 * US]
    two = _two_rank_tables()
    shift = 1000 * US
    moved_two = two.runtime.with_columns(
        pl.when(pl.col("correlation") == 5)
        .then(100 * US + pl.col("rank") * shift)
        .otherwise(pl.col("start_ns"))
        .alias("start_ns")
    ).sort("start_ns")
    both = TraceTables(
        meta=two.meta,
        kernels=two.kernels,
        memops=two.memops,
        runtime=moved_two,
        steps=two.steps,
        ops=two.ops,
    )
    assert timeline.step_windows(both)["gpu_end_ns"].to_list() == [
        80 * US,
        130 * US,
        80 * US + shift,
        130 * US + shift,
    ]


def test_single_and_multi_rank_paths_agree() -> None:
    """Rank 1 is rank 0 shifted in time: every per-rank figure must come out the same on
    both ranks (the two-rank trace takes the general joins, the one-rank trace the fast
    paths), and equal to the one-rank trace's."""
    one, two = _tables(), _two_rank_tables()
    shift = 1000 * US
    windows = timeline.step_windows(two)
    assert windows["gpu_end_ns"].to_list() == [80 * US, 130 * US, 80 * US + shift, 130 * US + shift]
    stats = timeline.step_stats(two).drop("start_ns", "end_ns")
    single = timeline.step_stats(one).drop("start_ns", "end_ns")
    assert stats.filter(pl.col("rank") == 0).equals(single)
    assert stats.filter(pl.col("rank") == 1).drop("rank").equals(single.drop("rank"))
    idle = timeline.idle_breakdown(two)
    assert (
        idle.filter(pl.col("rank") == 1)
        .drop("rank")
        .equals(timeline.idle_breakdown(one).drop("rank"))
    )
    breakdown = timeline.breakdown(two).drop("rank", "window_start_ns", "window_end_ns")
    assert breakdown.row(0) == breakdown.row(1)


_STREAM_EVENTS = st.lists(
    st.tuples(st.integers(0, 2), _TIMES, st.integers(0, 10), st.one_of(st.none(), _TIMES)),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(events=_STREAM_EVENTS, many=st.booleans())
@example(events=[(0, 0, 10, None), (0, 20, 5, 10)], many=False)  # launched as the last ended
@example(events=[(0, 0, 10, None), (0, 20, 5, 10)], many=True)
def test_idle_breakdown_agrees_with_hta_definitions(
    events: list[tuple[int, int, int, int | None]], many: bool
) -> None:
    """Per stream, each event after the first adds its gap to the previous event (in start
    order, ties in table order): host wait when it was launched after that event ended, else
    kernel wait under 30 us (here 5 ns), else other. Worked out in plain Python; ``many``
    lowers the per-stream walk's limit so that the grouped path runs too."""
    ordered = sorted(enumerate(events), key=lambda e: (e[1][1], e[0]))
    rows = [(s, start, start + length, launch) for _, (s, start, length, launch) in ordered]
    expected: dict[int, list[int]] = {}
    previous: dict[int, int] = {}
    for stream, start, end, launch in rows:
        totals = expected.setdefault(stream, [0, 0, 0])
        if stream in previous:
            gap = start - previous[stream]
            if launch is not None and launch > previous[stream]:
                totals[0] += gap
            elif gap < 5:
                totals[1] += gap
            else:
                totals[2] += gap
        previous[stream] = end
    frame = pl.DataFrame(
        [(0, s, start, end, launch) for s, start, end, launch in rows],
        schema={
            "rank": pl.Int32,
            "stream": pl.Int64,
            "start_ns": pl.Int64,
            "end_ns": pl.Int64,
            "launch_ns": pl.Int64,
        },
        orient="row",
    )
    limit = 0 if many else timeline._FEW_STREAMS
    with (
        patch.object(timeline, "launch_times", lambda _t: frame),
        patch.object(timeline, "_FEW_STREAMS", limit),
    ):
        got = timeline.idle_breakdown(_tables(), kernel_wait_threshold_ns=5)
    assert {
        r["stream"]: [r["host_wait_ns"], r["kernel_wait_ns"], r["other_ns"]]
        for r in got.iter_rows(named=True)
    } == expected
