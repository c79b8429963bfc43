"""pageable-memcpy: host-device copies that touch pageable (not pinned) host memory.

A copy from or to pageable memory goes through a staging buffer: the driver copies it in
chunks, the CPU call does not return until the data is staged (device-to-host: until the
copy is done), and the copy cannot overlap compute. These are the copies of Nsight Systems'
``cuda_memcpy_async`` rule ("asynchronous memcpy with pageable memory"), extended to the
non-async calls as well: every memory operation whose source or destination is pageable.

Severity follows the time the CPU was blocked in the launching calls, as a share of the
window (info for any such copy, as Nsight lists them all): a pageable copy is synchronous,
so five 704-byte copies that each froze the main thread for 140 ms are critical however
short their GPU time. The GPU idle time during those calls is the idle ledger's
``blocking_copy`` row, which host-sync claims; this finding cites it without claiming it.
This finding owns the CPU-blocked time of the pageable copy calls (host-sync refers to it).
A first-step call that is a one-time cost (`host_blocking.first_step_outliers`, reported by
cold-start) is counted out of the steady-state cost the severity follows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics.host_blocking import (
    copies_with_callers,
    first_step_outliers,
    rank_windows,
)
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.rules.base import register


@dataclass(frozen=True, slots=True)
class PageableMemcpyConfig:
    """Thresholds of pageable-memcpy."""

    warning_time_pct: float = 5.0
    """CPU time blocked in the pageable copies' calls, as a share of the window, that
    raises a warning."""
    critical_time_pct: float = 25.0
    """Blocked share of the window at which the finding becomes critical."""
    top_rows: int = 6
    """How many (direction, launching op) rows the evidence table lists."""


@register
class PageableMemcpy:
    """Copies between the GPU and pageable host memory: bytes, time, launching ops."""

    id: ClassVar[str] = "pageable-memcpy"
    title: ClassVar[str] = "Host-device copies use pageable memory"
    description: ClassVar[str] = (
        "Memcpy to or from pageable (not pinned) host memory: staged by the driver, "
        "synchronous for the CPU and unable to overlap compute; counts, bytes, GPU and CPU "
        "time, and the ops that issued them."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"memops"})
    Config: ClassVar[type[PageableMemcpyConfig]] = PageableMemcpyConfig

    def check(self, ctx: AnalysisContext, cfg: PageableMemcpyConfig) -> Iterable[Finding]:
        """One finding for the rank with the most time in pageable copies."""
        copies = pageable_copies(ctx)
        if copies.height == 0:
            return
        per_rank = _per_rank(ctx, copies)
        worst = per_rank.sort(["cost_ns", "rank"], descending=[True, False]).row(0, named=True)
        rank = int(worst["rank"])
        cold = first_step_outliers(ctx).filter((pl.col("rank") == rank) & pl.col("pageable"))
        cold_ns = int(cold["excess_ns"].sum()) if cold.height else 0
        loader = ctx.tables.ops.filter(
            pl.col("name").cast(pl.String).str.contains(r"^enumerate\(DataLoader\)")
        ).height
        yield _finding(
            cfg, worst, copies.filter(pl.col("rank") == rank), per_rank.height, cold_ns, loader > 0
        )


def pageable_copies(ctx: AnalysisContext) -> pl.DataFrame:
    """Memory operations with a pageable side inside each rank's window.

    Columns: rank, device, stream, kind, src_mem, dst_mem, bytes, start_ns, dur_ns,
    api_ns (CPU time of the launching call, null when not linked), op and under (see
    `issuing_ops`; null when unknown).
    """
    pageable = (pl.col("src_mem").cast(pl.String) == "pageable") | (
        pl.col("dst_mem").cast(pl.String) == "pageable"
    )
    return (
        copies_with_callers(ctx)
        .filter(pageable)
        .select(
            "rank",
            "device",
            "stream",
            pl.col("kind").cast(pl.String),
            pl.col("src_mem").cast(pl.String),
            pl.col("dst_mem").cast(pl.String),
            pl.col("bytes").fill_null(0),
            "start_ns",
            "dur_ns",
            "api_ns",
            "op",
            "under",
        )
    )


def _per_rank(ctx: AnalysisContext, copies: pl.DataFrame) -> pl.DataFrame:
    """Per rank: count, bytes, GPU time, CPU call time, cost (GPU time) and its share."""
    windows = rank_windows(ctx).select(
        "rank", (pl.col("window_end_ns") - pl.col("window_start_ns")).alias("window_ns")
    )
    per_rank = copies.group_by("rank").agg(
        pl.len().alias("copies"),
        pl.col("bytes").sum().alias("bytes"),
        pl.col("dur_ns").sum().alias("gpu_ns"),
        pl.col("api_ns").sum().alias("api_ns"),
    )
    return (
        per_rank.join(windows, on="rank", how="left")
        .with_columns(pl.col("api_ns").fill_null(0).alias("cost_ns"))
        .with_columns(
            pl.when(pl.col("window_ns") > 0)
            .then(100.0 * pl.col("cost_ns") / pl.col("window_ns"))
            .otherwise(0.0)
            .alias("cost_pct")
        )
    )


def _finding(
    cfg: PageableMemcpyConfig,
    row: dict[str, Any],
    copies: pl.DataFrame,
    ranks: int,
    cold_ns: int = 0,
    loader: bool = False,
) -> Finding:
    """The finding for one rank: totals, and a row per direction and launching op;
    ``cold_ns`` is the one-time first-step part of the blocked time (cold-start's)."""
    window_ns = int(row["window_ns"] or 0)
    steady_ns = int(row["api_ns"] or 0) - cold_ns
    cost_pct = 100.0 * steady_ns / window_ns if window_ns else float(row["cost_pct"])
    if cost_pct >= cfg.critical_time_pct:
        severity = Severity.CRITICAL
    elif cost_pct >= cfg.warning_time_pct:
        severity = Severity.WARNING
    else:
        severity = Severity.INFO
    rank = int(row["rank"])
    n, total_bytes = int(row["copies"]), int(row["bytes"])
    gpu_ns, api_ns = int(row["gpu_ns"]), int(row["api_ns"] or 0)
    directions = sorted(set(copies["kind"].drop_nulls().to_list()))
    summary = (
        f"Rank {rank} makes {n} {'/'.join(directions) or 'host-device'} copies from or to "
        f"pageable host memory ({fmt.size(total_bytes)}) that blocked the CPU "
        f"{api_ns / 1e6:.2f} ms ({float(row['cost_pct']):.2f}% of the window); their own GPU "
        "copy time is "
        f"{gpu_ns / 1e6:.2f} ms."
    )
    if cold_ns:
        summary += (
            f" {cold_ns / 1e6:.2f} ms of the blocked time is a one-time cost of the first "
            f"step (see `cold-start`); the steady-state cost is {steady_ns / 1e6:.2f} ms "
            f"({cost_pct:.2f}% of the window)."
        )
    return Finding(
        rule_id=PageableMemcpy.id,
        severity=severity,
        title=PageableMemcpy.title,
        summary=summary,
        evidence={
            "rank": rank,
            "copies": n,
            "bytes": total_bytes,
            "median_copy_bytes": int(copies.select(pl.col("bytes").median()).item()),
            "gpu_copy_ns": gpu_ns,
            "cpu_blocked_ns": api_ns,
            "cpu_blocked_pct": round(cost_pct, 3),
            "cold_start_blocked_ns": cold_ns,
            "api_ns": api_ns,
            "ledger_cited": "blocking_copy",
            "window_ns": int(row["window_ns"] or 0),
            "ranks_with_pageable_copies": ranks,
        },
        recommendation=_recommendation(copies, loader),
        scope=Scope(
            rank=rank,
            start_ns=int(copies.select(pl.col("start_ns").min()).item()),
            end_ns=int(copies.select((pl.col("start_ns") + pl.col("dur_ns")).max()).item()),
        ),
        impact_ns=api_ns,
        table=_table(copies, cfg.top_rows),
    )


_TINY_BYTES = 4_096


def _recommendation(copies: pl.DataFrame, loader: bool = False) -> str:
    """Pinned staging for real transfers; on-device creation for tiny scalar uploads. The
    DataLoader's ``pin_memory`` is named only where the trace shows a DataLoader."""
    batches = "`DataLoader(..., pin_memory=True)` for input batches, " if loader else ""
    tensors = "other host tensors" if loader else "host tensors"
    pinned = (
        f"Copy through pinned host memory: {batches}"
        "`tensor.pin_memory()` (or a reused `torch.empty(..., pin_memory=True)` "
        f"staging buffer) for {tensors}, then `.to(device, non_blocking=True)` so "
        "the copy runs asynchronously and overlaps compute"
    )
    median = copies.select(pl.col("bytes").median()).item() or 0
    if median <= _TINY_BYTES:
        return (
            "Most of these copies are tiny (scalars or small tensors built on the host): "
            "create them on the GPU (`torch.full(..., device=...)`, `torch.as_tensor` once "
            "outside the loop) or keep them there; for larger transfers: "
            + pinned[0].lower()
            + pinned[1:]
            + "."
        )
    return pinned + "."


def _table(copies: pl.DataFrame, top_rows: int) -> EvidenceTable:
    """Copies grouped by direction, memory kinds and launching op, most time first."""
    grouped = (
        copies.with_columns(
            pl.concat_str(
                pl.col("src_mem").fill_null("?"), pl.lit(" -> "), pl.col("dst_mem").fill_null("?")
            ).alias("memory"),
            pl.col("op").fill_null("(unknown)"),
            pl.col("under").fill_null("(unknown)"),
            pl.col("kind").fill_null("?"),
        )
        .group_by("kind", "memory", "op", "under")
        .agg(
            pl.len().alias("copies"),
            pl.col("bytes").sum().alias("bytes"),
            pl.col("dur_ns").sum().alias("gpu_ns"),
            pl.col("api_ns").sum().alias("api_ns"),
        )
        .sort(
            ["gpu_ns", "copies", "kind", "op", "under"],
            descending=[True, True, False, False, False],
        )
        .head(top_rows)
    )
    rows: list[list[str | int | float | None]] = [
        [
            str(r["kind"]),
            str(r["memory"]),
            str(r["op"]),
            str(r["under"]),
            int(r["copies"]),
            _mb(int(r["bytes"])),
            round(int(r["gpu_ns"]) / 1e6, 3),
            round(int(r["api_ns"] or 0) / 1e6, 3),
            _gbps(int(r["bytes"]), int(r["gpu_ns"])),
        ]
        for r in grouped.iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=[
            "kind",
            "memory",
            "CPU op",
            "under",
            "copies",
            "MB",
            "GPU ms",
            "CPU call ms",
            "GB/s",
        ],
        rows=rows,
    )


def _mb(n_bytes: int) -> float:
    """Bytes as MB (`fmt.MB`), rounded for display (3 decimals for small amounts)."""
    return round(n_bytes / fmt.MB, 3)


def _gbps(n_bytes: int, dur_ns: int) -> float | None:
    """Achieved bandwidth in GB/s (10^9 bytes per second), None for zero time."""
    return round(n_bytes / dur_ns, 2) if dur_ns > 0 else None
