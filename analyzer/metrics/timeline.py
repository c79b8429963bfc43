"""Timeline metrics: where GPU time went, per rank and device, and why the GPU sat idle.

Definitions (all durations in ns, shares of the window's span):

- GPU events are kernels and memory operations (memcpy, memset). Kernels of category
  ``comm`` (NCCL/RCCL) are *communication*, memory operations are *memory*, every other
  kernel is *compute* (the split HTA uses, with categories from `parsers.categories`).
- *Busy* time is the union of all GPU event intervals over every stream of a device; *idle*
  is the window's span minus busy. Compute, communication and memory times are unions of
  their own events, so they may overlap each other; *exposed communication* is the part of
  communication time not overlapped by any compute kernel.
- The ``"steps"`` window runs from the first profiled step's start to the later of the last
  step's end and the end of the GPU work launched inside the profiled steps. Without steps,
  and for the ``"trace"`` window, it runs from the first GPU event to the last.
- Idle time per stream is split as HTA does: *host wait* when the kernel's launch call
  started after the previous kernel on the stream ended (the CPU was not enqueueing fast
  enough), *kernel wait* when the gap is under 30 us otherwise (back-to-back launch
  overhead), *other* for the rest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import wraps
from typing import Literal, ParamSpec

import polars as pl

from parsers.schema import TraceTables

P = ParamSpec("P")

#: How many recent (tables, arguments) results each cached metric keeps.
_CACHE_SIZE = 8


def per_tables(fn: Callable[P, pl.DataFrame]) -> Callable[P, pl.DataFrame]:
    """Compute a metric once per `TraceTables` object (and arguments), not once per caller.

    Rules and sections call the same building blocks (GPU events, launch times, step
    windows) many times on the same tables; the bundle is frozen, so the result of the
    last few calls is kept, keyed by the bundle's identity. The cached frame is returned
    as is: polars frames are not changed in place by this code base.
    """
    cache: OrderedDict[tuple[object, ...], tuple[TraceTables, pl.DataFrame]] = OrderedDict()

    @wraps(fn)
    def cached(*args: P.args, **kwargs: P.kwargs) -> pl.DataFrame:
        tables = args[0]
        if not isinstance(tables, TraceTables):
            return fn(*args, **kwargs)
        key = (id(tables), *args[1:], *sorted(kwargs.items()))
        hit = cache.get(key)
        if hit is not None and hit[0] is tables:
            cache.move_to_end(key)
            return hit[1]
        result = fn(*args, **kwargs)
        cache[key] = (tables, result)
        if len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
        return result

    return cached


Window = Literal["steps", "trace"]

#: HTA's default threshold under which a gap between kernels is launch overhead.
KERNEL_WAIT_THRESHOLD_NS = 30_000

_DATALOADER_PATTERN = r"^enumerate\(DataLoader\)"

_EVENT_COLUMNS = ["rank", "device", "stream", "name", "kind", "start_ns", "end_ns", "dur_ns"]


@per_tables
def gpu_events(t: TraceTables) -> pl.DataFrame:
    """Kernels and memory operations as one frame with a ``kind``: compute, comm or memory."""
    kernels = t.kernels.select(
        "rank",
        "device",
        "stream",
        pl.col("name").cast(pl.String),
        pl.when(pl.col("category").cast(pl.String) == "comm")
        .then(pl.lit("comm"))
        .otherwise(pl.lit("compute"))
        .alias("kind"),
        "start_ns",
        (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"),
        "dur_ns",
        "correlation",
    )
    memops = t.memops.select(
        "rank",
        "device",
        "stream",
        pl.col("name").cast(pl.String),
        pl.lit("memory").alias("kind"),
        "start_ns",
        (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"),
        "dur_ns",
        "correlation",
    )
    return pl.concat([kernels, memops], how="vertical").sort("start_ns")


def merge_intervals(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Union of ``[start_ns, end_ns)`` intervals within each ``by`` group.

    Returns one row per merged interval: ``by`` columns, ``start_ns``, ``end_ns``.
    """
    if df.height == 0:
        return df.select([*by, "start_ns", "end_ns"]).clear()
    ordered = df.select([*by, "start_ns", "end_ns"]).sort([*by, "start_ns"])
    prev_end = pl.col("end_ns").cum_max().shift(1)
    if by:
        prev_end = prev_end.over(by)
    grouped = ordered.with_columns(
        (pl.col("start_ns") > prev_end).fill_null(True).alias("_new")
    ).with_columns(
        (pl.col("_new").cum_sum().over(by) if by else pl.col("_new").cum_sum()).alias("_grp")
    )
    return (
        grouped.group_by([*by, "_grp"], maintain_order=True)
        .agg(pl.col("start_ns").min(), pl.col("end_ns").max())
        .drop("_grp")
    )


def union_ns(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Total length of the union of intervals per group, as ``union_ns``."""
    merged = merge_intervals(df, by)
    if not by:
        total = int((merged["end_ns"] - merged["start_ns"]).sum()) if merged.height else 0
        return pl.DataFrame({"union_ns": [total]})
    return merged.group_by(by, maintain_order=True).agg(
        (pl.col("end_ns") - pl.col("start_ns")).sum().alias("union_ns")
    )


@per_tables
def launch_times(t: TraceTables) -> pl.DataFrame:
    """Each GPU event joined to the start of the runtime call that launched it.

    Adds ``launch_ns`` (null when no runtime call carries the event's correlation id).
    """
    events = gpu_events(t)
    runtime = (
        t.runtime.filter(pl.col("correlation").is_not_null())
        .group_by("rank", "correlation")
        .agg(pl.col("start_ns").min().alias("launch_ns"))
    )
    return events.join(runtime, on=["rank", "correlation"], how="left")


@per_tables
def step_windows(t: TraceTables) -> pl.DataFrame:
    """Profiled steps with ``gpu_end_ns``: the end of the GPU work launched inside each step.

    GPU events without a launching runtime call are assigned by their own start time.
    """
    steps = t.steps.select("rank", "step", "start_ns", "end_ns").sort("rank", "start_ns")
    if steps.height == 0:
        return steps.with_columns(pl.lit(None, dtype=pl.Int64).alias("gpu_end_ns"))
    events = launch_times(t).with_columns(pl.coalesce("launch_ns", "start_ns").alias("issued_ns"))
    assigned = events.sort("issued_ns").join_asof(
        steps.select("rank", "step", pl.col("start_ns").alias("step_start_ns"), "end_ns")
        .rename({"end_ns": "step_end_ns"})
        .sort("step_start_ns"),
        left_on="issued_ns",
        right_on="step_start_ns",
        by="rank",
        strategy="backward",
        check_sortedness=False,
    )
    in_step = assigned.filter(pl.col("issued_ns") < pl.col("step_end_ns"))
    gpu_end = in_step.group_by("rank", "step").agg(pl.col("end_ns").max().alias("gpu_end_ns"))
    return steps.join(gpu_end, on=["rank", "step"], how="left").sort("rank", "start_ns")


@per_tables
def analysis_windows(t: TraceTables, window: Window = "steps") -> pl.DataFrame:
    """Per rank: ``window_start_ns`` and ``window_end_ns`` of the analysis window.

    ``window_basis`` says which definition applied (``steps`` or ``trace``).
    """
    events = gpu_events(t)
    trace_span = events.group_by("rank").agg(
        pl.col("start_ns").min().alias("window_start_ns"),
        pl.col("end_ns").max().alias("window_end_ns"),
    )
    trace_span = trace_span.with_columns(pl.lit("trace").alias("window_basis"))
    if window == "trace" or t.steps.height == 0:
        return trace_span.sort("rank")
    steps = step_windows(t)
    step_span = steps.group_by("rank").agg(
        pl.col("start_ns").min().alias("window_start_ns"),
        pl.max_horizontal(pl.col("end_ns").max(), pl.col("gpu_end_ns").max()).alias(
            "window_end_ns"
        ),
    )
    step_span = step_span.with_columns(pl.lit("steps").alias("window_basis"))
    without_steps = trace_span.join(step_span.select("rank"), on="rank", how="anti")
    return pl.concat([step_span, without_steps], how="vertical").sort("rank")


def _clip(events: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """GPU events cut to their rank's window; events entirely outside are dropped."""
    return (
        events.join(windows, on="rank", how="inner")
        .with_columns(
            pl.max_horizontal("start_ns", "window_start_ns").alias("start_ns"),
            pl.min_horizontal("end_ns", "window_end_ns").alias("end_ns"),
        )
        .filter(pl.col("end_ns") > pl.col("start_ns"))
    )


def breakdown(t: TraceTables, window: Window = "steps") -> pl.DataFrame:
    """Temporal breakdown per (rank, device) over the analysis window.

    Columns: rank, device, window_basis, window_start_ns, window_end_ns, span_ns, busy_ns,
    compute_ns, comm_ns, memory_ns, exposed_comm_ns, idle_ns, kernel_count, and the
    ``*_pct`` share of span_ns for busy, compute, comm, memory, exposed_comm and idle.
    """
    windows = analysis_windows(t, window)
    events = _clip(gpu_events(t), windows)
    keys = ["rank", "device"]
    if events.height == 0:
        return _empty_breakdown()
    base = events.group_by(keys).agg(
        pl.col("window_basis").first(),
        pl.col("window_start_ns").first(),
        pl.col("window_end_ns").first(),
        (pl.col("kind") != "memory").sum().cast(pl.Int64).alias("kernel_count"),
    )
    parts = {
        "busy_ns": union_ns(events, keys),
        "compute_ns": union_ns(events.filter(pl.col("kind") == "compute"), keys),
        "comm_ns": union_ns(events.filter(pl.col("kind") == "comm"), keys),
        "memory_ns": union_ns(events.filter(pl.col("kind") == "memory"), keys),
        "_comm_or_compute_ns": union_ns(events.filter(pl.col("kind") != "memory"), keys),
    }
    out = base
    for name, frame in parts.items():
        out = out.join(frame.rename({"union_ns": name}), on=keys, how="left")
    out = out.with_columns(pl.col(n).fill_null(0) for n in parts).with_columns(
        (pl.col("window_end_ns") - pl.col("window_start_ns")).alias("span_ns"),
        (pl.col("_comm_or_compute_ns") - pl.col("compute_ns")).alias("exposed_comm_ns"),
    )
    out = out.with_columns((pl.col("span_ns") - pl.col("busy_ns")).alias("idle_ns")).drop(
        "_comm_or_compute_ns"
    )
    pct = {
        f"{n.removesuffix('_ns')}_pct": pl.when(pl.col("span_ns") > 0)
        .then(100.0 * pl.col(n) / pl.col("span_ns"))
        .otherwise(0.0)
        for n in ("busy_ns", "compute_ns", "comm_ns", "memory_ns", "exposed_comm_ns", "idle_ns")
    }
    return out.with_columns(**pct).select(_BREAKDOWN_COLUMNS).sort(keys)


_BREAKDOWN_COLUMNS = [
    "rank",
    "device",
    "window_basis",
    "window_start_ns",
    "window_end_ns",
    "span_ns",
    "busy_ns",
    "compute_ns",
    "comm_ns",
    "memory_ns",
    "exposed_comm_ns",
    "idle_ns",
    "kernel_count",
    "busy_pct",
    "compute_pct",
    "comm_pct",
    "memory_pct",
    "exposed_comm_pct",
    "idle_pct",
]


def _empty_breakdown() -> pl.DataFrame:
    """A zero-row breakdown with the right columns and types."""
    schema: dict[str, pl.DataType] = {
        c: pl.Float64() if c.endswith("_pct") else pl.Int64() for c in _BREAKDOWN_COLUMNS
    }
    schema["rank"] = pl.Int32()
    schema["device"] = pl.Int32()
    schema["window_basis"] = pl.String()
    return pl.DataFrame(schema=schema)


def gaps(t: TraceTables, window: Window = "steps") -> pl.DataFrame:
    """Idle gaps per (rank, device) inside the window, longest first.

    Includes the gap from the window's start to the first GPU event and from the last
    GPU event to the window's end. Columns: rank, device, start_ns, end_ns, dur_ns.
    """
    windows = analysis_windows(t, window)
    events = _clip(gpu_events(t), windows)
    keys = ["rank", "device"]
    if events.height == 0:
        return pl.DataFrame(
            schema={
                "rank": pl.Int32(),
                "device": pl.Int32(),
                "start_ns": pl.Int64(),
                "end_ns": pl.Int64(),
                "dur_ns": pl.Int64(),
            }
        )
    merged = merge_intervals(events, keys).join(windows, on="rank").sort([*keys, "start_ns"])
    inner = merged.with_columns(
        pl.col("end_ns").shift(1).over(keys).alias("gap_start"),
    ).select(
        *keys,
        pl.coalesce("gap_start", "window_start_ns").alias("start_ns"),
        pl.col("start_ns").alias("end_ns"),
    )
    tail = merged.group_by(keys).agg(
        pl.col("end_ns").max().alias("start_ns"), pl.col("window_end_ns").first().alias("end_ns")
    )
    out = pl.concat([inner, tail.select(inner.columns)], how="vertical")
    return (
        out.with_columns((pl.col("end_ns") - pl.col("start_ns")).alias("dur_ns"))
        .filter(pl.col("dur_ns") > 0)
        .sort("dur_ns", descending=True)
    )


@per_tables
def step_stats(t: TraceTables) -> pl.DataFrame:
    """Per (rank, step): wall time and what the GPU and the input pipeline did in it.

    Columns: rank, step, start_ns, end_ns, dur_ns, gpu_busy_ns, gpu_idle_ns, comm_ns,
    dataloader_ns. GPU figures are unions over all devices of the rank, clipped to the
    step's CPU window [start_ns, end_ns).
    """
    steps = t.steps.select("rank", "step", "start_ns", "end_ns").with_columns(
        (pl.col("end_ns") - pl.col("start_ns")).alias("dur_ns")
    )
    if steps.height == 0:
        return steps.with_columns(
            pl.lit(0, dtype=pl.Int64).alias(c)
            for c in ("gpu_busy_ns", "gpu_idle_ns", "comm_ns", "dataloader_ns")
        )
    keys = ["rank", "step"]
    events = gpu_events(t).select("rank", "kind", "start_ns", "end_ns")
    busy = _union_within_steps(events, steps)
    comm = _union_within_steps(events.filter(pl.col("kind") == "comm"), steps)
    loader_ops = t.ops.filter(
        pl.col("name").cast(pl.String).str.contains(_DATALOADER_PATTERN)
    ).select("rank", "start_ns", (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"))
    loader = _union_within_steps(loader_ops, steps)
    out = (
        steps.join(busy.rename({"union_ns": "gpu_busy_ns"}), on=keys, how="left")
        .join(comm.rename({"union_ns": "comm_ns"}), on=keys, how="left")
        .join(loader.rename({"union_ns": "dataloader_ns"}), on=keys, how="left")
        .with_columns(pl.col("gpu_busy_ns", "comm_ns", "dataloader_ns").fill_null(0))
        .with_columns((pl.col("dur_ns") - pl.col("gpu_busy_ns")).alias("gpu_idle_ns"))
    )
    return out.select(
        "rank",
        "step",
        "start_ns",
        "end_ns",
        "dur_ns",
        "gpu_busy_ns",
        "gpu_idle_ns",
        "comm_ns",
        "dataloader_ns",
    ).sort("rank", "start_ns")


def step_times(t: TraceTables) -> pl.DataFrame:
    """Per (rank, step): tb_plugin's device-aware step window and what ran in it.

    ``start_ns`` = max(the step's CPU start, the previous step's end); ``end_ns`` = max(the
    step's CPU end, the end of the GPU work launched in it); ``dur_ns`` = end - start;
    ``cpu_dur_ns`` is the ``ProfilerStep#N`` annotation's own length; ``gpu_busy_ns`` is the
    union of GPU activity within the device-aware window; ``dataloader_ns`` is
    `step_stats`' (DataLoader time within the annotation).
    """
    stats = step_stats(t)
    if stats.height == 0:
        return stats.with_columns(pl.col("dur_ns").alias("cpu_dur_ns"))
    windows = step_windows(t).select("rank", "step", "gpu_end_ns")
    joined = stats.join(windows, on=["rank", "step"], how="left").sort("rank", "start_ns")
    end = pl.max_horizontal("end_ns", pl.col("gpu_end_ns").fill_null(pl.col("end_ns")))
    with_end = joined.with_columns(end.alias("_end"))
    prev_end = pl.col("_end").shift(1).over("rank")
    start = pl.max_horizontal("start_ns", prev_end.fill_null(pl.col("start_ns")))
    steps = (
        with_end.with_columns(start.alias("_start"))
        .with_columns(
            pl.col("dur_ns").alias("cpu_dur_ns"),
            pl.col("_start").alias("start_ns"),
            pl.col("_end").alias("end_ns"),
            (pl.col("_end") - pl.col("_start")).alias("dur_ns"),
        )
        .drop("_start", "_end", "gpu_end_ns", "gpu_busy_ns", "gpu_idle_ns")
    )
    events = gpu_events(t).select("rank", "start_ns", "end_ns")
    busy = _union_within_steps(events, steps).rename({"union_ns": "gpu_busy_ns"})
    return steps.join(busy, on=["rank", "step"], how="left").with_columns(
        pl.col("gpu_busy_ns").fill_null(0)
    )


def _union_within_steps(intervals: pl.DataFrame, steps: pl.DataFrame) -> pl.DataFrame:
    """Union length of ``intervals`` clipped to each step's window, per (rank, step).

    An inequality join pairs each interval only with the steps it overlaps (not every
    step of its rank), so memory stays proportional to the events, not events x steps.
    """
    if intervals.height == 0:
        return pl.DataFrame(schema={"rank": pl.Int32(), "step": pl.Int64(), "union_ns": pl.Int64()})
    windows = steps.select(
        pl.col("rank").alias("w_rank"),
        "step",
        pl.col("start_ns").alias("w_start"),
        pl.col("end_ns").alias("w_end"),
    )
    clipped = (
        intervals.select("rank", "start_ns", "end_ns")
        .join_where(
            windows,
            pl.col("start_ns") < pl.col("w_end"),
            pl.col("end_ns") > pl.col("w_start"),
        )
        .filter(pl.col("rank") == pl.col("w_rank"))
        .select(
            "rank",
            "step",
            pl.max_horizontal("start_ns", "w_start").alias("start_ns"),
            pl.min_horizontal("end_ns", "w_end").alias("end_ns"),
        )
    )
    return union_ns(clipped, ["rank", "step"])


def idle_breakdown(
    t: TraceTables, kernel_wait_threshold_ns: int = KERNEL_WAIT_THRESHOLD_NS
) -> pl.DataFrame:
    """Idle time between consecutive GPU events of each stream, by cause (HTA's meanings).

    Columns: rank, stream, host_wait_ns, kernel_wait_ns, other_ns, idle_ns.
    """
    events = launch_times(t).sort("rank", "stream", "start_ns")
    keys = ["rank", "stream"]
    with_prev = events.with_columns(pl.col("end_ns").shift(1).over(keys).alias("prev_end_ns"))
    gap = pl.col("start_ns") - pl.col("prev_end_ns")
    host_wait = pl.col("launch_ns").is_not_null() & (pl.col("launch_ns") > pl.col("prev_end_ns"))
    kernel_wait = ~host_wait & (gap < kernel_wait_threshold_ns)
    categorized = with_prev.with_columns(
        gap.alias("gap_ns"),
        pl.when(host_wait)
        .then(pl.lit("host_wait"))
        .when(kernel_wait)
        .then(pl.lit("kernel_wait"))
        .otherwise(pl.lit("other"))
        .alias("cause"),
    )
    out = categorized.group_by(keys).agg(
        pl.col("gap_ns")
        .filter(pl.col("prev_end_ns").is_not_null() & (pl.col("cause") == c))
        .sum()
        .alias(f"{c}_ns")
        for c in ("host_wait", "kernel_wait", "other")
    )
    return out.with_columns(
        (pl.col("host_wait_ns") + pl.col("kernel_wait_ns") + pl.col("other_ns")).alias("idle_ns")
    ).sort(keys)
