"""Top kernels by GPU time, and GPU time by kernel category."""

from __future__ import annotations

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics.steps import without_queued
from gpu_trace_analyzer.parsers.schema import TraceTables
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.model import Cell, Code, Paragraph, Section, Table

TOP_KERNELS = 15


def kernel_summary(t: TraceTables) -> pl.DataFrame:
    """Per kernel name: category, calls, total/mean/max ns, share of all kernel time.

    Grouped on the categorical name (far cheaper to hash than the text), cast after. Kernels
    queued before profiling are left out (`steps.without_queued`).
    """
    k = without_queued(t).kernels
    total = int(k["dur_ns"].sum()) if k.height else 0
    return (
        k.group_by("name")
        .agg(
            pl.col("category").first(),
            pl.len().alias("calls"),
            pl.col("dur_ns").sum().alias("total_ns"),
            pl.col("dur_ns").mean().alias("mean_ns"),
            pl.col("dur_ns").max().alias("max_ns"),
        )
        .with_columns(
            pl.col("name").cast(pl.String),
            pl.col("category").cast(pl.String),
            (100.0 * pl.col("total_ns") / max(total, 1)).alias("share_pct"),
        )
        .sort(["total_ns", "name"], descending=[True, False])
    )


def category_summary(ctx: AnalysisContext) -> pl.DataFrame:
    """Per kernel category: calls, total ns, share of all kernel time."""
    k = without_queued(ctx.tables).kernels
    total = int(k["dur_ns"].sum()) if k.height else 0
    return (
        k.group_by("category")
        .agg(pl.len().alias("calls"), pl.col("dur_ns").sum().alias("total_ns"))
        .with_columns(
            pl.col("category").cast(pl.String),
            (100.0 * pl.col("total_ns") / max(total, 1)).alias("share_pct"),
        )
        .sort(["total_ns", "category"], descending=[True, False])
    )


def build(ctx: AnalysisContext, charts: bool = False) -> Section | None:
    """The "Top kernels" section, or None for a trace without kernels."""
    if ctx.tables.kernels.height == 0:
        return None
    summary = ctx.metric("kernels.summary", kernel_summary)
    ranks = ctx.tables.kernels["rank"].n_unique()
    scope = "summed over all ranks" if ranks > 1 else "on the one rank traced"
    top_rows = summary.head(TOP_KERNELS)
    names = fmt.short_names(top_rows["name"].to_list())  # distinguishable rows, functor kept
    rows: list[list[Cell]] = [
        [
            Code(names[r["name"]]),
            r["category"],
            fmt.count(r["calls"]),
            fmt.ms(r["total_ns"], 2),
            f"{r['mean_ns'] / 1e3:.1f}",
            fmt.pct(r["share_pct"]),
        ]
        for r in top_rows.iter_rows(named=True)
    ]
    top = Table(
        ["kernel", "category", "calls", "GPU time ms", "mean us", "share of kernel time"],
        rows,
        numeric=[False, False, True, True, True, True],
    )
    cats = category_summary(ctx)
    cat_rows: list[list[Cell]] = [
        [r["category"], fmt.count(r["calls"]), fmt.ms(r["total_ns"], 2), fmt.pct(r["share_pct"])]
        for r in cats.iter_rows(named=True)
    ]
    by_cat = Table(
        ["category", "calls", "GPU time ms", "share of kernel time"],
        cat_rows,
        numeric=[False, True, True, True],
    )
    shown = min(TOP_KERNELS, summary.height)
    intro = Paragraph.of(
        f"The {shown} kernels with the most GPU time of {fmt.count(summary.height)} distinct "
        f"kernels ({fmt.count(ctx.tables.kernels.height)} launches), {scope}. Kernel time "
        "sums durations, so kernels overlapping on several streams count in full."
    )
    return Section("Top kernels", [intro, top, Paragraph.of("By category:"), by_cat], key="kernels")
