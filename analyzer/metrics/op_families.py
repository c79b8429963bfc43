"""GPU time by op family: what dominates the run, the first thing a report says.

Each kernel's family comes from its launching op first, its name (`parsers.categories.family_of`)
only when no op says more: a GEMM-named kernel (cuDNN's ``sgemm`` / ``implicit_gemm`` engines)
launched by a convolution op (``aten::cudnn_convolution``, ``aten::convolution_backward``,
``miopen_*convolution``) is convolution work; so are kernels of those ops that no name row
matches. Further exceptions: kernels of
an unfused attention chain (`analyzer.metrics.attention`), which are ``attention_unfused``
whatever their names, GEMMs launched from an MoE op (expert GEMMs, ``moe``), and elementwise
kernels launched inside ``Optimizer.step`` (foreach updates, ``optimizer``). Memory
operations (memcpy, memset) count as ``copy``.

Shares are of GPU time: the sum of kernel and memory-operation durations (kernels that
overlap on several streams count in full, as in the "Top kernels" section), so the families
add up to 100%. "Top ops" name the CPU op that launched most of a family's time (``aten::bmm``,
``vllm::unified_attention``), else the kernel name.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics.attention import UnfusedAttention, unfused_attention
from gpu_trace_analyzer.metrics.launch import kernel_launch_ops, launched_inside
from gpu_trace_analyzer.parsers.categories import FAMILIES, families
from gpu_trace_analyzer.parsers.schema import TraceTables

#: CPU ops that launch convolution work, whatever their kernels are called.
CONV_OP_PATTERN = (
    r"^aten::(cudnn_convolution\w*|miopen_\w*convolution\w*|convolution_backward\w*"
    r"|_convolution\w*|convolution|conv\d?d\w*|conv_transpose\d?d\w*|mkldnn_convolution\w*"
    r"|_slow_conv\w*|slow_conv\w*|thnn_conv\w*|cudnn_convolution_transpose\w*)$"
)
#: Name families that a convolution op's kernel is counted as convolution from (layout
#: transposes, copies and elementwise kernels of a conv op keep their own family).
_CONV_OVERRIDABLE = ("gemm", "conv", "other")

#: Columns of `FamilyTime.table`.
FAMILY_COLUMNS = ("family", "label", "gpu_ns", "share_pct", "calls", "top_ops")


@dataclass(frozen=True, slots=True)
class FamilyTime:
    """GPU time per family, largest first, and the per-kernel families behind it."""

    table: pl.DataFrame
    kernel_families: pl.Series
    """One family per kernel, in kernels-table order."""
    total_ns: int

    def share(self, family: str) -> float:
        """Share (%) of GPU time in ``family`` (0.0 when absent)."""
        row = self.table.filter(pl.col("family") == family)
        return float(row["share_pct"][0]) if row.height else 0.0

    def ns(self, family: str) -> int:
        """GPU time (ns) in ``family`` (0 when absent)."""
        row = self.table.filter(pl.col("family") == family)
        return int(row["gpu_ns"][0]) if row.height else 0

    @property
    def top(self) -> str | None:
        """The family with the most GPU time (None when the trace has no GPU work)."""
        return str(self.table["family"][0]) if self.table.height else None


def op_families(ctx: AnalysisContext) -> FamilyTime:
    """The family breakdown of this analysis, computed once."""
    return ctx.metric("op_families", family_time)


def attention_of(ctx: AnalysisContext) -> UnfusedAttention:
    """The unfused attention chains of this analysis, computed once."""
    return ctx.metric("unfused_attention", unfused_attention)


def kernel_families(t: TraceTables, attention: UnfusedAttention | None = None) -> pl.Series:
    """Family per kernel (table order), unfused attention chains included."""
    names = families(t.kernels["name"])
    attention = attention if attention is not None else unfused_attention(t)
    if attention.kernel_mask.any():
        names = pl.select(
            pl.when(attention.kernel_mask).then(pl.lit("attention_unfused")).otherwise(names)
        ).to_series()
    return names.alias("family")


def inside_ops(t: TraceTables, launch: pl.DataFrame, pattern: str) -> pl.Series:
    """Per kernel (table order): launched on a thread while a CPU op or annotation whose
    name matches ``pattern`` ran there (e.g. ``Optimizer.step#``)."""
    windows = t.ops.filter(pl.col("name").cast(pl.String).str.contains(pattern)).select(
        "rank", "tid", "start_ns", (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns")
    )
    return launched_inside(t, launch, windows)


def conv_launched(launch: pl.DataFrame) -> pl.Series:
    """Per kernel (`kernel_launch_ops` order): launched by a convolution op."""
    return (
        launch["launch_op_name"]
        .cast(pl.String)
        .str.contains(CONV_OP_PATTERN)
        .fill_null(False)
        .alias("conv_op")
    )


def family_time(t: TraceTables, top_ops: int = 2) -> FamilyTime:
    """GPU time per family over kernels and memory operations, largest first."""
    launch = kernel_launch_ops(t)
    fam = kernel_families(t)
    # The launching op decides first: a convolution op's GEMM-named kernels are convolution.
    by_conv_op = conv_launched(launch) & fam.is_in(_CONV_OVERRIDABLE)
    if by_conv_op.any():
        fam = pl.select(pl.when(by_conv_op).then(pl.lit("conv")).otherwise(fam)).to_series()
        fam = fam.alias("family")
    # Elementwise foreach kernels launched by an optimizer step are the optimizer's update.
    in_step = inside_ops(t, launch, r"^Optimizer\.step#")
    if in_step.any():
        fam = (
            pl.select(
                pl.when(in_step & fam.is_in(["elementwise", "copy"]))
                .then(pl.lit("optimizer"))
                .otherwise(fam)
            )
            .to_series()
            .alias("family")
        )
    k = pl.DataFrame(
        {
            "family": fam,
            "dur_ns": t.kernels["dur_ns"],
            "launch": launch["launch_op_name"],
            "kernel": t.kernels["name"],
        }
    )
    # Aggregate on the categorical names first; strings only for the few groups left.
    k = (
        k.group_by("family", "launch", "kernel")
        .agg(pl.col("dur_ns").sum(), pl.len().alias("calls"))
        .with_columns(pl.col("launch", "kernel").cast(pl.String))
        .select(
            # A GEMM launched from an MoE op (``vllm::moe_forward``, ``fused_moe``) is an
            # expert GEMM.
            pl.when(
                (pl.col("family") == "gemm")
                & pl.col("launch").str.contains(r"(?i)moe|expert").fill_null(False)
            )
            .then(pl.lit("moe"))
            .otherwise(pl.col("family"))
            .alias("family"),
            "dur_ns",
            "calls",
            pl.coalesce("launch", "kernel").alias("op"),
        )
    )
    m = (
        t.memops.group_by(pl.col("name").cast(pl.String).alias("op"))
        .agg(pl.col("dur_ns").sum(), pl.len().alias("calls"))
        .select(pl.lit("copy").alias("family"), "dur_ns", "calls", "op")
    )
    events = pl.concat([k, m.cast(k.schema)], how="vertical") if m.height else k
    total = int(events["dur_ns"].sum() or 0)
    if events.height == 0 or total <= 0:
        schema = {
            "family": pl.String(),
            "label": pl.String(),
            "gpu_ns": pl.Int64(),
            "share_pct": pl.Float64(),
            "calls": pl.UInt32(),
            "top_ops": pl.List(pl.String()),
        }
        return FamilyTime(pl.DataFrame(schema=schema), fam, 0)
    per_op = (
        events.group_by("family", "op")
        .agg(pl.col("dur_ns").sum())
        .sort(["dur_ns", "op"], descending=[True, False])
        .group_by("family", maintain_order=True)
        .agg(pl.col("op").head(top_ops).alias("top_ops"))
    )
    table = (
        events.group_by("family")
        .agg(pl.col("dur_ns").sum().alias("gpu_ns"), pl.col("calls").sum())
        .join(per_op, on="family", how="left")
        .with_columns(
            pl.col("family").replace_strict(FAMILIES, default="uncategorized").alias("label"),
            (100.0 * pl.col("gpu_ns") / total).alias("share_pct"),
        )
        .sort(["gpu_ns", "family"], descending=[True, False])
        .select(FAMILY_COLUMNS)
    )
    return FamilyTime(table, fam, total)
