"""CUDA/HIP graph replays: which kernels a graph launch replayed, and their share of GPU time.

A replayed kernel carries the correlation id of the ``cudaGraphLaunch`` / ``hipGraphLaunch``
call that replayed it (Kineto and Nsight both record it so), and no CPU op of its own: the op
that launched it ran at capture time. Kernels are matched to launches on (rank, correlation).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from gpu_trace_analyzer.parsers.schema import TraceTables

_GRAPH_LAUNCH = r"^(cuda|hip)GraphLaunch"


@dataclass(frozen=True, slots=True)
class GraphReplay:
    """Graph launches and the kernels they replayed."""

    launches: int
    replayed_kernels: int
    replayed_ns: int
    kernel_ns: int
    replayed_mask: pl.Series
    """Per kernel (table order): replayed from a graph."""

    @property
    def share_pct(self) -> float:
        """Share (%) of kernel time replayed from graphs (0.0 without kernels)."""
        return 100.0 * self.replayed_ns / self.kernel_ns if self.kernel_ns else 0.0


def graph_replay(t: TraceTables) -> GraphReplay:
    """Attribute kernels to graph launches by correlation id."""
    launches = t.runtime.filter(pl.col("name").cast(pl.String).str.contains(_GRAPH_LAUNCH))
    k = t.kernels.select("rank", "correlation", "dur_ns")
    kernel_ns = int(k["dur_ns"].sum() or 0)
    if launches.height == 0 or k.height == 0:
        mask = pl.Series("replayed", [False] * k.height, dtype=pl.Boolean)
        return GraphReplay(launches.height, 0, 0, kernel_ns, mask)
    keys = launches.select("rank", "correlation").drop_nulls().unique()
    mask = (
        k.join(
            keys.with_columns(pl.lit(True).alias("replayed")),
            on=["rank", "correlation"],
            how="left",
            maintain_order="left",
        )["replayed"]
        .fill_null(False)
        .alias("replayed")
    )
    replayed_ns = int(k.filter(mask)["dur_ns"].sum() or 0)
    return GraphReplay(launches.height, int(mask.sum()), replayed_ns, kernel_ns, mask)
