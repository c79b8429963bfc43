"""GPU time by op family: what dominates the run, the first thing a report says.

Each kernel's family comes from its name (`parsers.categories.family_of`), except kernels of
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
from gpu_trace_analyzer.metrics.launch import kernel_launch_ops
from gpu_trace_analyzer.parsers.categories import FAMILIES, families
from gpu_trace_analyzer.parsers.schema import TraceTables

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
    windows = (
        t.ops.filter(pl.col("name").cast(pl.String).str.contains(pattern))
        .select(
            "rank",
            pl.col("tid").alias("launch_tid"),
            pl.col("start_ns").alias("w_start"),
            (pl.col("start_ns") + pl.col("dur_ns")).alias("w_end"),
        )
        .sort("w_start")
    )
    if windows.height == 0 or t.kernels.height == 0:
        return pl.Series("inside", [False] * t.kernels.height, dtype=pl.Boolean)
    k = pl.DataFrame(
        {
            "_row": pl.int_range(t.kernels.height, eager=True),
            "rank": t.kernels["rank"],
            "launch_tid": launch["launch_tid"],
            "ts": launch["launch_start_ns"],
        }
    ).drop_nulls(["launch_tid", "ts"])
    hits = (
        k.sort("ts")
        .join_asof(
            windows,
            left_on="ts",
            right_on="w_start",
            by=["rank", "launch_tid"],
            check_sortedness=False,
        )
        .filter(pl.col("w_end").is_not_null() & (pl.col("ts") <= pl.col("w_end")))
    )
    return pl.int_range(t.kernels.height, eager=True).is_in(hits["_row"].implode()).alias("inside")


def family_time(t: TraceTables, top_ops: int = 2) -> FamilyTime:
    """GPU time per family over kernels and memory operations, largest first."""
    launch = kernel_launch_ops(t)
    fam = kernel_families(t)
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
