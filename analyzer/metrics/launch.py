"""Each kernel's launching CPU op: the innermost op carrying the kernel's external id.

The op families (`analyzer.metrics.op_families`), unfused-attention detection
(`analyzer.metrics.attention`) and graph attribution read kernels beside the op that launched
them; this module computes that link once per analysis (``ctx.metric("launch_ops", ...)``).
"""

from __future__ import annotations

import polars as pl
from gpu_trace_analyzer.metrics.roofline import launch_external_ids
from gpu_trace_analyzer.parsers.schema import TraceTables

#: Columns of `kernel_launch_ops`, one row per kernel in table order.
LAUNCH_COLUMNS = ("launch_op", "launch_op_name", "launch_tid", "launch_start_ns")


def kernel_launch_ops(t: TraceTables) -> pl.DataFrame:
    """Per kernel (table order): ``launch_op`` id, its name (categorical), thread and start.

    The innermost CPU op with the kernel's external id (the first in table order among
    equally deep ones); nulls where no op carries it (GPU-only traces, graph replays).
    """
    ext = launch_external_ids(t)["external_id"]
    keys = pl.DataFrame({"rank": t.kernels["rank"], "_ext": ext})
    ops = (
        t.ops.filter(
            (pl.col("kind") == "cpu_op")
            & pl.col("external_id").is_in(ext.drop_nulls().unique().implode())
        )
        .select("rank", "op_id", "depth", "external_id", "name", "tid", "start_ns")
        .sort("depth", descending=True, maintain_order=True)
        .unique(["rank", "external_id"], keep="first")
        .select(
            "rank",
            pl.col("external_id").alias("_ext"),
            pl.col("op_id").alias("launch_op"),
            pl.col("name").alias("launch_op_name"),
            pl.col("tid").alias("launch_tid"),
            pl.col("start_ns").alias("launch_start_ns"),
        )
    )
    joined = keys.join(ops, on=["rank", "_ext"], how="left", maintain_order="left")
    return joined.select(LAUNCH_COLUMNS)


def launched_inside(t: TraceTables, launch: pl.DataFrame, windows: pl.DataFrame) -> pl.Series:
    """Per kernel (table order): its launching call started on a thread while one of
    ``windows`` (columns rank, tid, start_ns, end_ns: CPU ranges on that thread) was open.
    ``launch`` is `kernel_launch_ops(t)`."""
    return launching_window(t, launch, windows).is_not_null().alias("inside")


def launching_window(t: TraceTables, launch: pl.DataFrame, windows: pl.DataFrame) -> pl.Series:
    """Per kernel (table order): the row index in ``windows`` of the window its launching
    call started in (the latest one opened before it on its thread), null when none."""
    n = t.kernels.height
    if windows.height == 0 or n == 0:
        return pl.Series("window", [None] * n, dtype=pl.UInt32)
    k = pl.DataFrame(
        {
            "_row": pl.int_range(n, eager=True),
            "rank": t.kernels["rank"],
            "tid": launch["launch_tid"],
            "ts": launch["launch_start_ns"],
        }
    ).drop_nulls(["tid", "ts"])
    hits = (
        k.sort("ts")
        .join_asof(
            windows.select("rank", "tid", "start_ns", "end_ns")
            .with_row_index("_window")
            .sort("start_ns"),
            left_on="ts",
            right_on="start_ns",
            by=["rank", "tid"],
            check_sortedness=False,
        )
        .filter(pl.col("end_ns").is_not_null() & (pl.col("ts") <= pl.col("end_ns")))
    )
    rows = pl.DataFrame({"_row": pl.int_range(n, eager=True)})
    joined = rows.join(hits.select("_row", "_window"), on="_row", how="left", maintain_order="left")
    return joined["_window"].alias("window")
