"""`rocm-tuning`: ROCm-specific fixes where the trace shows the problem they solve.

Two cases, each only on traces recorded on ROCm:

- **MIOpen layout transposes** (``batched_transpose_*``, NCHW<->NHWC conversions) take a
  visible share of GPU time: MIOpen converts NCHW tensors around convolutions that run in
  NHWC. Keeping the model and inputs in ``channels_last`` removes the conversions.
- **Compute-bound GEMMs far below the roof**: hipBLASLt's default heuristic picks a kernel per
  shape without measuring it; PyTorch's TunableOp (``PYTORCH_TUNABLEOP_ENABLED=1``) times the
  candidate hipBLASLt/rocBLAS solutions for each shape once and keeps the fastest. Only GEMMs
  large enough to fill the device count (at least one 128 x 128 output tile per CU): a
  smaller GEMM is slow because it leaves CUs idle, which no kernel choice fixes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Severity
from gpu_trace_analyzer.metrics import roofline as roofline_metric
from gpu_trace_analyzer.metrics.op_families import op_families
from gpu_trace_analyzer.metrics.perf_model import is_gemm_name
from gpu_trace_analyzer.rules import _advice
from gpu_trace_analyzer.rules.base import RuleConfig, register
from gpu_trace_analyzer.rules.small_batch import gemm_dims

_ROWS = 6
#: Output tile edge used to judge whether a GEMM can fill every CU.
_TILE = 128


@dataclass(frozen=True, slots=True)
class RocmTuningConfig(RuleConfig):
    """Thresholds of `rocm-tuning`."""

    min_transpose_share_pct: float = 3.0
    """Share of GPU time (%) in layout transposes at which channels_last is advised."""
    min_slow_gemm_share_pct: float = 10.0
    """Share of kernel time (%) in slow compute-bound GEMMs at which tuning is advised."""
    slow_gemm_pct_of_roof: float = 30.0
    """A compute-bound GEMM reaching under this % of its roof counts as slow."""


@register
class RocmTuning:
    """channels_last for MIOpen transposes; TunableOp for GEMMs far below the roof (ROCm)."""

    id: ClassVar[str] = "rocm-tuning"
    title: ClassVar[str] = "ROCm libraries left untuned for this model"
    description: ClassVar[str] = (
        "On ROCm traces: MIOpen layout transposes with a visible share (channels_last), and "
        "compute-bound GEMMs far below the roof (hipBLASLt tuning, PYTORCH_TUNABLEOP_ENABLED=1)."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"kernels"})
    Config: ClassVar[type[RocmTuningConfig]] = RocmTuningConfig

    def check(self, ctx: AnalysisContext, cfg: RocmTuningConfig) -> Iterable[Finding]:
        """One finding listing the ROCm fixes whose evidence is present."""
        if not _advice.rocm(ctx):
            return []
        fam = op_families(ctx)
        transpose_pct = fam.share("transpose")
        slow = _slow_gemms(ctx, cfg)
        total_ns = int(ctx.tables.kernels["dur_ns"].sum() or 0)
        slow_ns = int(slow["gpu_time_ns"].sum()) if slow.height else 0
        slow_pct = 100.0 * slow_ns / total_ns if total_ns else 0.0
        parts_summary: list[str] = []
        parts_fix: list[str] = []
        if transpose_pct >= cfg.min_transpose_share_pct:
            parts_summary.append(
                f"MIOpen layout transposes take {transpose_pct:.1f}% of GPU time "
                f"({fam.ns('transpose') / 1e6:.2f} ms)"
            )
            parts_fix.append(
                "convert the model and its inputs to channels_last "
                "(`model.to(memory_format=torch.channels_last)`, same for the input batch) so "
                "MIOpen runs its NHWC convolutions without transposing around each one"
            )
        if slow_pct >= cfg.min_slow_gemm_share_pct:
            top = slow.row(0, named=True)
            parts_summary.append(
                f"compute-bound GEMMs reaching under {cfg.slow_gemm_pct_of_roof:.0f}% of the "
                f"roof take {slow_pct:.1f}% of kernel time (largest `{top['op_name']}` "
                f"{top['shapes']}, {float(top['pct_of_roof']):.0f}% of roof)"
            )
            parts_fix.append(
                "let PyTorch tune the GEMMs: run once with `PYTORCH_TUNABLEOP_ENABLED=1` "
                "(it times the hipBLASLt/rocBLAS solutions per shape and writes the winners to "
                "`tunableop_results*.csv`, reused on later runs), or tune offline with "
                "hipblaslt-bench for the shapes listed"
            )
        if not parts_summary:
            return []
        rows: list[list[str | int | float | None]] = [
            [
                str(r["op_name"]),
                str(r["shapes"]),
                int(r["calls"]),
                round(int(r["gpu_time_ns"]) / 1e6, 3),
                round(float(r["pct_of_roof"]), 1),
            ]
            for r in slow.head(_ROWS).iter_rows(named=True)
        ]
        return [
            Finding(
                rule_id=self.id,
                severity=Severity.WARNING,
                title=self.title,
                summary="On this ROCm run, " + "; ".join(parts_summary) + ".",
                evidence={
                    "transpose_share_pct": round(transpose_pct, 2),
                    "slow_gemm_share_pct": round(slow_pct, 2),
                    "slow_gemm_ns": slow_ns,
                },
                recommendation=("; ".join(parts_fix) + ".")[0].upper()
                + ("; ".join(parts_fix) + ".")[1:],
                impact_ns=fam.ns("transpose") + slow_ns,
                table=EvidenceTable(
                    columns=["op", "shapes", "calls", "GPU time (ms)", "% of roof"], rows=rows
                )
                if rows
                else None,
            )
        ]


def _slow_gemms(ctx: AnalysisContext, cfg: RocmTuningConfig) -> pl.DataFrame:
    """Modeled compute-bound GEMM groups under the % of roof threshold, largest first."""
    if ctx.tables.kernels.height == 0:
        return pl.DataFrame()
    roof = roofline_metric.roofline(ctx)
    ops = roof.ops
    if ops.height == 0:
        return ops
    names = [n for n in ops["op_name"].unique().to_list() if n and is_gemm_name(str(n))]
    slow = ops.filter(
        (pl.col("basis") == "modeled")
        & (pl.col("bound") == "compute")
        & pl.col("op_name").is_in(names)
        & (pl.col("pct_of_roof") < cfg.slow_gemm_pct_of_roof)
    ).sort(["gpu_time_ns", "op_name"], descending=[True, False])
    cus = max((r.spec.sm_count for r in roof.devices.values() if r.spec is not None), default=0)
    keep = []
    for name, shapes in slow.select("op_name", "shapes").iter_rows():
        dims = gemm_dims(str(name), str(shapes or ""))
        keep.append(dims is not None and dims[0] * dims[1] * dims[2] >= cus * _TILE * _TILE)
    return slow.filter(pl.Series(keep, dtype=pl.Boolean))
