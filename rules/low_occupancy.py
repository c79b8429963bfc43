"""`low-occupancy`: kernels keep few warps resident per SM, so memory latency is not hidden.

Kineto records, per kernel, ``est. achieved occupancy %``: min(the occupancy calculator's
blocks per SM, grid blocks / SMs) x threads per block / max threads per SM. tb_plugin's
figure is its time-weighted mean over kernel time. Two corrections make it a fair verdict:

- Kineto writes 0 when the occupancy calculator cannot evaluate a kernel (kernels that opt in
  to more dynamic shared memory, e.g. cutlass / cuBLAS tensor-core kernels). A zero is left
  out as "unknown" unless the grid itself is so small that the true value rounds to 0
  (`occupancy_known`).
- Occupancy matters for latency-bound, memory-bound work; tensor-core GEMM, convolution and
  attention kernels run at low occupancy by design (large register and shared-memory tiles),
  and communication kernels use few blocks on purpose. By default the verdict covers the
  other kernels (elementwise, reduction, normalization, copies, custom kernels).

ROCm kernels carry no occupancy (nor registers or shared memory) and are left out with a
note. For each kernel the finding names what limits its occupancy (registers, shared memory,
block size, or a grid smaller than the SM count), from the device's per-SM limits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Severity
from gpu_trace_analyzer.metrics import timeline
from gpu_trace_analyzer.parsers.schema import DeviceInfo, TraceTables
from gpu_trace_analyzer.rules._common import window_scope
from gpu_trace_analyzer.rules.base import RuleConfig, register

_LIBRARY = ("gemm", "conv", "attention")
_TOP_KERNELS = 8
_NAME_CHARS = 100
#: Registers are allocated per warp in units of this many (CUDA occupancy calculator).
_REG_ALLOC_UNIT = 256
#: Resident blocks per SM, by compute capability; 32 for the others since Volta.
_MAX_BLOCKS_PER_SM = {(7, 5): 16, (8, 6): 16, (8, 7): 16, (8, 9): 24, (12, 0): 24}
_DEFAULT_MAX_BLOCKS_PER_SM = 32
#: Shared memory the CUDA runtime reserves per resident block from compute capability 8.0.
_SMEM_RESERVED_PER_BLOCK = 1024

_RECOMMENDATIONS = {
    "registers": (
        "Register pressure limits occupancy: cap registers per thread with "
        "__launch_bounds__(maxThreadsPerBlock, minBlocksPerSM) or -maxrregcount, split the "
        "kernel's live state, and for Triton kernels lower num_warps or the BLOCK sizes."
    ),
    "shared memory": (
        "Shared memory per block limits occupancy: use smaller tiles or fewer pipeline "
        "stages (Triton num_stages), or reuse shared buffers within the kernel."
    ),
    "block size": (
        "Blocks are too small to fill the SM's thread slots before the resident-block limit: "
        "launch with at least 128-256 threads per block."
    ),
    "grid": (
        "The grid has fewer blocks than the SMs can hold: give each launch more work (larger "
        "batch, fused kernels) or spread work over more, smaller blocks (see `idle-sms`)."
    ),
}


@dataclass(frozen=True, slots=True)
class LowOccupancyConfig(RuleConfig):
    """Thresholds of `low-occupancy`."""

    warning_occupancy_pct: float = 25.0
    """Time-weighted est. achieved occupancy (%) under which the rule warns."""
    min_time_share_pct: float = 10.0
    """The judged kernels must cover at least this % of compute-kernel time to matter."""
    include_library_kernels: bool = False
    """Also judge GEMM, convolution and attention kernels (low occupancy by design)."""


@register
class LowOccupancy:
    """Time-weighted estimated achieved occupancy under a threshold."""

    id: ClassVar[str] = "low-occupancy"
    title: ClassVar[str] = "Kernels run at low occupancy"
    description: ClassVar[str] = (
        "Time-weighted `est. achieved occupancy %` (tb_plugin's definition) of the kernels "
        "where occupancy hides latency (not tensor-core GEMM/conv/attention or communication; "
        "zeros from Kineto's calculator left out), with each kernel's registers, shared "
        "memory and limiting resource."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"kernels"})
    Config: ClassVar[type[LowOccupancyConfig]] = LowOccupancyConfig

    @staticmethod
    def skip_reason(ctx: AnalysisContext) -> str | None:
        """Why the rule cannot judge: no kernel records achieved occupancy."""
        if ctx.tables.kernels["occupancy_pct"].is_not_null().any():
            return None
        return (
            "no kernel records `est. achieved occupancy %` (ROCm traces and Nsight exports do not)"
        )

    def check(self, ctx: AnalysisContext, cfg: LowOccupancyConfig) -> Iterable[Finding]:
        """One finding when the judged kernels' occupancy is under the threshold."""
        kernels = ctx.metric("low_occupancy.kernels", kernels_in_window)
        compute = kernels.filter(pl.col("category") != "comm")
        known = compute.filter(occupancy_known(ctx.tables))
        judged = (
            known
            if cfg.include_library_kernels
            else known.filter(~pl.col("category").is_in(_LIBRARY))
        )
        compute_ns = int(compute["dur_ns"].sum())
        judged_ns = int(judged["dur_ns"].sum())
        if judged_ns == 0 or 100.0 * judged_ns / compute_ns < cfg.min_time_share_pct:
            return []
        occupancy_pct = weighted_occupancy_pct(judged)
        if occupancy_pct >= cfg.warning_occupancy_pct:
            return []
        low = judged.filter(pl.col("occupancy_pct") < cfg.warning_occupancy_pct)
        top = _top_kernels(low, ctx.tables)
        ranks = kernels["rank"].unique().to_list()
        missing = compute.filter(pl.col("occupancy_pct").is_null())
        return [
            Finding(
                rule_id=self.id,
                severity=Severity.WARNING,
                title=self.title,
                summary=_summary(
                    occupancy_pct, judged_ns, compute_ns, top, cfg.include_library_kernels
                ),
                evidence={
                    "occupancy_pct": round(occupancy_pct, 2),
                    "tb_plugin_occupancy_pct": round(tb_plugin_occupancy_pct(kernels), 2),
                    "judged_kernel_ns": judged_ns,
                    "judged_share_pct": round(100.0 * judged_ns / compute_ns, 2),
                    "low_occupancy_kernel_ns": int(low["dur_ns"].sum()),
                    "kernels_without_occupancy": missing.height,
                    "kernels_with_zero_occupancy": compute.filter(
                        pl.col("occupancy_pct") == 0
                    ).height,
                    "top_limiter": str(top["limiter"][0]) if top.height else "",
                },
                recommendation=_recommendation(top, missing.height),
                scope=window_scope(ctx.tables, ranks),
                impact_ns=int(low["dur_ns"].sum()),
                table=_table(top),
            )
        ]


def kernels_in_window(t: TraceTables) -> pl.DataFrame:
    """Kernels that start inside their rank's analysis window (the profiled steps); names
    and categories stay categorical."""
    return timeline.in_windows(
        t.kernels.filter(pl.col("dur_ns") > 0), timeline.analysis_windows(t, "steps")
    )


def occupancy_known(t: TraceTables) -> pl.Expr:
    """Whether a kernel's ``occupancy_pct`` is a measurement rather than Kineto's "unknown" 0.

    Kineto rounds to whole percent, so a 1-block grid of 64 threads legitimately shows 0; a
    zero is "unknown" (the occupancy calculator failed) when the grid alone would allow at
    least 0.5%: blocks per SM x threads per block / max threads per SM.
    """
    max_threads = max((d.max_threads_per_sm or 0 for d in t.meta.devices), default=0) or 2048
    threads = pl.col("block_x") * pl.col("block_y") * pl.col("block_z")
    grid_bound_pct = 100.0 * pl.col("blocks_per_sm") * threads / max_threads
    near_zero = (pl.col("occupancy_pct") == 0) & (grid_bound_pct < 0.5)
    return (pl.col("occupancy_pct") > 0) | near_zero.fill_null(False)


def weighted_occupancy_pct(kernels: pl.DataFrame) -> float:
    """Kernel-time-weighted mean of ``occupancy_pct`` (kernels without a value left out)."""
    rows = kernels.filter(pl.col("occupancy_pct").is_not_null())
    total = int(rows["dur_ns"].sum())
    if total == 0:
        return 0.0
    return float((rows["occupancy_pct"] * rows["dur_ns"]).sum()) / total


def tb_plugin_occupancy_pct(kernels: pl.DataFrame) -> float:
    """tb_plugin's figure: the weighted mean over every kernel with a value, zeros included."""
    return weighted_occupancy_pct(kernels)


def _devices(t: TraceTables) -> dict[tuple[int, int], DeviceInfo]:
    return {(d.rank, d.device): d for d in t.meta.devices}


def limiter(row: dict[str, Any], device: DeviceInfo | None) -> str:
    """What caps the kernel's resident blocks per SM: the smallest of the per-SM limits.

    Limits (blocks per SM): thread slots and the resident-block cap (``block size``),
    registers (allocated per warp in units of 256), shared memory (plus 1 KiB the runtime
    reserves per block from compute capability 8.0), and the grid itself (grid blocks / SMs).
    Returns "" when the device's limits are unknown.
    """
    if device is None or not device.max_threads_per_sm:
        return ""
    threads = _threads(row)
    if threads <= 0:
        return ""
    warp = device.warp_size or 32
    cc = (device.compute_major or 0, device.compute_minor or 0)
    max_blocks = _MAX_BLOCKS_PER_SM.get(cc, _DEFAULT_MAX_BLOCKS_PER_SM)
    limits: dict[str, float] = {
        "block size": min(device.max_threads_per_sm // threads, max_blocks),
    }
    regs = row.get("registers_per_thread") or 0
    if regs and device.regs_per_sm:
        per_warp = math.ceil(regs * warp / _REG_ALLOC_UNIT) * _REG_ALLOC_UNIT
        limits["registers"] = device.regs_per_sm // (per_warp * math.ceil(threads / warp))
    smem = row.get("shared_mem_bytes") or 0
    if smem and device.shared_mem_per_sm_bytes:
        reserved = _SMEM_RESERVED_PER_BLOCK if cc[0] >= 8 else 0  # the runtime's own share
        limits["shared memory"] = device.shared_mem_per_sm_bytes // (smem + reserved)
    if row.get("blocks_per_sm") is not None:
        limits["grid"] = float(row["blocks_per_sm"])
    return min(limits.items(), key=lambda kv: (kv[1], kv[0] != "grid"))[0]


def _threads(row: dict[str, Any]) -> int:
    dims = (row.get("block_x"), row.get("block_y"), row.get("block_z"))
    if any(d is None for d in dims):
        return 0
    return int(dims[0]) * int(dims[1]) * int(dims[2])  # type: ignore[arg-type]


def _top_kernels(low: pl.DataFrame, t: TraceTables) -> pl.DataFrame:
    """The low-occupancy kernels with the most time, one row per (name, launch config)."""
    if low.height == 0:
        return low.with_columns(pl.lit("").alias("limiter"))
    dur = pl.col("dur_ns")
    grouped = (
        low.group_by(
            "name",
            "category",
            "rank",
            "device",
            "registers_per_thread",
            "shared_mem_bytes",
            "block_x",
            "block_y",
            "block_z",
        )
        .agg(
            pl.len().alias("calls"),
            dur.sum().alias("time_ns"),
            ((pl.col("occupancy_pct") * dur).sum() / dur.sum()).alias("occupancy_pct"),
            ((pl.col("blocks_per_sm") * dur).sum() / dur.sum()).alias("blocks_per_sm"),
        )
        .with_columns(pl.col("name", "category").cast(pl.String))
        .sort(["time_ns", "name"], descending=[True, False])
        .head(_TOP_KERNELS)
    )
    devices = _devices(t)
    limiters = [
        limiter(r, devices.get((int(r["rank"]), int(r["device"]))))
        for r in grouped.iter_rows(named=True)
    ]
    return grouped.with_columns(pl.Series("limiter", limiters, dtype=pl.String))


def _short(name: str) -> str:
    name = " ".join(name.split())
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


def _summary(
    occupancy_pct: float, judged_ns: int, compute_ns: int, top: pl.DataFrame, library: bool
) -> str:
    """One sentence: the weighted occupancy, what it covers, the worst kernel."""
    which = "Compute kernels" if library else "Kernels outside GEMM/convolution/attention"
    text = (
        f"{which} ({100.0 * judged_ns / compute_ns:.0f}% of compute-kernel time) average "
        f"{occupancy_pct:.0f}% estimated achieved occupancy"
    )
    if top.height:
        r = top.row(0, named=True)
        limit = f", limited by {r['limiter']}" if r["limiter"] else ""
        text += (
            f"; the largest, `{_short(r['name'])}`, runs {r['time_ns'] / 1e6:.2f} ms at "
            f"{r['occupancy_pct']:.0f}%{limit}"
        )
    return text + "."


def _recommendation(top: pl.DataFrame, missing: int) -> str:
    """The fix for the limiter that covers the most low-occupancy time."""
    text = ""
    if top.height:
        by_limiter = (
            top.group_by("limiter")
            .agg(pl.col("time_ns").sum())
            .sort(["time_ns", "limiter"], descending=[True, False])
        )
        first = str(by_limiter["limiter"][0])
        text = _RECOMMENDATIONS.get(first, "")
        others = [str(x) for x in by_limiter["limiter"][1:] if x and str(x) != first]
        text += "".join(f" {_RECOMMENDATIONS[o]}" for o in others if o in _RECOMMENDATIONS)
    if not text:
        text = (
            "Check each kernel's registers per thread, shared memory and block size against "
            "the SM limits (Nsight Compute's occupancy section shows which one binds)."
        )
    if missing:
        text += f" ({missing} kernels carry no occupancy, e.g. ROCm kernels, and were left out.)"
    return text


def _table(top: pl.DataFrame) -> EvidenceTable:
    """Kernels with the most low-occupancy time and their resources."""
    rows: list[list[str | int | float | None]] = []
    for r in top.iter_rows(named=True):
        threads = _threads(r)
        smem = r["shared_mem_bytes"]
        rows.append(
            [
                _short(r["name"]),
                int(r["calls"]),
                round(r["time_ns"] / 1e6, 3),
                round(float(r["occupancy_pct"]), 1),
                r["registers_per_thread"],
                round(smem / 1024, 1) if smem is not None else None,
                threads or None,
                round(float(r["blocks_per_sm"]), 2) if r["blocks_per_sm"] is not None else None,
                r["limiter"] or None,
            ]
        )
    return EvidenceTable(
        columns=[
            "kernel",
            "calls",
            "time (ms)",
            "est. achieved occupancy (%)",
            "registers/thread",
            "shared memory (KiB)",
            "threads/block",
            "blocks per SM (grid)",
            "limited by",
        ],
        rows=rows,
    )
