"""Memory operations: copies and sets by direction and memory kind."""

from __future__ import annotations

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.model import Cell, Paragraph, Section, Table


def memops_summary(ctx: AnalysisContext) -> pl.DataFrame:
    """Per (kind, src_mem, dst_mem): count, bytes, total ns, achieved GB/s, median bytes."""
    m = ctx.tables.memops
    return (
        m.with_columns(
            pl.col("kind").cast(pl.String),
            pl.col("src_mem").cast(pl.String).fill_null("?"),
            pl.col("dst_mem").cast(pl.String).fill_null("?"),
        )
        .group_by("kind", "src_mem", "dst_mem")
        .agg(
            pl.len().alias("count"),
            pl.col("bytes").sum().alias("bytes"),
            pl.col("bytes").median().alias("median_bytes"),
            pl.col("dur_ns").sum().alias("total_ns"),
        )
        .with_columns(
            pl.when(pl.col("total_ns") > 0)
            .then(pl.col("bytes") / pl.col("total_ns"))
            .otherwise(None)
            .alias("gb_per_s")
        )
        .sort(["total_ns", "kind"], descending=[True, False])
    )


def build(ctx: AnalysisContext, charts: bool = False) -> Section | None:
    """The "Memory operations" section, or None when the trace has none."""
    if ctx.tables.memops.height == 0:
        return None
    summary = memops_summary(ctx)
    rows: list[list[Cell]] = [
        [
            r["kind"],
            "" if r["kind"] == "memset" else f"{r['src_mem']} -> {r['dst_mem']}",
            fmt.count(r["count"]),
            fmt.size(r["bytes"]),
            fmt.size(r["median_bytes"]),
            fmt.ms(r["total_ns"], 3),
            "n/a" if r["gb_per_s"] is None else f"{r['gb_per_s']:.1f}",
        ]
        for r in summary.iter_rows(named=True)
    ]
    table = Table(
        ["kind", "memory", "count", "bytes", "median size", "GPU time ms", "achieved GB/s"],
        rows,
        numeric=[False, False, True, True, True, True, True],
    )
    total_ns = int(ctx.tables.memops["dur_ns"].sum())
    intro = Paragraph.of(
        f"{fmt.count(ctx.tables.memops.height)} memory operations took "
        f"{fmt.duration(total_ns)} of GPU time (sum of durations)."
    )
    return Section("Memory operations", [intro, table], key="memops")
