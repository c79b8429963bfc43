"""memory-bound-counters: DRAM busy while the math pipes idle (DCGM counters).

DRAM active (DCGM field 1005) is the share of cycles the memory interface sends or receives
data; NVIDIA's DCGM guide puts the practical peak near 0.8. When it stays at or above 0.6
while the tensor and FP pipes (1004, 1006-1008) stay under 0.5, the work is limited by memory
bandwidth, not by math: faster math or more tensor cores will not help, moving fewer bytes
will. Means are over in-use samples (GPU util >= 1%). SM occupancy (1003) is reported because
the guide notes it matters for memory-bound work: more resident warps hide memory latency.
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

_RECOMMENDATION = (
    "Memory bandwidth, not math, limits these GPUs: move fewer bytes per FLOP. Fuse chains of "
    "elementwise, normalization and activation ops (`torch.compile`), use fused attention "
    "(`scaled_dot_product_attention` / flash attention) instead of materializing scores, keep "
    "activations and weights in bf16/fp16 (or fp8 where supported), and avoid layout copies "
    "(`.contiguous()`, transposes) in the hot loop."
)
#: When the trace shows fused attention kernels running, attention is not advised again.
_RECOMMENDATION_FUSED = (
    "Memory bandwidth, not math, limits these GPUs: move fewer bytes per FLOP. Fuse chains of "
    "elementwise, normalization and activation ops (`torch.compile`; attention already runs "
    "fused), keep activations and weights in bf16/fp16 (or fp8 where supported), and avoid "
    "layout copies (`.contiguous()`, transposes) in the hot loop."
)
_LOW_OCCUPANCY = (
    " SM occupancy is low ({occ:.2f}): for memory-bound kernels more resident warps hide "
    "memory latency, so check register and shared-memory use per block and the block size."
)


@dataclass(frozen=True, slots=True)
class MemoryBoundCountersConfig:
    """Thresholds of memory-bound-counters."""

    dram_active_ratio_min: float = 0.6
    """Mean DRAM active (0..1) while in use at or above which memory is the limit (75% of
    the ~0.8 practical peak in NVIDIA's DCGM guide)."""
    pipe_active_ratio_max: float = 0.5
    """The busiest math pipe (tensor, FP64, FP32, FP16) must stay under this mean ratio."""
    min_busy_samples: int = 3
    """In-use samples a GPU needs before it is judged."""
    low_occupancy_ratio: float = 0.3
    """SM occupancy under which the recommendation adds the latency-hiding advice."""


@register
class MemoryBoundCounters:
    """DRAM active >= 0.6 while every math pipe is under 0.5."""

    id: ClassVar[str] = "memory-bound-counters"
    title: ClassVar[str] = "GPU limited by memory bandwidth (DCGM counters)"
    description: ClassVar[str] = (
        "DCGM DRAM active (field 1005) at or above 0.6 while the tensor and FP pipes stay "
        "under 0.5, over in-use samples: the work is memory-bandwidth-bound; recommends "
        "fusion, fused attention, lower precision and occupancy checks."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"counters"})
    Config: ClassVar[type[MemoryBoundCountersConfig]] = MemoryBoundCountersConfig

    def check(self, ctx: AnalysisContext, cfg: MemoryBoundCountersConfig) -> Iterable[Finding]:
        """One finding over every memory-bound GPU."""
        summary = ctx.metric("counters.summary", counters.summary_of)
        hits = _memory_bound(summary, cfg)
        if hits.height:
            yield _finding(hits, cfg, bool(_advice.profile(ctx).fused_attention))


def _memory_bound(summary: pl.DataFrame, cfg: MemoryBoundCountersConfig) -> pl.DataFrame:
    """GPUs whose in-use DRAM activity is high while every pipe is low."""
    dram = "dram_active_ratio_busy_mean"
    if dram not in summary.columns or "busy_samples" not in summary.columns:
        return summary.clear()
    pipes = [f"{p}_busy_mean" for p in counters.PIPES if f"{p}_busy_mean" in summary.columns]
    top = pl.max_horizontal(pipes) if pipes else pl.lit(None, dtype=pl.Float64)
    name = _top_pipe_name(pipes)
    return (
        summary.with_columns(top.alias("top_pipe_ratio"), name.alias("top_pipe"))
        .filter(
            (pl.col("busy_samples") >= cfg.min_busy_samples)
            & (pl.col(dram) >= cfg.dram_active_ratio_min)
            & (pl.col("top_pipe_ratio").fill_null(0.0) < cfg.pipe_active_ratio_max)
        )
        .sort(dram, descending=True)
    )


def _top_pipe_name(pipes: list[str]) -> pl.Expr:
    """The name of the busiest pipe column per row."""
    if not pipes:
        return pl.lit("none")
    expr: Any = pl.lit(pipes[0].removesuffix("_busy_mean"))
    best = pl.col(pipes[0]).fill_null(-1.0)
    for col in pipes[1:]:
        value = pl.col(col).fill_null(-1.0)
        expr = pl.when(value > best).then(pl.lit(col.removesuffix("_busy_mean"))).otherwise(expr)
        best = pl.max_horizontal(best, value)
    result: pl.Expr = expr
    return result


def _finding(
    hits: pl.DataFrame, cfg: MemoryBoundCountersConfig, fused_attention: bool = False
) -> Finding:
    """The finding for the GPU with the busiest DRAM, listing every memory-bound one."""
    worst = hits.row(0, named=True)
    dram = float(worst["dram_active_ratio_busy_mean"])
    top = worst["top_pipe_ratio"]
    occ = worst.get("sm_occupancy_ratio_busy_mean")
    where = counters.gpu_label(worst["host"], int(worst["gpu"]))
    others = f"; {hits.height - 1} more GPU(s) alike" if hits.height > 1 else ""
    pipe_text = (
        f"the busiest math pipe ({worst['top_pipe']}) at {float(top):.2f}"
        if top is not None
        else "no math pipe counters"
    )
    summary = (
        f"DRAM active averages {dram:.2f} on {where} while in use, near the ~0.8 practical "
        f"peak, with {pipe_text}: the work is memory-bandwidth-bound{others}."
    )
    evidence: dict[str, float | int | str] = {
        "gpu": int(worst["gpu"]),
        "dram_active_ratio": round(dram, 4),
        "top_pipe": str(worst["top_pipe"]),
        "busy_samples": int(worst["busy_samples"]),
        "gpus_affected": hits.height,
    }
    if worst["host"]:
        evidence["host"] = str(worst["host"])
    if top is not None:
        evidence["top_pipe_active_ratio"] = round(float(top), 4)
    for key in ("sm_active_ratio_busy_mean", "sm_occupancy_ratio_busy_mean",
                "gpu_util_pct_busy_mean"):  # fmt: skip
        value = worst.get(key)
        if value is not None:
            evidence[key.replace("_busy_mean", "_busy")] = round(float(value), 4)
    recommendation = _RECOMMENDATION if not fused_attention else _RECOMMENDATION_FUSED
    if occ is not None and float(occ) < cfg.low_occupancy_ratio:
        recommendation += _LOW_OCCUPANCY.format(occ=float(occ))
    span = int(worst["last_ts_ns"]) - int(worst["first_ts_ns"])
    return Finding(
        rule_id=MemoryBoundCounters.id,
        severity=Severity.WARNING,
        title=MemoryBoundCounters.title,
        summary=summary,
        evidence=evidence,
        recommendation=recommendation,
        scope=Scope(
            device=int(worst["gpu"]) if hits.height == 1 else None,
            start_ns=int(worst["first_ts_ns"]),
            end_ns=int(worst["last_ts_ns"]),
        ),
        impact_ns=int(span * float(worst["busy_share"])),
        table=_table(hits),
    )


def _table(hits: pl.DataFrame) -> EvidenceTable:
    """Every memory-bound GPU: DRAM, busiest pipe, SM active and occupancy while in use."""
    rows: list[list[str | int | float | None]] = []
    for r in hits.iter_rows(named=True):
        occ = r.get("sm_occupancy_ratio_busy_mean")
        sm = r.get("sm_active_ratio_busy_mean")
        top = r["top_pipe_ratio"]
        rows.append(
            [
                counters.gpu_label(r["host"], int(r["gpu"])),
                round(float(r["dram_active_ratio_busy_mean"]), 3),
                str(r["top_pipe"]),
                None if top is None else round(float(top), 3),
                None if sm is None else round(float(sm), 3),
                None if occ is None else round(float(occ), 3),
            ]
        )
    return EvidenceTable(
        columns=(
            "GPU",
            "DRAM active",
            "busiest pipe",
            "pipe active",
            "SM active",
            "SM occupancy",
        ),
        rows=rows,
    )
