"""`dataloader-stall`: the step loop waits on the input pipeline (or, in a Hugging Face
pipeline, on the host-side preprocessing its DataLoader runs).

The share is tb_plugin's: time inside ``enumerate(DataLoader)...__next__`` annotations within
each profiled step's CPU range, over the CPU step time (`analyzer.metrics.steps`); tb_plugin's
5% recommendation threshold is the default. Waiting on the loader only costs time when the
GPU has nothing queued: the GPU idle time during the loader is the idle ledger's
``dataloader`` row (`analyzer.metrics.idle_ledger`), which this finding claims. A loader that
runs while the GPU is still busy is hidden, and the finding drops to info. When the trace
has Python stacks, the innermost user frame inside the loader is named (image resizing,
video decoding, tokenization).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import idle_ledger, pystacks, timeline
from gpu_trace_analyzer.metrics.workload import WorkloadProfile, workload_profile
from gpu_trace_analyzer.rules.base import RuleConfig, register

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
    title: ClassVar[str] = "Steps wait on the DataLoader"
    description: ClassVar[str] = (
        "Time spent in `enumerate(DataLoader)...__next__` as a share of the profiled steps' "
        "wall time (tb_plugin's definition), with the part of it during which the GPU was idle."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"steps", "ops"})
    Config: ClassVar[type[DataloaderStallConfig]] = DataloaderStallConfig

    def check(self, ctx: AnalysisContext, cfg: DataloaderStallConfig) -> Iterable[Finding]:
        """One finding for the worst rank when its DataLoader share is over the threshold."""
        stats = ctx.metric("timeline.step_stats", timeline.step_stats)
        if stats.height == 0 or int(stats["dataloader_ns"].sum()) == 0:
            return []
        per_rank = _per_rank(stats)
        worst = per_rank.row(0, named=True)
        share_pct = float(worst["share_pct"])
        if share_pct <= cfg.warning_share_pct:
            return []
        rank = int(worst["rank"])
        loader_ns = int(worst["dataloader_ns"])
        idle_ns = idle_ledger.claimed(ctx, ("dataloader",), rank)
        idle_pct = min(100.0 * idle_ns / loader_ns, 100.0) if loader_ns else 0.0
        severity = _severity(share_pct, 100.0 - idle_pct, cfg)
        steps = stats.filter(pl.col("rank") == rank)
        iterator = _iterator_name(ctx, rank)
        profile = ctx.metric("workload", workload_profile)
        frame = _top_frame(ctx, rank)
        return [
            Finding(
                rule_id=self.id,
                severity=severity,
                title=self.title,
                summary=_summary(worst, idle_pct, len(per_rank), severity, frame),
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
                    "top_frame": frame or "",
                    **idle_ledger.claim_evidence(ctx, ("dataloader",), rank),
                },
                recommendation=_recommendation(ctx, iterator, profile, frame),
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


def _top_frame(ctx: AnalysisContext, rank: int) -> str | None:
    """The user Python frame holding most of the GPU idle time inside the loader."""
    if not pystacks.has_stacks(ctx):
        return None
    rows = idle_ledger.by_cause(ctx).filter(
        (pl.col("rank") == rank) & (pl.col("cause") == "dataloader")
    )
    if rows.height == 0:
        return None
    top = rows.sort("idle_ns", descending=True).item(0, "top_detail")
    return str(top) if top and not str(top).startswith("enumerate(DataLoader)") else None


def _summary(
    worst: dict[str, Any], idle_pct: float, ranks: int, severity: Severity, frame: str | None
) -> str:
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
    inside = f" Most of it runs in `{frame}`." if frame else ""
    return (
        f"Fetching the next batch takes {float(str(worst['share_pct'])):.1f}% of step time"
        f"{where} ({per_step_ms:.1f} ms of a {step_ms:.1f} ms step on average), "
        f"{tail} for {idle_pct:.0f}% of it.{inside}"
    )


def _recommendation(
    ctx: AnalysisContext, iterator: str, profile: WorkloadProfile, frame: str | None
) -> str:
    """The fix, specific to a single-process loader when that is what ran; for an inference
    pipeline the loader is its preprocessing, named by its Python frame."""
    if not profile.is_training and _is_hf_pipeline(ctx):
        where = f" (`{frame}`)" if frame else ""
        return (
            "This DataLoader is the Hugging Face pipeline's own: the wait is host-side "
            f"preprocessing between device steps{where}, not a num_workers setting you "
            "chose. Make the preprocessing cheaper (a fast image processor, `use_fast=True`; "
            "resize on the GPU; decode at the target size), pass `num_workers` / "
            "`batch_size` to the pipeline call so it overlaps with the device, or "
            "preprocess the inputs ahead of time."
        )
    common = (
        "set pin_memory=True with non_blocking=True copies, persistent_workers=True and "
        "prefetch_factor >= 2; if the wait persists, profile the dataset's __getitem__ "
        "(decoding, augmentation) and move that work to the GPU (e.g. NVIDIA DALI) or to "
        "offline preprocessing."
    )
    if frame:
        common = common.replace(
            "profile the dataset's __getitem__ (decoding, augmentation)",
            f"speed up `{frame}` (where the loader spends its time)",
        )
    process = "training process" if profile.is_training else "main process"
    if iterator == _SINGLE_PROCESS:
        return (
            f"The DataLoader runs in the {process} (num_workers=0): give it worker "
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


def _is_hf_pipeline(ctx: AnalysisContext) -> bool:
    """Whether the Python stacks show a Hugging Face pipeline driving the loop."""
    if not pystacks.has_stacks(ctx):
        return False
    return bool(
        ctx.tables.ops.filter(pl.col("kind") == "python_function")
        .select(timeline.table_name_matches(ctx.tables, "ops", r"^transformers/pipelines/").any())
        .item()
    )
