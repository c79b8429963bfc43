"""`memory-bound-dominant`: most GPU time goes to memory-bound kernels running far under the
bandwidth roof.

Bound per kernel comes from the roofline: *modeled* (the launching op's FLOPs and bytes from
its shapes against the device's roofs) where shapes were recorded, else *heuristic* (from the
kernel's category: elementwise, reduction, normalization and copies are memory-bound). How
far under the bandwidth roof the memory-bound work runs is known only for modeled kernels:
their ideal DRAM bytes over their time against the device's bandwidth (% of roof); kernels
the roofline flags as above their roof (a model or measurement inconsistency) are left out of
that average. Small GEMMs that are memory-bound count here too; `small-batch` says what to do
about those. Kernels of unfused attention chains are left out: `unfused-attention` explains
them (one fix, a fused attention kernel, for the whole chain).

The advice depends on the workload profile: it never recommends what the trace shows running
(FlashAttention/SDPA kernels, fused optimizers, CUDA/HIP graphs, torch.compile), speaks of
optimizers only on training traces, and of channels_last only where convolutions or layout
transposes take a visible share.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import roofline as roofline_metric
from gpu_trace_analyzer.metrics.op_families import attention_of, op_families
from gpu_trace_analyzer.metrics.perf_model import is_gemm_name
from gpu_trace_analyzer.rules import _advice
from gpu_trace_analyzer.rules.base import RuleConfig, register

_TABLE_ROWS = 8
_NAME_CHARS = 100


@dataclass(frozen=True, slots=True)
class MemoryBoundDominantConfig(RuleConfig):
    """Thresholds of `memory-bound-dominant`."""

    warning_memory_share_pct: float = 50.0
    """Share of kernel time (%) in memory-bound kernels at which the rule fires."""
    low_bandwidth_pct_of_roof: float = 50.0
    """Modeled memory-bound time running under this % of the bandwidth roof (time-weighted)
    makes the finding a warning; at or above it (only removing memory traffic helps), or when
    no shapes say how fast it runs, the finding is informational."""


@register
class MemoryBoundDominant:
    """Memory-bound kernels dominate GPU time, and run well under the bandwidth roof."""

    id: ClassVar[str] = "memory-bound-dominant"
    title: ClassVar[str] = "Most GPU time is memory-bound work under the bandwidth roof"
    description: ClassVar[str] = (
        "Share of kernel time in memory-bound kernels (roofline: modeled from shapes, else by "
        "kernel category) and, for modeled ones, the time-weighted % of the bandwidth roof "
        "they reach; lists the memory-bound ops with the most time."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"kernels", "device_spec"})
    Config: ClassVar[type[MemoryBoundDominantConfig]] = MemoryBoundDominantConfig

    def check(self, ctx: AnalysisContext, cfg: MemoryBoundDominantConfig) -> Iterable[Finding]:
        """One finding when memory-bound kernels take the configured share of kernel time."""
        roof = roofline_metric.roofline(ctx)
        kernels = _without_unfused_attention(ctx, roof.kernels)
        total_ns = int(roof.kernels["dur_ns"].sum()) if roof.kernels.height else 0
        if total_ns == 0:
            return []
        memory = kernels.select("bound", "basis", "dur_ns", "pct_of_roof", "above_roof").filter(
            pl.col("bound") == "memory"
        )
        memory_ns = int(memory["dur_ns"].sum())
        share_pct = 100.0 * memory_ns / total_ns
        if share_pct < cfg.warning_memory_share_pct:
            return []
        measured = memory.filter(
            (pl.col("basis") == "modeled") & pl.col("pct_of_roof").is_not_null()
        )
        above_ns = int(measured.filter(pl.col("above_roof"))["dur_ns"].sum())
        modeled = measured.filter(~pl.col("above_roof"))
        modeled_ns = int(modeled["dur_ns"].sum())
        pct_of_roof = (
            float((modeled["pct_of_roof"] * modeled["dur_ns"]).sum()) / modeled_ns
            if modeled_ns
            else None
        )
        severity = (
            Severity.WARNING
            if pct_of_roof is not None and pct_of_roof < cfg.low_bandwidth_pct_of_roof
            else Severity.INFO
        )
        groups = _memory_groups(roof.ops)
        gemm_ns = int(groups.filter(pl.col("is_gemm"))["gpu_time_ns"].sum())
        ranks = kernels["rank"].unique().to_list()
        evidence: dict[str, float | int | str] = {
            "memory_bound_share_pct": round(share_pct, 2),
            "memory_bound_ns": memory_ns,
            "kernel_time_ns": total_ns,
            "modeled_memory_bound_ns": modeled_ns,
            "above_roof_memory_bound_ns": above_ns,
            "heuristic_memory_bound_ns": memory_ns - modeled_ns - above_ns,
            "memory_bound_gemm_ns": gemm_ns,
            "unfused_attention_ns_excluded": total_ns - int(kernels["dur_ns"].sum()),
        }
        if pct_of_roof is not None:
            evidence["modeled_pct_of_bandwidth_roof"] = round(pct_of_roof, 2)
        return [
            Finding(
                rule_id=self.id,
                severity=severity,
                title=self.title,
                summary=_summary(share_pct, memory_ns, pct_of_roof, modeled_ns, above_ns),
                evidence=evidence,
                recommendation=_recommendation(ctx, groups, pct_of_roof, cfg),
                scope=Scope(rank=int(ranks[0]) if len(ranks) == 1 else None),
                impact_ns=memory_ns,
                table=_table(groups),
            )
        ]


_KEYS = ["rank", "device", "stream", "start_ns"]


def _without_unfused_attention(ctx: AnalysisContext, kernels: pl.DataFrame) -> pl.DataFrame:
    """The roofline's kernels minus those of unfused attention chains (matched on rank,
    device, stream and start)."""
    mask = attention_of(ctx).kernel_mask
    if not mask.any() or kernels.height == 0:
        return kernels
    chain = ctx.tables.kernels.filter(mask).select(_KEYS)
    return kernels.join(chain, on=_KEYS, how="anti", maintain_order="left")


def _memory_groups(ops: pl.DataFrame) -> pl.DataFrame:
    """Memory-bound op groups (modeled and heuristic), largest GPU time first."""
    if ops.height == 0:
        return ops.with_columns(pl.lit(False).alias("is_gemm"))
    groups = ops.filter(pl.col("bound") == "memory")
    names = groups["op_name"].unique().to_list()
    gemm = [n for n in names if n is not None and is_gemm_name(str(n))]
    return groups.with_columns(pl.col("op_name").is_in(gemm).alias("is_gemm")).sort(
        ["gpu_time_ns", "op_name"], descending=[True, False]
    )


def _summary(
    share_pct: float, memory_ns: int, pct_of_roof: float | None, modeled_ns: int, above_ns: int
) -> str:
    """One sentence: the memory-bound share and how close to the bandwidth roof it runs."""
    text = f"{share_pct:.0f}% of kernel time ({memory_ns / 1e6:.2f} ms) is memory-bound work"
    if pct_of_roof is not None:
        return (
            text + f"; the part modeled from shapes ({100.0 * modeled_ns / memory_ns:.0f}% of "
            f"it) reaches {pct_of_roof:.0f}% of the memory bandwidth roof on average."
        )
    if above_ns:
        return (
            text + "; its modeled part runs above the model's bandwidth roof (the roofline "
            "flags it as inconsistent), so how far under the roof it runs is unknown."
        )
    return text + " (classified by kernel category; record shapes to measure its bandwidth)."


#: Share (%) of GPU time in convolutions or layout transposes above which layouts are advised.
_LAYOUT_SHARE_PCT = 5.0


def _recommendation(
    ctx: AnalysisContext,
    groups: pl.DataFrame,
    pct_of_roof: float | None,
    cfg: MemoryBoundDominantConfig,
) -> str:
    """Fuse to cut memory passes, with what the trace does not already run; point small
    GEMMs to `small-batch`; layouts and launch overhead when the kernels run slow."""
    p = _advice.profile(ctx)
    fixes = [_advice.fusion_fix(ctx)]
    if p.is_training and not p.fused_optimizer:
        fixes.append("use the fused optimizer (`torch.optim.AdamW(..., fused=True)`)")
    text = (
        "Cut the number of passes over memory: "
        + "; ".join(fixes)
        + "; keep activations in bf16/fp16 where accuracy allows, and avoid materializing "
        "intermediates (in-place ops, no needless .contiguous() or dtype casts)."
    )
    if p.fused_attention:
        text += " Fused attention kernels already run; the memory-bound time is elsewhere."
    if pct_of_roof is not None and pct_of_roof < cfg.low_bandwidth_pct_of_roof:
        causes = ["strided or transposed inputs (contiguous last dimensions)"]
        fam = op_families(ctx)
        if fam.share("conv") + fam.share("transpose") >= _LAYOUT_SHARE_PCT:
            causes.append("NCHW convolutions that transpose on every call (channels_last)")
        launch = _advice.launch_overhead_fix(ctx)
        if launch:
            causes.append(f"tiny tensors whose launch overhead dominates ({launch})")
        causes.append("odd sizes that defeat vectorized loads")
        text += " These kernels also run well under the bandwidth they could reach: look for " + (
            ", ".join(causes) + "."
        )
    if groups.height and bool(groups.head(3)["is_gemm"].any()):
        text += " Memory-bound GEMMs among the top ops are too small: see `small-batch`."
    return text


def _short(name: str) -> str:
    name = " ".join(name.split())
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


def _cell(value: Any, digits: int) -> float | None:
    return round(float(value), digits) if value is not None else None


def _table(groups: pl.DataFrame) -> EvidenceTable:
    """Memory-bound ops with the most time: shapes, time, bandwidth and % of roof."""
    rows: list[list[str | int | float | None]] = [
        [
            _short(str(r["op_name"])),
            str(r["shapes"]) if r["shapes"] is not None else None,
            str(r["dtype"]) if r["dtype"] is not None else None,
            int(r["calls"]),
            round(r["gpu_time_ns"] / 1e6, 3),
            _cell(r["achieved_tb_per_s"], 3),
            _cell(r["pct_of_roof"], 1),
            str(r["basis"]),
        ]
        for r in groups.head(_TABLE_ROWS).iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=[
            "op",
            "shapes",
            "dtype",
            "calls",
            "GPU time (ms)",
            "achieved TB/s",
            "% of bandwidth roof",
            "basis",
        ],
        rows=rows,
    )
