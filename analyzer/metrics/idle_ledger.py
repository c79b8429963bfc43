"""The idle ledger: every idle nanosecond of each device charged to exactly one cause.

Idle time is `analyzer.metrics.timeline`'s: the analysis window's span minus the union of
the device's kernels and memory operations (`timeline.idle_gaps`). Each idle stretch goes to
the first cause, in this order, that holds during it:

0. ``dependency_wait``: the device already held launched work that had not started: a GPU
   operation whose launching runtime call had returned more than `PENDING_SLACK_NS` (50 us,
   well above ordinary launch latency) earlier. The stream was held by something else: a
   cross-stream or event wait (``cudaStreamWaitEvent`` on work outside the trace), or work
   queued before profiling. Whatever host call runs meanwhile (a blocking copy queued
   behind that work, a sync) did not cause the idle. Only the part of the pending interval
   beyond the slack counts, and only where it overlaps an idle gap of 30 us or more (the
   microsecond gaps between kernels of a full queue are the GPU's own scheduling).
1. ``queued_boundary``: before the device's first GPU operation launched in the trace, on a
   rank with work queued before profiling (`analyzer.metrics.steps`) that was still running
   inside the window: the GPU finished leftovers of an unprofiled step and waited for the
   profiled work to arrive.
2. ``sync_wait``: a CPU thread of the rank was inside a synchronization call
   (``cudaStreamSynchronize``...) or a ``.item()``-style read (`host_blocking`). Only the
   idle time *inside* the call counts; what follows the call is charged to what ran then.
3. ``blocking_copy``: a CPU thread was inside a blocking copy (non-async ``cudaMemcpy``,
   ``hipMemcpyWithStream``, async copies to or from pageable memory).
4. ``dataloader``: the main thread was inside ``enumerate(DataLoader)...__next__`` (for a
   Hugging Face pipeline that is its preprocessing).
5. ``comm_wait``: the main thread was inside a host-side collective call (``c10d::``,
   ``nccl:``, ``record_param_comms``...), waiting on communication.
6. ``launch_overhead``: the whole gap between two GPU operations is shorter than 30 us
   (HTA's kernel-wait threshold): back-to-back launches the CPU could not issue faster.
   It sits above CPU work because such a gap always lies inside some CPU op (the one that
   was launching).
7. ``cpu_work``: the main thread was running a Python frame (when the trace has stacks:
   the innermost user frame is the detail) or a CPU op (the outermost ``cpu_op`` below the
   step; annotations such as ``## backward ##`` only label a region), and recorded activity
   (CPU ops, Python calls) covers at least `RECORDED_SHARE` (50%) of the idle gap.
8. ``other``: host work not recorded in the trace (nothing on the main thread, or only an
   annotation over a gap that recorded activity covers less than half of).

Rows of ``cpu_work`` and ``other`` also carry ``phase``: the outermost op or annotation of
the main thread then (``## backward ##``, ``Optimizer.step#Shampoo.step``), for advice.

The rows of each device sum to its idle time exactly. Findings that talk about idle time
cite these rows (evidence ``ledger_causes`` and ``idle_claimed_ns``) and never claim a
cause another finding claims.
"""

from __future__ import annotations

from typing import Final

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics import host_blocking, pystacks, segments, steps, timeline
from gpu_trace_analyzer.metrics.segments import Segments
from gpu_trace_analyzer.parsers.schema import TraceTables

CAUSES: Final = (
    "dependency_wait",
    "queued_boundary",
    "sync_wait",
    "blocking_copy",
    "dataloader",
    "comm_wait",
    "launch_overhead",
    "cpu_work",
    "other",
)
#: What the report calls each cause.
CAUSE_LABELS: Final = {
    "dependency_wait": (
        "GPU waiting on a dependency (launched work not yet started: cross-stream/event "
        "wait, or work queued before profiling)"
    ),
    "queued_boundary": "waiting for profiled work after work queued before profiling",
    "sync_wait": "CPU in a host synchronization (sync call, .item())",
    "blocking_copy": "CPU in a blocking copy",
    "dataloader": "CPU in the DataLoader",
    "comm_wait": "CPU waiting on a collective",
    "launch_overhead": "launch overhead (gaps under 30 us between GPU ops)",
    "cpu_work": "CPU work in a named op or Python frame",
    "other": "other (host work not recorded in the trace)",
}
#: Short names of the causes, for table cells (the Ranks table's largest cause).
CAUSE_SHORT: Final = {
    "dependency_wait": "dependency wait",
    "queued_boundary": "queued before profiling",
    "sync_wait": "host sync",
    "blocking_copy": "blocking copy",
    "dataloader": "DataLoader",
    "comm_wait": "collective wait",
    "launch_overhead": "launch overhead",
    "cpu_work": "CPU work",
    "other": "unrecorded host work",
}
LAUNCH_GAP_NS: Final = timeline.KERNEL_WAIT_THRESHOLD_NS
#: Launched work counts as held back (``dependency_wait``) only this long after its launch
#: call returned: ordinary launch latency (a few to tens of microseconds) is not a wait.
PENDING_SLACK_NS: Final = 50_000
#: Gaps under this are "brief": CPU work that interleaves with launches (dispatch-bound
#: eager execution) rather than a block of host work between device steps.
BRIEF_GAP_NS: Final = 1_000_000
#: CPU work is charged to a named op or frame only when recorded activity on the main
#: thread (CPU ops, Python calls; not annotations, which only label a region) covers at
#: least this share of the idle gap; otherwise the host work was not recorded ("other").
RECORDED_SHARE: Final = 0.5
DATALOADER_PATTERN: Final = r"enumerate\(DataLoader\)|DataLoader.*__next__"
COMM_PATTERN: Final = (
    r"^(c10d::|nccl:|gloo:|record_param_comms|ProcessGroup|torch\.distributed|"
    r"aten::_?(all_reduce|all_gather|reduce_scatter|all_to_all))"
)


def ledger(ctx: AnalysisContext) -> pl.DataFrame:
    """Per (rank, device, cause, detail): ``idle_ns``. Rows of a device sum to its idle time.

    ``detail`` names what ran (op, Python frame or API; null when nothing is known);
    ``brief_ns`` is the part of ``idle_ns`` in gaps under 1 ms (`BRIEF_GAP_NS`); ``phase``
    (``cpu_work`` and ``other`` rows) the outermost op or annotation running then.
    Computed once per analysis.
    """
    return ctx.metric("idle_ledger", lambda _t: _ledger(ctx))


def by_cause(ctx: AnalysisContext) -> pl.DataFrame:
    """Per (rank, device, cause): idle_ns, idle share (``idle_pct``), window share
    (``window_pct``) and the detail with the most idle time (``top_detail``), causes in
    precedence order."""
    rows = ledger(ctx)
    windows = ctx.metric("timeline.breakdown", timeline.breakdown).select(
        "rank", "device", "span_ns", "idle_ns"
    )
    if rows.height == 0:
        return pl.DataFrame(
            schema={
                "rank": pl.Int32,
                "device": pl.Int32,
                "cause": pl.String,
                "idle_ns": pl.Int64,
                "idle_pct": pl.Float64,
                "window_pct": pl.Float64,
                "top_detail": pl.String,
                "top_detail_ns": pl.Int64,
                "brief_ns": pl.Int64,
            }
        )
    top = (
        rows.filter(pl.col("detail").is_not_null())
        .sort(["idle_ns", "detail"], descending=[True, False])
        .group_by("rank", "device", "cause", maintain_order=True)
        .first()
        .select(
            "rank",
            "device",
            "cause",
            pl.col("detail").alias("top_detail"),
            pl.col("idle_ns").alias("top_detail_ns"),
        )
    )
    order = {c: i for i, c in enumerate(CAUSES)}
    return (
        rows.group_by("rank", "device", "cause")
        .agg(pl.col("idle_ns").sum(), pl.col("brief_ns").sum())
        .join(windows.rename({"idle_ns": "_idle"}), on=["rank", "device"], how="left")
        .with_columns(
            pl.when(pl.col("_idle") > 0)
            .then(100.0 * pl.col("idle_ns") / pl.col("_idle"))
            .otherwise(0.0)
            .alias("idle_pct"),
            pl.when(pl.col("span_ns") > 0)
            .then(100.0 * pl.col("idle_ns") / pl.col("span_ns"))
            .otherwise(0.0)
            .alias("window_pct"),
            pl.col("cause").replace_strict(order, return_dtype=pl.Int32).alias("_order"),
        )
        .join(top, on=["rank", "device", "cause"], how="left")
        .sort("rank", "device", "_order")
        .select(
            "rank",
            "device",
            "cause",
            "idle_ns",
            "idle_pct",
            "window_pct",
            "top_detail",
            "top_detail_ns",
            "brief_ns",
        )
    )


def largest_cause(ctx: AnalysisContext) -> pl.DataFrame:
    """Per (rank, device): the cause with the most idle time (``cause``, ``idle_ns``,
    ``idle_pct`` of the device's idle); ties go to the earlier cause in precedence order."""
    rows = by_cause(ctx).filter(pl.col("idle_ns") > 0)
    return (
        rows.with_row_index("_order")
        .sort(["rank", "device", "idle_ns", "_order"], descending=[False, False, True, False])
        .group_by("rank", "device", maintain_order=True)
        .first()
        .select("rank", "device", "cause", "idle_ns", "idle_pct")
    )


def cold_start_split(ctx: AnalysisContext) -> pl.DataFrame:
    """Per (rank, cause) of the ledger's blocking rows (``sync_wait``, ``blocking_copy``):
    ``idle_ns`` (the row, over the rank's devices), ``cold_ns`` (the part inside one-time
    calls of the first profiled step, `host_blocking.first_step_outliers`, capped at the
    row) and ``steady_ns`` (the rest). Only ranks and causes with a cold part.

    A first-step call that is many times slower than the same call later (staging buffers,
    allocator growth, lazy init) is the cold-start finding's; judging the blocking calls by
    the whole row would sell a one-time cost as a steady-state one.
    """
    schema = {
        "rank": pl.Int32,
        "cause": pl.String,
        "idle_ns": pl.Int64,
        "cold_ns": pl.Int64,
        "steady_ns": pl.Int64,
    }
    cold = host_blocking.first_step_outliers(ctx)
    if cold.height == 0:
        return pl.DataFrame(schema=schema)
    cold = (
        cold.with_columns(
            pl.when(pl.col("kind") == "copy")
            .then(pl.lit("blocking_copy"))
            .otherwise(pl.lit("sync_wait"))
            .alias("cause")
        )
        .group_by("rank", "cause")
        .agg(pl.col("idle_ns").sum().alias("cold_ns"))
    )
    rows = (
        ledger(ctx)
        .filter(pl.col("cause").is_in(["sync_wait", "blocking_copy"]))
        .group_by("rank", "cause")
        .agg(pl.col("idle_ns").sum())
    )
    joined = rows.join(cold, on=["rank", "cause"], how="inner").with_columns(
        pl.min_horizontal("cold_ns", "idle_ns").alias("cold_ns")
    )
    return (
        joined.with_columns((pl.col("idle_ns") - pl.col("cold_ns")).alias("steady_ns"))
        .filter(pl.col("cold_ns") > 0)
        .sort("rank", "cause")
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
    )


def claimed(ctx: AnalysisContext, causes: tuple[str, ...], rank: int | None = None) -> int:
    """Idle time of ``causes`` (over every device, or one rank's): what a finding citing
    those rows claims."""
    rows = ledger(ctx).filter(pl.col("cause").is_in(list(causes)))
    if rank is not None:
        rows = rows.filter(pl.col("rank") == rank)
    return int(rows.get_column("idle_ns").sum()) if rows.height else 0


def claim_evidence(
    ctx: AnalysisContext, causes: tuple[str, ...], rank: int | None = None
) -> dict[str, float | int | str]:
    """The evidence keys a finding adds when it claims ledger rows."""
    return {"ledger_causes": ",".join(causes), "idle_claimed_ns": claimed(ctx, causes, rank)}


_EMPTY = {
    "rank": pl.Int32,
    "device": pl.Int32,
    "cause": pl.String,
    "detail": pl.String,
    "idle_ns": pl.Int64,
    "brief_ns": pl.Int64,
    "phase": pl.String,
}


def _ledger(ctx: AnalysisContext) -> pl.DataFrame:
    t = ctx.tables
    gaps = timeline.idle_gaps(t)
    if gaps.height == 0:
        return pl.DataFrame(schema=_EMPTY)
    windows = timeline.analysis_windows(t, "steps").select(
        "rank", "window_start_ns", "window_end_ns"
    )
    first_launched = (
        steps.gpu_ops(t)
        .filter(pl.col("launch_ns").is_not_null())
        .group_by("rank", "device")
        .agg(pl.col("start_ns").min().alias("first_launched_ns"))
    )
    # Queued work that was still running inside the window (ending earlier, it explains
    # nothing about the window's idle time).
    queued = (
        steps.queued_before_profiling(t)
        .join(windows, on="rank", how="inner")
        .filter(pl.col("end_ns") > pl.col("window_start_ns"))
        .select("rank", "device")
    )
    held_back = pending(t)
    parts: list[pl.DataFrame] = []
    for (rank,), rank_gaps in gaps.sort("rank", "device", "start_ns").group_by(
        ["rank"], maintain_order=True
    ):
        causes = _rank_causes(ctx, int(rank), rank_gaps)
        window = windows.filter(pl.col("rank") == rank)
        for (device,), dev_gaps in rank_gaps.group_by(["device"], maintain_order=True):
            boundary: int | None = None
            if queued.filter((pl.col("rank") == rank) & (pl.col("device") == device)).height:
                hit = first_launched.filter((pl.col("rank") == rank) & (pl.col("device") == device))
                boundary = int(hit.item(0, "first_launched_ns")) if hit.height else None
            held = held_back.filter((pl.col("rank") == rank) & (pl.col("device") == device))
            d_s, d_e = segments.merge(held.get_column("start_ns"), held.get_column("end_ns"))
            zero = pl.Series([0] * d_s.len(), dtype=pl.Int64)
            with_pending = {"dependency_wait": ((d_s, d_e, zero), []), **causes}
            parts.append(
                _device_ledger(
                    int(rank),
                    int(device),
                    dev_gaps,
                    window,
                    with_pending,
                    boundary,
                )
            )
    return pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=_EMPTY)


Labelled = tuple[Segments, list[str]]


def pending(t: TraceTables) -> pl.DataFrame:
    """Per GPU operation launched in the trace: the interval it was launched but held back,
    ``[launch call end + PENDING_SLACK_NS, start)`` (rank, device, start_ns, end_ns; only
    the non-empty ones), cut at the launch of any op on another stream of the device that
    the host launched later and that started no later (the work it waited on, issued by
    the host: from then on the host, not an outside dependency, held it)."""
    keys = ["rank", "correlation"]
    calls = (
        t.runtime.lazy()
        .filter(pl.col("correlation").is_not_null())
        .group_by(keys)
        .agg((pl.col("start_ns") + pl.col("dur_ns")).min().alias("launched_ns"))
        .collect()
    )
    ops = timeline.gpu_intervals(t).filter(pl.col("correlation").is_not_null())
    if calls.height == 0 or ops.height == 0:
        return pl.DataFrame(
            schema={"rank": pl.Int32, "device": pl.Int32, "start_ns": pl.Int64, "end_ns": pl.Int64}
        )
    joined = ops.join(calls, on=keys, how="inner")
    held_from = pl.col("launched_ns") + PENDING_SLACK_NS
    held = joined.filter(pl.col("start_ns") > held_from).with_row_index("_held")
    if held.height == 0:
        return held.select(
            pl.col("rank").cast(pl.Int32),
            pl.col("device").cast(pl.Int32),
            pl.col("start_ns").cast(pl.Int64),
            pl.col("end_ns").cast(pl.Int64),
        )
    # Held behind work the host launched later (a collective on another stream that the
    # op waits on, issued after it): from that launch on, the host is what it waited for.
    # A stream runs its work in launch order, so on each other stream of the device the
    # only candidate is the first op launched after the held one (it starts first): an
    # as-of join per (held op, other stream), linear where an inequality join over every
    # pair of ops grew with their product (7.5 GB on a 47 MB trace).
    later = joined.select(
        "rank",
        "device",
        pl.col("stream").alias("_stream"),
        pl.col("launched_ns").alias("_launched"),
        pl.col("start_ns").alias("_start"),
    ).sort("_launched")
    streams = later.select("rank", "device", "_stream").unique()
    pairs = (
        held.select("_held", "rank", "device", "stream", "launched_ns", "start_ns")
        .join(streams, on=["rank", "device"], how="inner")
        .filter(pl.col("_stream") != pl.col("stream"))
        .sort("launched_ns")
    )
    blockers = (
        pairs.join_asof(
            later,
            left_on="launched_ns",
            right_on="_launched",
            by=["rank", "device", "_stream"],
            strategy="forward",
            allow_exact_matches=False,
            check_sortedness=False,  # sorted above; polars cannot check it within groups
        )
        .filter(
            (pl.col("_launched") < pl.col("start_ns")) & (pl.col("_start") <= pl.col("start_ns"))
        )
        .group_by("_held")
        .agg(pl.col("_launched").min().alias("_host_ns"))
    )
    return (
        held.join(blockers, on="_held", how="left")
        .select(
            pl.col("rank").cast(pl.Int32),
            pl.col("device").cast(pl.Int32),
            held_from.cast(pl.Int64).alias("start_ns"),
            pl.min_horizontal("start_ns", "_host_ns").cast(pl.Int64).alias("end_ns"),
        )
        .filter(pl.col("end_ns") > pl.col("start_ns"))
    )


def _rank_causes(ctx: AnalysisContext, rank: int, gaps: pl.DataFrame) -> dict[str, Labelled]:
    """The labelled segments of each interval-based cause on one rank, limited to the
    intervals that overlap some idle gap."""
    g_s, g_e = segments.merge(gaps.get_column("start_ns"), gaps.get_column("end_ns"))
    calls = host_blocking.blocking_calls(ctx).filter(pl.col("rank") == rank)
    label = pl.coalesce(
        pl.col("frame"),
        pl.when(pl.col("op") == host_blocking.NO_OP)
        .then(pl.col("api"))
        .otherwise(pl.concat_str(pl.col("api"), pl.lit(" in "), pl.col("op"))),
    )
    calls = calls.with_columns(label.alias("label"))
    out: dict[str, Labelled] = {
        "sync_wait": _labelled(calls.filter(pl.col("kind") != "copy"), g_s, g_e, "inner"),
        "blocking_copy": _labelled(calls.filter(pl.col("kind") == "copy"), g_s, g_e, "inner"),
    }
    ops = _main_thread_ops(ctx, rank)
    names = pl.col("name").cast(pl.String)
    loader = ops.filter(names.str.contains(DATALOADER_PATTERN))
    comm = ops.filter(names.str.contains(COMM_PATTERN))
    out["dataloader"] = _labelled(loader.with_columns(names.alias("label")), g_s, g_e, "outer")
    out["comm_wait"] = _labelled(comm.with_columns(names.alias("label")), g_s, g_e, "inner")
    out["cpu_frame"] = _frames(ctx, rank, g_s, g_e)
    work = ops.filter(pl.col("kind") != "user_annotation")
    out["cpu_op"] = _labelled(work.with_columns(names.alias("label")), g_s, g_e, "outer")
    out["phase"] = _labelled(ops.with_columns(names.alias("label")), g_s, g_e, "outer")
    active = pl.concat([work.select("start_ns", "end_ns"), _python_calls(ctx, rank)])
    a_s, a_e = segments.merge(active.get_column("start_ns"), active.get_column("end_ns"))
    out["recorded"] = ((a_s, a_e, pl.Series([0] * a_s.len(), dtype=pl.Int64)), [])
    return out


def _on_main_thread(ctx: AnalysisContext, rank: int) -> pl.Expr:
    """Rows of the rank's main thread (the rank alone when no main thread is known); a pid
    or tid the trace lacks (a repaired row) compares as a value, not as "unknown"."""
    mine = pl.col("rank") == rank
    threads = host_blocking.main_threads(ctx).filter(pl.col("rank") == rank)
    if threads.height:
        pid, tid = threads.row(0)[1:]
        mine = mine & pl.col("pid").eq_missing(pid) & pl.col("tid").eq_missing(tid)
    return mine


def _python_calls(ctx: AnalysisContext, rank: int) -> pl.DataFrame:
    """The ``python_function`` intervals of the rank's main thread (start_ns, end_ns)."""
    mine = _on_main_thread(ctx, rank) & (pl.col("kind") == "python_function")
    return ctx.tables.ops.filter(mine).select(
        "start_ns", (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns")
    )


def _main_thread_ops(ctx: AnalysisContext, rank: int) -> pl.DataFrame:
    """CPU ops and annotations of the rank's main thread, less the step annotations."""
    mine = _on_main_thread(ctx, rank) & pl.col("kind").is_in(host_blocking.CPU_KINDS)
    step = timeline.table_name_matches(ctx.tables, "ops", host_blocking.STEP_PATTERN)
    return ctx.tables.ops.filter(mine & ~step).select(
        "name",
        pl.col("kind").cast(pl.String),
        "start_ns",
        (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"),
    )


def _labelled(frame: pl.DataFrame, g_s: pl.Series, g_e: pl.Series, keep: str) -> Labelled:
    """Flatten intervals (start_ns, end_ns, label) that overlap the gaps into labelled
    segments."""
    if frame.height == 0:
        return _no_segments()
    s, e = frame.get_column("start_ns"), frame.get_column("end_ns")
    touching = frame.filter(segments.overlap_ns(g_s, g_e, s, e) > 0)
    if touching.height == 0:
        return _no_segments()
    names = touching.get_column("label").cast(pl.String).fill_null("")
    table = names.unique().sort().to_list()
    index = {n: i for i, n in enumerate(table)}
    labels = names.replace_strict(index, return_dtype=pl.Int64)
    flat = segments.flatten(
        touching.get_column("start_ns"),
        touching.get_column("end_ns"),
        labels,
        "inner" if keep == "inner" else "outer",
    )
    return flat, table


def _frames(ctx: AnalysisContext, rank: int, g_s: pl.Series, g_e: pl.Series) -> Labelled:
    """The innermost user Python frames of the rank's main thread (when stacks exist)."""
    if not pystacks.has_stacks(ctx):
        return _no_segments()
    threads = host_blocking.main_threads(ctx).filter(pl.col("rank") == rank)
    if threads.height == 0:
        return _no_segments()
    pid, tid = threads.row(0)[1:]
    frames = pystacks.user_frames(ctx)
    seg = frames.threads.get((rank, int(pid), int(tid)))
    if seg is None:
        return _no_segments()
    return seg, frames.names


def _no_segments() -> Labelled:
    empty = pl.Series([], dtype=pl.Int64)
    return (empty, empty, empty), []


def _device_ledger(
    rank: int,
    device: int,
    gaps: pl.DataFrame,
    window: pl.DataFrame,
    causes: dict[str, Labelled],
    boundary: int | None,
) -> pl.DataFrame:
    """The ledger rows of one device: elementary intervals between every gap and cause
    edge, each charged to the first cause holding at its start."""
    g_s, g_e = gaps.get_column("start_ns"), gaps.get_column("end_ns")
    w_start = int(window.item(0, "window_start_ns")) if window.height else int(g_s.min())  # type: ignore[arg-type]
    w_end = int(window.item(0, "window_end_ns")) if window.height else int(g_e.max())  # type: ignore[arg-type]
    edges = [g_s, g_e]
    for (s, e, _), _names in causes.values():
        edges += [s, e]
    if boundary is not None:
        edges.append(pl.Series([boundary], dtype=pl.Int64))
    points = pl.concat([x.cast(pl.Int64) for x in edges]).unique().sort()
    points = points.filter((points >= g_s.min()) & (points <= g_e.max()))
    starts, ends = points.slice(0, points.len() - 1), points.slice(1)
    gap_idx = segments.lookup(g_s, g_e, starts)
    keep = gap_idx >= 0
    starts, ends, gap_idx = starts.filter(keep), ends.filter(keep), gap_idx.filter(keep)
    gap_len = (g_e - g_s).gather(gap_idx)
    interior = (g_s.gather(gap_idx) > w_start) & (g_e.gather(gap_idx) < w_end)
    frame = pl.DataFrame(
        {"start_ns": starts, "dur_ns": ends - starts, "brief": gap_len < BRIEF_GAP_NS}
    )
    columns: dict[str, pl.Series] = {}
    details: dict[str, pl.Series] = {}
    for name, ((s, e, lab), names) in causes.items():
        idx = segments.lookup(s, e, starts)
        columns[name] = idx >= 0
        label_ids = lab.gather(idx.clip(lower_bound=0)) if lab.len() else idx
        details[name] = pl.Series(
            [
                names[i] if j >= 0 else None
                for i, j in zip(label_ids.to_list(), idx.to_list(), strict=True)
            ]
            if names
            else [None] * starts.len(),
            dtype=pl.String,
        )
    before_boundary = (
        starts < boundary if boundary is not None else pl.Series([False] * starts.len())
    )
    short = interior & (gap_len < LAUNCH_GAP_NS)
    (r_s, r_e, _), _none = causes["recorded"]
    covered = segments.overlap_ns(r_s, r_e, g_s, g_e).gather(gap_idx)
    recorded = covered >= RECORDED_SHARE * gap_len
    order: list[tuple[str, pl.Series, pl.Series | None]] = [
        ("dependency_wait", columns["dependency_wait"] & (gap_len >= LAUNCH_GAP_NS), None),
        ("queued_boundary", before_boundary, None),
        ("sync_wait", columns["sync_wait"], details["sync_wait"]),
        ("blocking_copy", columns["blocking_copy"], details["blocking_copy"]),
        ("dataloader", columns["dataloader"], _prefer(details["cpu_frame"], details["dataloader"])),
        ("comm_wait", columns["comm_wait"], details["comm_wait"]),
        ("launch_overhead", short, None),
        ("cpu_work", columns["cpu_frame"] & recorded, details["cpu_frame"]),
        ("cpu_work", columns["cpu_op"] & recorded, details["cpu_op"]),
    ]
    cause: pl.Expr = pl.lit("other", dtype=pl.String)
    detail: pl.Expr = pl.lit(None, dtype=pl.String)
    for name, hit, label in reversed(order):
        cause = pl.when(pl.lit(hit)).then(pl.lit(name)).otherwise(cause)
        text = pl.lit(label) if label is not None else pl.lit(None, dtype=pl.String)
        detail = pl.when(pl.lit(hit)).then(text).otherwise(detail)
    host = pl.col("cause").is_in(["cpu_work", "other"])
    charged = frame.with_columns(cause.alias("cause"), detail.alias("detail")).with_columns(
        pl.when(host).then(pl.lit(details["phase"])).alias("phase")
    )
    return (
        charged.group_by("cause", "detail", "phase")
        .agg(
            pl.col("dur_ns").sum().alias("idle_ns"),
            pl.col("dur_ns").filter("brief").sum().alias("brief_ns"),
        )
        .select(
            pl.lit(rank, dtype=pl.Int32).alias("rank"),
            pl.lit(device, dtype=pl.Int32).alias("device"),
            "cause",
            "detail",
            "idle_ns",
            "brief_ns",
            "phase",
        )
        .sort(["cause", "idle_ns"], descending=[False, True])
    )


def _prefer(first: pl.Series, then: pl.Series) -> pl.Series:
    """``first`` where it is set, else ``then`` (the Python frame over the op's name)."""
    return pl.select(pl.coalesce(pl.lit(first), pl.lit(then))).to_series()


def held_at_capture_start_ns(ctx: AnalysisContext, rank: int, device: int) -> int:
    """Idle time of the device's first idle gap (the start of the capture window) during
    which launched work was held back (`pending`): when it is most of the ``dependency_wait``
    row, the capture started mid-pipeline (the dependency is work from before the trace)."""
    t = ctx.tables
    gaps = timeline.idle_gaps(t).filter((pl.col("rank") == rank) & (pl.col("device") == device))
    if gaps.height == 0:
        return 0
    first = gaps.sort("start_ns").row(0, named=True)
    if int(first["end_ns"]) - int(first["start_ns"]) < LAUNCH_GAP_NS:
        return 0
    held = pending(t).filter((pl.col("rank") == rank) & (pl.col("device") == device))
    h_s, h_e = segments.merge(held.get_column("start_ns"), held.get_column("end_ns"))
    inside = segments.overlap_ns(
        h_s,
        h_e,
        pl.Series([first["start_ns"]], dtype=pl.Int64),
        pl.Series([first["end_ns"]], dtype=pl.Int64),
    )
    return int(inside[0])
