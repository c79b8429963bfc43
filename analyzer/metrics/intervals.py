"""Interval and join helpers on polars frames: unions of ``[start_ns, end_ns)`` intervals per
group, window filters, and joins that skip hashing when a trace holds one rank or sorted ids.

Split out of `analyzer.metrics.timeline` (which keeps the GPU-time definitions built on them)
so that every metric and rule reaches for one set of building blocks. Series-level lookups in
disjoint segments live in `analyzer.metrics.segments`, whose ``merge`` is this module's sweep.
Times are Int64 nanoseconds.
"""

from __future__ import annotations

from typing import Literal

import polars as pl


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
        return merge_sorted(df if df["start_ns"].is_sorted() else df.sort("start_ns"), by)
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


def merge_sorted(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
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
    return merged_length(merge_intervals(df, by), by)


def merged_length(merged: pl.DataFrame, by: list[str]) -> pl.DataFrame:
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


def one_value(*columns: pl.Series) -> bool:
    """Whether the columns together hold exactly one distinct value and no null (empty
    columns add nothing): a min and a max per column, no hashing."""
    seen = [c for c in columns if c.len()]
    if not seen or any(c.null_count() for c in seen):
        return False
    bounds = {v for c in seen for v in (c.min(), c.max())}
    return len(bounds) == 1


def strictly_increasing(column: pl.Series) -> bool:
    """Whether a column is sorted ascending without repeats or nulls."""
    if column.null_count() or not column.is_sorted():
        return False
    return column.len() < 2 or bool((column.slice(1) != column.slice(0, column.len() - 1)).all())


def distinct_rows(df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The distinct rows of ``df``'s ``columns``, sorted by them (nulls first); a single
    value per column (one rank, one device) is found without hashing."""
    if one_group(df, columns):
        return df.select(columns).head(1)
    return df.select(columns).unique().sort(columns)


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


def with_windows(df: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """``df.join(windows, on="rank", maintain_order="left")``: each row with its rank's
    window columns (rows of a rank without a window drop out); see `attach`."""
    return attach(df, windows, ["rank"])


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
