"""`misaligned-gemm`: GEMMs whose M, N or K defeats the hardware's tiles and vector loads.

Tensor-core / matrix-core GEMM kernels load operands in 16-byte vectors and tile dimensions in
multiples of 8 elements (16 for fp8): a dimension that is not a multiple falls back to slower
kernels or pads every tile. The rule reads the roofline's modeled GEMM groups (shapes
recorded, device known) and flags those with a misaligned dimension that reach under
``max_ratio_to_siblings`` of the time-weighted % of roof of the aligned GEMMs in the same trace
(their siblings): the evidence that the shape, not the problem size, costs the time.
Unfused attention products are left to `unfused-attention`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import roofline as roofline_metric
from gpu_trace_analyzer.metrics.perf_model import is_gemm_name
from gpu_trace_analyzer.rules.base import RuleConfig, register
from gpu_trace_analyzer.rules.small_batch import attention_gemm_shapes, gemm_dims

_TABLE_ROWS = 8


@dataclass(frozen=True, slots=True)
class MisalignedGemmConfig(RuleConfig):
    """Thresholds of `misaligned-gemm`."""

    min_share_pct: float = 3.0
    """Share of kernel time (%) in slow misaligned GEMMs at which the rule fires."""
    max_ratio_to_siblings: float = 0.5
    """A misaligned GEMM is slow when its % of roof is under this fraction of its siblings'."""


def alignment(dtype: str) -> int:
    """The multiple a GEMM dimension should be: 16 for 8-bit types, else 8."""
    return 16 if ("fp8" in dtype or "int8" in dtype or "float8" in dtype) else 8


def misaligned_dims(dims: tuple[int, int, int, int], dtype: str) -> list[str]:
    """Names of the dimensions (M, N, K) that are not a multiple of the alignment."""
    a = alignment(dtype)
    return [n for n, v in zip(("M", "N", "K"), dims[1:], strict=True) if v % a]


@register
class MisalignedGemm:
    """GEMMs with a dimension off the 8/16 multiple, running far below their siblings."""

    id: ClassVar[str] = "misaligned-gemm"
    title: ClassVar[str] = "GEMM shapes that defeat the hardware"
    description: ClassVar[str] = (
        "Modeled GEMMs whose M, N or K is not a multiple of 8 (16 for fp8/int8) and that reach "
        "far less of the roof than the aligned GEMMs of the same trace; recommends padding."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"kernels", "shapes", "device_spec"})
    Config: ClassVar[type[MisalignedGemmConfig]] = MisalignedGemmConfig

    def check(self, ctx: AnalysisContext, cfg: MisalignedGemmConfig) -> Iterable[Finding]:
        """One finding when slow misaligned GEMMs take the configured share of kernel time."""
        roof = roofline_metric.roofline(ctx)
        total_ns = int(roof.kernels["dur_ns"].sum()) if roof.kernels.height else 0
        rows = gemm_rows(roof.ops, attention_gemm_shapes(ctx))
        aligned = [r for r in rows if not r["misaligned"]]
        misaligned = [r for r in rows if r["misaligned"]]
        if not total_ns or not aligned or not misaligned:
            return []
        aligned_ns = sum(r["gpu_time_ns"] for r in aligned)
        sibling_pct = sum(r["pct_of_roof"] * r["gpu_time_ns"] for r in aligned) / aligned_ns
        slow = [r for r in misaligned if r["pct_of_roof"] < cfg.max_ratio_to_siblings * sibling_pct]
        slow_ns = sum(r["gpu_time_ns"] for r in slow)
        share = 100.0 * slow_ns / total_ns
        if share < cfg.min_share_pct:
            return []
        slow.sort(key=lambda r: -r["gpu_time_ns"])
        top = slow[0]
        ranks = roof.kernels["rank"].unique().to_list()
        m, n, k = top["dims"][1:]
        return [
            Finding(
                rule_id=self.id,
                severity=Severity.WARNING,
                title=self.title,
                summary=(
                    f"{share:.1f}% of kernel time ({slow_ns / 1e6:.2f} ms) is {len(slow)} GEMM "
                    f"shape(s) with a dimension off the multiple of {alignment(top['dtype'])} "
                    f"that reach {top['pct_of_roof']:.0f}% of the roof where the aligned GEMMs "
                    f"reach {sibling_pct:.0f}%; the largest, `{top['op_name']}` with M={m}, "
                    f"N={n}, K={k}, is misaligned in {', '.join(top['misaligned'])}."
                ),
                evidence={
                    "slow_misaligned_share_pct": round(share, 2),
                    "slow_misaligned_ns": slow_ns,
                    "kernel_time_ns": total_ns,
                    "sibling_pct_of_roof": round(sibling_pct, 2),
                    "top_op": str(top["op_name"]),
                    "top_m": m,
                    "top_n": n,
                    "top_k": k,
                    "top_pct_of_roof": round(top["pct_of_roof"], 2),
                },
                recommendation=(
                    "Pad the offending dimension to a multiple of "
                    f"{alignment(top['dtype'])}: sequence or token counts (pad the input "
                    "length, or the number of patches/frames), vocabulary size (pad the "
                    "embedding and output projection, e.g. `pad_to_multiple_of=64`), hidden "
                    "and intermediate sizes (pad the weights once at load time). The padded "
                    "GEMM does a little more arithmetic but runs on the fast tiles."
                ),
                scope=Scope(rank=int(ranks[0]) if len(ranks) == 1 else None),
                impact_ns=slow_ns,
                table=_table(slow),
            )
        ]


def gemm_rows(ops: pl.DataFrame, skip_shapes: set[tuple[int, int, int]]) -> list[dict[str, Any]]:
    """Modeled tensor-pipe GEMM groups with dims, misaligned dims and % of roof."""
    if ops.height == 0:
        return []
    names = [n for n in ops["op_name"].unique().to_list() if n and is_gemm_name(str(n))]
    gemms = ops.filter(
        (pl.col("basis") == "modeled")
        & (pl.col("pipe") == "tensor")
        & pl.col("op_name").is_in(names)
        & pl.col("pct_of_roof").is_not_null()
        & ~pl.col("above_roof").fill_null(False)
    )
    out = []
    for r in gemms.iter_rows(named=True):
        dims = gemm_dims(str(r["op_name"]), str(r["shapes"] or ""))
        if dims is None or tuple(dims[1:]) in skip_shapes:
            continue
        dtype = str(r["dtype"] or "")
        out.append(
            {
                "op_name": str(r["op_name"]),
                "shapes": str(r["shapes"]),
                "dtype": dtype,
                "dims": dims,
                "misaligned": misaligned_dims(dims, dtype),
                "calls": int(r["calls"]),
                "gpu_time_ns": int(r["gpu_time_ns"]),
                "pct_of_roof": float(r["pct_of_roof"]),
            }
        )
    return out


def _table(rows: list[dict[str, Any]]) -> EvidenceTable:
    """The slow misaligned GEMMs: op, M x N x K, misaligned dims, dtype, time, % of roof."""
    return EvidenceTable(
        columns=[
            "op",
            "M x N x K",
            "misaligned",
            "dtype",
            "calls",
            "GPU time (ms)",
            "% of roof",
        ],
        rows=[
            [
                r["op_name"],
                f"{r['dims'][1]} x {r['dims'][2]} x {r['dims'][3]}",
                ", ".join(r["misaligned"]),
                r["dtype"],
                r["calls"],
                round(r["gpu_time_ns"] / 1e6, 3),
                round(r["pct_of_roof"], 1),
            ]
            for r in rows[:_TABLE_ROWS]
        ],
    )
