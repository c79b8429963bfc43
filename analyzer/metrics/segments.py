"""Disjoint labelled segments from nested or overlapping intervals, and lookups in them.

The idle ledger and the host-blocking attribution ask, for a point or a stretch of time,
"which op (or Python frame) was running then": nested intervals (ops in ops, frames in
frames) are flattened once into disjoint segments, each carrying the label of the innermost
(or outermost) interval covering it, and looked up by binary search. Times are Int64
polars Series in nanoseconds.
"""

from __future__ import annotations

from typing import Literal

import polars as pl
from gpu_trace_analyzer.metrics.intervals import merge_sorted

Segments = tuple[pl.Series, pl.Series, pl.Series]
"""(starts, ends, labels): disjoint, in time order."""


def _i64(values: list[int], name: str) -> pl.Series:
    return pl.Series(name, values, dtype=pl.Int64)


def flatten(
    starts: pl.Series, ends: pl.Series, labels: pl.Series, keep: Literal["inner", "outer"] = "inner"
) -> Segments:
    """Disjoint segments covering the union of ``[starts, ends)``, each with the label of the
    innermost (latest started, still open) or outermost (earliest started, still open)
    interval covering it. Intervals need not nest properly; empty ones are dropped. Adjacent
    segments with one label are merged.
    """
    frame = pl.DataFrame({"s": starts, "e": ends, "l": labels}).filter(pl.col("e") > pl.col("s"))
    frame = frame.sort(["s", "e"], descending=[False, True])
    if keep == "outer":
        return _outermost(frame)
    return _sweep(frame, keep)


def _sweep(frame: pl.DataFrame, keep: Literal["inner", "outer"]) -> Segments:
    """The general `flatten`: a sweep with a stack of open intervals."""
    out_s: list[int] = []
    out_e: list[int] = []
    out_l: list[int] = []
    stack: list[tuple[int, int]] = []  # (end, label), outermost first
    cursor = 0

    def emit(upto: int) -> None:
        nonlocal cursor
        if stack and upto > cursor:
            label = stack[-1][1] if keep == "inner" else stack[0][1]
            if out_l and out_l[-1] == label and out_e[-1] == cursor:
                out_e[-1] = upto
            else:
                out_s.append(cursor)
                out_e.append(upto)
                out_l.append(label)
        cursor = max(cursor, upto)

    def close_until(limit: int | None) -> None:
        nonlocal stack
        while stack:
            first_end = min(x[0] for x in stack)
            if limit is not None and first_end > limit:
                return
            emit(first_end)
            stack = [x for x in stack if x[0] > first_end]

    for s, e, lab in frame.iter_rows():
        close_until(s)
        emit(s)
        stack.append((e, lab))
    close_until(None)
    return _i64(out_s, "start_ns"), _i64(out_e, "end_ns"), _i64(out_l, "label")


def _outermost(frame: pl.DataFrame) -> Segments:
    """`flatten` with ``keep="outer"``: in (start, longest first) order, an interval is
    outermost when it starts at or after every earlier one's end. When every other interval
    ends inside what came before it (proper nesting, as one thread's ops are), the outermost
    intervals are the answer; otherwise the general sweep runs."""
    reach = pl.col("e").cum_max().shift(1)
    flags = frame.with_columns(
        (pl.col("s") >= reach).fill_null(True).alias("_top"),
        (pl.col("e") <= reach).fill_null(False).alias("_inside"),
    )
    if not (flags.get_column("_top") | flags.get_column("_inside")).all():
        return _sweep(frame, "outer")  # an interval overhangs its parent: the general sweep
    top = flags.filter("_top")  # properly nested: the outermost intervals, disjoint
    return (
        top.get_column("s").rename("start_ns"),
        top.get_column("e").rename("end_ns"),
        top.get_column("l").rename("label"),
    )


def lookup(seg_starts: pl.Series, seg_ends: pl.Series, at: pl.Series) -> pl.Series:
    """For each time in ``at``, the index of the disjoint sorted segment containing it
    (``start <= t < end``), or -1."""
    if seg_starts.len() == 0:
        return pl.Series("idx", [-1] * at.len(), dtype=pl.Int64)
    idx = seg_starts.search_sorted(at, side="right").cast(pl.Int64) - 1
    safe = idx.clip(lower_bound=0)
    hit = (idx >= 0) & (seg_ends.gather(safe) > at)
    return pl.select(pl.when(pl.lit(hit)).then(pl.lit(idx)).otherwise(-1)).to_series()


def merge(starts: pl.Series, ends: pl.Series) -> tuple[pl.Series, pl.Series]:
    """The union of ``[starts, ends)`` as disjoint sorted intervals."""
    frame = pl.DataFrame({"start_ns": starts, "end_ns": ends}).cast(pl.Int64)
    if frame.height == 0:
        return frame.get_column("start_ns"), frame.get_column("end_ns")
    merged = merge_sorted(frame.sort("start_ns"), [])
    return merged.get_column("start_ns"), merged.get_column("end_ns")


def covered_before(seg_starts: pl.Series, seg_ends: pl.Series, at: pl.Series) -> pl.Series:
    """For each time in ``at``: the length of the disjoint sorted segments before it."""
    if seg_starts.len() == 0:
        return pl.Series("covered", [0] * at.len(), dtype=pl.Int64)
    lengths = seg_ends - seg_starts
    before = lengths.cum_sum() - lengths  # length of the segments before each one
    idx = seg_starts.search_sorted(at, side="right").cast(pl.Int64) - 1
    safe = idx.clip(lower_bound=0)
    partial = pl.select(
        pl.min_horizontal(
            pl.lit(at) - pl.lit(seg_starts.gather(safe)), pl.lit(lengths.gather(safe))
        )
    ).to_series()
    value = before.gather(safe) + partial
    return pl.select(pl.when(pl.lit(idx) >= 0).then(pl.lit(value)).otherwise(0)).to_series()


def overlap_ns(
    seg_starts: pl.Series, seg_ends: pl.Series, starts: pl.Series, ends: pl.Series
) -> pl.Series:
    """For each interval ``[starts, ends)``: how much of it the disjoint sorted segments
    cover."""
    return covered_before(seg_starts, seg_ends, ends) - covered_before(seg_starts, seg_ends, starts)
