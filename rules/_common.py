"""Helpers several rules share (not a rule: `rules.all` skips modules starting with ``_``)."""

from __future__ import annotations

import polars as pl

from analyzer.context import AnalysisContext
from analyzer.findings import Scope
from analyzer.metrics import timeline
from parsers.schema import TraceTables


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


def copies_with_callers(ctx: AnalysisContext) -> pl.DataFrame:
    """Memory operations inside each rank's window, with the CPU side that issued them.

    Adds ``api_ns`` (CPU time of the launching call, null when not linked) and ``op`` /
    ``under`` (the CPU ops that issued the copy, see `rules.pageable_memcpy.issuing_ops`).
    Computed once per analysis; rules keep the copies they look at with a row filter.
    """
    return ctx.metric("rules.copies_with_callers", lambda _: _copies_with_callers(ctx))


def _copies_with_callers(ctx: AnalysisContext) -> pl.DataFrame:
    from rules.host_sync import rank_windows
    from rules.pageable_memcpy import issuing_ops

    windows = rank_windows(ctx)
    inside = timeline.with_windows(ctx.tables.memops, windows).filter(
        (pl.col("start_ns") + pl.col("dur_ns") > pl.col("window_start_ns"))
        & (pl.col("start_ns") < pl.col("window_end_ns"))
    )
    calls = ctx.tables.runtime.select("rank", "correlation", pl.col("dur_ns").alias("api_ns"))
    if not timeline.strictly_increasing(calls.get_column("correlation")):  # repeated ids: add
        launched = inside["correlation"].drop_nulls().unique()
        calls = (
            calls.filter(pl.col("correlation").is_in(launched.implode()))
            .group_by("rank", "correlation")
            .agg(pl.col("api_ns").sum())
        )
    callers = issuing_ops(ctx, inside.filter(pl.col("external_id").is_not_null()))
    with_calls = timeline.join_within_rank(inside, calls, ["correlation"], how="left")
    return with_calls.join(callers, on=["rank", "external_id"], how="left", maintain_order="left")
