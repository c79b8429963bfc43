"""The idle ledger: every idle nanosecond of each device charged to exactly one cause.

Idle time is `analyzer.metrics.timeline`'s: the analysis window's span minus the union of
the device's kernels and memory operations (`timeline.idle_gaps`). Each idle stretch goes to
the first cause, in this order, that holds during it:

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
   the innermost user frame is the detail) or a CPU op (the outermost op below the step).
8. ``other``: nothing recorded on the main thread explains it.

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

CAUSES: Final = (
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
    "queued_boundary": "waiting for profiled work after work queued before profiling",
    "sync_wait": "CPU in a host synchronization (sync call, .item())",
    "blocking_copy": "CPU in a blocking copy",
    "dataloader": "CPU in the DataLoader",
    "comm_wait": "CPU waiting on a collective",
    "launch_overhead": "launch overhead (gaps under 30 us between GPU ops)",
    "cpu_work": "CPU work in a named op or Python frame",
    "other": "other (nothing recorded on the main thread)",
}
LAUNCH_GAP_NS: Final = timeline.KERNEL_WAIT_THRESHOLD_NS
#: Gaps under this are "brief": CPU work that interleaves with launches (dispatch-bound
#: eager execution) rather than a block of host work between device steps.
BRIEF_GAP_NS: Final = 1_000_000
DATALOADER_PATTERN: Final = r"enumerate\(DataLoader\)|DataLoader.*__next__"
COMM_PATTERN: Final = (
    r"^(c10d::|nccl:|gloo:|record_param_comms|ProcessGroup|torch\.distributed|"
    r"aten::_?(all_reduce|all_gather|reduce_scatter|all_to_all))"
)


def ledger(ctx: AnalysisContext) -> pl.DataFrame:
    """Per (rank, device, cause, detail): ``idle_ns``. Rows of a device sum to its idle time.

    ``detail`` names what ran (op, Python frame or API; null when nothing is known);
    ``brief_ns`` is the part of ``idle_ns`` in gaps under 1 ms (`BRIEF_GAP_NS`).
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
            parts.append(
                _device_ledger(
                    int(rank),
                    int(device),
                    dev_gaps,
                    window,
                    causes,
                    boundary,
                )
            )
    return pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=_EMPTY)


Labelled = tuple[Segments, list[str]]


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
    out["cpu_op"] = _labelled(ops.with_columns(names.alias("label")), g_s, g_e, "outer")
    return out


def _main_thread_ops(ctx: AnalysisContext, rank: int) -> pl.DataFrame:
    """CPU ops and annotations of the rank's main thread, less the step annotations."""
    threads = host_blocking.main_threads(ctx).filter(pl.col("rank") == rank)
    mine = (pl.col("rank") == rank) & pl.col("kind").is_in(host_blocking.CPU_KINDS)
    if threads.height:
        pid, tid = threads.row(0)[1:]
        mine = mine & (pl.col("pid") == pid) & (pl.col("tid") == tid)
    step = timeline.table_name_matches(ctx.tables, "ops", host_blocking.STEP_PATTERN)
    return ctx.tables.ops.filter(mine & ~step).select(
        "name", "start_ns", (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns")
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
    order: list[tuple[str, pl.Series, pl.Series | None]] = [
        ("queued_boundary", before_boundary, None),
        ("sync_wait", columns["sync_wait"], details["sync_wait"]),
        ("blocking_copy", columns["blocking_copy"], details["blocking_copy"]),
        ("dataloader", columns["dataloader"], _prefer(details["cpu_frame"], details["dataloader"])),
        ("comm_wait", columns["comm_wait"], details["comm_wait"]),
        ("launch_overhead", short, None),
        ("cpu_work", columns["cpu_frame"], details["cpu_frame"]),
        ("cpu_work", columns["cpu_op"], details["cpu_op"]),
    ]
    cause: pl.Expr = pl.lit("other", dtype=pl.String)
    detail: pl.Expr = pl.lit(None, dtype=pl.String)
    for name, hit, label in reversed(order):
        cause = pl.when(pl.lit(hit)).then(pl.lit(name)).otherwise(cause)
        text = pl.lit(label) if label is not None else pl.lit(None, dtype=pl.String)
        detail = pl.when(pl.lit(hit)).then(text).otherwise(detail)
    charged = frame.with_columns(cause.alias("cause"), detail.alias("detail"))
    return (
        charged.group_by("cause", "detail")
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
        )
        .sort(["cause", "idle_ns"], descending=[False, True])
    )


def _prefer(first: pl.Series, then: pl.Series) -> pl.Series:
    """``first`` where it is set, else ``then`` (the Python frame over the op's name)."""
    return pl.select(pl.coalesce(pl.lit(first), pl.lit(then))).to_series()
