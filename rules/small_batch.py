"""`small-batch`: GEMMs too small to reach the tensor cores' compute roof.

A GEMM of M x K by K x N moves about (MK + KN + MN) elements and does 2MNK FLOPs, so its
arithmetic intensity is roughly its smallest dimension (in bf16, where an element is 2
bytes). Below the device's ridge point (peak FLOP/s over memory bandwidth: ~295 FLOP/B for
bf16 on an H100) the GEMM is memory-bound by construction: no kernel can bring it near the
tensor roof. The usual cause is a small batch: few tokens (M) per projection.

The rule reads the roofline's modeled op groups (shapes recorded): GEMM ops on the tensor
pipe that are memory-bound and run under a small share of the tensor peak. For each it gives
M, N, K (from the recorded shapes), the intensity against the ridge point, the achieved
TFLOP/s and the % of the tensor peak.

Batched matmuls of unfused attention (Q·Kᵀ and P·V, `analyzer.metrics.attention`) are not
claimed: their FLOP/byte is set by the head dimension, not the batch, and the fix is a fused
attention kernel (`unfused-attention`). The advice is worded for the workload: gradient
accumulation only on training traces, request batching on inference, no CUDA/HIP graphs or
torch.compile where the trace shows them running.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.devices import DeviceSpec
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import roofline as roofline_metric
from gpu_trace_analyzer.metrics.op_families import attention_of
from gpu_trace_analyzer.metrics.perf_model import is_gemm_name
from gpu_trace_analyzer.rules import _advice
from gpu_trace_analyzer.rules.base import RuleConfig, register

_TABLE_ROWS = 8


@dataclass(frozen=True, slots=True)
class SmallBatchConfig(RuleConfig):
    """Thresholds of `small-batch`."""

    warning_share_pct: float = 10.0
    """Share of kernel time (%) in small GEMMs at which the rule warns."""
    critical_share_pct: float = 50.0
    """Share of kernel time (%) in small GEMMs at which the finding is critical."""
    max_pct_of_peak: float = 25.0
    """A memory-bound GEMM counts as small when it reaches under this % of the tensor peak."""


@register
class SmallBatch:
    """Memory-bound GEMMs far below the tensor roof, from modeled shapes."""

    id: ClassVar[str] = "small-batch"
    title: ClassVar[str] = "GEMMs too small to use the tensor cores well"
    description: ClassVar[str] = (
        "GEMMs on the tensor pipe whose shapes put them below the ridge point (memory-bound) "
        "and far below the tensor peak, with M, N, K, intensity vs ridge and % of peak; "
        "needs recorded shapes and a known device."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"kernels", "shapes", "device_spec"})
    Config: ClassVar[type[SmallBatchConfig]] = SmallBatchConfig

    def check(self, ctx: AnalysisContext, cfg: SmallBatchConfig) -> Iterable[Finding]:
        """One finding when small GEMMs take a large enough share of kernel time."""
        roof = roofline_metric.roofline(ctx)
        total_ns = int(roof.kernels["dur_ns"].sum()) if roof.kernels.height else 0
        if total_ns == 0:
            return []
        small = _not_attention(ctx, small_gemms(roof.ops, cfg.max_pct_of_peak))
        small_ns = int(small["gpu_time_ns"].sum()) if small.height else 0
        share_pct = 100.0 * small_ns / total_ns
        if share_pct < cfg.warning_share_pct:
            return []
        specs = _specs(roof)
        rows = _rows(small, specs)
        gemm_ns = int(_tensor_gemms(roof.ops)["gpu_time_ns"].sum())
        severity = Severity.CRITICAL if share_pct >= cfg.critical_share_pct else Severity.WARNING
        top = rows[0]
        ranks = roof.kernels["rank"].unique().to_list()
        return [
            Finding(
                rule_id=self.id,
                severity=severity,
                title=self.title,
                summary=_summary(share_pct, small_ns, small, top),
                evidence={
                    "small_gemm_share_pct": round(share_pct, 2),
                    "small_gemm_ns": small_ns,
                    "small_gemm_calls": int(small["calls"].sum()),
                    "tensor_gemm_ns": gemm_ns,
                    "kernel_time_ns": total_ns,
                    "top_op": str(top["op_name"]),
                    "top_shapes": str(top["shapes"]),
                    "top_min_dim": int(top["min_dim"]) if top["min_dim"] is not None else 0,
                    "top_intensity_flop_per_byte": round(float(top["intensity"]), 1),
                    "top_ridge_flop_per_byte": round(float(top["ridge"] or 0.0), 1),
                    "top_pct_of_peak": round(float(top["pct_of_peak"]), 2),
                },
                recommendation=_recommendation(rows, ctx),
                scope=Scope(rank=int(ranks[0]) if len(ranks) == 1 else None),
                impact_ns=small_ns,
                table=_table(rows),
            )
        ]


def attention_gemm_shapes(ctx: AnalysisContext) -> set[tuple[int, int, int]]:
    """(M, N, K) of the products of unfused attention chains: Q·Kᵀ is (q, k, d), P·V (q, d, k)."""
    chains = attention_of(ctx).chains
    shapes: set[tuple[int, int, int]] = set()
    for q, k, d in chains.select("q_len", "k_len", "head_dim").unique().iter_rows():
        shapes.add((int(q), int(k), int(d)))
        shapes.add((int(q), int(d), int(k)))
    return shapes


def _not_attention(ctx: AnalysisContext, small: pl.DataFrame) -> pl.DataFrame:
    """The small GEMM groups minus the batched matmuls of unfused attention chains."""
    shapes = attention_gemm_shapes(ctx)
    if not shapes or small.height == 0:
        return small
    keep = []
    for r in small.select("op_name", "shapes").iter_rows():
        dims = gemm_dims(str(r[0]), str(r[1] or ""))
        keep.append(dims is None or (dims[1], dims[2], dims[3]) not in shapes)
    return small.filter(pl.Series(keep, dtype=pl.Boolean))


def _tensor_gemms(ops: pl.DataFrame) -> pl.DataFrame:
    """Modeled GEMM op groups on the tensor pipe."""
    if ops.height == 0:
        return ops
    names = ops["op_name"].unique().to_list()
    gemm_names = [n for n in names if n is not None and is_gemm_name(str(n))]
    return ops.filter(
        (pl.col("basis") == "modeled")
        & (pl.col("pipe") == "tensor")
        & pl.col("op_name").is_in(gemm_names)
    )


def small_gemms(ops: pl.DataFrame, max_pct_of_peak: float) -> pl.DataFrame:
    """Tensor-pipe GEMM groups that are memory-bound and under ``max_pct_of_peak`` of peak.

    Adds ``pct_of_peak`` (achieved TFLOP/s over the tensor peak, %), largest time first.
    """
    gemms = _tensor_gemms(ops)
    if gemms.height == 0:
        return gemms.with_columns(pl.lit(None, dtype=pl.Float64).alias("pct_of_peak"))
    pct = 100.0 * pl.col("achieved_tflops") / pl.col("peak_tflops")
    return (
        gemms.with_columns(pct.alias("pct_of_peak"))
        .filter((pl.col("bound") == "memory") & (pl.col("pct_of_peak") < max_pct_of_peak))
        .sort(["gpu_time_ns", "op_name"], descending=[True, False])
    )


def _specs(roof: roofline_metric.Roofline) -> dict[str, DeviceSpec]:
    """Device specs by the roofline's device key."""
    return {r.spec.key: r.spec for r in roof.devices.values() if r.spec is not None}


def gemm_dims(op_name: str, shapes: str) -> tuple[int, int, int, int] | None:
    """(batch, M, N, K) of a GEMM from the roofline's shapes label, or None.

    The label lists tensor inputs as ``AxB`` in argument order: ``aten::addmm`` /
    ``aten::baddbmm`` start with the bias, ``aten::linear`` has the weight as N x K.
    """
    try:
        tensors = [
            tuple(int(d) for d in part.strip().split("x")) for part in shapes.split(",") if part
        ]
    except ValueError:
        return None
    name = op_name.split("::")[-1]
    if name in ("addmm", "baddbmm", "addbmm", "_addmm_activation"):
        tensors = tensors[1:3]
    if len(tensors) < 2:
        return None
    a, b = tensors[0], tensors[1]
    if name == "linear":
        if len(b) != 2 or not a:
            return None
        return 1, math.prod(a[:-1]) if len(a) > 1 else 1, b[0], b[1]
    if len(a) < 2 or len(b) < 2:
        return None
    batch = max(math.prod(a[:-2]), math.prod(b[:-2]))
    return batch, a[-2], b[-1], a[-1]


def _rows(small: pl.DataFrame, specs: dict[str, DeviceSpec]) -> list[dict[str, Any]]:
    """The small GEMM groups with their dimensions and the ridge point of their roof."""
    rows = []
    for r in small.iter_rows(named=True):
        dims = gemm_dims(str(r["op_name"]), str(r["shapes"] or ""))
        spec = specs.get(str(r["device_key"]))
        ridge = spec.ridge_flop_per_byte("tensor", str(r["roof_dtype"])) if spec else None
        rows.append(
            {
                **r,
                "dims": dims,
                "min_dim": min(dims[1:]) if dims else None,
                "intensity": float(r["intensity_flop_per_byte"] or 0.0),
                "ridge": ridge,
            }
        )
    return rows


def _summary(share_pct: float, small_ns: int, small: pl.DataFrame, top: dict[str, Any]) -> str:
    """One sentence: share, count, and the largest small GEMM with its shape and % of peak."""
    dims = top["dims"]
    shape = f"M={dims[1]}, N={dims[2]}, K={dims[3]}" if dims else str(top["shapes"])
    ridge = f" (ridge {top['ridge']:.0f})" if top["ridge"] else ""
    return (
        f"{share_pct:.0f}% of kernel time ({small_ns / 1e6:.2f} ms, {int(small['calls'].sum())} "
        f"calls) is GEMMs too small for the tensor cores; the largest, `{top['op_name']}` with "
        f"{shape}, has {top['intensity']:.0f} FLOP/B{ridge} and reaches "
        f"{top['pct_of_peak']:.1f}% of the {top['roof_dtype']} tensor peak."
    )


def _recommendation(rows: list[dict[str, Any]], ctx: AnalysisContext | None = None) -> str:
    """Raise the smallest dimension; which one depends on where it is small; the words
    depend on the workload (training, serving, other inference)."""
    small_m = any(r["dims"] and r["dims"][1] <= min(r["dims"][2:]) for r in rows)
    batch = (
        _advice.batch_advice(ctx)
        if ctx is not None
        else "raise the batch size; pack variable-length sequences into full-length rows"
    )
    text = (
        f"Give each GEMM more rows: {batch}."
        if small_m
        else "Widen the small dimension: concatenate projections that share an input "
        "(fused QKV, gate and up projections) into one GEMM, or batch independent small "
        "matmuls into one bmm / grouped GEMM."
    )
    launch = _advice.launch_overhead_fix(ctx) if ctx is not None else "CUDA graphs"
    if launch:
        text += (
            f" When the shapes cannot grow, {launch} at least removes the launch overhead that "
            "dominates such short GEMMs."
        )
    return text


def _table(rows: list[dict[str, Any]]) -> EvidenceTable:
    """The small GEMMs: shapes, dims, calls, time, intensity vs ridge, % of peak."""
    out: list[list[str | int | float | None]] = []
    for r in rows[:_TABLE_ROWS]:
        dims = r["dims"]
        out.append(
            [
                str(r["op_name"]),
                str(r["shapes"]),
                f"{dims[1]} x {dims[2]} x {dims[3]}" + (f" (x{dims[0]})" if dims[0] > 1 else "")
                if dims
                else None,
                str(r["dtype"]),
                int(r["calls"]),
                round(r["gpu_time_ns"] / 1e6, 3),
                round(r["intensity"], 1),
                round(r["ridge"], 0) if r["ridge"] else None,
                round(float(r["achieved_tflops"]), 2),
                round(float(r["pct_of_peak"]), 2),
            ]
        )
    return EvidenceTable(
        columns=[
            "op",
            "shapes",
            "M x N x K",
            "dtype",
            "calls",
            "GPU time (ms)",
            "FLOP/B",
            "ridge FLOP/B",
            "TFLOP/s",
            "% of tensor peak",
        ],
        rows=out,
    )
