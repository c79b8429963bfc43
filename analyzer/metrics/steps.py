"""Step accounting: each GPU operation charged to the step whose CPU side launched it.

The profiler's ``ProfilerStep#N`` range on the CPU is when the step was *issued*, not when
its GPU work ran: the GPU may still be running the previous step (pipelining) or work queued
before profiling began. So:

- every GPU operation (kernel, memcpy, memset) with a launching runtime call in the trace
  (same correlation id) belongs to the step whose CPU range contains that call's start
  (``basis = launch``). When the trace has GPU-side step annotations
  (``gpu_user_annotation`` ``ProfilerStep#N``) and they agree with the launches (at least
  90% of the launched GPU time starts inside the annotation of its own step), they are used
  instead (``basis = gpu_user_annotation``); annotations that last a few microseconds (some
  ROCm traces) fail that test and are ignored;
- GPU operations without a launching call that start before the device's first launched
  operation are *queued before profiling*: leftovers of a warm-up step the profiler never
  saw. They belong to no step and are kept out of step metrics, the roofline and the
  top-kernel tables (`profiled_only`); other unlinked operations go to the step whose CPU
  range contains their own start;
- per step: the CPU step time (the annotation's length), the GPU busy time (union) and span
  (first start to last end) of its own work, and ``waited_ns``: CPU time inside blocking
  calls (`analyzer.metrics.host_blocking`) while the GPU ran *other* steps' work or queued
  work. ``own_ns = cpu_dur_ns - waited_ns`` is the step's time net of waiting for work it
  did not launch. ``step_ns = max(own_ns, gpu_busy_ns)`` is the time the step itself
  needs (its own CPU time or its own GPU work, whichever is longer): cold-start,
  step-variance and stragglers compare it, so a step is slow only when its own work is.
"""

from __future__ import annotations

import dataclasses

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics import segments, timeline
from gpu_trace_analyzer.parsers.schema import TraceTables

#: Share of launched GPU time that must start inside its own step's GPU annotation for the
#: annotations to be trusted.
ANNOTATION_AGREEMENT = 0.9


@timeline.per_tables
def gpu_ops(t: TraceTables) -> pl.DataFrame:
    """Every GPU event (`timeline.launch_times`) with its step.

    Adds ``step`` (null: launched outside the profiled steps, or queued) and ``queued``
    (True: queued before profiling). Same rows and order as `timeline.gpu_intervals`.
    """
    events = timeline.launch_times(t)
    queued = _queued(t, events)
    steps = t.steps.select("rank", "step", "start_ns", "end_ns").sort("rank", "start_ns")
    issued = pl.coalesce("launch_ns", "start_ns")
    base = events.with_columns(queued.alias("queued"))
    if steps.height == 0:
        return base.with_columns(pl.lit(None, dtype=pl.Int64).alias("step"))
    by_launch = _step_containing(base.with_columns(issued.alias("_at")), steps, "_at")
    out = base.with_columns(pl.when(pl.col("queued")).then(None).otherwise(by_launch).alias("step"))
    annotations = _gpu_step_annotations(t)
    if annotations.height and _annotations_agree(out, annotations):
        by_gpu = _step_containing(out, annotations, "start_ns")
        out = out.with_columns(
            pl.when(pl.col("queued"))
            .then(None)
            .otherwise(pl.coalesce(by_gpu, pl.col("step")))
            .alias("step")
        )
    return out


@timeline.per_tables
def step_basis(t: TraceTables) -> pl.DataFrame:
    """Per rank, which basis charged GPU work to steps: ``launch`` or ``gpu_user_annotation``."""
    ranks = t.steps.select("rank").unique().sort("rank")
    annotations = _gpu_step_annotations(t)
    if annotations.height == 0 or t.steps.height == 0:
        return ranks.with_columns(pl.lit("launch").alias("basis"))
    events = timeline.launch_times(t)
    launch_only = events.with_columns(_queued(t, events).alias("queued"))
    steps = t.steps.select("rank", "step", "start_ns", "end_ns").sort("rank", "start_ns")
    at = pl.coalesce("launch_ns", "start_ns")
    launch_only = launch_only.with_columns(
        _step_containing(launch_only.with_columns(at.alias("_at")), steps, "_at").alias("step")
    )
    agree = _annotations_agree(launch_only, annotations)
    return ranks.with_columns(pl.lit("gpu_user_annotation" if agree else "launch").alias("basis"))


def _queued(t: TraceTables, events: pl.DataFrame) -> pl.Expr:
    """Queued before profiling: on a rank with profiled steps and recorded launches, an
    event with no launching call that starts before its device's first launched event and
    whose correlation id (assigned at launch, increasing) precedes every recorded runtime
    call's, or is absent."""
    launched = events.filter(pl.col("launch_ns").is_not_null())
    if launched.height == 0 or t.steps.height == 0:
        return pl.lit(False)
    first = launched.group_by("rank", "device").agg(pl.col("start_ns").min().alias("_first"))
    first_id = (
        t.runtime.filter(pl.col("correlation").is_not_null())
        .group_by("rank")
        .agg(pl.col("correlation").min().alias("_first_id"))
    )
    stepped = t.steps.select("rank").unique().with_columns(pl.lit(True).alias("_stepped"))
    lookup = (
        events.select("rank", "device")
        .join(first, on=["rank", "device"], how="left", maintain_order="left")
        .join(first_id, on="rank", how="left", maintain_order="left")
        .join(stepped, on="rank", how="left", maintain_order="left")
    )
    first_start = pl.lit(lookup.get_column("_first"))
    early_id = pl.col("correlation").is_null() | (
        pl.col("correlation") < pl.lit(lookup.get_column("_first_id"))
    ).fill_null(False)
    return (
        pl.col("launch_ns").is_null()
        & pl.lit(lookup.get_column("_stepped")).fill_null(False)
        & first_start.is_not_null()
        & (pl.col("start_ns") < first_start)
        & early_id
    )


def _step_containing(frame: pl.DataFrame, steps: pl.DataFrame, column: str) -> pl.Series:
    """For each row of ``frame``: the step (of its rank) whose [start_ns, end_ns) contains
    ``frame[column]``, null when none does."""
    ordered = steps.sort("rank", "start_ns")
    parts = []
    indexed = frame.select("rank", pl.col(column).alias("_at")).with_row_index("_row")
    for (rank,), part in indexed.group_by(["rank"]):
        mine = ordered.filter(pl.col("rank") == rank)
        if mine.height == 0:
            continue
        at = part.get_column("_at")
        idx = mine.get_column("start_ns").search_sorted(at, side="right").cast(pl.Int64) - 1
        safe = idx.clip(lower_bound=0)
        hit = (idx >= 0) & (at < mine.get_column("end_ns").gather(safe))
        step = mine.get_column("step").cast(pl.Int64).gather(safe)
        parts.append(pl.DataFrame({"_row": part.get_column("_row"), "step": step}).filter(hit))
    if not parts:
        return pl.Series("step", [None] * frame.height, dtype=pl.Int64)
    found = pl.concat(parts)
    rows = pl.DataFrame({"_row": pl.int_range(frame.height, dtype=pl.UInt32, eager=True)})
    return rows.join(found, on="_row", how="left", maintain_order="left").get_column("step")


def _gpu_step_annotations(t: TraceTables) -> pl.DataFrame:
    """The ``gpu_user_annotation`` ``ProfilerStep#N`` ranges: rank, step, start_ns, end_ns
    (one per rank and step: the union's extent when a step is annotated on several
    streams)."""
    ann = t.ops.filter(
        (pl.col("kind") == "gpu_user_annotation")
        & timeline.table_name_matches(t, "ops", r"^ProfilerStep#\d+$")
    )
    if ann.height == 0:
        return pl.DataFrame(
            schema={"rank": pl.Int32, "step": pl.Int64, "start_ns": pl.Int64, "end_ns": pl.Int64}
        )
    return (
        ann.select(
            "rank",
            pl.col("name").cast(pl.String).str.extract(r"#(\d+)$").cast(pl.Int64).alias("step"),
            "start_ns",
            (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"),
        )
        .group_by("rank", "step")
        .agg(pl.col("start_ns").min(), pl.col("end_ns").max())
        .sort("rank", "start_ns")
    )


def _annotations_agree(events: pl.DataFrame, annotations: pl.DataFrame) -> bool:
    """Whether the GPU annotations hold the launched work: at least `ANNOTATION_AGREEMENT`
    of the GPU time launched inside steps starts inside its own step's annotation."""
    launched = events.filter(pl.col("step").is_not_null() & pl.col("launch_ns").is_not_null())
    if launched.height == 0:
        return False
    by_gpu = _step_containing(launched, annotations, "start_ns")
    same = launched.with_columns(by_gpu.alias("_gpu_step")).select(
        pl.col("dur_ns").filter(pl.col("_gpu_step") == pl.col("step")).sum().alias("same"),
        pl.col("dur_ns").sum().alias("all"),
    )
    same_ns, all_ns = same.row(0)
    return bool(all_ns) and same_ns >= ANNOTATION_AGREEMENT * all_ns


def queued_before_profiling(t: TraceTables) -> pl.DataFrame:
    """Per (rank, device): GPU operations queued before profiling: ``ops``, ``gpu_ns``
    (union of their intervals), ``end_ns`` (when the last of them finished)."""
    queued = gpu_ops(t).filter(pl.col("queued"))
    if queued.height == 0:
        return pl.DataFrame(
            schema={
                "rank": pl.Int32,
                "device": pl.Int32,
                "ops": pl.UInt32,
                "gpu_ns": pl.Int64,
                "end_ns": pl.Int64,
            }
        )
    union = timeline.union_ns(queued, ["rank", "device"]).rename({"union_ns": "gpu_ns"})
    counts = queued.group_by("rank", "device").agg(
        pl.len().alias("ops"), pl.col("end_ns").max().alias("end_ns")
    )
    return (
        counts.join(union, on=["rank", "device"])
        .select("rank", "device", "ops", "gpu_ns", "end_ns")
        .sort("rank", "device")
    )


def profiled_only(t: TraceTables, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (kernels or memops rows, with rank and correlation) without the operations
    queued before profiling. The roofline and top-kernel tables call this so that leftovers
    of an unprofiled warm-up are not shown as the profiled workload."""
    queued = queued_before_profiling(t)
    if queued.height == 0 or frame.height == 0:
        return frame
    keys = gpu_ops(t).filter(pl.col("queued")).select("rank", "device", "stream", "start_ns")
    return frame.join(
        keys, on=["rank", "device", "stream", "start_ns"], how="anti", maintain_order="left"
    )


@timeline.per_tables
def step_accounting(t: TraceTables) -> pl.DataFrame:
    """Per (rank, step), in start order: what the step itself did.

    Columns: rank, step, start_ns, end_ns (the CPU range), cpu_dur_ns, gpu_ops, gpu_busy_ns
    (union of the step's own GPU work over all devices of the rank), gpu_start_ns,
    gpu_end_ns, gpu_span_ns (first start to last end of that work), waited_ns, own_ns,
    step_ns (see the module doc), basis.
    """
    steps = t.steps.select("rank", "step", "start_ns", "end_ns").sort("rank", "start_ns")
    if steps.height == 0:
        return _empty_accounting()
    ops = gpu_ops(t)
    own = ops.filter(pl.col("step").is_not_null())
    busy = timeline.union_ns(own.select("rank", "step", "start_ns", "end_ns"), ["rank", "step"])
    extent = own.group_by("rank", "step").agg(
        pl.len().alias("gpu_ops"),
        pl.col("start_ns").min().alias("gpu_start_ns"),
        pl.col("end_ns").max().alias("gpu_end_ns"),
    )
    out = (
        steps.join(busy.rename({"union_ns": "gpu_busy_ns"}), on=["rank", "step"], how="left")
        .join(extent, on=["rank", "step"], how="left")
        .join(step_basis(t), on="rank", how="left")
        .with_columns(
            (pl.col("end_ns") - pl.col("start_ns")).alias("cpu_dur_ns"),
            pl.col("gpu_busy_ns").fill_null(0),
            pl.col("gpu_ops").fill_null(0).cast(pl.Int64),
            (pl.col("gpu_end_ns") - pl.col("gpu_start_ns")).fill_null(0).alias("gpu_span_ns"),
        )
    )
    waited = _waited(t, ops, steps)
    out = out.join(waited, on=["rank", "step"], how="left").with_columns(
        pl.col("waited_ns").fill_null(0)
    )
    out = out.with_columns(
        (pl.col("cpu_dur_ns") - pl.col("waited_ns")).alias("own_ns")
    ).with_columns(pl.max_horizontal("own_ns", "gpu_busy_ns").alias("step_ns"))
    return out.select(_COLUMNS).sort("rank", "start_ns")


_COLUMNS = [
    "rank",
    "step",
    "start_ns",
    "end_ns",
    "cpu_dur_ns",
    "gpu_ops",
    "gpu_busy_ns",
    "gpu_start_ns",
    "gpu_end_ns",
    "gpu_span_ns",
    "waited_ns",
    "own_ns",
    "step_ns",
    "basis",
]


def _empty_accounting() -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {c: pl.Int64() for c in _COLUMNS}
    schema["rank"] = pl.Int32()
    schema["basis"] = pl.String()
    return pl.DataFrame(schema=schema)


def _waited(t: TraceTables, ops: pl.DataFrame, steps: pl.DataFrame) -> pl.DataFrame:
    """Per (rank, step): CPU time in blocking calls (sync APIs and blocking copies, see
    `host_blocking`) while the GPU ran work of earlier steps or work queued before
    profiling."""
    from gpu_trace_analyzer.metrics.host_blocking import (
        ASYNC_MEMCPY_PATTERN,
        SYNC_API_PATTERN,
        SYNC_MEMCPY_PATTERN,
    )

    pattern = f"{SYNC_API_PATTERN}|{SYNC_MEMCPY_PATTERN}|{ASYNC_MEMCPY_PATTERN}"
    calls = t.runtime.filter(timeline.table_name_matches(t, "runtime", pattern)).select(
        "rank", "start_ns", (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns")
    )
    rows: list[tuple[int, int, int]] = []
    for rank, step, start, end in steps.iter_rows():
        mine = calls.filter(
            (pl.col("rank") == rank) & (pl.col("end_ns") > start) & (pl.col("start_ns") < end)
        )
        if mine.height == 0:
            continue
        others = ops.filter(
            (pl.col("rank") == rank)
            & (pl.col("end_ns") > start)
            & (pl.col("start_ns") < end)
            & (pl.col("queued") | (pl.col("step") < step))
        )
        if others.height == 0:
            continue
        o_s, o_e = segments.merge(others.get_column("start_ns"), others.get_column("end_ns"))
        c_s, c_e = segments.merge(
            mine.get_column("start_ns").clip(start, end), mine.get_column("end_ns").clip(start, end)
        )
        waited = int(segments.overlap_ns(o_s, o_e, c_s, c_e).sum())
        rows.append((rank, step, waited))
    return pl.DataFrame(
        rows, schema={"rank": pl.Int32, "step": pl.Int64, "waited_ns": pl.Int64}, orient="row"
    )


def step_metrics(ctx: AnalysisContext) -> pl.DataFrame:
    """`step_accounting`, computed once per analysis."""
    return ctx.metric("steps.accounting", step_accounting)


def without_queued(t: TraceTables) -> TraceTables:
    """``t`` with the kernels and memory operations queued before profiling left out, or
    ``t`` itself when there are none. The roofline and the top-kernel tables call this: the
    leftovers of an unprofiled warm-up are not the profiled workload."""
    if queued_before_profiling(t).height == 0:
        return t
    return dataclasses.replace(
        t, kernels=profiled_only(t, t.kernels), memops=profiled_only(t, t.memops)
    )
