"""Host-side facts several rules share: each rank's window and main thread, the calls that
block the CPU on the GPU, and the copies with the CPU ops that issued them.

Blocking calls, per rank, inside the rank's window (the profiled steps, or the whole trace
without steps):

- synchronization API calls (Nsight Systems' ``cuda_api_sync``) and their event, HIP and
  driver twins: ``cudaDeviceSynchronize``, ``cudaStreamSynchronize``,
  ``cudaEventSynchronize``, ``cuCtxSynchronize``, ``cuStreamSynchronize``,
  ``cuEventSynchronize``, ``hipDeviceSynchronize``, ``hipStreamSynchronize``,
  ``hipEventSynchronize`` (version suffixes such as ``_v3020`` are ignored): kind ``sync``;
- blocking copies: the non-async ``cudaMemcpy*`` / ``hipMemcpy*`` / ``cuMemcpy*`` calls and
  ``hipMemcpyWithStream`` (Nsight's ``cuda_memcpy_sync``; host-to-device copies of at most
  64,000 bytes return before the copy completes and copies within one device do not block,
  so both are left out), and ``cudaMemcpyAsync`` / ``hipMemcpyAsync`` to or from pageable
  host memory (the driver stages them, so they are synchronous): kind ``copy``;
- either of the above issued by a ``.item()``-style read (``aten::item``,
  ``aten::_local_scalar_dense``, ``aten::is_nonzero``): kind ``read``.

Each call carries the innermost and outermost CPU op containing it on its thread and, when
the trace has Python stacks, the innermost user Python frame (`analyzer.metrics.pystacks`).
These helpers live here, not in a rule, so that rules never import each other.
"""

from __future__ import annotations

from typing import Final

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Scope
from gpu_trace_analyzer.metrics import intervals, pystacks, segments, timeline
from gpu_trace_analyzer.metrics.roofline import OpTree
from gpu_trace_analyzer.parsers.schema import TraceTables

#: Runtime or driver calls that block the host until the device (or a stream/event) is done.
SYNC_API_PATTERN: Final = (
    r"^(cuda(Device|Stream|Event)Synchronize|cu(Ctx|Stream|Event)Synchronize"
    r"|hip(Device|Stream|Event)Synchronize)(_v\d+)?$"
)
#: Non-async copy calls (Nsight's cuda_memcpy_sync candidates) and HIP's blocking
#: stream copy.
SYNC_MEMCPY_PATTERN: Final = (
    r"^((cuda|hip)Memcpy(2D|3D|ToSymbol|FromSymbol|Peer|DtoH|HtoD|DtoD|WithStream)?"
    r"|cuMemcpy(DtoH|HtoD|DtoD)?)(_v\d+)?$"
)
#: Async copy calls: blocking when a side is pageable host memory.
ASYNC_MEMCPY_PATTERN: Final = r"^(cuda|hip)Memcpy(2D|3D)?Async(_v\d+)?$|^cuMemcpy\w*Async(_v\d+)?$"
#: Nsight's cuda_memcpy_sync leaves out host-to-device copies up to this size.
SMALL_HTOD_BYTES: Final = 64_000
#: CPU ops that read a device scalar into Python (``.item()``, ``float(t)``, ``if t:``).
ITEM_OPS: Final = r"^aten::(item|_local_scalar_dense|is_nonzero)$"
STEP_PATTERN: Final = r"^ProfilerStep#"
CPU_KINDS: Final = ("cpu_op", "user_annotation")
NO_OP: Final = "(no CPU op: called directly)"
_CALL_COLUMNS = ["rank", "pid", "tid", "api", "correlation", "start_ns", "dur_ns"]


def blocking_calls(ctx: AnalysisContext) -> pl.DataFrame:
    """Sync API calls and blocking copies inside each rank's window (see the module doc).

    Columns: rank, pid, tid, api, kind (sync, copy, read), pageable (a copy with a pageable
    host side: pageable-memcpy owns its CPU-blocked time), start_ns, end_ns, dur_ns, op
    (innermost containing CPU op), under (outermost one), frame (innermost user Python
    frame, null without stacks). Computed once per analysis.
    """
    return ctx.metric("host_blocking.blocking_calls", lambda _tables: _blocking_calls(ctx))


def _blocking_calls(ctx: AnalysisContext) -> pl.DataFrame:
    runtime = ctx.tables.runtime
    api = pl.col("name").cast(pl.String).str.replace(r"_v\d+$", "").alias("api")
    sync_api = timeline.table_name_matches(ctx.tables, "runtime", SYNC_API_PATTERN)
    sync_copy = timeline.table_name_matches(ctx.tables, "runtime", SYNC_MEMCPY_PATTERN)
    async_copy = timeline.table_name_matches(ctx.tables, "runtime", ASYNC_MEMCPY_PATTERN)
    syncs = runtime.filter(sync_api).with_columns(api)
    copies = _blocking_copies(ctx, runtime.filter(sync_copy).with_columns(api))
    pageable = _pageable_async(ctx, runtime.filter(async_copy).with_columns(api))
    calls = pl.concat(
        [
            syncs.select(_CALL_COLUMNS).with_columns(pl.lit("sync").alias("kind")),
            copies.select(_CALL_COLUMNS).with_columns(pl.lit("copy").alias("kind")),
            pageable.select(_CALL_COLUMNS).with_columns(pl.lit("copy").alias("kind")),
        ],
        how="vertical",
    ).with_columns((pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"))
    pageable_ids = _pageable_async(
        ctx, pl.concat([copies.select(_CALL_COLUMNS), pageable.select(_CALL_COLUMNS)])
    ).select("rank", "correlation", pl.lit(True).alias("pageable"))
    calls = calls.join(pageable_ids.unique(), on=["rank", "correlation"], how="left")
    calls = calls.with_columns(pl.col("pageable").fill_null(False))
    windows = rank_windows(ctx)
    calls = calls.join(windows, on="rank", how="inner").filter(
        (pl.col("start_ns") >= pl.col("window_start_ns"))
        & (pl.col("start_ns") < pl.col("window_end_ns"))
    )
    calls = calls.select(
        "rank", "pid", "tid", "api", "kind", "pageable", "start_ns", "end_ns", "dur_ns"
    ).sort("rank", "start_ns")
    with_ops = with_containing_ops(ctx, calls.with_row_index("call")).drop("call")
    is_read = pl.col("op").str.contains(ITEM_OPS) | pl.col("under").str.contains(ITEM_OPS)
    with_ops = with_ops.with_columns(
        pl.when(is_read).then(pl.lit("read")).otherwise(pl.col("kind")).alias("kind")
    )
    return with_frames(ctx, with_ops)


def with_frames(ctx: AnalysisContext, calls: pl.DataFrame) -> pl.DataFrame:
    """Add ``frame``: the innermost user Python frame on the call's thread when it started
    (null when the trace has no Python stacks or none runs then)."""
    if calls.height == 0 or not pystacks.has_stacks(ctx):
        return calls.with_columns(pl.lit(None, dtype=pl.String).alias("frame"))
    frames = pystacks.user_frames(ctx)
    out: list[str | None] = [None] * calls.height
    indexed = calls.select("rank", "pid", "tid", "start_ns").with_row_index("_i")
    for (rank, pid, tid), part in indexed.group_by(["rank", "pid", "tid"]):
        at = part.get_column("start_ns")
        names = frames.frame_at(int(rank), int(pid), int(tid), at)
        for i, name in zip(part.get_column("_i").to_list(), names, strict=True):
            out[i] = name
    return calls.with_columns(pl.Series("frame", out, dtype=pl.String))


def _pageable_async(ctx: AnalysisContext, calls: pl.DataFrame) -> pl.DataFrame:
    """The async copy calls whose copy has a pageable host side (synchronous then)."""
    if calls.height == 0:
        return calls
    pageable = (pl.col("src_mem").cast(pl.String) == "pageable") | (
        pl.col("dst_mem").cast(pl.String) == "pageable"
    )
    memops = (
        ctx.tables.memops.filter(pl.col("correlation").is_not_null() & pageable)
        .select("rank", "correlation")
        .unique()
    )
    return calls.join(memops, on=["rank", "correlation"], how="semi")


def _blocking_copies(ctx: AnalysisContext, copies: pl.DataFrame) -> pl.DataFrame:
    """The non-async copy calls ``copies``, less small host-to-device and same-device ones
    (Nsight's rule)."""
    if copies.height == 0:
        return copies
    memops = ctx.tables.memops.select(
        "rank", "correlation", pl.col("kind").cast(pl.String).alias("copy_kind"), "bytes"
    ).filter(pl.col("correlation").is_not_null())
    linked = copies.join(memops, on=["rank", "correlation"], how="left")
    small_htod = (pl.col("copy_kind") == "HtoD") & (pl.col("bytes") <= SMALL_HTOD_BYTES)
    same_device = pl.col("copy_kind") == "DtoD"
    return linked.filter(~(small_htod | same_device).fill_null(False))


def with_containing_ops(ctx: AnalysisContext, calls: pl.DataFrame) -> pl.DataFrame:
    """Add ``op`` (innermost CPU op containing each call on its thread) and ``under``.

    An inequality join finds the ops containing each call in time (on any thread), which
    stays small however many calls and ops there are; the thread must then match. Ops that
    contain no call at all are left out first (`_around_a_call`).
    """
    ops = ctx.tables.ops
    if calls.height == 0:
        return calls.with_columns(pl.lit(NO_OP).alias("op"), pl.lit(NO_OP).alias("under"))
    could_contain = _around_a_call(ops, calls)
    candidates = ops.filter(
        could_contain
        & pl.col("kind").is_in(CPU_KINDS)
        & ~timeline.table_name_matches(ctx.tables, "ops", STEP_PATTERN)
    )
    if candidates.height == 0:
        return calls.with_columns(pl.lit(NO_OP).alias("op"), pl.lit(NO_OP).alias("under"))
    threads = ["rank", "pid", "tid"]
    containing = calls.join_where(
        candidates.select(
            *(pl.col(c).alias(f"op_{c}") for c in threads),
            pl.col("name").alias("op_name"),
            "depth",
            pl.col("start_ns").alias("op_start_ns"),
            (pl.col("start_ns") + pl.col("dur_ns")).alias("op_end_ns"),
        ),
        pl.col("op_start_ns") <= pl.col("start_ns"),
        pl.col("op_end_ns") >= pl.col("end_ns"),
    ).filter(pl.all_horizontal(pl.col(c) == pl.col(f"op_{c}") for c in threads))
    chain = (
        containing.sort("depth")
        .group_by("call")
        .agg(pl.col("op_name").last().alias("op"), pl.col("op_name").first().alias("under"))
        .with_columns(pl.col("op", "under").cast(pl.String))
    )
    return calls.join(chain, on="call", how="left").with_columns(
        pl.col("op").fill_null(NO_OP), pl.col("under").fill_null(NO_OP)
    )


def _around_a_call(ops: pl.DataFrame, calls: pl.DataFrame) -> pl.Expr:
    """Whether an op spans, in time, at least one of ``calls`` (on any thread).

    With ops in start order, one merge pass (an as-of join) gives each op the earliest end
    among the calls starting at or after it; the op spans a call when that end comes
    before its own. Otherwise cheap bounds: long enough, and around some call.
    """
    start = ops.get_column("start_ns")
    if start.null_count() or not start.is_sorted():
        return (
            (pl.col("dur_ns") >= calls["dur_ns"].min())
            & (pl.col("start_ns") <= calls["start_ns"].max())
            & (pl.col("start_ns") + pl.col("dur_ns") >= calls["end_ns"].min())
        )
    ordered = calls.select("start_ns", "end_ns").sort("start_ns")
    earliest_end = ordered.select(
        pl.col("start_ns").alias("_at"),
        pl.col("end_ns").reverse().cum_min().reverse().alias("_end"),
    )
    nearest = (
        start.rename("_at")
        .to_frame()
        .join_asof(earliest_end, on="_at", strategy="forward", check_sortedness=False)
    )
    return pl.lit(nearest.get_column("_end") <= start + ops.get_column("dur_ns"))


def main_threads(ctx: AnalysisContext) -> pl.DataFrame:
    """Per rank, the (pid, tid) of the main thread: the one holding the ProfilerStep
    annotations, else the one issuing the most runtime calls, else the busiest op thread.
    Computed once per analysis.
    """
    return ctx.metric("host_blocking.main_threads", _main_threads)


def _main_threads(t: TraceTables) -> pl.DataFrame:
    # GPU user annotations (a ProfilerStep range copied onto a stream row) are not threads.
    ops = t.ops.lazy().filter(pl.col("kind") != "gpu_user_annotation")
    candidates = (  # rows of each choice, in order, and each thread's weight in it
        (ops.filter(timeline.table_name_matches(t, "ops", STEP_PATTERN)), pl.len()),
        (t.runtime.lazy(), pl.len()),
        (ops.filter(pl.col("depth") == 0), pl.col("dur_ns").sum()),
    )
    picked: list[pl.DataFrame] = []
    seen: set[int] = set()
    for rows, weight in candidates:  # a later choice is looked at only if a rank needs it
        unseen = (
            rows.filter(~pl.col("rank").is_in(sorted(seen)))
            .select("rank", "pid", "tid", "dur_ns")
            .collect()
        )
        if unseen.height == 0:  # every rank here already has its thread
            continue
        best = (
            unseen.group_by("rank", "pid", "tid")
            .agg(weight.alias("weight"))
            .sort(["weight", "pid", "tid"], descending=[True, False, False], maintain_order=True)
            .group_by("rank", maintain_order=True)
            .first()
        )
        seen.update(int(r) for r in best["rank"].to_list())
        picked.append(best.select("rank", "pid", "tid"))
    if not picked:
        return pl.DataFrame(schema={"rank": pl.Int32, "pid": pl.Int64, "tid": pl.Int64})
    return pl.concat(picked, how="vertical")


def rank_windows(ctx: AnalysisContext) -> pl.DataFrame:
    """Per rank, the window CPU-side rules look at: [window_start_ns, window_end_ns).

    The profiled steps (to the end of the GPU work they launched) when the rank has steps,
    else the whole trace: first to last event of any kind (CPU op, runtime call, GPU event).
    ``window_basis`` says which (steps, trace). Computed once per analysis (several rules
    ask for it).
    """
    return ctx.metric("host_blocking.rank_windows", _rank_windows)


def _rank_windows(t: TraceTables) -> pl.DataFrame:
    span = (  # per table first: four small results to combine, not 1.3 M rows to concatenate
        pl.col("start_ns").min().alias("start_ns"),
        (pl.col("start_ns") + pl.col("dur_ns")).max().alias("end_ns"),
    )
    spans = [
        intervals.aggregate(frame, ["rank"], *span)
        for frame in (t.ops, t.runtime, t.kernels, t.memops)
        if frame.height
    ]
    if not spans:
        return pl.DataFrame(
            schema={
                "rank": pl.Int32(),
                "window_start_ns": pl.Int64(),
                "window_end_ns": pl.Int64(),
                "window_basis": pl.String(),
            }
        )
    whole = (
        pl.concat(spans, how="vertical")
        .group_by("rank")
        .agg(
            pl.col("start_ns").min().alias("window_start_ns"),
            pl.col("end_ns").max().alias("window_end_ns"),
        )
        .with_columns(pl.lit("trace").alias("window_basis"))
    )
    steps = timeline.step_windows(t)
    if steps.height == 0:
        return whole.sort("rank")
    stepped = (
        steps.group_by("rank")
        .agg(
            pl.col("start_ns").min().alias("window_start_ns"),
            pl.max_horizontal(pl.col("end_ns").max(), pl.col("gpu_end_ns").max()).alias(
                "window_end_ns"
            ),
        )
        .with_columns(pl.lit("steps").alias("window_basis"))
    )
    rest = whole.join(stepped.select("rank"), on="rank", how="anti")
    return pl.concat([stepped, rest.select(stepped.columns)], how="vertical").sort("rank")


def copies_with_callers(ctx: AnalysisContext) -> pl.DataFrame:
    """Memory operations inside each rank's window, with the CPU side that issued them.

    Adds ``api_ns`` (CPU time of the launching call, null when not linked) and ``op`` /
    ``under`` (the CPU ops that issued the copy, see `issuing_ops`). Computed once per
    analysis; rules keep the copies they look at with a row filter.
    """
    return ctx.metric("host_blocking.copies_with_callers", lambda _: _copies_with_callers(ctx))


def _copies_with_callers(ctx: AnalysisContext) -> pl.DataFrame:
    windows = rank_windows(ctx)
    inside = intervals.with_windows(ctx.tables.memops, windows).filter(
        (pl.col("start_ns") + pl.col("dur_ns") > pl.col("window_start_ns"))
        & (pl.col("start_ns") < pl.col("window_end_ns"))
    )
    calls = ctx.tables.runtime.select("rank", "correlation", pl.col("dur_ns").alias("api_ns"))
    if not intervals.strictly_increasing(calls.get_column("correlation")):  # repeated ids: add
        launched = inside["correlation"].drop_nulls().unique()
        calls = (
            calls.filter(pl.col("correlation").is_in(launched.implode()))
            .group_by("rank", "correlation")
            .agg(pl.col("api_ns").sum())
        )
    callers = issuing_ops(ctx, inside.filter(pl.col("external_id").is_not_null()))
    with_calls = intervals.join_within_rank(inside, calls, ["correlation"], how="left")
    return with_calls.join(callers, on=["rank", "external_id"], how="left", maintain_order="left")


def issuing_ops(ctx: AnalysisContext, keys: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per (rank, external_id): the CPU op that issued GPU work, and where it was called.

    ``op`` is the innermost op carrying the external id (``aten::copy_``; the first in table
    order among equally deep ones); ``under`` is its outermost ancestor below the
    ``ProfilerStep#N`` annotation (``aten::to``, ``Optimizer.step#SGD.step``,
    ``## forward ##``), found by following ``parent`` links. ``keys`` (rank, external_id)
    limits the walk to the GPU work asked about.
    """
    ops = ctx.tables.ops.select("rank", "op_id", "parent", "depth", "external_id", "name")
    launching = ops.filter(pl.col("external_id").is_not_null())
    if keys is not None:
        launching = _with_keys(launching, keys.select("rank", "external_id"))
    inner = (
        launching.sort("depth", descending=True, maintain_order=True)
        .group_by("rank", "external_id", maintain_order=True)
        .agg(pl.col("name").first().cast(pl.String).alias("op"), pl.col("op_id").first())
    )
    if inner.height == 0:
        return inner.select("rank", "external_id", "op", pl.col("op").alias("under"))
    is_step = timeline.table_name_matches(ctx.tables, "ops", STEP_PATTERN)
    tree = OpTree.of(ops.select("op_id", "parent", "name", is_step.alias("step")))
    max_depth = int(ops.select(pl.col("depth").max()).item() or 0)
    top = _outermost_below_step(tree, inner["op_id"], max_depth)
    under = tree.lookup(top, "name").cast(pl.String).alias("under")
    return inner.with_columns(under).select("rank", "external_id", "op", "under")


def _with_keys(ops: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``ops`` whose (rank, external_id) is among ``keys``, in table order: a
    set lookup on the id alone when both hold one rank."""
    if intervals.one_value(ops.get_column("rank"), keys.get_column("rank")):
        wanted = keys.get_column("external_id").unique().implode()
        return ops.filter(pl.col("external_id").is_in(wanted))
    return ops.join(keys.unique(), on=["rank", "external_id"], how="semi", maintain_order="left")


def _outermost_below_step(tree: OpTree, op_ids: pl.Series, max_depth: int) -> pl.Series:
    """Each op's outermost ancestor-or-self reached without entering a step annotation:
    climb while the op is not a step and its parent is a known op that is not a step."""
    current = op_ids
    for _ in range(max_depth + 1):
        up = pl.select(pl.when(~tree.lookup(current, "step")).then(tree.lookup(current, "parent")))
        parent = up.to_series()
        climb = (~tree.lookup(parent, "step")).fill_null(False)
        moved = pl.select(pl.when(climb).then(parent).otherwise(current)).to_series()
        if moved.equals(current):
            break
        current = moved
    return current


def window_scope(t: TraceTables, ranks: list[int]) -> Scope:
    """The rank and its analysis window (the profiled steps) when one rank is involved."""
    if len(ranks) != 1:
        return Scope()
    rank = int(ranks[0])
    window = timeline.analysis_windows(t, "steps").filter(pl.col("rank") == rank)
    if window.height == 0:
        return Scope(rank=rank)
    return Scope(
        rank=rank,
        start_ns=int(window["window_start_ns"][0]),
        end_ns=int(window["window_end_ns"][0]),
    )


#: A first-step blocking call is a one-time (cold-start) cost when it takes at least this
#: many times the median of the same call site, at the same call index within the step, in
#: the later steps...
COLD_CALL_RATIO: Final = 3.0
#: ...and at least this much longer.
COLD_CALL_EXCESS_NS: Final = 5_000_000
#: Fewest profiled steps a rank needs for a steady-state median of its call sites.
COLD_CALL_MIN_STEPS: Final = 3


def first_step_outliers(ctx: AnalysisContext) -> pl.DataFrame:
    """Blocking calls of each rank's first profiled step that are one-time costs: a call
    site (API and innermost CPU op) whose first-step call takes `COLD_CALL_RATIO` times the
    median of the same site's calls at the same index within their step in the later steps
    (the k-th copy of a step against the later steps' k-th copies, so a large input copy is
    not judged against a mixture with the small label copy of the same site) and
    `COLD_CALL_EXCESS_NS` more (the first pageable copy that grows staging buffers, a first
    sync behind lazy init).

    Columns: rank, step, api, kind, pageable, op, start_ns, end_ns, dur_ns, median_ns (the site's
    later calls), excess_ns (dur_ns - median_ns), idle_ns (GPU idle inside the call).
    Computed once per analysis.
    """
    return ctx.metric("host_blocking.first_step_outliers", lambda _t: _first_step_outliers(ctx))


def _first_step_outliers(ctx: AnalysisContext) -> pl.DataFrame:
    empty = pl.DataFrame(
        schema={
            "rank": pl.Int32,
            "step": pl.Int64,
            "api": pl.String,
            "kind": pl.String,
            "pageable": pl.Boolean,
            "op": pl.String,
            "start_ns": pl.Int64,
            "end_ns": pl.Int64,
            "dur_ns": pl.Int64,
            "median_ns": pl.Int64,
            "excess_ns": pl.Int64,
            "idle_ns": pl.Int64,
        }
    )
    calls = blocking_calls(ctx)
    steps = ctx.tables.steps.select("rank", "step", "start_ns", "end_ns").sort("rank", "start_ns")
    if calls.height == 0 or steps.height == 0:
        return empty
    steps = steps.with_columns(
        pl.int_range(pl.len()).over("rank").alias("_index"), pl.len().over("rank").alias("_n")
    ).filter(pl.col("_n") >= COLD_CALL_MIN_STEPS)
    in_step = calls.join_where(
        steps.select(
            pl.col("rank").alias("_rank"),
            "step",
            "_index",
            pl.col("start_ns").alias("_s"),
            pl.col("end_ns").alias("_e"),
        ),
        pl.col("start_ns") >= pl.col("_s"),
        pl.col("start_ns") < pl.col("_e"),
    ).filter(pl.col("rank") == pl.col("_rank"))
    # Like with like: a step's k-th call of a site is compared with the later steps' k-th
    # calls of it (a step's large input copy and its small label copy share a site).
    in_step = in_step.sort("rank", "start_ns").with_columns(
        pl.int_range(pl.len()).over("rank", "step", "api", "op").alias("_k")
    )
    site = ["rank", "api", "op", "_k"]
    later = (
        in_step.filter(pl.col("_index") > 0)
        .group_by(site)
        .agg(pl.col("dur_ns").median().cast(pl.Int64).alias("median_ns"))
    )
    first = in_step.filter(pl.col("_index") == 0).join(later, on=site, how="inner")
    hits = first.filter(
        (pl.col("dur_ns") >= COLD_CALL_RATIO * pl.col("median_ns"))
        & (pl.col("dur_ns") - pl.col("median_ns") >= COLD_CALL_EXCESS_NS)
    )
    if hits.height == 0:
        return empty
    gaps = timeline.idle_gaps(ctx.tables)
    idle: list[int] = []
    for r in hits.iter_rows(named=True):
        mine = gaps.filter(pl.col("rank") == r["rank"])
        g_s, g_e = segments.merge(mine.get_column("start_ns"), mine.get_column("end_ns"))
        inside = segments.overlap_ns(
            g_s, g_e, pl.Series([r["start_ns"]], dtype=pl.Int64), pl.Series([r["end_ns"]])
        )
        idle.append(int(inside[0]) if inside.len() else 0)
    return hits.with_columns(
        (pl.col("dur_ns") - pl.col("median_ns")).alias("excess_ns"),
        pl.Series("idle_ns", idle, dtype=pl.Int64),
    ).select(list(empty.columns))
