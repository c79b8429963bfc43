"""stragglers: one rank is slower and the others wait for it in collectives.

In synchronous data-parallel training every rank's step ends at the same collective, so
step times look alike; the slow rank shows up in *collective wait*: a collective kernel on
a fast rank starts early and spins until the last rank joins. Per collective instance
(matched across ranks by process group and sequence number, or else by the order of
communication kernels with the same name on each rank), a rank's wait is its duration minus
the shortest duration of that instance over all ranks (the TraceLens latency). The rank
with the least total wait is the one the others wait for.

Fires when the spread of collective wait (most-waiting rank minus least-waiting rank, per
step) or the spread of per-rank median step times reaches a share of the median step.
The table compares every rank on what could make one slower: step time, GPU busy and
compute time, kernel count, input-pipeline time, and collective wait.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import steps as step_metrics
from gpu_trace_analyzer.metrics import timeline
from gpu_trace_analyzer.metrics.collectives import normalize_collective
from gpu_trace_analyzer.metrics.workload import workload_profile
from gpu_trace_analyzer.rules.base import register

#: What the table compares across ranks, with the label it gets in the summary.
_COMPARED = {
    "compute_ns": "GPU compute time",
    "kernels": "kernel count",
    "dataloader_ns": "DataLoader time",
    "busy_ns": "GPU busy time",
    "idle_ns": "GPU idle time",
}


@dataclass(frozen=True, slots=True)
class StragglersConfig:
    """Thresholds of stragglers."""

    warning_spread_pct: float = 10.0
    """Spread (collective wait, or median step time) across ranks, as a share of the median
    step, that raises a warning."""
    critical_spread_pct: float = 25.0
    """Spread at which the finding becomes critical."""
    top_ranks: int = 16
    """How many ranks the table lists (the slow one, then the ones waiting most)."""


@register
class Stragglers:
    """Spread of step time and collective wait across ranks; the rank others wait for."""

    id: ClassVar[str] = "stragglers"
    title: ClassVar[str] = "One rank holds the others back"
    description: ClassVar[str] = (
        "Multi-rank traces: spread of per-rank step times and of time spent waiting inside "
        "collectives; the rank with the least wait is the one the others wait for, compared "
        "with the rest on compute, kernels, input pipeline and idle time."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"multi_rank", "kernels"})
    Config: ClassVar[type[StragglersConfig]] = StragglersConfig

    def check(self, ctx: AnalysisContext, cfg: StragglersConfig) -> Iterable[Finding]:
        """One finding naming the slow rank, when the spread is large enough."""
        ranks = rank_table(ctx)
        if ranks.height < 2:
            return
        step_ns = float(ranks.select(pl.col("step_ns").median()).item() or 0.0)
        if step_ns <= 0:
            return
        steps = max(int(ranks.select(pl.col("steps").max()).item() or 0), 1)
        wait_spread_ns = int(ranks.select(pl.col("wait_ns").max() - pl.col("wait_ns").min()).item())
        step_spread_ns = int(ranks.select(pl.col("step_ns").max() - pl.col("step_ns").min()).item())
        wait_pct = 100.0 * wait_spread_ns / steps / step_ns
        step_pct = 100.0 * step_spread_ns / step_ns
        spread_pct = max(wait_pct, step_pct)
        if spread_pct < cfg.warning_spread_pct:
            return
        severity = Severity.CRITICAL if spread_pct >= cfg.critical_spread_pct else Severity.WARNING
        world = ctx.tables.meta.world_size
        training = ctx.metric("workload", workload_profile).is_training
        yield _finding(cfg, severity, ranks, step_ns, steps, wait_pct, step_pct, world, training)


def rank_table(ctx: AnalysisContext) -> pl.DataFrame:
    """Per rank: steps, median step, GPU busy/compute/idle, kernels, DataLoader, wait.

    ``step_ns`` is the median of the profiled steps' own time (`analyzer.metrics.steps`:
    each step charged with the work it launched; the GPU span when the rank has no steps);
    the GPU figures come from the steps window of `timeline.breakdown`, summed over the
    rank's devices; ``wait_ns`` is the total collective wait.
    """
    breakdown = (
        ctx.metric("timeline.breakdown", timeline.breakdown)
        .group_by("rank")
        .agg(
            pl.col("busy_ns").sum(),
            pl.col("compute_ns").sum(),
            pl.col("idle_ns").sum(),
            pl.col("kernel_count").sum().alias("kernels"),
            pl.col("span_ns").max(),
        )
    )
    stats = ctx.metric("timeline.step_stats", timeline.step_stats)
    own = (
        step_metrics.step_metrics(ctx)
        .group_by("rank")
        .agg(pl.len().alias("steps"), pl.col("step_ns").median().cast(pl.Float64))
    )
    steps = own.join(
        stats.group_by("rank").agg(pl.col("dataloader_ns").sum()), on="rank", how="left"
    )
    waits = collective_waits(ctx)
    out = (
        breakdown.join(steps, on="rank", how="left")
        .join(waits, on="rank", how="left")
        .with_columns(
            pl.col("steps").fill_null(0),
            pl.col("dataloader_ns").fill_null(0),
            pl.col("wait_ns").fill_null(0),
            pl.col("collectives").fill_null(0),
        )
        .with_columns(
            pl.when(pl.col("step_ns").is_null())
            .then(pl.col("span_ns").cast(pl.Float64))
            .otherwise(pl.col("step_ns"))
            .alias("step_ns")
        )
    )
    return out.sort("rank")


def collective_waits(ctx: AnalysisContext) -> pl.DataFrame:
    """Per rank: ``collectives`` matched across ranks and the total ``wait_ns`` in them."""
    instances = _instances(ctx)
    if instances.height == 0:
        return pl.DataFrame(
            schema={"rank": pl.Int32(), "collectives": pl.UInt32(), "wait_ns": pl.Int64()}
        )
    ranks_total = instances.select(pl.col("rank").n_unique()).item()
    matched = instances.filter(pl.col("rank").n_unique().over("instance") == ranks_total)
    waits = matched.with_columns(
        (pl.col("dur_ns") - pl.col("dur_ns").min().over("instance")).alias("wait_ns")
    )
    return waits.group_by("rank").agg(
        pl.len().alias("collectives"), pl.col("wait_ns").sum().cast(pl.Int64)
    )


def _instances(ctx: AnalysisContext) -> pl.DataFrame:
    """Collective executions keyed by an ``instance`` id comparable across ranks."""
    comms = ctx.tables.comms.filter(
        pl.col("seq").is_not_null() & pl.col("dur_ns").is_not_null()
    ).with_columns(
        pl.col("collective")
        .cast(pl.String)
        .fill_null("")
        .map_elements(normalize_collective, return_dtype=pl.String)
        .alias("collective")
    )
    comms = comms.filter(~pl.col("collective").is_in(("wait", "barrier", "")))
    if comms.select(pl.col("rank").n_unique()).item() > 1:
        return comms.select(
            "rank",
            pl.format(
                "{}:{}:{}", pl.col("pg_name").cast(pl.String).fill_null(""), "collective", "seq"
            ).alias("instance"),
            "dur_ns",
        )
    kernels = ctx.tables.kernels.filter(pl.col("category").cast(pl.String) == "comm").sort(
        "rank", "start_ns"
    )
    return kernels.select(
        "rank",
        pl.format(
            "{}#{}",
            pl.col("name").cast(pl.String),
            pl.col("start_ns").rank("ordinal").over("rank", pl.col("name")).cast(pl.Int64),
        ).alias("instance"),
        "dur_ns",
    )


def _finding(
    cfg: StragglersConfig,
    severity: Severity,
    ranks: pl.DataFrame,
    step_ns: float,
    steps: int,
    wait_pct: float,
    step_pct: float,
    world_size: int | None,
    training: bool = False,
) -> Finding:
    """Name the slow rank and what differs on it, with the per-rank table."""
    by_wait = wait_pct >= step_pct
    ordered = ranks.sort(["wait_ns", "rank"]) if by_wait else ranks.sort("step_ns", descending=True)
    slow = ordered.row(0, named=True)
    others = ranks.filter(pl.col("rank") != slow["rank"])
    most_waiting = ranks.sort("wait_ns", descending=True).row(0, named=True)
    difference, diff_pct = _largest_difference(slow, others)
    if by_wait:
        reason = (
            f"rank {most_waiting['rank']} waits "
            f"{int(most_waiting['wait_ns']) / steps / 1e6:.2f} ms per step in collectives "
            f"against {int(slow['wait_ns']) / steps / 1e6:.2f} ms on rank {slow['rank']}, "
            f"{wait_pct:.1f}% of the {step_ns / 1e6:.2f} ms median step"
        )
    else:
        reason = (
            f"its median step is {float(slow['step_ns']) / 1e6:.2f} ms against "
            f"{step_ns / 1e6:.2f} ms across ranks ({step_pct:.1f}% spread)"
        )
    partial = (
        f" (only {ranks.height} of {world_size} ranks are in the trace: the slowest rank of "
        "the job may be missing)"
        if world_size and world_size > ranks.height
        else ""
    )
    summary = (
        f"Rank {slow['rank']} is the one the others wait for: {reason}; its {difference} "
        f"differs most from the other ranks ({diff_pct:+.0f}%){partial}."
    )
    wait_spread_ns = int(most_waiting["wait_ns"]) - int(slow["wait_ns"])
    return Finding(
        rule_id=Stragglers.id,
        severity=severity,
        title=Stragglers.title,
        summary=summary,
        evidence={
            "slow_rank": int(slow["rank"]),
            "ranks": ranks.height,
            "world_size": world_size or ranks.height,
            "median_step_ns": int(step_ns),
            "steps": steps,
            "wait_spread_ns": wait_spread_ns,
            "wait_spread_pct_of_step": round(wait_pct, 2),
            "step_spread_pct": round(step_pct, 2),
            "slow_rank_wait_ns": int(slow["wait_ns"]),
            "max_wait_ns": int(most_waiting["wait_ns"]),
            "max_wait_rank": int(most_waiting["rank"]),
            "largest_difference": difference,
            "largest_difference_pct": round(diff_pct, 1),
        },
        recommendation=_recommendation(difference, int(slow["rank"]), training),
        scope=Scope(rank=int(slow["rank"])),
        impact_ns=max(wait_spread_ns, int(step_pct / 100.0 * step_ns * steps)),
        table=_table(ranks, int(slow["rank"]), cfg.top_ranks),
    )


def _largest_difference(slow: dict[str, Any], others: pl.DataFrame) -> tuple[str, float]:
    """The compared figure where the slow rank departs most from the others' median."""
    best, best_pct = "GPU compute time", 0.0
    for column, label in _COMPARED.items():
        typical = float(others.select(pl.col(column).median()).item() or 0.0)
        value = float(slow[column] or 0)
        if typical <= 0:
            continue
        pct = 100.0 * (value - typical) / typical
        if abs(pct) > abs(best_pct):
            best, best_pct = label, pct
    return best, best_pct


def _recommendation(difference: str, rank: int, training: bool = False) -> str:
    """What to look at on the slow rank, from the figure that differs most (training words
    such as checkpoint saving only for a training trace)."""
    rank_zero = "evaluation, checkpoint saving" if training else "metrics, request bookkeeping"
    specific = {
        "GPU compute time": (
            "it does more GPU work: check load balance (uneven sequence lengths or batch "
            "sizes per rank, pipeline or expert imbalance) and that its GPU is not throttled "
            "(clocks, temperature, power in DCGM)"
        ),
        "kernel count": (
            "it runs a different number of kernels: look for rank-conditional code (logging, "
            f"{rank_zero} on rank 0) inside the step"
        ),
        "DataLoader time": (
            "its input pipeline is slower: give it more DataLoader workers or check its "
            "host's CPU and storage"
        ),
        "GPU busy time": (
            "its GPU is busy longer: check load balance and the GPU's health (clocks, "
            "thermal or power throttling)"
        ),
        "GPU idle time": (
            "its GPU idles more: its host launches work late (CPU contention, a busy "
            "neighbour process, rank-specific Python work)"
        ),
    }
    advice = specific.get(difference, specific["GPU compute time"])
    return (
        f"Make rank {rank} as fast as the others: {advice}; then the other ranks' collective "
        "wait turns into step time saved."
    )


def _table(ranks: pl.DataFrame, slow_rank: int, top: int) -> EvidenceTable:
    """The slow rank first, then the ranks waiting most."""
    ordered = pl.concat(
        [
            ranks.filter(pl.col("rank") == slow_rank),
            ranks.filter(pl.col("rank") != slow_rank).sort("wait_ns", descending=True),
        ]
    ).head(top)
    rows: list[list[str | int | float | None]] = [
        [
            int(r["rank"]),
            round(float(r["step_ns"]) / 1e6, 2),
            round(int(r["busy_ns"]) / 1e6, 2),
            round(int(r["compute_ns"]) / 1e6, 2),
            int(r["kernels"]),
            round(int(r["dataloader_ns"]) / 1e6, 2),
            int(r["collectives"]),
            round(int(r["wait_ns"]) / 1e6, 2),
        ]
        for r in ordered.iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=[
            "rank",
            "median step ms",
            "GPU busy ms",
            "GPU compute ms",
            "kernels",
            "DataLoader ms",
            "collectives matched",
            "collective wait ms",
        ],
        rows=rows,
    )
