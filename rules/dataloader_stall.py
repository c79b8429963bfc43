"""`dataloader-stall`: the training loop waits on the input pipeline.

The share is tb_plugin's: time inside ``enumerate(DataLoader)...__next__`` annotations within
each profiled step, over the step's wall time (tb_plugin's device-aware step time, see
`analyzer.metrics.timeline.step_times`); tb_plugin's 5% recommendation threshold is the default.
Waiting on the loader only costs time when the GPU has nothing queued, so the finding also
says how much of the loader time the GPU sat idle: a loader that runs while the GPU is still
busy with the previous step is hidden, and the finding drops to info.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl

from analyzer.context import AnalysisContext
from analyzer.findings import EvidenceTable, Finding, Scope, Severity
from analyzer.metrics import timeline
from rules.base import RuleConfig, register

_LOADER_PATTERN = r"^enumerate\(DataLoader\)"
_SINGLE_PROCESS = "_SingleProcessDataLoaderIter"
_MAX_TABLE_ROWS = 12


@dataclass(frozen=True, slots=True)
class DataloaderStallConfig(RuleConfig):
    """Thresholds of `dataloader-stall`."""

    warning_share_pct: float = 5.0
    """DataLoader time as % of step time above which the rule warns (tb_plugin's 5%)."""
    critical_share_pct: float = 25.0
    """DataLoader time as % of step time above which the finding is critical."""
    hidden_gpu_busy_pct: float = 80.0
    """If the GPU was busy for at least this % of the loader time, the wait is hidden
    behind GPU work and the finding is only informational."""


@register
class DataloaderStall:
    """DataLoader ``__next__`` time over a share of step time."""

    id: ClassVar[str] = "dataloader-stall"
    title: ClassVar[str] = "Training steps wait on the DataLoader"
    description: ClassVar[str] = (
        "Time spent in `enumerate(DataLoader)...__next__` as a share of the profiled steps' "
        "wall time (tb_plugin's definition), with the part of it during which the GPU was idle."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"steps", "ops"})
    Config: ClassVar[type[DataloaderStallConfig]] = DataloaderStallConfig

    def check(self, ctx: AnalysisContext, cfg: DataloaderStallConfig) -> Iterable[Finding]:
        """One finding for the worst rank when its DataLoader share is over the threshold."""
        stats = ctx.metric("timeline.step_times", timeline.step_times)
        if stats.height == 0 or int(stats["dataloader_ns"].sum()) == 0:
            return []
        per_rank = _per_rank(stats)
        worst = per_rank.row(0, named=True)
        share_pct = float(worst["share_pct"])
        if share_pct <= cfg.warning_share_pct:
            return []
        rank = int(worst["rank"])
        loader_ns = int(worst["dataloader_ns"])
        idle_ns = _gpu_idle_during_loader(ctx, rank)
        idle_pct = 100.0 * idle_ns / loader_ns if loader_ns else 0.0
        severity = _severity(share_pct, 100.0 - idle_pct, cfg)
        steps = stats.filter(pl.col("rank") == rank)
        iterator = _iterator_name(ctx, rank)
        return [
            Finding(
                rule_id=self.id,
                severity=severity,
                title=self.title,
                summary=_summary(worst, idle_pct, len(per_rank), severity),
                evidence={
                    "dataloader_share_pct": round(share_pct, 2),
                    "dataloader_ns": loader_ns,
                    "step_time_ns": int(worst["dur_ns"]),
                    "steps": int(worst["steps"]),
                    "dataloader_per_step_ns": loader_ns // max(int(worst["steps"]), 1),
                    "max_step_share_pct": round(float(worst["max_step_share_pct"]), 2),
                    "gpu_idle_during_dataloader_ns": idle_ns,
                    "gpu_idle_during_dataloader_pct": round(idle_pct, 2),
                    "ranks_over_threshold": int(
                        (per_rank["share_pct"] > cfg.warning_share_pct).sum()
                    ),
                    "iterator": iterator,
                },
                recommendation=_recommendation(iterator),
                scope=Scope(
                    rank=rank,
                    start_ns=int(steps["start_ns"].min()),  # type: ignore[arg-type]
                    end_ns=int(steps["end_ns"].max()),  # type: ignore[arg-type]
                ),
                impact_ns=idle_ns,
                table=_table(steps),
            )
        ]


def _per_rank(stats: pl.DataFrame) -> pl.DataFrame:
    """DataLoader share per rank, worst first."""
    return (
        stats.with_columns(
            (100.0 * pl.col("dataloader_ns") / pl.col("dur_ns")).alias("step_share_pct")
        )
        .group_by("rank")
        .agg(
            pl.col("dataloader_ns").sum(),
            pl.col("dur_ns").sum(),
            pl.len().alias("steps"),
            pl.col("step_share_pct").max().alias("max_step_share_pct"),
        )
        .with_columns((100.0 * pl.col("dataloader_ns") / pl.col("dur_ns")).alias("share_pct"))
        .sort(["share_pct", "rank"], descending=[True, False])
    )


def _loader_intervals(ctx: AnalysisContext, rank: int) -> pl.DataFrame:
    """The rank's DataLoader annotations inside its profiled steps, merged."""
    steps = ctx.tables.steps.filter(pl.col("rank") == rank)
    first, last = steps["start_ns"].min(), steps["end_ns"].max()
    ops = ctx.tables.ops.filter(
        (pl.col("rank") == rank)
        & pl.col("name").cast(pl.String).str.contains(_LOADER_PATTERN)
        & (pl.col("start_ns") < last)
        & (pl.col("start_ns") + pl.col("dur_ns") > first)
    ).select(
        pl.max_horizontal("start_ns", pl.lit(first)).alias("start_ns"),
        pl.min_horizontal(pl.col("start_ns") + pl.col("dur_ns"), pl.lit(last)).alias("end_ns"),
    )
    return timeline.merge_intervals(ops, [])


def _gpu_idle_during_loader(ctx: AnalysisContext, rank: int) -> int:
    """Nanoseconds of DataLoader time during which no GPU event of the rank ran."""
    loader = _loader_intervals(ctx, rank)
    total = int((loader["end_ns"] - loader["start_ns"]).sum()) if loader.height else 0
    events = ctx.metric("timeline.gpu_intervals", timeline.gpu_intervals).filter(
        pl.col("rank") == rank
    )
    if total == 0 or events.height == 0:
        return total
    busy = timeline.merge_intervals(events, []).rename(
        {"start_ns": "start_ns_gpu", "end_ns": "end_ns_gpu"}
    )
    overlap = (  # an inequality join pairs only overlapping intervals (no loader x GPU grid)
        loader.join_where(
            busy,
            pl.col("start_ns_gpu") < pl.col("end_ns"),
            pl.col("end_ns_gpu") > pl.col("start_ns"),
        )
        .select(
            (
                pl.min_horizontal("end_ns", "end_ns_gpu")
                - pl.max_horizontal("start_ns", "start_ns_gpu")
            ).sum()
        )
        .item()
    )
    return total - int(overlap or 0)


def _iterator_name(ctx: AnalysisContext, rank: int) -> str:
    """The DataLoader iterator class as the annotation names it (tells num_workers=0 apart)."""
    names = (
        ctx.tables.ops.filter(
            (pl.col("rank") == rank) & pl.col("name").cast(pl.String).str.contains(_LOADER_PATTERN)
        )["name"]
        .cast(pl.String)
        .unique()
        .sort()
        .to_list()
    )
    for name in names:
        if "#" in name:
            return str(name).split("#", 1)[1].split(".", 1)[0]
    return ""


def _severity(share_pct: float, busy_pct: float, cfg: DataloaderStallConfig) -> Severity:
    """Critical / warning by share; info when the GPU stayed busy through the loader."""
    if busy_pct >= cfg.hidden_gpu_busy_pct:
        return Severity.INFO
    return Severity.CRITICAL if share_pct > cfg.critical_share_pct else Severity.WARNING


def _summary(worst: dict[str, Any], idle_pct: float, ranks: int, severity: Severity) -> str:
    """One sentence with the share, the time per step and whether the GPU waited."""
    steps = max(int(str(worst["steps"])), 1)
    per_step_ms = int(str(worst["dataloader_ns"])) / steps / 1e6
    step_ms = int(str(worst["dur_ns"])) / steps / 1e6
    where = f" on rank {worst['rank']}" if ranks > 1 else ""
    tail = (
        "mostly hidden behind GPU work still running"
        if severity is Severity.INFO
        else "and the GPU sat idle"
    )
    return (
        f"Fetching the next batch takes {float(str(worst['share_pct'])):.1f}% of step time"
        f"{where} ({per_step_ms:.1f} ms of a {step_ms:.1f} ms step on average), "
        f"{tail} for {idle_pct:.0f}% of it."
    )


def _recommendation(iterator: str) -> str:
    """The fix, specific to a single-process loader when that is what ran."""
    common = (
        "set pin_memory=True with non_blocking=True copies, persistent_workers=True and "
        "prefetch_factor >= 2; if the wait persists, profile the dataset's __getitem__ "
        "(decoding, augmentation) and move that work to the GPU (e.g. NVIDIA DALI) or to "
        "offline preprocessing."
    )
    if iterator == _SINGLE_PROCESS:
        return (
            "The DataLoader runs in the training process (num_workers=0): give it worker "
            "processes (num_workers of about the CPU cores per GPU, e.g. 4-8), and " + common
        )
    return "Raise DataLoader num_workers until the wait disappears, and " + common


def _table(steps: pl.DataFrame) -> EvidenceTable:
    """Per step: wall time, DataLoader time, share."""
    rows: list[list[str | int | float | None]] = [
        [
            f"step {r['step']}",
            round(r["dur_ns"] / 1e6, 3),
            round(r["dataloader_ns"] / 1e6, 3),
            round(100.0 * r["dataloader_ns"] / r["dur_ns"], 1) if r["dur_ns"] else 0.0,
        ]
        for r in steps.sort("start_ns").head(_MAX_TABLE_ROWS).iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=["step", "step time (ms)", "DataLoader (ms)", "DataLoader share (%)"],
        rows=rows,
    )
