"""`cold-start`: the first profiled step is much slower than the steady state.

Step times are each step's own (`analyzer.metrics.steps`: the longer of its CPU time net
of waiting on work it did not launch and the GPU busy time of the work it launched), so a
first step that only waits for work queued before profiling, or a GPU catching up with a
host that runs ahead, is not a cold start: the first step must be slower *in its own work*.
A first step that pays for one-time work (cuDNN autotuning with ``benchmark=True``,
``torch.compile`` compilation, CUDA context and allocator growth, lazy module init) inflates
every average taken over the profiled steps. The rule compares the first profiled step of
each rank with the median of the rank's other steps, and says whether the extra time was
spent on the GPU or on the CPU side (the GPU busy time of both steps).

A one-time blocking call in the first step (`host_blocking.first_step_outliers`: e.g. the
first pageable input copy, 40 ms against 3.1 ms for the later steps' input copies) is a
cold-start cost too, even when the whole step stays under the ratio: the finding names it,
so that host-sync and pageable-memcpy can count it out of their steady-state cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import host_blocking
from gpu_trace_analyzer.metrics import steps as step_metrics
from gpu_trace_analyzer.rules.base import RuleConfig, register

_MAX_TABLE_ROWS = 10


@dataclass(frozen=True, slots=True)
class ColdStartConfig(RuleConfig):
    """Thresholds of `cold-start`."""

    warning_ratio: float = 1.5
    """First step time over the median of the other steps at which the rule warns."""
    min_steps: int = 3
    """Fewest profiled steps (first included) a rank needs for a steady-state median."""
    min_excess_ms: float = 1.0
    """Extra time of the first step, over the median, below which nothing is reported."""


@register
class ColdStart:
    """First profiled step much slower than the median of the others."""

    id: ClassVar[str] = "cold-start"
    title: ClassVar[str] = "First profiled step much slower than the others"
    description: ClassVar[str] = (
        "Compares each rank's first profiled step with the median of its other steps; "
        "one-time warm-up work in the profiled window skews every average over the steps."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"steps"})
    Config: ClassVar[type[ColdStartConfig]] = ColdStartConfig

    def check(self, ctx: AnalysisContext, cfg: ColdStartConfig) -> Iterable[Finding]:
        """One finding for the rank whose first step exceeds its median the most."""
        stats = step_metrics.step_metrics(ctx).with_columns(pl.col("step_ns").alias("dur_ns"))
        per_rank = _first_vs_median(stats, cfg.min_steps)
        over = per_rank.filter(
            (pl.col("ratio") >= cfg.warning_ratio)
            & (pl.col("excess_ns") >= cfg.min_excess_ms * 1e6)
        )
        calls = host_blocking.first_step_outliers(ctx)
        if over.height == 0:
            return [_call_finding(calls)] if calls.height else []
        worst = over.sort(["excess_ns", "rank"], descending=[True, False]).row(0, named=True)
        rank = int(worst["rank"])
        steps = stats.filter(pl.col("rank") == rank).sort("start_ns")
        return [
            Finding(
                rule_id=self.id,
                severity=Severity.WARNING,
                title=self.title,
                summary=_summary(worst, per_rank.height)
                + _calls_clause(calls.filter(pl.col("rank") == rank)),
                evidence=_evidence(worst, int(steps["dur_ns"].sum()), over.height),
                recommendation=_recommendation(worst),
                scope=Scope(
                    rank=rank,
                    start_ns=int(worst["first_start_ns"]),
                    end_ns=int(worst["first_end_ns"]),
                ),
                impact_ns=int(worst["excess_ns"]),
                table=_table(steps, int(worst["median_ns"])),
            )
        ]


def _calls_clause(calls: pl.DataFrame) -> str:
    """The one-time blocking calls of the first step, as a sentence (empty without any)."""
    if calls.height == 0:
        return ""
    top = calls.sort("excess_ns", descending=True).row(0, named=True)
    op = "" if top["op"] == host_blocking.NO_OP else f" in {top['op']}"
    more = f" (and {calls.height - 1} more call(s))" if calls.height > 1 else ""
    return (
        f" One-time blocking call{more}: the first step's {top['api']}{op} took "
        f"{int(top['dur_ns']) / 1e6:.2f} ms against a median {int(top['median_ns']) / 1e6:.2f} "
        "ms for the same call (same site, same place in the step) in the later steps, with "
        f"the GPU idle "
        f"{int(top['idle_ns']) / 1e6:.2f} ms inside it; this is a cold-start cost, not a "
        "steady-state one."
    )


def _call_finding(calls: pl.DataFrame) -> Finding:
    """Cold start seen only in one-time blocking calls of the first step (the step as a
    whole stays under the ratio): informational, the cost is paid once."""
    top = calls.sort("excess_ns", descending=True).row(0, named=True)
    excess = int(calls["excess_ns"].sum())
    return Finding(
        rule_id=ColdStart.id,
        severity=Severity.INFO,
        title=ColdStart.title,
        summary=(
            f"Step {top['step']} (the first profiled step) pays a one-time cost of "
            f"{excess / 1e6:.1f} ms in blocking call(s) that are much faster later."
            + _calls_clause(calls)
        ),
        evidence={
            "first_step": int(top["step"]),
            "cold_calls": calls.height,
            "cold_call_api": str(top["api"]),
            "cold_call_op": str(top["op"]),
            "cold_call_ns": int(top["dur_ns"]),
            "steady_call_median_ns": int(top["median_ns"]),
            "cold_call_excess_ns": excess,
            "cold_call_gpu_idle_ns": int(calls["idle_ns"].sum()),
        },
        recommendation=(
            "Leave warm-up iterations out of the profiled window and of any timing "
            "(torch.profiler.schedule(wait=1, warmup=2, active=N)): the first copy or sync "
            "pays for staging-buffer and allocator growth, lazy initialization and the first "
            "batch's loading once. Judge the copies by the later steps."
        ),
        scope=Scope(
            rank=int(top["rank"]), start_ns=int(top["start_ns"]), end_ns=int(top["end_ns"])
        ),
        impact_ns=excess,
    )


def _first_vs_median(stats: pl.DataFrame, min_steps: int) -> pl.DataFrame:
    """Per rank: the first step's time and GPU busy time against the median of the rest."""
    ordered = stats.sort("rank", "start_ns")
    rest = pl.col("dur_ns").slice(1)
    return (
        ordered.group_by("rank", maintain_order=True)
        .agg(
            pl.len().alias("steps"),
            pl.col("step").first().alias("first_step"),
            pl.col("start_ns").first().alias("first_start_ns"),
            pl.col("end_ns").first().alias("first_end_ns"),
            pl.col("dur_ns").first().alias("first_ns"),
            pl.col("gpu_busy_ns").first().alias("first_busy_ns"),
            rest.median().alias("median_ns"),
            pl.col("gpu_busy_ns").slice(1).median().alias("median_busy_ns"),
        )
        .filter((pl.col("steps") >= max(min_steps, 2)) & (pl.col("median_ns") > 0))
        .with_columns(
            (pl.col("first_ns") / pl.col("median_ns")).alias("ratio"),
            (pl.col("first_ns") - pl.col("median_ns")).alias("excess_ns"),
        )
    )


def _evidence(
    worst: dict[str, Any], total_ns: int, ranks_over: int
) -> dict[str, float | int | str]:
    """The first step against the steady state, and how much it skews the mean."""
    excess_ns = int(worst["excess_ns"])
    return {
        "first_step": int(worst["first_step"]),
        "first_step_ns": int(worst["first_ns"]),
        "median_step_ns": int(worst["median_ns"]),
        "ratio": round(float(worst["ratio"]), 3),
        "excess_ns": excess_ns,
        "excess_share_of_steps_pct": round(100.0 * excess_ns / total_ns, 2) if total_ns else 0.0,
        "first_step_gpu_busy_ns": int(worst["first_busy_ns"]),
        "median_step_gpu_busy_ns": int(worst["median_busy_ns"]),
        "steps": int(worst["steps"]),
        "ranks_over_threshold": ranks_over,
    }


def _gpu_share_of_excess(worst: dict[str, Any]) -> float:
    """Fraction of the extra time that is extra GPU busy time (0 when the GPU did less)."""
    excess = float(worst["excess_ns"])
    extra_busy = float(worst["first_busy_ns"]) - float(worst["median_busy_ns"])
    return max(0.0, min(1.0, extra_busy / excess)) if excess > 0 else 0.0


def _summary(worst: dict[str, Any], ranks: int) -> str:
    """One sentence: first vs median, with the GPU/CPU split of the extra time."""
    where = f" on rank {worst['rank']}" if ranks > 1 else ""
    gpu_pct = 100.0 * _gpu_share_of_excess(worst)
    return (
        f"The first profiled step (step {worst['first_step']}){where} took "
        f"{worst['first_ns'] / 1e6:.1f} ms, {worst['ratio']:.1f}x the median of the other "
        f"{int(worst['steps']) - 1} steps ({worst['median_ns'] / 1e6:.1f} ms); "
        f"{gpu_pct:.0f}% of the extra {worst['excess_ns'] / 1e6:.1f} ms is extra GPU work."
    )


def _recommendation(worst: dict[str, Any]) -> str:
    """Exclude warm-up from measurements; name the likely one-time work by where it ran."""
    schedule = (
        "Leave warm-up iterations out of the profiled window and of any timing "
        "(torch.profiler.schedule(wait=1, warmup=2, active=N), or drop the first steps from "
        "measurements)."
    )
    if _gpu_share_of_excess(worst) >= 0.5:
        cause = (
            " The extra time is GPU work: with torch.backends.cudnn.benchmark=True the first "
            "step autotunes convolution algorithms, and first calls may run one-time "
            "initialization kernels; both are expected once and must not be measured."
        )
    else:
        cause = (
            " The extra time is on the CPU side: torch.compile compilation, lazy module or "
            "CUDA context initialization, and caching-allocator growth all happen in the "
            "first iterations; if it recurs after warm-up (recompilations), check "
            "TORCH_LOGS=recompiles."
        )
    return schedule + cause


def _table(steps: pl.DataFrame, median_ns: int) -> EvidenceTable:
    """The rank's steps in order, with their time relative to the steady-state median."""
    rows: list[list[str | int | float | None]] = [
        [
            f"step {r['step']}",
            round(r["dur_ns"] / 1e6, 3),
            round(r["dur_ns"] / median_ns, 2) if median_ns else None,
            round(r["gpu_busy_ns"] / 1e6, 3),
        ]
        for r in steps.head(_MAX_TABLE_ROWS).iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=["step", "step time (ms)", "x median of the others", "GPU busy (ms)"],
        rows=rows,
    )
