"""memory-headroom: peak device memory against the device's capacity, from two sources.

- The trace's ``memory`` table (PyTorch ``[memory]`` events, ``profile_memory=True``): peak
  Total Reserved (what the caching allocator holds from the driver; Total Allocated when the
  trace lacks it) per rank and device, against ``TraceMeta.devices[...].total_mem_bytes``.
- DCGM counters: peak FB used against FB total (or used + free + reserved when the total was
  not sampled), per host and GPU.

Above 90% of capacity is a warning: the next larger input, a fragmentation spike or another
process can run the device out of memory. Below 50% everywhere is an info: there is room for a
larger batch. A single DCGM snapshot proves a high peak but not a low one, so the info needs a
few samples. The rule needs either source; `skip_reason` says why it cannot run without both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import counters, timeline
from gpu_trace_analyzer.metrics.workload import WorkloadProfile, workload_profile
from gpu_trace_analyzer.parsers.schema import TraceTables
from gpu_trace_analyzer.rules.base import register

_MIB = 1024 * 1024
_GIB = 1024 * _MIB
_SKIP = (
    "no memory data: neither `[memory]` events (profile with profile_memory=True) nor DCGM "
    "framebuffer counters (FB_USED with FB_TOTAL or FB_FREE)"
)
_HIGH = (
    "Leave headroom: enable `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True` to cut "
    "fragmentation, free references to large tensors early, use activation checkpointing on "
    "the largest blocks, or lower the micro-batch and keep the global batch with gradient "
    "accumulation. Check `torch.cuda.memory_summary()` for reserved-but-unallocated memory."
)
_LOW = (
    "Raise the batch (or micro-batch) size, or the sequence length per batch, until peak "
    "memory approaches about 80-85% of the device; fewer, larger steps usually raise GPU "
    "utilization. If the batch is fixed by the recipe, drop activation checkpointing or "
    "gradient accumulation that the memory no longer requires."
)
#: Inference wording (no training vocabulary): what memory headroom buys when serving.
_HIGH_INFERENCE = (
    "Leave headroom: enable `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True` to cut "
    "fragmentation, free references to large outputs early and run under "
    "`torch.inference_mode()` so no autograd state is kept. Check "
    "`torch.cuda.memory_summary()` for reserved-but-unallocated memory."
)
_HIGH_SERVING = (
    "{engine} reserves most device memory for its KV cache on purpose; this is a risk only if "
    "another process shares the GPU or the engine reports preemptions. Then lower its memory "
    "share (vLLM `gpu_memory_utilization`, SGLang `--mem-fraction-static`) or the maximum "
    "batched tokens."
)
_LOW_INFERENCE = (
    "The device has memory to spare: run more inputs per forward pass (batch requests or "
    "frames together), or give a serving engine's KV cache more of it (vLLM "
    "`gpu_memory_utilization`, SGLang `--mem-fraction-static`) so more sequences run at once; "
    "a second model replica on the same GPU is another use."
)
_LOW_TITLE_INFERENCE = "Device memory headroom unused"


@dataclass(frozen=True, slots=True)
class MemoryHeadroomConfig:
    """Thresholds of memory-headroom."""

    warning_used_pct: float = 90.0
    """Peak memory share of the device at or above which a warning is raised (OOM risk)."""
    info_below_used_pct: float = 50.0
    """Peak memory share under which (on every device) the info about batch size is given."""
    min_counter_samples_for_info: int = 3
    """DCGM samples a GPU needs before a low peak is trusted (a snapshot can miss the peak)."""


@register
class MemoryHeadroom:
    """Peak device memory near capacity (OOM risk) or far below it (room for a larger batch)."""

    id: ClassVar[str] = "memory-headroom"
    title: ClassVar[str] = "Device memory near capacity"
    low_title: ClassVar[str] = "Device memory headroom for a larger batch"
    description: ClassVar[str] = (
        "Peak device memory from the trace's `[memory]` events (Total Reserved vs device "
        "memory) and from DCGM framebuffer counters (FB used vs total): over 90% warns of "
        "OOM and fragmentation risk; under 50% on every device suggests a larger batch."
    )
    needs: ClassVar[frozenset[str]] = frozenset()
    Config: ClassVar[type[MemoryHeadroomConfig]] = MemoryHeadroomConfig

    @staticmethod
    def skip_reason(ctx: AnalysisContext) -> str | None:
        """Why the rule cannot run (neither memory source present), or None."""
        if peaks(ctx).height == 0:
            return _SKIP
        return None

    def check(self, ctx: AnalysisContext, cfg: MemoryHeadroomConfig) -> Iterable[Finding]:
        """A warning for devices over the high mark, else an info when all are under the low."""
        table = peaks(ctx)
        if table.height == 0:
            return
        workload = ctx.metric("workload", workload_profile)
        high = table.filter(pl.col("used_pct") >= cfg.warning_used_pct)
        if high.height:
            yield _finding(_by_use(high), cfg, high=True, profile=workload)
            return
        trusted = table.filter(_proves_low(cfg))
        if trusted.height == table.height and (table["used_pct"] < cfg.info_below_used_pct).all():
            yield _finding(_by_use(table), cfg, high=False, profile=workload)


def _by_use(rows: pl.DataFrame) -> pl.DataFrame:
    """Peak rows, highest use first; equal uses in source, rank, host, device order (the
    per-device aggregation leaves rows in no fixed order: the report must not vary)."""
    keys = ["used_pct", "source", "rank", "host", "device"]
    return rows.sort(keys, descending=[True, False, False, False, False], nulls_last=True)


def _proves_low(cfg: MemoryHeadroomConfig) -> pl.Expr:
    """Whether a peak row can show memory is low: an exact allocator total, or enough DCGM
    samples (a lower bound proves a high peak, never a low one)."""
    return pl.col("exact") & (
        (pl.col("source") != "dcgm") | (pl.col("samples") >= cfg.min_counter_samples_for_info)
    )


def peaks(ctx: AnalysisContext) -> pl.DataFrame:
    """Peak use per device from both sources: source, host, rank, device, used_bytes,
    allocated_bytes, total_bytes, used_pct, samples, exact (False when the peak is only a
    lower bound); rows without a known total are dropped."""
    return ctx.metric("memory_headroom.peaks", _peaks)


def _peaks(tables: TraceTables) -> pl.DataFrame:
    """Both sources' peak rows, stacked."""
    parts = [p for p in (_trace_peaks(tables), _counter_peaks(tables)) if p.height]
    return pl.concat(parts, how="vertical") if parts else _empty()


_SCHEMA = pl.Schema(
    {
        "source": pl.String(),
        "host": pl.String(),
        "rank": pl.Int32(),
        "device": pl.Int32(),
        "used_bytes": pl.Float64(),
        "allocated_bytes": pl.Float64(),
        "total_bytes": pl.Float64(),
        "used_pct": pl.Float64(),
        "samples": pl.Int64(),
        "exact": pl.Boolean(),
    }
)


def _empty() -> pl.DataFrame:
    """The zero-row peaks table."""
    return pl.DataFrame(schema=_SCHEMA)


def _trace_peaks(tables: TraceTables) -> pl.DataFrame:
    """Peak reserved (else allocated) bytes per (rank, device) from `[memory]` events.

    Old traces (2021) carry only each event's signed ``Bytes``: their running sum is what was
    allocated since profiling began, a lower bound of the peak (``exact`` False).
    """
    mem = tables.memory.filter(pl.col("device") >= 0)
    totals = {
        (d.rank, d.device): d.total_mem_bytes for d in tables.meta.devices if d.total_mem_bytes
    }
    if mem.height == 0 or not totals:
        return _empty()
    keys = ["rank", "device"]
    total_col = pl.coalesce(pl.col("total_reserved_bytes"), pl.col("total_allocated_bytes"))
    peak = timeline.aggregate(
        mem,
        keys,
        total_col.max().alias("used_bytes"),
        pl.col("total_allocated_bytes").max().cast(pl.Float64).alias("allocated_bytes"),
        pl.len().cast(pl.Int64).alias("samples"),
        total_col.is_not_null().any().alias("exact"),
    )
    if peak.get_column("used_bytes").null_count():  # devices without totals: running sum
        running = pl.col("bytes").fill_null(0).sort_by("ts_ns").cum_sum().max()
        sums = mem.join(peak.filter(pl.col("used_bytes").is_null()).select(keys), on=keys)
        peak = peak.join(
            sums.group_by(keys).agg(running.alias("_running")),
            on=keys,
            how="left",
            maintain_order="left",
        ).with_columns(pl.coalesce("used_bytes", "_running").alias("used_bytes"))
    peak = peak.with_columns(pl.col("used_bytes").cast(pl.Float64))
    total = pl.Series(
        "total_bytes",
        [totals.get((int(r), int(d))) for r, d in peak.select("rank", "device").iter_rows()],
        dtype=pl.Float64,
    )
    return (
        peak.with_columns(total)
        .drop_nulls(["total_bytes", "used_bytes"])
        .with_columns(
            pl.lit("trace").alias("source"),
            pl.lit(None, dtype=pl.String).alias("host"),
            (100.0 * pl.col("used_bytes") / pl.col("total_bytes")).alias("used_pct"),
        )
        .select(list(_SCHEMA))
        .cast(_SCHEMA)
    )


def _counter_peaks(tables: TraceTables) -> pl.DataFrame:
    """Peak FB used per (host, GPU) from DCGM counters."""
    if tables.counters.height == 0:
        return _empty()
    use = counters.memory_use(tables.counters).drop_nulls(["fb_total_mib", "fb_used_pct_max"])
    if use.height == 0:
        return _empty()
    n = (
        counters.select_window(tables.counters)
        .filter((pl.col("metric") == "fb_used_mib") & pl.col("value").is_not_null())
        .group_by("host", "gpu")
        .agg(pl.len().cast(pl.Int64).alias("samples"))
    )
    return (
        use.join(n, on=["host", "gpu"], how="left", nulls_equal=True)
        .with_columns(
            pl.lit("dcgm").alias("source"),
            pl.lit(True).alias("exact"),
            pl.lit(None, dtype=pl.Int32).alias("rank"),
            pl.col("gpu").alias("device"),
            (pl.col("fb_used_mib_max") * _MIB).alias("used_bytes"),
            pl.lit(None, dtype=pl.Float64).alias("allocated_bytes"),
            (pl.col("fb_total_mib") * _MIB).alias("total_bytes"),
            pl.col("fb_used_pct_max").alias("used_pct"),
        )
        .select(list(_SCHEMA))
        .cast(_SCHEMA)
    )


def _where(row: dict[str, object]) -> str:
    """How the report names the device of a peak row."""
    if row["source"] == "trace":
        return f"rank {row['rank']} device {row['device']}"
    host = row["host"]
    return counters.gpu_label(host if isinstance(host, str) else None, int(str(row["device"])))


def _basis(row: dict[str, object]) -> str:
    """What a peak row measures, in words."""
    if row["source"] == "dcgm":
        return "DCGM peak FB used"
    if row["exact"]:
        return "peak reserved by PyTorch's allocator"
    return "at least: allocations since profiling began; the trace has no allocator totals"


def _finding(
    rows: pl.DataFrame,
    cfg: MemoryHeadroomConfig,
    *,
    high: bool,
    profile: WorkloadProfile | None = None,
) -> Finding:
    """A warning (high) or info (low) finding from peak rows sorted by use, highest first,
    worded for the workload (training advice only where the trace shows training)."""
    training = profile is None or not profile.is_inference
    top = rows.row(0, named=True)
    pct, used, total = float(top["used_pct"]), float(top["used_bytes"]), float(top["total_bytes"])
    basis = _basis(top)
    others = rows.height - 1
    if high:
        also = f"; {others} more device(s) over {cfg.warning_used_pct:g}%" if others else ""
        summary = (
            f"{pct:.1f}% memory utilization on {_where(top)}: {used / _GIB:.1f} of "
            f"{total / _GIB:.1f} GiB ({basis}), above {cfg.warning_used_pct:g}%: OOM and "
            f"fragmentation risk{also}."
        )
    else:
        summary = (
            f"{pct:.1f}% memory utilization at most ({_where(top)}: {used / _GIB:.1f} of "
            f"{total / _GIB:.1f} GiB, {basis}): "
            + ("room for a larger batch." if training else "room for more concurrent inputs.")
        )
    evidence: dict[str, float | int | str] = {
        "used_pct": round(pct, 2),
        "used_bytes": int(used),
        "total_bytes": int(total),
        "source": str(top["source"]),
        "device": int(top["device"]),
        "devices": rows.height,
    }
    if top["rank"] is not None:
        evidence["rank"] = int(top["rank"])
    if top["host"] is not None:
        evidence["host"] = str(top["host"])
    if top["allocated_bytes"] is not None:
        evidence["allocated_bytes"] = int(top["allocated_bytes"])
    return Finding(
        rule_id=MemoryHeadroom.id,
        severity=Severity.WARNING if high else Severity.INFO,
        title=MemoryHeadroom.title
        if high
        else (MemoryHeadroom.low_title if training else _LOW_TITLE_INFERENCE),
        summary=summary,
        evidence=evidence,
        recommendation=_advice_for(high, training, profile),
        scope=Scope(
            rank=int(top["rank"]) if top["rank"] is not None and rows.height == 1 else None,
            device=int(top["device"]) if rows.height == 1 else None,
        ),
        table=_table(rows),
    )


def _advice_for(high: bool, training: bool, profile: WorkloadProfile | None) -> str:
    """The recommendation for the workload: training, serving engine, other inference."""
    if training:
        return _HIGH if high else _LOW
    if not high:
        return _LOW_INFERENCE
    engine = profile.serving_engine if profile is not None else None
    return _HIGH_SERVING.format(engine=engine) if engine else _HIGH_INFERENCE


def _table(rows: pl.DataFrame) -> EvidenceTable:
    """Every device's peak: source, where, used (and allocated) and total GiB, share."""
    with_alloc = rows["allocated_bytes"].null_count() < rows.height
    out: list[list[str | int | float | None]] = []
    for r in rows.iter_rows(named=True):
        alloc = r["allocated_bytes"]
        cells: list[str | int | float | None] = [
            "trace [memory]" if r["source"] == "trace" else "DCGM",
            _where(r),
            round(float(r["used_bytes"]) / _GIB, 2),
        ]
        if with_alloc:
            cells.append(None if alloc is None else round(float(alloc) / _GIB, 2))
        cells += [
            round(float(r["total_bytes"]) / _GIB, 2),
            round(float(r["used_pct"]), 1),
            int(r["samples"]),
        ]
        out.append(cells)
    columns = ["source", "device", "peak used GiB"]
    if with_alloc:
        columns.append("peak allocated GiB")
    columns += ["total GiB", "used %", "samples"]
    return EvidenceTable(columns=columns, rows=out)
