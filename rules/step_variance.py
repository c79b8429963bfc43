"""`step-variance`: step times vary much more than a steady step loop's should.

The coefficient of variation (standard deviation over mean) of each rank's step times.
Step time is each step's own (`analyzer.metrics.steps`): the longer of its CPU time net of
waiting on GPU work it did not launch and the GPU busy time of the work it launched. Window
based step times mislead when the host runs ahead of the GPU (a step's window takes in the
previous step's work) or the first step waits for work queued before profiling; charging
each step with its own work, equal steps measure equal.
The first profiled step is left out when the rank has enough steps, because one-time warm-up is
`cold-start`'s finding and would otherwise dominate the variance. To point at the periodic
work that usually causes it (checkpointing, logging, evaluation, garbage collection), the
finding compares the slowest step with the median step op by op: the top-level CPU ops
(direct children of the ``ProfilerStep#N`` annotation) that took the most extra time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import steps as step_metrics
from gpu_trace_analyzer.metrics import timeline
from gpu_trace_analyzer.metrics.workload import workload_profile
from gpu_trace_analyzer.rules.base import RuleConfig, register

_STEP_PATTERN = r"^ProfilerStep#"
_MAX_TABLE_ROWS = 12
_TOP_OPS = 3
_NAME_CHARS = 100


@dataclass(frozen=True, slots=True)
class StepVarianceConfig(RuleConfig):
    """Thresholds of `step-variance`."""

    warning_cv_pct: float = 10.0
    """Coefficient of variation of step time (std / mean, %) at which the rule warns."""
    critical_cv_pct: float = 30.0
    """Coefficient of variation at which the finding is critical."""
    min_steps: int = 3
    """Fewest steps (after leaving out the first) needed to judge variance."""
    skip_first_step_from: int = 2
    """Leave the first profiled step out when a rank has at least this many steps (the
    first step is cold-start's to judge; counting it here would report it twice)."""


@register
class StepVariance:
    """Coefficient of variation of step time over a threshold."""

    id: ClassVar[str] = "step-variance"
    title: ClassVar[str] = "Step time varies from step to step"
    description: ClassVar[str] = (
        "Coefficient of variation of the profiled step times per rank (first step left out "
        "when there are enough), and the ops that made the slowest step slower than the median."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"steps"})
    Config: ClassVar[type[StepVarianceConfig]] = StepVarianceConfig

    def check(self, ctx: AnalysisContext, cfg: StepVarianceConfig) -> Iterable[Finding]:
        """One finding for the rank with the highest variation, when over the threshold."""
        stats = own_step_times(ctx)
        measured = _measured_steps(stats, cfg.skip_first_step_from)
        per_rank = _variation(measured, cfg.min_steps)
        over = per_rank.filter(pl.col("cv_pct") >= cfg.warning_cv_pct)
        if over.height == 0:
            return []
        worst = over.sort(["cv_pct", "rank"], descending=[True, False]).row(0, named=True)
        rank = int(worst["rank"])
        steps = measured.filter(pl.col("rank") == rank).sort("start_ns")
        slowest = steps.sort("dur_ns", descending=True).row(0, named=True)
        median_ns = int(worst["median_ns"])
        median_busy_ns = int(steps["gpu_busy_ns"].median() or 0)  # type: ignore[arg-type]
        slow_limit = median_ns * (1.0 + cfg.warning_cv_pct / 100.0)
        slow_steps = steps.filter(pl.col("dur_ns") >= slow_limit)["step"].sort().to_list()
        slow_outlier = bool(slow_steps)
        extra_ns = int(slowest["dur_ns"]) - median_ns
        gpu_side = int(slowest["gpu_busy_ns"]) - median_busy_ns >= 0.5 * extra_ns
        culprits = (
            _culprits(ctx, rank, steps, int(slowest["step"]), gpu_side)
            if slow_outlier
            else _Culprits("op", [])
        )
        fastest = steps.sort("dur_ns").row(0, named=True)
        severity = (
            Severity.CRITICAL if float(worst["cv_pct"]) >= cfg.critical_cv_pct else Severity.WARNING
        )
        return [
            Finding(
                rule_id=self.id,
                severity=severity,
                title=self.title,
                summary=_summary(
                    worst,
                    slowest if slow_outlier else None,
                    fastest,
                    median_busy_ns,
                    culprits,
                    per_rank.height,
                )
                + _slow_steps_clause(slow_steps)
                + _excluded_clause(stats, measured, rank),
                evidence={
                    **_evidence(worst, slowest, culprits, over.height, steps.height),
                    "slow_steps": ", ".join(str(s) for s in slow_steps),
                },
                recommendation=_recommendation(
                    culprits,
                    extra_ns if slow_outlier else 0,
                    _period(slow_steps),
                    ctx.metric("workload", workload_profile).is_training,
                ),
                scope=Scope(
                    rank=rank,
                    start_ns=int(steps["start_ns"].min()),  # type: ignore[arg-type]
                    end_ns=int(steps["end_ns"].max()),  # type: ignore[arg-type]
                ),
                impact_ns=int(
                    steps.select((pl.col("dur_ns") - median_ns).clip(lower_bound=0).sum()).item()
                ),
                table=_table(steps, median_ns, int(slowest["step"])),
            )
        ]


def own_step_times(ctx: AnalysisContext) -> pl.DataFrame:
    """Per (rank, step): the step's own time as ``dur_ns`` (`analyzer.metrics.steps`), its
    own GPU busy time, and the DataLoader time inside its CPU range."""
    loader = ctx.metric("timeline.step_stats", timeline.step_stats).select(
        "rank", "step", "dataloader_ns"
    )
    return (
        step_metrics.step_metrics(ctx)
        .with_columns(pl.col("step_ns").alias("dur_ns"))
        .join(loader, on=["rank", "step"], how="left")
        .with_columns(pl.col("dataloader_ns").fill_null(0))
    )


def _excluded_clause(stats: pl.DataFrame, measured: pl.DataFrame, rank: int) -> str:
    """Which of the rank's profiled steps the variation leaves out, and why (empty when it
    keeps them all)."""
    left_out = stats.filter(pl.col("rank") == rank).join(
        measured.select("rank", "step"), on=["rank", "step"], how="anti"
    )
    if left_out.height == 0:
        return ""
    row = left_out.sort("start_ns").row(0, named=True)
    return (
        f" Step {row['step']} ({int(row['dur_ns']) / 1e6:.1f} ms) is left out: it is the "
        "first profiled step, where one-time warm-up work runs (the `cold-start` rule "
        "judges it)."
    )


def _measured_steps(stats: pl.DataFrame, skip_first_from: int) -> pl.DataFrame:
    """Each rank's steps, without the first one when the rank has enough steps."""
    ordered = stats.sort("rank", "start_ns").with_columns(
        pl.int_range(pl.len()).over("rank").alias("_index"),
        pl.len().over("rank").alias("_count"),
    )
    keep = (pl.col("_index") > 0) | (pl.col("_count") < skip_first_from)
    return ordered.filter(keep).drop("_index", "_count")


def _variation(steps: pl.DataFrame, min_steps: int) -> pl.DataFrame:
    """Per rank: count, mean, median, population standard deviation and CV of step time."""
    return (
        steps.group_by("rank")
        .agg(
            pl.len().alias("steps"),
            pl.col("dur_ns").mean().alias("mean_ns"),
            pl.col("dur_ns").median().alias("median_ns"),
            pl.col("dur_ns").std(ddof=0).alias("std_ns"),
            pl.col("dur_ns").min().alias("min_ns"),
            pl.col("dur_ns").max().alias("max_ns"),
        )
        .filter((pl.col("steps") >= max(min_steps, 2)) & (pl.col("mean_ns") > 0))
        .with_columns((100.0 * pl.col("std_ns") / pl.col("mean_ns")).alias("cv_pct"))
    )


@dataclass(frozen=True, slots=True)
class _Culprits:
    """What grew most in the slowest step: top-level CPU ops (host-side extra time) or
    kernels (GPU-side extra time), as (name, extra ns) largest first."""

    kind: str  # "op" or "kernel"
    items: list[tuple[str, int]]


def _culprits(
    ctx: AnalysisContext, rank: int, steps: pl.DataFrame, slowest_step: int, gpu_side: bool
) -> _Culprits:
    """Kernels that grew when the extra time is GPU work, else top-level CPU ops."""
    numbers = steps.select("step")
    if gpu_side:
        return _Culprits("kernel", _excess(_kernel_time(ctx, rank, steps), numbers, slowest_step))
    return _Culprits("op", _excess(_top_level_op_time(ctx, rank, steps), numbers, slowest_step))


def _top_level_op_time(ctx: AnalysisContext, rank: int, steps: pl.DataFrame) -> pl.DataFrame:
    """Per (step, name): time of the direct children of the ``ProfilerStep#N`` annotation."""
    ops = ctx.tables.ops.filter(pl.col("rank") == rank)
    step_ops = ops.filter(
        pl.col("name").cast(pl.String).str.contains(_STEP_PATTERN)
        & (pl.col("kind").cast(pl.String) != "gpu_user_annotation")
    ).select(
        pl.col("op_id").alias("parent"),
        pl.col("name").cast(pl.String).str.extract(r"#(\d+)", 1).cast(pl.Int64).alias("step"),
    )
    step_ops = step_ops.filter(pl.col("step").is_in(steps["step"].implode()))
    children = ops.join(step_ops, on="parent", how="inner")
    return children.group_by("step", pl.col("name").cast(pl.String)).agg(pl.col("dur_ns").sum())


def _kernel_time(ctx: AnalysisContext, rank: int, steps: pl.DataFrame) -> pl.DataFrame:
    """Per (step, name): GPU time of the kernels and copies starting in the step's window."""
    events = ctx.metric("timeline.gpu_events", timeline.gpu_events).filter(pl.col("rank") == rank)
    windows = steps.select("step", pl.col("start_ns").alias("w_start"), "end_ns").rename(
        {"end_ns": "w_end"}
    )
    inside = events.join_where(  # pairs each event with the windows it starts in only
        windows, pl.col("start_ns") >= pl.col("w_start"), pl.col("start_ns") < pl.col("w_end")
    )
    return inside.group_by("step", "name").agg(pl.col("dur_ns").sum())


def _excess(
    per_step: pl.DataFrame, numbers: pl.DataFrame, slowest_step: int
) -> list[tuple[str, int]]:
    """Names whose time in the slowest step most exceeds their median over ``numbers``.

    A name absent from a step counts 0 there. Returns (name, extra ns), largest first.
    """
    if per_step.height == 0:
        return []
    grid = (
        numbers.unique()
        .join(per_step.select("name").unique(), how="cross")
        .join(per_step, on=["step", "name"], how="left")
        .with_columns(pl.col("dur_ns").fill_null(0))
    )
    medians = grid.group_by("name").agg(pl.col("dur_ns").median().alias("median_ns"))
    slow = grid.filter(pl.col("step") == slowest_step).join(medians, on="name")
    ranked = (
        slow.with_columns((pl.col("dur_ns") - pl.col("median_ns")).alias("extra_ns"))
        .filter(pl.col("extra_ns") > 0)
        .sort(["extra_ns", "name"], descending=[True, False])
        .head(_TOP_OPS)
    )
    return [(str(r["name"]), int(r["extra_ns"])) for r in ranked.iter_rows(named=True)]


def _evidence(
    worst: dict[str, Any],
    slowest: dict[str, Any],
    culprits: _Culprits,
    ranks_over: int,
    steps: int,
) -> dict[str, float | int | str]:
    """Variation figures, the slowest step, and the op or kernel that grew the most in it."""
    evidence: dict[str, float | int | str] = {
        "cv_pct": round(float(worst["cv_pct"]), 2),
        "mean_step_ns": round(float(worst["mean_ns"])),
        "median_step_ns": round(float(worst["median_ns"])),
        "std_step_ns": round(float(worst["std_ns"])),
        "min_step_ns": int(worst["min_ns"]),
        "max_step_ns": int(worst["max_ns"]),
        "steps": steps,
        "slowest_step": int(slowest["step"]),
        "ranks_over_threshold": ranks_over,
    }
    if culprits.items:
        evidence[f"top_extra_{culprits.kind}"] = culprits.items[0][0]
        evidence[f"top_extra_{culprits.kind}_ns"] = culprits.items[0][1]
    return evidence


def _summary(
    worst: dict[str, Any],
    slowest: dict[str, Any] | None,
    fastest: dict[str, Any],
    median_busy_ns: int,
    culprits: _Culprits,
    ranks: int,
) -> str:
    """One sentence: CV and range, then the outlier step and where its extra time went."""
    where = f" on rank {worst['rank']}" if ranks > 1 else ""
    median_ns = float(worst["median_ns"])
    text = (
        f"Step time varies by {worst['cv_pct']:.0f}% (coefficient of variation){where} over "
        f"{worst['steps']} steps: median {median_ns / 1e6:.1f} ms, from "
        f"{worst['min_ns'] / 1e6:.1f} to {worst['max_ns'] / 1e6:.1f} ms"
    )
    if slowest is None:
        faster = 100.0 * (median_ns - fastest["dur_ns"]) / median_ns
        return (
            text
            + f"; the spread comes from step {fastest['step']}, "
            + f"{faster:.0f}% faster than the median."
        )
    extra = slowest["dur_ns"] - median_ns
    extra_gpu = slowest["gpu_busy_ns"] - median_busy_ns
    text += (
        f"; step {slowest['step']} took {100.0 * extra / median_ns:.0f}% longer with "
        f"{slowest['gpu_busy_ns'] / 1e6:.1f} ms of GPU work against {median_busy_ns / 1e6:.1f} "
        "ms in the median step, "
    )
    if extra_gpu >= 0.5 * extra:
        text += "so the extra time is GPU work"
    else:
        text += "so the extra time is on the host"
    if culprits.items:
        name, extra_ns = culprits.items[0]
        text += (
            f" ({culprits.kind} `{_short(name)}` ran {extra_ns / 1e6:.2f} ms longer than "
            "its median)"
        )
    return text + "."


def _short(name: str) -> str:
    """A kernel or op name cut to a readable length."""
    name = " ".join(name.split())
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


def _slow_steps_clause(slow_steps: list[int]) -> str:
    """A sentence listing the slow steps when more than one runs long, else nothing."""
    if len(slow_steps) < 2:
        return ""
    period = _period(slow_steps)
    every = f", every {period} steps" if period else ""
    return f" Slow steps: {', '.join(str(s) for s in slow_steps)}{every}."


def _period(slow_steps: list[int]) -> int | None:
    """The common spacing of the slow steps when there are several and it is over 1."""
    gaps = {b - a for a, b in itertools.pairwise(slow_steps)}
    if len(slow_steps) < 2 or len(gaps) != 1:
        return None
    gap = gaps.pop()
    return gap if gap > 1 else None


def _recommendation(
    culprits: _Culprits, extra_ns: int, period: int | None = None, training: bool = False
) -> str:
    """Look for periodic work; name the ops that grew, or contention when none stands out.
    Training vocabulary (checkpoints, gradient accumulation) only for a training trace."""
    if training:
        text = (
            "Find the work that runs only on some steps (checkpoint saving, logging or metric "
            "syncs every N steps, evaluation, Python garbage collection, dataloader worker "
            "restarts) and move it off the training loop: save checkpoints asynchronously "
            "(torch.distributed.checkpoint.async_save), log every N steps without .item() "
            "syncs, and call gc.freeze() after setup or gc.collect() at fixed intervals."
        )
    else:
        text = (
            "Find the work that runs only on some steps (logging or metric syncs every N "
            "steps, cache or batch reshaping, Python garbage collection, input workers "
            "restarting) and move it off the step loop: log every N steps without .item() "
            "syncs, and call gc.freeze() after setup or gc.collect() at fixed intervals."
        )
    if period:
        boundaries = "gradient-accumulation boundaries, " if training else ""
        text = (
            f"The slow steps recur every {period} steps: look first for work on that period "
            f"(logging, metrics, {boundaries}alternating batch shapes). " + text
        )
    if not culprits.items:
        return text
    names = ", ".join(f"`{_short(n)}` (+{e / 1e6:.2f} ms)" for n, e in culprits.items)
    lead = f"Start with the {culprits.kind}s that grew in the slowest step: {names}."
    if culprits.kind == "kernel":
        lead += (
            " The step did more GPU work: check whether its batch was larger (variable "
            "sequence lengths: bucket or pad to fixed shapes) or it ran extra work (evaluation, "
            "a different code path)."
        )
    elif extra_ns > 0 and culprits.items[0][1] < 0.5 * extra_ns:
        lead += (
            " No single op explains most of the extra time, which points at a pause or CPU "
            "contention (garbage collection, DataLoader workers or other processes competing "
            "for the cores) rather than one op."
        )
    return f"{lead} {text}"


def _table(steps: pl.DataFrame, median_ns: int, slowest_step: int) -> EvidenceTable:
    """Per step: time, deviation from the median, GPU busy and DataLoader time."""
    rows: list[list[str | int | float | None]] = [
        [
            f"step {r['step']}" + (" (slowest)" if r["step"] == slowest_step else ""),
            round(r["dur_ns"] / 1e6, 3),
            round(100.0 * (r["dur_ns"] - median_ns) / median_ns, 1) if median_ns else None,
            round(r["gpu_busy_ns"] / 1e6, 3),
            round(r["dataloader_ns"] / 1e6, 3),
        ]
        for r in steps.head(_MAX_TABLE_ROWS).iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=[
            "step",
            "step time (ms)",
            "vs median (%)",
            "GPU busy (ms)",
            "DataLoader (ms)",
        ],
        rows=rows,
    )
