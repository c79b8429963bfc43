"""launch-bound: the CPU spends longer launching kernels than the GPU spends running them.

Per rank and device, inside the analysis window (the profiled steps, or first to last GPU
event): the kernels, their median duration and the share shorter than ``short_kernel_us``.
The launch cost is the CPU time of the runtime/driver calls that launched them, joined on
the correlation id: each call counts once (one ``cudaGraphLaunch`` for many kernels counts
once), calls overlapping on several threads count once (the union of their intervals), and
calls over ``max_launch_us`` (lazy module loads) are left out.

The time at stake is the idle ledger's ``launch_overhead`` row
(`analyzer.metrics.idle_ledger`): idle gaps shorter than 30 us between back-to-back GPU
operations, which this finding claims and its severity follows (warning at
``warning_gap_pct`` of the window, critical at ``critical_gap_pct``). It also fires, as
info, on the older signal alone: most kernels are short and the GPU's busy time is below
the launch cost. CUDA/HIP graphs are recommended only when the trace shows none in use
(`analyzer.metrics.workload`); when graphs already run, the advice is about the eager
regions left outside them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import advice as _advice
from gpu_trace_analyzer.metrics import idle_ledger, intervals, timeline
from gpu_trace_analyzer.metrics.workload import WorkloadProfile, workload_profile
from gpu_trace_analyzer.rules.base import register

CAUSES = ("launch_overhead",)


@dataclass(frozen=True, slots=True)
class LaunchBoundConfig:
    """Thresholds of launch-bound."""

    short_kernel_us: float = 10.0
    """A kernel shorter than this is short."""
    min_short_kernel_pct: float = 50.0
    """Share of the kernels that must be short for the rule to fire."""
    min_kernels: int = 100
    """Fewer kernels than this in the window is too little to judge."""
    warning_busy_to_launch: float = 1.0
    """GPU busy time over launch CPU time under which a warning is raised."""
    critical_excess_pct: float = 25.0
    """Launch cost in excess of GPU busy time, as a share of the window, at which the
    finding becomes critical."""
    min_launch_share_pct: float = 10.0
    """Launch calls must occupy at least this share of the window: when they take less,
    other CPU work, not launching, keeps the GPU waiting (see gpu-idle)."""
    max_launch_us: float = 1_000.0
    """Launch calls longer than this are left out of the launch cost: they are lazy module
    loading or allocator stalls on first use, not per-launch overhead."""
    warning_gap_pct: float = 5.0
    """Idle time in gaps under 30 us between GPU operations (the ledger's launch_overhead
    row), as a share of the window, that raises a warning."""
    critical_gap_pct: float = 25.0
    """Share of the window in such gaps at which the finding becomes critical."""
    top_kernels: int = 6
    """How many short kernels (by count) the evidence table lists."""


@register
class LaunchBound:
    """Short kernels launched more slowly than the GPU runs them."""

    id: ClassVar[str] = "launch-bound"
    title: ClassVar[str] = "Kernel launches bound the step"
    description: ClassVar[str] = (
        "Most kernels are shorter than 10 us and the GPU's busy time is smaller than the CPU "
        "time spent in the calls launching them: the launch rate, not the GPU, sets the "
        "pace; kernel count, median kernel time, launch cost."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"kernels", "runtime"})
    Config: ClassVar[type[LaunchBoundConfig]] = LaunchBoundConfig

    def check(self, ctx: AnalysisContext, cfg: LaunchBoundConfig) -> Iterable[Finding]:
        """One finding for the device with the most launch-overhead idle, when it fires."""
        stats = launch_stats(ctx, cfg).join(_gap_shares(ctx), on=["rank", "device"], how="left")
        stats = stats.with_columns(pl.col("gap_ns").fill_null(0), pl.col("gap_pct").fill_null(0.0))
        old_signal = (
            (pl.col("kernels") >= cfg.min_kernels)
            & (pl.col("short_pct") >= cfg.min_short_kernel_pct)
            & (pl.col("launch_ns") > 0)
            & (pl.col("busy_to_launch") < cfg.warning_busy_to_launch)
            & (pl.col("launch_share_pct") >= cfg.min_launch_share_pct)
        ).fill_null(False)
        firing = stats.filter(old_signal | (pl.col("gap_pct") >= cfg.warning_gap_pct))
        if firing.height == 0:
            return
        worst = firing.sort(["gap_ns", "rank"], descending=[True, False]).row(0, named=True)
        profile = ctx.metric("workload", workload_profile)
        yield _finding(ctx, cfg, worst, firing.height, profile)


def _gap_shares(ctx: AnalysisContext) -> pl.DataFrame:
    """Per (rank, device): the ledger's launch_overhead idle (gap_ns) and its share of the
    window (gap_pct)."""
    rows = idle_ledger.by_cause(ctx).filter(pl.col("cause") == "launch_overhead")
    return rows.select(
        "rank", "device", pl.col("idle_ns").alias("gap_ns"), pl.col("window_pct").alias("gap_pct")
    )


def launch_stats(ctx: AnalysisContext, cfg: LaunchBoundConfig) -> pl.DataFrame:
    """Per (rank, device): kernels, short share, median kernel time, launch cost, busy time.

    Columns: rank, device, window_start_ns, window_end_ns, kernels, short_kernels, short_pct,
    median_kernel_ns, launches, launch_ns, median_launch_ns, busy_ns, busy_to_launch,
    launch_share_pct (launch CPU time as a share of the window).
    """
    windowed = _window_kernels(ctx)
    short_ns = cfg.short_kernel_us * 1_000
    keys = ["rank", "device"]
    per_device = intervals.aggregate(
        windowed,
        keys,
        pl.col("window_start_ns").first(),
        pl.col("window_end_ns").first(),
        pl.len().alias("kernels"),
        (pl.col("dur_ns") < short_ns).sum().alias("short_kernels"),
        pl.col("dur_ns").median().alias("median_kernel_ns"),
    )
    launches = _launch_calls(ctx, windowed).filter(pl.col("dur_ns") <= cfg.max_launch_us * 1_000)
    launch = intervals.aggregate(
        launches,
        keys,
        pl.len().alias("launches"),
        pl.col("dur_ns").median().alias("median_launch_ns"),
    )
    launch_union = intervals.union_ns(launches, keys).rename({"union_ns": "launch_ns"})
    launch = launch.join(launch_union, on=keys, how="left")
    busy = ctx.metric("timeline.breakdown", timeline.breakdown).select(*keys, "busy_ns")
    return (
        per_device.join(launch, on=keys, how="left")
        .join(busy, on=keys, how="left")
        .with_columns(
            pl.col("launches").fill_null(0),
            pl.col("launch_ns").fill_null(0),
            pl.col("busy_ns").fill_null(0),
            (100.0 * pl.col("short_kernels") / pl.col("kernels")).alias("short_pct"),
        )
        .with_columns(
            pl.when(pl.col("launch_ns") > 0)
            .then(pl.col("busy_ns") / pl.col("launch_ns"))
            .otherwise(None)
            .alias("busy_to_launch"),
            (
                100.0
                * pl.col("launch_ns")
                / (pl.col("window_end_ns") - pl.col("window_start_ns")).clip(lower_bound=1)
            ).alias("launch_share_pct"),
        )
        .sort(keys)
    )


def _window_kernels(ctx: AnalysisContext) -> pl.DataFrame:
    """Kernels starting inside their rank's analysis window, with the window bounds.

    Columns: rank, device, name, start_ns, dur_ns, correlation, window_start_ns,
    window_end_ns. Computed once per analysis.
    """
    return ctx.metric("launch_bound.window_kernels", lambda _tables: _kernels_in_window(ctx))


def _kernels_in_window(ctx: AnalysisContext) -> pl.DataFrame:
    windows = ctx.metric("timeline.breakdown", timeline.breakdown)
    kernels = ctx.tables.kernels.select(
        "rank", "device", "name", "start_ns", "dur_ns", "correlation"
    )
    return intervals.in_windows(kernels, windows, by=("rank", "device"), keep_bounds=True)


def _launch_calls(ctx: AnalysisContext, kernels: pl.DataFrame) -> pl.DataFrame:
    """The runtime/driver calls that launched ``kernels``, one row per call.

    Deduplication is skipped when the correlation ids are already distinct (the usual
    case: one call per kernel).
    """
    keys = ["rank", "correlation"]
    linked = kernels.filter(pl.col("correlation").is_not_null()).select(
        "rank", "device", "correlation"
    )
    ids = linked.get_column("correlation")
    if not intervals.strictly_increasing(ids) and ids.n_unique() < linked.height:
        linked = linked.unique(keys)
    calls = ctx.tables.runtime.filter(pl.col("correlation").is_not_null()).select(
        *keys, "start_ns", "dur_ns"
    )
    launched = intervals.join_within_rank(calls, linked, ["correlation"])
    ids = calls.get_column("correlation")
    if not intervals.strictly_increasing(ids) and ids.n_unique() < calls.height:
        launched = launched.unique(keys)
    return launched.select(
        "rank",
        "device",
        "start_ns",
        (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"),
        "dur_ns",
    )


def _finding(
    ctx: AnalysisContext,
    cfg: LaunchBoundConfig,
    row: dict[str, Any],
    devices: int,
    profile: WorkloadProfile,
) -> Finding:
    """The finding for one device: counts, medians, launch cost against busy time."""
    rank, device = int(row["rank"]), int(row["device"])
    kernels, short = int(row["kernels"]), int(row["short_kernels"])
    launch_ns, busy_ns = int(row["launch_ns"]), int(row["busy_ns"])
    ratio = float(row["busy_to_launch"] or 0.0)
    span_ns = max(int(row["window_end_ns"]) - int(row["window_start_ns"]), 1)
    excess_pct = 100.0 * max(launch_ns - busy_ns, 0) / span_ns
    gap_ns, gap_pct = int(row["gap_ns"]), float(row["gap_pct"])
    if gap_pct < cfg.warning_gap_pct:
        severity = Severity.INFO
    elif gap_pct >= cfg.critical_gap_pct:
        severity = Severity.CRITICAL
    else:
        severity = Severity.WARNING
    median_us = float(row["median_kernel_ns"]) / 1e3
    summary = (
        f"Rank {rank} device {device} sits idle {gap_ns / 1e6:.2f} ms ({gap_pct:.1f}% of the "
        f"window) in gaps under 30 us between back-to-back GPU operations (launch overhead); "
        f"it runs {kernels} kernels with a median of {median_us:.1f} us "
        f"({float(row['short_pct']):.0f}% under {cfg.short_kernel_us:g} us), busy "
        f"{busy_ns / 1e6:.2f} ms while the CPU spends {launch_ns / 1e6:.2f} ms in "
        f"{int(row['launches'])} launch calls."
    )
    return Finding(
        rule_id=LaunchBound.id,
        severity=severity,
        title=LaunchBound.title,
        summary=summary,
        evidence={
            "rank": rank,
            "device": device,
            "kernels": kernels,
            "short_kernels": short,
            "short_kernel_pct": round(float(row["short_pct"]), 1),
            "median_kernel_ns": int(row["median_kernel_ns"]),
            "launch_calls": int(row["launches"]),
            "launch_ns": launch_ns,
            "median_launch_ns": int(row["median_launch_ns"] or 0),
            "gpu_busy_ns": busy_ns,
            "busy_to_launch": round(ratio, 3),
            "launch_share_pct": round(float(row["launch_share_pct"]), 1),
            "excess_launch_pct": round(excess_pct, 1),
            "devices_launch_bound": devices,
            "graph_launches": profile.graph_launches,
            **idle_ledger.claim_evidence(ctx, CAUSES, rank),
        },
        recommendation=_recommendation(ctx, profile),
        scope=Scope(
            rank=rank,
            device=device,
            start_ns=int(row["window_start_ns"]),
            end_ns=int(row["window_end_ns"]),
        ),
        impact_ns=gap_ns,
        table=_table(ctx, rank, device, cfg),
    )


def _table(ctx: AnalysisContext, rank: int, device: int, cfg: LaunchBoundConfig) -> EvidenceTable:
    """The most frequent short kernels on the device: calls, median and total time."""
    short_ns = cfg.short_kernel_us * 1_000
    kernels = _window_kernels(ctx).filter(
        (pl.col("rank") == rank) & (pl.col("device") == device) & (pl.col("dur_ns") < short_ns)
    )
    top = (
        kernels.group_by("name")
        .agg(
            pl.len().alias("calls"),
            pl.col("dur_ns").median().alias("median_ns"),
            pl.col("dur_ns").sum().alias("total_ns"),
        )
        .with_columns(pl.col("name").cast(pl.String))
        .sort(["calls", "total_ns", "name"], descending=[True, True, False])
        .head(cfg.top_kernels)
    )
    rows: list[list[str | int | float | None]] = [
        [
            str(r["name"]),
            int(r["calls"]),
            round(float(r["median_ns"]) / 1e3, 2),
            round(int(r["total_ns"]) / 1e6, 3),
        ]
        for r in top.iter_rows(named=True)
    ]
    return EvidenceTable(columns=["kernel", "calls", "median us", "total ms"], rows=rows)


def _recommendation(ctx: AnalysisContext, profile: WorkloadProfile) -> str:
    """Fewer launches: graphs when none run yet (a serving engine's own settings, never
    ``torch.compile`` where Inductor already runs), otherwise the eager regions left over."""
    fused = ", use foreach/fused optimizers" if profile.is_training else ""
    more_work = "larger batch" if profile.is_training else "batch more requests per step"
    if not profile.uses_graphs and (
        profile.serving_engine or profile.compiled or profile.triton_kernels
    ):
        return (
            f"Cut the number of launches: {_advice.launch_overhead_fix(ctx)}; "
            f"{_advice.fusion_fix(ctx)}{fused}; and give each kernel more work ({more_work})."
        )
    if profile.uses_graphs:
        return (
            f"CUDA/HIP graphs already run here ({profile.graph_launches} graph launches): the "
            "remaining short gaps come from eager regions outside the captured graphs; "
            "capture those regions too"
            + (
                ""
                if profile.compiled or profile.triton_kernels
                else " (or compile them with `torch.compile`)"
            )
            + ", fuse "
            f"elementwise chains{fused}, and give each kernel more work ({more_work})."
        )
    return (
        "Cut the number of launches: capture the step in a CUDA/HIP graph "
        "(`torch.compile(mode='reduce-overhead')` or `torch.cuda.CUDAGraph`), fuse "
        f"elementwise chains with `torch.compile`{fused}, and give each kernel more work "
        f"({more_work}, fewer tiny ops in Python loops)."
    )
