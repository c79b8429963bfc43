"""low-sm-activity: the GPU is in use, but its SMs are mostly empty (DCGM counters).

SM active (DCGM field 1002) is the share of cycles an SM has at least one warp resident,
averaged over all SMs. NVIDIA's DCGM guide: 0.8 or more is necessary for effective use, under
0.5 likely means ineffective use. The rule averages it over the samples where the GPU is in
use (GPU util >= 1%: a kernel was running), so an idle stretch does not count against it.

Without SM active, GR engine active (1001) stands in as an upper bound (a cycle with a warp on
any SM is a cycle the engine was active), so a low GR engine active proves low SM activity.
The cause follows from GPU util: high util with low SM activity means kernels too small to
fill the GPU; low util as well means the GPU waits on the host.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import counters
from gpu_trace_analyzer.rules import _advice
from gpu_trace_analyzer.rules.base import register

_SMALL_KERNELS = (
    "The GPU is running kernels most of the time but they occupy few SMs: launches with "
    "fewer blocks than SMs, tiny batches or serialized small ops. Raise the batch (or "
    "micro-batch) size, fuse small ops (`torch.compile`), run independent work on separate "
    "streams, and check the profiler trace for kernels whose grid is smaller than the SM count."
)
_HOST_BOUND = (
    "The GPU waits on the host between kernels: overlap the input pipeline (DataLoader "
    "`num_workers`, `pin_memory=True`), remove host synchronizations (`.item()`, `.cpu()`), "
    "and cut launch overhead with CUDA graphs (`torch.compile(mode='reduce-overhead')`). "
    "Profile one step with the PyTorch profiler to see what the CPU does in the gaps."
)

#: Inference wording of the two fixes (no micro-batches, no DataLoader-driven steps).
_SMALL_KERNELS_INFERENCE = (
    "The GPU is running kernels most of the time but they occupy few SMs: launches with "
    "fewer blocks than SMs, few inputs per forward pass or serialized small ops. Batch more "
    "requests per forward pass, fuse small ops (`torch.compile`), run independent work on "
    "separate streams, and check the profiler trace for kernels whose grid is smaller than the "
    "SM count."
)
_HOST_BOUND_INFERENCE = (
    "The GPU waits on the host between kernels: prepare inputs ahead of the forward pass "
    "(pinned buffers, a background thread), remove host synchronizations (`.item()`, "
    "`.cpu()`), and cut launch overhead with CUDA/HIP graphs "
    "(`torch.compile(mode='reduce-overhead')`, or the serving engine's graph capture). Profile "
    "one request with the PyTorch profiler to see what the CPU does in the gaps."
)


@dataclass(frozen=True, slots=True)
class LowSmActivityConfig:
    """Thresholds of low-sm-activity."""

    warning_sm_active_ratio: float = 0.5
    """Mean SM active (0..1) while in use under which a warning is raised (DCGM guide: < 0.5
    likely ineffective use)."""
    critical_sm_active_ratio: float = 0.25
    """Mean SM active under which the finding is critical."""
    min_busy_samples: int = 3
    """In-use samples a GPU needs before it is judged (one scrape is not a trend)."""
    small_kernels_gpu_util_pct: float = 80.0
    """GPU util at or above which low SM activity is blamed on small kernels, not the host."""


@register
class LowSmActivity:
    """SM active under 0.5 while the GPU is in use."""

    id: ClassVar[str] = "low-sm-activity"
    title: ClassVar[str] = "SMs mostly idle while the GPU is in use"
    description: ClassVar[str] = (
        "DCGM SM active (field 1002; GR engine active as an upper bound when absent) averaged "
        "over in-use samples, per GPU: under 0.5 NVIDIA's DCGM guide calls the use likely "
        "ineffective; critical under 0.25. The fix depends on GPU util: small kernels or a "
        "starved GPU."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"counters"})
    Config: ClassVar[type[LowSmActivityConfig]] = LowSmActivityConfig

    def check(self, ctx: AnalysisContext, cfg: LowSmActivityConfig) -> Iterable[Finding]:
        """One finding over every GPU under the warning level."""
        summary = ctx.metric("counters.summary", counters.summary_of)
        low = _low_gpus(summary, cfg)
        if low.height:
            yield _finding(low, cfg, _advice.profile(ctx).is_inference)


def _low_gpus(summary: pl.DataFrame, cfg: LowSmActivityConfig) -> pl.DataFrame:
    """GPUs with enough in-use samples whose activity is under the warning level."""
    cols = set(summary.columns)
    sources = [c for c in ("sm_active_ratio_busy_mean", "gr_engine_active_ratio_busy_mean")
               if c in cols]  # fmt: skip
    if not sources or "busy_samples" not in cols:
        return summary.clear()
    basis = (
        pl.when(pl.col(sources[0]).is_not_null())
        .then(pl.lit(sources[0].removesuffix("_busy_mean")))
        .otherwise(pl.lit(sources[-1].removesuffix("_busy_mean")))
    )
    return (
        summary.with_columns(
            pl.coalesce(*sources).alias("activity"),
            basis.alias("basis"),
        )
        .filter(
            (pl.col("busy_samples") >= cfg.min_busy_samples)
            & (pl.col("activity") < cfg.warning_sm_active_ratio)
        )
        .sort("activity")
    )


def _get(row: dict[str, Any], key: str) -> float | None:
    """A float column of a summary row (None when absent or null)."""
    value = row.get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _finding(low: pl.DataFrame, cfg: LowSmActivityConfig, inference: bool = False) -> Finding:
    """The finding for the least active GPU, listing every low one."""
    worst = low.row(0, named=True)
    activity = float(worst["activity"])
    util = _get(worst, "gpu_util_pct_busy_mean")
    busy, times = int(worst["busy_samples"]), int(worst["sample_times"])
    bound_note = (
        " (GR engine active: an upper bound of SM active)"
        if worst["basis"] != "sm_active_ratio"
        else ""
    )
    severity = Severity.CRITICAL if activity < cfg.critical_sm_active_ratio else Severity.WARNING
    small = util is not None and util >= cfg.small_kernels_gpu_util_pct
    where = counters.gpu_label(worst["host"], int(worst["gpu"]))
    more = low.height - 1
    others = f"; {more} more GPU(s) under {cfg.warning_sm_active_ratio:g}" if more else ""
    util_text = f", GPU util {util:.0f}%" if util is not None else ""
    summary = (
        f"SM active averages {activity:.2f} on {where} while the GPU is in use "
        f"({busy} of {times} samples{util_text}){bound_note}, under the "
        f"{cfg.warning_sm_active_ratio:g} below which NVIDIA's DCGM guide calls the use likely "
        f"ineffective{others}."
    )
    evidence: dict[str, float | int | str] = {
        "gpu": int(worst["gpu"]),
        "sm_active_ratio": round(activity, 4),
        "activity_basis": str(worst["basis"]),
        "busy_samples": busy,
        "sample_times": times,
        "gpus_affected": low.height,
    }
    if worst["host"]:
        evidence["host"] = str(worst["host"])
    for key in ("gpu_util_pct_busy_mean", "tensor_active_ratio_busy_mean",
                "dram_active_ratio_busy_mean", "sm_occupancy_ratio_busy_mean"):  # fmt: skip
        value = _get(worst, key)
        if value is not None:
            evidence[key.replace("_busy_mean", "_busy")] = round(value, 4)
    span = int(worst.get("span_ns") or 0) or int(worst["last_ts_ns"]) - int(worst["first_ts_ns"])
    return Finding(
        rule_id=LowSmActivity.id,
        severity=severity,
        title=LowSmActivity.title,
        summary=summary,
        evidence=evidence,
        recommendation=(_SMALL_KERNELS_INFERENCE if inference else _SMALL_KERNELS)
        if small
        else (_HOST_BOUND_INFERENCE if inference else _HOST_BOUND),
        scope=Scope(
            device=int(worst["gpu"]) if low.height == 1 else None,
            start_ns=int(worst["first_ts_ns"]),
            end_ns=int(worst["last_ts_ns"]),
        ),
        impact_ns=int(span * float(worst["busy_share"]) * (1.0 - activity)),
        table=_table(low),
    )


def _table(low: pl.DataFrame) -> EvidenceTable:
    """Every low GPU: activity while in use, GPU util, tensor and DRAM activity."""
    rows: list[list[str | int | float | None]] = [
        [
            counters.gpu_label(r["host"], int(r["gpu"])),
            round(float(r["activity"]), 3),
            str(r["basis"]),
            _round(_get(r, "gpu_util_pct_busy_mean"), 1),
            _round(_get(r, "tensor_active_ratio_busy_mean"), 3),
            _round(_get(r, "dram_active_ratio_busy_mean"), 3),
            f"{int(r['busy_samples'])}/{int(r['sample_times'])}",
        ]
        for r in low.iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=(
            "GPU",
            "SM active (in use)",
            "basis",
            "GPU util %",
            "tensor active",
            "DRAM active",
            "in-use samples",
        ),
        rows=rows,
    )


def _round(value: float | None, digits: int) -> float | None:
    """Round a number for a table cell, keeping None."""
    return None if value is None else round(value, digits)
