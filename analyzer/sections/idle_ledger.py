"""The idle ledger, shown once: per device, every idle nanosecond under one cause; and the
warning for GPU work queued before profiling."""

from __future__ import annotations

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics import idle_ledger, steps
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.model import Block, Cell, Code, Paragraph, Section, Strong, Table

#: Devices shown one table each; more are summed in one table per cause.
MAX_DEVICE_TABLES = 4


def build(ctx: AnalysisContext, charts: bool = False) -> Section | None:
    """The "Idle time by cause" section, or None for a trace without GPU idle time."""
    del charts  # no charts
    if ctx.tables.kernels.height + ctx.tables.memops.height == 0:
        return None
    blocks: list[Block] = [*_queued_warning(ctx), *_basis(ctx)]
    rows = idle_ledger.by_cause(ctx)
    if rows.height:
        blocks.append(
            Paragraph.of(
                "Every idle nanosecond of each device is charged to exactly one cause, the "
                "first that holds in this order: the GPU holding launched work that has not "
                "started (a cross-stream/event dependency; counted from 50 us after the launch "
                "call returns, in gaps of 30 us or more), the wait after work queued before "
                "profiling, "
                "a host synchronization (sync call or .item()), a blocking copy, the "
                "DataLoader, a collective on the host, launch overhead (gaps under 30 us "
                "between GPU operations), CPU work in a named op or Python frame, other. "
                "Rows sum to the device's idle time; findings cite these rows and never claim "
                "the same one twice."
            )
        )
        devices = rows.select("rank", "device").unique(maintain_order=True)
        if devices.height <= MAX_DEVICE_TABLES:
            for rank, device in devices.iter_rows():
                mine = rows.filter((pl.col("rank") == rank) & (pl.col("device") == device))
                blocks.append(Paragraph.of(Strong(f"Rank {rank}, device {device}")))
                blocks.append(_table(mine))
            blocks.extend(_cold_start_split(ctx))
        else:
            blocks.append(
                Paragraph.of(f"{devices.height} devices: totals over all of them (ms summed).")
            )
            blocks.append(_table(_summed(rows)))
    if not blocks:
        return None
    return Section("Idle time by cause", blocks, key="idle_ledger")


def _table(rows: pl.DataFrame) -> Table:
    """One device's ledger (or the sum over devices) with a total row."""
    total = int(rows["idle_ns"].sum())
    body: list[list[Cell]] = [
        [
            idle_ledger.CAUSE_LABELS[str(r["cause"])],
            fmt.ms(r["idle_ns"]),
            fmt.pct(100.0 * r["idle_ns"] / total if total else 0.0),
            fmt.pct(r["window_pct"]),
            Code(str(r["top_detail"])[:100]) if r["top_detail"] else "",
        ]
        for r in rows.iter_rows(named=True)
    ]
    window_pct = float(rows["window_pct"].sum())
    body.append(["idle total", fmt.ms(total), fmt.pct(100.0), fmt.pct(window_pct), ""])
    return Table(
        ["cause", "idle ms", "% of idle", "% of window", "most of it in (op, frame or call)"],
        body,
        numeric=[False, True, True, True, False],
    )


def _summed(rows: pl.DataFrame) -> pl.DataFrame:
    """The ledger summed over devices (window share averaged over devices)."""
    devices = rows.select("rank", "device").unique().height
    order = {c: i for i, c in enumerate(idle_ledger.CAUSES)}
    return (
        rows.group_by("cause")
        .agg(
            pl.col("idle_ns").sum(),
            (pl.col("window_pct").sum() / devices).alias("window_pct"),
            pl.col("top_detail").sort_by("top_detail_ns", descending=True).first(),
        )
        .with_columns(pl.col("cause").replace_strict(order, return_dtype=pl.Int32).alias("_o"))
        .sort("_o")
        .drop("_o")
    )


def _queued_warning(ctx: AnalysisContext) -> list[Block]:
    """The one warning about GPU work queued before profiling, with its count and time."""
    queued = steps.queued_before_profiling(ctx.tables)
    if queued.height == 0:
        return []
    ops = int(queued["ops"].sum())
    gpu_ns = int(queued["gpu_ns"].sum())
    where = ", ".join(f"rank {r} device {d}" for r, d in queued.select("rank", "device").rows())
    total = ctx.tables.kernels.height + ctx.tables.memops.height
    return [
        Paragraph.of(
            Strong("Warning: GPU work queued before profiling."),
            f" {fmt.count(ops)} of {fmt.count(total)} GPU operations ({fmt.duration(gpu_ns)} of "
            f"GPU time, on {where}) have no launching call in the trace: they were queued "
            "before the profiler started (a warm-up step it did not record). They belong to "
            "no profiled step and are kept out of step times, the roofline and the "
            "top-kernel tables. Start the profiler after a warm-up step (",
            Code("torch.profiler.schedule(wait=1, warmup=1, active=N)"),
            ") to leave them out.",
        )
    ]


def _basis(ctx: AnalysisContext) -> list[Block]:
    """How GPU work was charged to steps."""
    acc = steps.step_metrics(ctx)
    if acc.height == 0:
        return []
    basis = set(acc["basis"].drop_nulls().to_list())
    words = (
        "the step's GPU-side annotations (`gpu_user_annotation` ProfilerStep#N, which agree "
        "with the launches)"
        if basis == {"gpu_user_annotation"}
        else "the step whose CPU range launched it (correlation id -> runtime call -> "
        "ProfilerStep#N)"
    )
    return [Paragraph.from_prose(f"Step accounting: each GPU operation is charged to {words}.")]


def _cold_start_split(ctx: AnalysisContext) -> list[Block]:
    """One line per rank whose blocking rows hold one-time first-step calls: cold vs steady."""
    split = idle_ledger.cold_start_split(ctx)
    blocks: list[Block] = []
    for rank in split["rank"].unique(maintain_order=True).to_list():
        parts = [
            f"{idle_ledger.CAUSE_SHORT[r['cause']]} {fmt.ms(r['idle_ns'])} ms = "
            f"{fmt.ms(r['cold_ns'])} ms in one-time calls of the first profiled step (cold "
            f"start, see `cold-start`) + {fmt.ms(r['steady_ns'])} ms in the steady state"
            for r in split.filter(pl.col("rank") == rank).iter_rows(named=True)
        ]
        text = f"Rank {rank}, first step vs the rest: " + "; ".join(parts) + "."
        blocks.append(Paragraph.from_prose(text))
    return blocks
