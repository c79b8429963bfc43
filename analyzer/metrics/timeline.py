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

from collections.abc import Callable
from functools import wraps
from typing import Literal, ParamSpec

import polars as pl
from gpu_trace_analyzer.parsers.schema import TraceTables

P = ParamSpec("P")


def per_tables(fn: Callable[P, pl.DataFrame]) -> Callable[P, pl.DataFrame]:
    """Compute a metric once per `TraceTables` object (and arguments), not once per caller.

    Rules and sections call the same building blocks (GPU events, launch times, step
    windows) many times on the same tables; the bundle is frozen, so each result is kept in
    the bundle's own ``derived`` cache, keyed by function and arguments. The cache lives and
    dies with the tables (no module-level cache keeps a trace alive after the analysis that
    loaded it is gone). The cached frame is returned as is: polars frames are not changed in
    place by this code base.
    """
    name = f"{fn.__module__}.{fn.__qualname__}"

    @wraps(fn)
    def cached(*args: P.args, **kwargs: P.kwargs) -> pl.DataFrame:
        tables = args[0]
        if not isinstance(tables, TraceTables):
            return fn(*args, **kwargs)
        key = (name, *args[1:], *sorted(kwargs.items()))
        hit = tables.derived.get(key)
        if hit is None:
            hit = tables.derived[key] = fn(*args, **kwargs)
        return hit

    return cached


Window = Literal["steps", "trace"]

#: HTA's default threshold under which a gap between kernels is launch overhead.
KERNEL_WAIT_THRESHOLD_NS = 30_000

_DATALOADER_PATTERN = r"^enumerate\(DataLoader\)"


@per_tables
def gpu_events(t: TraceTables) -> pl.DataFrame:
    """Kernels and memory operations as one frame with a ``kind``: compute, comm or memory.

    Columns: rank, device, stream, name, kind, start_ns, end_ns, dur_ns, correlation; rows
    in start order, kernels before memory operations on ties.
    """
    return _gpu_frame(t, with_names=True)


@per_tables
def gpu_intervals(t: TraceTables) -> pl.DataFrame:
    """`gpu_events` without ``name``: the same rows in the same order, for the metrics that
    only need times (long kernel names are costly to materialize as strings)."""
    return _gpu_frame(t, with_names=False)


def _gpu_frame(t: TraceTables, with_names: bool) -> pl.DataFrame:
    names = [pl.col("name").cast(pl.String)] if with_names else []
    is_comm = pl.col("category") == "comm"
    kernels = t.kernels.select(
        "rank",
        "device",
        "stream",
        *names,
        pl.when(is_comm).then(pl.lit("comm")).otherwise(pl.lit("compute")).alias("kind"),
        "start_ns",
        (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"),
        "dur_ns",
        "correlation",
    )
    memops = t.memops.select(
        "rank",
        "device",
        "stream",
        *names,
        pl.lit("memory").alias("kind"),
        "start_ns",
        (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"),
        "dur_ns",
        "correlation",
    )
    return pl.concat([kernels, memops], how="vertical").sort("start_ns", maintain_order=True)


def merge_intervals(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Union of ``[start_ns, end_ns)`` intervals within each ``by`` group.

    Returns one row per merged interval: ``by`` columns, ``start_ns``, ``end_ns``, ordered by
    the ``by`` columns then start. Intervals must not end before they start nor have a null
    end (true of every canonical table), so a merged interval ends where the running
    maximum of the ends stands at its last member.
    """
    if df.height == 0:
        return df.select([*by, "start_ns", "end_ns"]).clear()
    if one_group(df, by):  # a plain sweep in start order
        return _merge_sorted(df if df["start_ns"].is_sorted() else df.sort("start_ns"), by)
    frame = df.lazy().select([*by, "start_ns", "end_ns"])
    ordered = frame.sort([*by, "start_ns"])
    reach = pl.col("end_ns").cum_max().over(by)
    group_starts = pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift(1)) for c in by)
    opens = (group_starts | (pl.col("start_ns") > pl.col("_reach").shift(1))).fill_null(True)
    closes = pl.col("_opens").shift(-1, fill_value=True)
    return (
        ordered.with_columns(reach.alias("_reach"))
        .with_columns(opens.alias("_opens"))
        .select(
            *(pl.col(c).filter("_opens") for c in by),
            pl.col("start_ns").filter("_opens"),
            pl.col("_reach").filter(closes).alias("end_ns"),
        )
        .collect()
    )


def _merge_sorted(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """`merge_intervals` of one group in start order, on the columns directly (no query
    plan: at a few hundred thousand rows its set-up costs as much as the sweep)."""
    start, end = df.get_column("start_ns"), df.get_column("end_ns")
    reach = end.cum_max()
    opens = (start > reach.shift(1)).fill_null(True)
    closes = opens.shift(-1, fill_value=True)
    return pl.DataFrame(
        [*(df.get_column(c).filter(opens) for c in by), start.filter(opens), reach.filter(closes)]
    )


def union_ns(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Total length of the union of intervals per group, as ``union_ns``."""
    return _merged_length(merge_intervals(df, by), by)


def _merged_length(merged: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Total length per group of intervals already merged (`merge_intervals`)."""
    if not by:
        total = int((merged["end_ns"] - merged["start_ns"]).sum()) if merged.height else 0
        return pl.DataFrame({"union_ns": [total]})
    return aggregate(merged, by, (pl.col("end_ns") - pl.col("start_ns")).sum().alias("union_ns"))


def aggregate(df: pl.DataFrame, by: list[str], *aggs: pl.Expr) -> pl.DataFrame:
    """``df.group_by(by, maintain_order=True).agg(*aggs)``, as a plain select when ``df``
    holds a single group (one rank, one device: no hashing needed)."""
    if one_group(df, by):
        return df.select(*(pl.col(c).first() for c in by), *aggs)
    return df.group_by(by, maintain_order=True).agg(*aggs)


def one_group(df: pl.DataFrame, by: list[str]) -> bool:
    """Whether every ``by`` column of ``df`` holds one value and no null (`one_value`)."""
    return all(one_value(df.get_column(c)) for c in by)


def as_strings(df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``df`` with its categorical ``columns`` cast to strings, each distinct value looked up
    once: the rows then share the distinct values' bytes instead of each copying them (long
    kernel names make that tens of MB on a large trace)."""
    cast = []
    for name in columns:
        column = df.get_column(name)
        if column.dtype == pl.Categorical:
            distinct = column.unique().drop_nulls()
            column = column.replace_strict(
                distinct, distinct.cast(pl.String), default=None, return_dtype=pl.String
            )
        cast.append(column.cast(pl.String))
    return df.with_columns(cast)


def name_matches(frame: pl.DataFrame, pattern: str, column: str = "name") -> pl.Expr:
    """Whether ``column`` matches the regex ``pattern``; the regex runs once per distinct
    value of ``frame[column]`` (a few thousand names), not once per row."""
    names = frame.get_column(column).unique()
    hits = names.filter(names.cast(pl.String).str.contains(pattern))
    return pl.col(column).is_in(hits.implode())


def table_name_matches(t: TraceTables, table: str, pattern: str) -> pl.Expr:
    """`name_matches` for the ``name`` column of a canonical table (or of any frame filtered
    from it), with the table's distinct names computed once per trace."""
    names = distinct_names(t, table).get_column("name")
    hits = names.filter(names.cast(pl.String).str.contains(pattern))
    return pl.col("name").is_in(hits.implode())


@per_tables
def distinct_names(t: TraceTables, table: str) -> pl.DataFrame:
    """The distinct values of a canonical table's ``name`` column (one column, ``name``)."""
    return t.table(table).select(pl.col("name").unique())


@per_tables
def launch_times(t: TraceTables) -> pl.DataFrame:
    """Each GPU event (`gpu_intervals`) joined to the start of the runtime call that
    launched it.

    Adds ``launch_ns`` (null when no runtime call carries the event's correlation id).
    """
    keys = ["rank", "correlation"]
    calls = (
        t.runtime.lazy()
        .filter(pl.col("correlation").is_not_null())
        .select(*keys, pl.col("start_ns").alias("launch_ns"))
        .collect()
    )
    ids = calls.get_column("correlation")
    if not strictly_increasing(ids) and ids.n_unique() < calls.height:  # repeated id: earliest
        calls = calls.group_by(keys).agg(pl.col("launch_ns").min())
    return join_within_rank(gpu_intervals(t), calls, ["correlation"], how="left")


def join_within_rank(
    left: pl.DataFrame,
    right: pl.DataFrame,
    on: list[str],
    how: Literal["inner", "left"] = "inner",
) -> pl.DataFrame:
    """``left.join(right, on=["rank", *on], how=how)``, in ``left``'s row order.

    When both sides hold one and the same rank (a single-rank trace), the rank is left out
    of the keys: a hash join on one integer key is several times faster than on two, and
    a merge of two sorted keys (`_merge_lookup`) faster still.
    """
    if one_value(left.get_column("rank"), right.get_column("rank")):
        right = right.drop("rank")
        if len(on) == 1:
            merged = _merge_lookup(left, right, on[0], how)
            if merged is not None:
                return merged
        return left.join(right, on=on, how=how, maintain_order="left")
    return left.join(right, on=["rank", *on], how=how, maintain_order="left")


def join_on_key(
    left: pl.DataFrame, right: pl.DataFrame, key: str, how: Literal["inner", "left"] = "left"
) -> pl.DataFrame:
    """``left.join(right, on=key, how=how, maintain_order="left")``, as one merge pass when
    the keys allow it (`_merge_lookup`)."""
    merged = _merge_lookup(left, right, key, how)
    if merged is not None:
        return merged
    return left.join(right, on=key, how=how, maintain_order="left")


def _merge_lookup(
    left: pl.DataFrame, right: pl.DataFrame, key: str, how: Literal["inner", "left"]
) -> pl.DataFrame | None:
    """``left.join(right, on=key, how=how, maintain_order="left")`` as one merge pass, when
    ``left``'s key is sorted and ``right``'s strictly increasing (ids in time order, as
    correlation ids are), neither null; None otherwise.

    An as-of join finds, for each left key, the last right row at or before it; that row
    is the match when its key is equal.
    """
    ids, wanted = right.get_column(key), left.get_column(key)
    if ids.dtype != wanted.dtype or ids.null_count() or wanted.null_count():
        return None
    if not (wanted.is_sorted() and strictly_increasing(ids)):
        return None
    hit = pl.col("_hit_key") == pl.col(key)
    joined = left.join_asof(
        right.with_columns(pl.col(key).alias("_hit_key")),
        on=key,
        strategy="backward",
        check_sortedness=False,
    )
    if how == "inner":
        return joined.filter(hit).drop("_hit_key")
    values = [c for c in right.columns if c != key]
    return joined.with_columns(pl.when(hit).then(pl.col(c)).alias(c) for c in values).drop(
        "_hit_key"
    )


def strictly_increasing(column: pl.Series) -> bool:
    """Whether a column is sorted ascending without repeats or nulls."""
    if column.null_count() or not column.is_sorted():
        return False
    return column.len() < 2 or bool((column.slice(1) != column.slice(0, column.len() - 1)).all())


def one_value(*columns: pl.Series) -> bool:
    """Whether the columns together hold exactly one distinct value and no null (empty
    columns add nothing): a min and a max per column, no hashing."""
    seen = [c for c in columns if c.len()]
    if not seen or any(c.null_count() for c in seen):
        return False
    bounds = {v for c in seen for v in (c.min(), c.max())}
    return len(bounds) == 1


@per_tables
def kernel_devices(t: TraceTables) -> pl.DataFrame:
    """The distinct (rank, device) pairs of the kernels, sorted (nulls first).

    Rules, sections and the roofline all ask; computed once per trace.
    """
    return distinct_rows(t.kernels, ["rank", "device"])


def distinct_rows(df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The distinct rows of ``df``'s ``columns``, sorted by them (nulls first); a single
    value per column (one rank, one device) is found without hashing."""
    if one_group(df, columns):
        return df.select(columns).head(1)
    return df.select(columns).unique().sort(columns)


def with_windows(df: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """``df.join(windows, on="rank", maintain_order="left")``: each row with its rank's
    window columns (rows of a rank without a window drop out); see `attach`."""
    return attach(df, windows, ["rank"])


def attach(
    df: pl.DataFrame,
    other: pl.DataFrame,
    on: list[str],
    how: Literal["inner", "left"] = "inner",
) -> pl.DataFrame:
    """``df.join(other, on=on, how=how, maintain_order="left")`` for a small ``other`` with
    one row per key; when ``other`` has one row and ``df``'s keys are all that row's, its
    other columns are added as constants (no hashing)."""
    single = other.height == 1 and all(one_value(df.get_column(c), other.get_column(c)) for c in on)
    if single:
        values = other.drop(on)
        return df.with_columns(
            pl.lit(values.get_column(c)[0], dtype=values.schema[c]).alias(c) for c in values.columns
        )
    return df.join(other, on=on, how=how, maintain_order="left")


def in_windows(
    df: pl.DataFrame,
    windows: pl.DataFrame,
    column: str = "start_ns",
    by: tuple[str, ...] = ("rank",),
    keep_bounds: bool = False,
) -> pl.DataFrame:
    """The rows of ``df`` whose ``column`` lies in their window, ``[window_start_ns,
    window_end_ns)`` of the ``windows`` row with the same ``by`` keys (rows without one drop
    out), in ``df``'s order; ``keep_bounds`` adds the two bounds as columns.

    One window for a frame of one key (a single-rank trace) is a filter on two constants.
    """
    bounds = windows.select(*by, "window_start_ns", "window_end_ns")
    start, end = pl.col("window_start_ns"), pl.col("window_end_ns")
    single = bounds.height == 1 and all(
        one_value(df.get_column(c), bounds.get_column(c)) for c in by
    )
    if single:
        first, last = bounds.row(0)[len(by) :]
        start, end = pl.lit(first, dtype=pl.Int64), pl.lit(last, dtype=pl.Int64)
        inside = df.filter((pl.col(column) >= start) & (pl.col(column) < end))
        if keep_bounds:
            return inside.with_columns(start.alias("window_start_ns"), end.alias("window_end_ns"))
        return inside
    joined = df.join(bounds, on=list(by), how="inner", maintain_order="left").filter(
        (pl.col(column) >= start) & (pl.col(column) < end)
    )
    return joined if keep_bounds else joined.drop("window_start_ns", "window_end_ns")


@per_tables
def step_windows(t: TraceTables) -> pl.DataFrame:
    """Profiled steps with ``gpu_end_ns``: the end of the GPU work launched inside each step.

    GPU events without a launching runtime call are assigned by their own start time.
    """
    steps = t.steps.select("rank", "step", "start_ns", "end_ns").sort("rank", "start_ns")
    if steps.height == 0:
        return steps.with_columns(pl.lit(None, dtype=pl.Int64).alias("gpu_end_ns"))
    events = launch_times(t).select(
        "rank", pl.coalesce("launch_ns", "start_ns").alias("issued_ns"), "end_ns"
    )
    if one_value(steps.get_column("rank"), events.get_column("rank")):
        return steps.join(_gpu_end_one_rank(steps, events), on=["rank", "step"], how="left").sort(
            "rank", "start_ns"
        )
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


def _gpu_end_one_rank(steps: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """`step_windows`' rank, step, gpu_end_ns when ``steps`` (in start order) and ``events``
    are of one rank: each event goes to the last step starting at or before its issue time
    (a binary search among the few step starts), if issued before that step's end."""
    issued = events.get_column("issued_ns")
    count = steps.get_column("start_ns").search_sorted(issued, side="right").cast(pl.Int64)
    row = (count - 1).clip(lower_bound=0)
    assigned = pl.DataFrame(
        {
            "step": steps.get_column("step").gather(row),
            "end_ns": events.get_column("end_ns"),
            "_in": (count > 0) & (issued < steps.get_column("end_ns").gather(row)),
        }
    )
    rank = steps.get_column("rank")[0]
    return (
        assigned.filter("_in")
        .group_by("step")
        .agg(pl.col("end_ns").max().alias("gpu_end_ns"))
        .select(pl.lit(rank, dtype=steps.schema["rank"]).alias("rank"), "step", "gpu_end_ns")
    )


@per_tables
def analysis_windows(t: TraceTables, window: Window = "steps") -> pl.DataFrame:
    """Per rank: ``window_start_ns`` and ``window_end_ns`` of the analysis window.

    ``window_basis`` says which definition applied (``steps`` or ``trace``).
    """
    events = gpu_intervals(t)
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


@per_tables
def _clipped_events(t: TraceTables, window: Window) -> pl.DataFrame:
    """GPU events cut to their rank's analysis window (breakdown and gaps share them)."""
    events = gpu_intervals(t).select("rank", "device", "kind", "start_ns", "end_ns")
    return _clip(events, analysis_windows(t, window))


@per_tables
def _busy_intervals(t: TraceTables, window: Window) -> pl.DataFrame:
    """The union of the clipped GPU events per (rank, device), as merged intervals."""
    return merge_intervals(_clipped_events(t, window), ["rank", "device"])


def _clip(events: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """GPU events cut to their rank's window; events entirely outside are dropped.

    Rows keep the events' order (start order, so a one-device merge needs no sort).
    """
    return (
        with_windows(events, windows)
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
    events = _clipped_events(t, window)
    keys = ["rank", "device"]
    if events.height == 0:
        return _empty_breakdown()
    base = aggregate(
        events,
        keys,
        pl.col("window_basis").first(),
        pl.col("window_start_ns").first(),
        pl.col("window_end_ns").first(),
        (pl.col("kind") != "memory").sum().cast(pl.Int64).alias("kernel_count"),
    )
    times = events.select(*keys, "kind", "start_ns", "end_ns")  # what the unions read
    parts = {
        "busy_ns": _merged_length(_busy_intervals(t, window), keys),
        "compute_ns": union_ns(times.filter(pl.col("kind") == "compute"), keys),
        "comm_ns": union_ns(times.filter(pl.col("kind") == "comm"), keys),
        "memory_ns": union_ns(times.filter(pl.col("kind") == "memory"), keys),
        "_comm_or_compute_ns": union_ns(times.filter(pl.col("kind") != "memory"), keys),
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
    return idle_gaps(t, window).sort("dur_ns", descending=True)


@per_tables
def idle_gaps(t: TraceTables, window: Window = "steps") -> pl.DataFrame:
    """`gaps`, each device's in start order (for the callers that look gaps up by time)."""
    windows = analysis_windows(t, window)
    keys = ["rank", "device"]
    if _clipped_events(t, window).height == 0:
        return pl.DataFrame(
            schema={
                "rank": pl.Int32(),
                "device": pl.Int32(),
                "start_ns": pl.Int64(),
                "end_ns": pl.Int64(),
                "dur_ns": pl.Int64(),
            }
        )
    # Merged intervals come ordered by rank, device and start: the row before an interval
    # is the previous one on its device, unless the device changes there.
    merged = with_windows(_busy_intervals(t, window), windows)
    device_changes = pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift(1)) for c in keys)
    previous_end = pl.when(device_changes).then(None).otherwise(pl.col("end_ns").shift(1))
    inner = merged.select(
        *keys,
        pl.coalesce(previous_end, "window_start_ns").alias("start_ns"),
        pl.col("start_ns").alias("end_ns"),
    )
    tail = aggregate(
        merged,
        keys,
        pl.col("end_ns").max().alias("start_ns"),
        pl.col("window_end_ns").first().alias("end_ns"),
    )
    out = pl.concat([inner, tail.select(inner.columns)], how="vertical")
    return out.with_columns((pl.col("end_ns") - pl.col("start_ns")).alias("dur_ns")).filter(
        pl.col("dur_ns") > 0
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
    events = gpu_intervals(t)
    busy = _union_within_steps(events, steps, _gpu_union_per_rank(t))
    comm = _union_within_steps(events.filter(pl.col("kind") == "comm"), steps)
    loader_ops = t.ops.filter(table_name_matches(t, "ops", _DATALOADER_PATTERN)).select(
        "rank", "start_ns", (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns")
    )
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


@per_tables
def _gpu_union_per_rank(t: TraceTables) -> pl.DataFrame:
    """The union of every GPU event of each rank, over all its devices (`merge_intervals`)."""
    return merge_intervals(gpu_intervals(t), ["rank"])


def _union_within_steps(
    intervals: pl.DataFrame, steps: pl.DataFrame, union: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Length of the union of ``intervals`` inside each step's window, per (rank, step).

    Returns rank, step, union_ns. ``union`` is ``merge_intervals(intervals, ["rank"])``
    when the caller has it already. The union's running total is looked up (as of) at both
    ends of every window and subtracted, so the cost is a merge and a lookup, not intervals
    x steps. Windows of one (rank, step) are merged first: a step listed twice counts the
    union of its windows once. A window that ends before it starts adds what clipping the
    intervals to it gives (`_inverted_overlap`).
    """
    keys = ["rank", "step"]
    windows = steps.select(*keys, "start_ns", "end_ns")
    inverted = pl.col("end_ns") < pl.col("start_ns")
    if union is None:
        union = merge_intervals(intervals.select("rank", "start_ns", "end_ns"), ["rank"])
    regular = windows.filter(~inverted)
    if regular.select(pl.struct(keys).n_unique()).item() < regular.height:
        regular = merge_intervals(regular, keys)
    covered = _covered_between(union, regular)
    if not windows.select(inverted.any()).item():
        return covered
    odd = _inverted_overlap(intervals, windows.filter(inverted))
    return (
        pl.concat([covered, odd], how="vertical")
        .group_by(keys, maintain_order=True)
        .agg(pl.col("union_ns").sum())
    )


def _covered_between(union: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """Per (rank, step): the length of ``union`` (disjoint, by rank) inside ``windows``.

    ``covered(x)``, the union's length before time x, is the running total before the last
    interval starting at or before x, plus the part of that interval before x.
    """
    length = pl.col("end_ns") - pl.col("start_ns")
    edges = pl.concat(
        [
            windows.select("rank", "step", pl.col("start_ns").alias("at_ns"), _SIGN_MINUS),
            windows.select("rank", "step", pl.col("end_ns").alias("at_ns"), _SIGN_PLUS),
        ],
        how="vertical",
    )
    covered = pl.col("before_ns") + pl.min_horizontal(pl.col("at_ns") - pl.col("start_ns"), length)
    if union.height and one_value(union.get_column("rank"), windows.get_column("rank")):
        return (
            pl.concat([edges, _last_started(union, edges.get_column("at_ns"))], how="horizontal")
            .group_by("rank", "step")
            .agg((pl.col("sign") * covered.fill_null(0)).sum().alias("union_ns"))
        )
    before = length.cum_sum() - length
    if union["rank"].n_unique() > 1:
        before = before.over("rank")
    totals = union.with_columns(before.alias("before_ns"))
    return (
        edges.sort("at_ns")
        .join_asof(
            totals,
            left_on="at_ns",
            right_on="start_ns",
            by="rank",
            strategy="backward",
            check_sortedness=False,
        )
        .group_by("rank", "step")
        .agg((pl.col("sign") * covered.fill_null(0)).sum().alias("union_ns"))
    )


def _last_started(union: pl.DataFrame, at: pl.Series) -> pl.DataFrame:
    """For each time in ``at``: start_ns, end_ns and before_ns (the running length before it)
    of the last interval of ``union`` (one rank, disjoint, in order) starting at or before
    it; nulls when none does. A binary search per time, for a handful of step edges."""
    starts, ends = union.get_column("start_ns"), union.get_column("end_ns")
    lengths = ends - starts
    count = starts.search_sorted(at, side="right").cast(pl.Int64)
    row = (count - 1).clip(lower_bound=0)
    found = count > 0
    picked = pl.DataFrame(
        {
            "start_ns": starts.gather(row),
            "end_ns": ends.gather(row),
            "before_ns": (lengths.cum_sum() - lengths).gather(row),
        }
    )
    return picked.select(pl.when(found).then(pl.col(c)).alias(c) for c in picked.columns)


_SIGN_MINUS = pl.lit(-1, dtype=pl.Int64).alias("sign")
_SIGN_PLUS = pl.lit(1, dtype=pl.Int64).alias("sign")


def _inverted_overlap(intervals: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """Per (rank, step) whose window ends before it starts (its start pushed past its end by
    the previous step's GPU work): what clipping each interval to the window and adding up
    the pieces gives, that is ``end - start`` (negative) once per interval spanning it."""
    spanning = (
        intervals.select("rank", "start_ns", "end_ns")
        .join(windows.rename({"start_ns": "w_start", "end_ns": "w_end"}), on="rank")
        .filter((pl.col("start_ns") < pl.col("w_end")) & (pl.col("end_ns") > pl.col("w_start")))
    )
    return spanning.group_by("rank", "step").agg(
        (pl.col("w_end") - pl.col("w_start")).sum().alias("union_ns")
    )


def idle_breakdown(
    t: TraceTables, kernel_wait_threshold_ns: int = KERNEL_WAIT_THRESHOLD_NS
) -> pl.DataFrame:
    """Idle time between consecutive GPU events of each stream, by cause (HTA's meanings).

    Columns: rank, stream, host_wait_ns, kernel_wait_ns, other_ns, idle_ns.
    """
    keys = ["rank", "stream"]
    events = launch_times(t).select(*keys, "start_ns", "end_ns", "launch_ns")
    if not events["start_ns"].is_sorted():
        events = events.sort("start_ns", maintain_order=True)
    streams = events.partition_by(keys, maintain_order=True) if events.height else []
    if 0 < len(streams) <= _FEW_STREAMS:  # one stream at a time: no window over the keys
        out = pl.concat([_stream_idle(s, kernel_wait_threshold_ns) for s in streams])
        return out.with_columns(
            (pl.col("host_wait_ns") + pl.col("kernel_wait_ns") + pl.col("other_ns")).alias(
                "idle_ns"
            )
        ).sort(keys)
    # In start order, the row before an event within its stream is the stream's previous event.
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


#: Up to this many streams, `idle_breakdown` walks them one by one.
_FEW_STREAMS = 64


def _stream_idle(events: pl.DataFrame, kernel_wait_threshold_ns: int) -> pl.DataFrame:
    """`idle_breakdown`'s one row for the events of one (rank, stream), in start order."""
    prev_end = pl.col("end_ns").shift(1)
    gap = pl.col("start_ns") - prev_end
    follows = prev_end.is_not_null()
    host_wait = follows & pl.col("launch_ns").is_not_null() & (pl.col("launch_ns") > prev_end)
    short = gap < kernel_wait_threshold_ns
    return events.select(
        pl.col("rank").first(),
        pl.col("stream").first(),
        gap.filter(host_wait).sum().alias("host_wait_ns"),
        gap.filter(follows & ~host_wait & short).sum().alias("kernel_wait_ns"),
        gap.filter(follows & ~host_wait & ~short).sum().alias("other_ns"),
    )
