"""small-memcpy: many small copies, each paying the fixed cost of a copy.

Every copy costs a runtime call on the CPU (several microseconds) and a DMA setup on the GPU,
whatever its size; below a few tens of kilobytes that fixed cost dominates. Counted: memcpy
operations (not memsets) of at most ``small_copy_bytes`` inside each rank's window (the
profiled steps, or the whole trace). The fixed cost of one copy is the larger of its GPU
duration and the CPU time of its launching call; the time at stake is the number of small
copies times the *median* of that cost. The median, not the sum: when the GPU queue is full
any API call can block for hundreds of microseconds, and that back-pressure is not the
copies' own overhead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics.host_blocking import copies_with_callers, rank_windows
from gpu_trace_analyzer.rules.base import register


@dataclass(frozen=True, slots=True)
class SmallMemcpyConfig:
    """Thresholds of small-memcpy."""

    small_copy_bytes: int = 65_536
    """A copy of at most this many bytes is small (64 KiB: its fixed cost outweighs the
    transfer on PCIe and NVLink)."""
    min_copies_per_step: float = 20.0
    """With profiled steps: small copies per step at which the rule fires."""
    min_copies: int = 100
    """Without steps: small copies in the trace at which the rule fires."""
    info_time_pct: float = 0.5
    """Time in small copies, as a share of the window, under which nothing is reported:
    many cheap copies are not worth batching."""
    warning_time_pct: float = 2.0
    """Time in small copies, as a share of the window, that makes the finding a warning
    (below it, an info)."""
    top_rows: int = 6
    """How many (direction, launching op) rows the evidence table lists."""


@register
class SmallMemcpy:
    """Many small host-device or device-device copies: count, median size, cost."""

    id: ClassVar[str] = "small-memcpy"
    title: ClassVar[str] = "Many small memory copies"
    description: ClassVar[str] = (
        "Memcpy operations of at most 64 KiB (configurable), many per step: each pays a "
        "runtime call and a DMA setup; count, median size, time and the ops issuing them."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"memops"})
    Config: ClassVar[type[SmallMemcpyConfig]] = SmallMemcpyConfig

    def check(self, ctx: AnalysisContext, cfg: SmallMemcpyConfig) -> Iterable[Finding]:
        """One finding for the rank with the most small copies, when there are enough."""
        copies = small_copies(ctx, cfg.small_copy_bytes)
        if copies.height == 0:
            return
        per_rank = _per_rank(ctx, copies)
        worst = per_rank.sort(["copies", "rank"], descending=[True, False]).row(0, named=True)
        steps = int(worst["steps"])
        enough = (
            worst["copies"] / steps >= cfg.min_copies_per_step
            if steps
            else worst["copies"] >= cfg.min_copies
        )
        if not enough or float(worst["cost_pct"]) < cfg.info_time_pct:
            return
        rank = int(worst["rank"])
        yield _finding(cfg, worst, copies.filter(pl.col("rank") == rank), per_rank.height)


def small_copies(ctx: AnalysisContext, max_bytes: int) -> pl.DataFrame:
    """Memcpy operations of at most ``max_bytes`` inside each rank's window.

    Columns: rank, kind, bytes, start_ns, dur_ns, api_ns (launching call's CPU time, 0 when
    not linked), cost_ns (the larger of the two), op and under (the CPU op issuing it and
    its outermost caller, see `issuing_ops`).
    """
    return (
        copies_with_callers(ctx)
        .filter(
            (pl.col("kind").cast(pl.String) != "memset")
            & pl.col("bytes").is_not_null()
            & (pl.col("bytes") <= max_bytes)
        )
        .with_columns(pl.col("api_ns").fill_null(0))
        .select(
            "rank",
            pl.col("kind").cast(pl.String),
            "bytes",
            "start_ns",
            "dur_ns",
            "api_ns",
            pl.max_horizontal("dur_ns", "api_ns").alias("cost_ns"),
            pl.col("op").fill_null("(unknown)"),
            pl.col("under").fill_null("(unknown)"),
        )
    )


def _per_rank(ctx: AnalysisContext, copies: pl.DataFrame) -> pl.DataFrame:
    """Per rank: small copies, their bytes and cost, the window and the step count."""
    windows = rank_windows(ctx).select(
        "rank", (pl.col("window_end_ns") - pl.col("window_start_ns")).alias("window_ns")
    )
    steps = ctx.tables.steps.group_by("rank").agg(pl.len().alias("steps"))
    return (
        copies.group_by("rank")
        .agg(
            pl.len().alias("copies"),
            pl.col("bytes").sum().alias("bytes"),
            pl.col("bytes").median().alias("median_bytes"),
            pl.col("dur_ns").sum().alias("gpu_ns"),
            pl.col("api_ns").sum().alias("api_ns"),
            pl.col("cost_ns").median().alias("median_cost_ns"),
        )
        .with_columns((pl.col("copies") * pl.col("median_cost_ns")).cast(pl.Int64).alias("cost_ns"))
        .join(windows, on="rank", how="left")
        .join(steps, on="rank", how="left")
        .with_columns(pl.col("steps").fill_null(0))
        .with_columns(
            pl.when(pl.col("window_ns") > 0)
            .then(100.0 * pl.col("cost_ns") / pl.col("window_ns"))
            .otherwise(0.0)
            .alias("cost_pct")
        )
    )


def _finding(
    cfg: SmallMemcpyConfig, row: dict[str, Any], copies: pl.DataFrame, ranks: int
) -> Finding:
    """The finding for one rank: count, median size, cost, and where they come from."""
    rank, n, steps = int(row["rank"]), int(row["copies"]), int(row["steps"])
    cost_ns, cost_pct = int(row["cost_ns"]), float(row["cost_pct"])
    median_bytes = float(row["median_bytes"])
    severity = Severity.WARNING if cost_pct >= cfg.warning_time_pct else Severity.INFO
    per_step = f" ({n / steps:.0f} per step)" if steps else ""
    summary = (
        f"Rank {rank} makes {n} copies of at most {cfg.small_copy_bytes:,} bytes{per_step}, "
        f"median {median_bytes:,.0f} bytes; at a median "
        f"{int(row['median_cost_ns']) / 1e3:.1f} us each they cost {cost_ns / 1e6:.2f} ms "
        f"({cost_pct:.2f}% of the window), mostly fixed per-copy overhead."
    )
    evidence: dict[str, float | int | str] = {
        "rank": rank,
        "small_copies": n,
        "small_copy_max_bytes": cfg.small_copy_bytes,
        "median_copy_bytes": median_bytes,
        "bytes": int(row["bytes"]),
        "gpu_copy_ns": int(row["gpu_ns"]),
        "api_ns": int(row["api_ns"]),
        "median_copy_cost_ns": int(row["median_cost_ns"]),
        "cost_ns": cost_ns,
        "cost_pct": round(cost_pct, 3),
        "steps": steps,
        "ranks_with_small_copies": ranks,
    }
    if steps:
        evidence["copies_per_step"] = round(n / steps, 1)
    return Finding(
        rule_id=SmallMemcpy.id,
        severity=severity,
        title=SmallMemcpy.title,
        summary=summary,
        evidence=evidence,
        recommendation=(
            "Batch the copies: gather the small tensors into one contiguous buffer (e.g. "
            "`torch.cat` or a preallocated pinned staging tensor) and copy it once, keep "
            "constants and scalars on the GPU instead of re-uploading them each step, and "
            "replace per-element `.to(device)` / `.cpu()` in loops with one transfer."
        ),
        scope=Scope(
            rank=rank,
            start_ns=int(copies.select(pl.col("start_ns").min()).item()),
            end_ns=int(copies.select((pl.col("start_ns") + pl.col("dur_ns")).max()).item()),
        ),
        impact_ns=cost_ns,
        table=_table(copies, cfg.top_rows),
    )


def _table(copies: pl.DataFrame, top_rows: int) -> EvidenceTable:
    """Small copies grouped by direction and issuing op, most copies first."""
    grouped = (
        copies.with_columns(pl.col("kind").fill_null("?"))
        .group_by("kind", "op", "under")
        .agg(
            pl.len().alias("copies"),
            pl.col("bytes").median().alias("median_bytes"),
            pl.col("cost_ns").median().alias("median_cost_ns"),
        )
        .sort(
            ["copies", "median_cost_ns", "kind", "op", "under"],
            descending=[True, True, False, False, False],
        )
        .head(top_rows)
    )
    rows: list[list[str | int | float | None]] = [
        [
            str(r["kind"]),
            str(r["op"]),
            str(r["under"]),
            int(r["copies"]),
            float(r["median_bytes"]),
            round(float(r["median_cost_ns"]) / 1e3, 2),
        ]
        for r in grouped.iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=["kind", "CPU op", "under", "copies", "median bytes", "median cost us"],
        rows=rows,
    )
