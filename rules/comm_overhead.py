"""comm-overhead: communication takes a large share of the step, and part of it is exposed.

Per rank and device (`analyzer.metrics.timeline.breakdown`): communication time is the union
of NCCL/RCCL kernel intervals in the window, *exposed* communication the part no compute
kernel overlaps. The rule fires when communication reaches ``warning_comm_pct`` of the
window (tb_plugin's 10% recommendation threshold); its severity follows the exposed share.

Per collective, from the ``comms`` table, following TraceLens: an instance's latency is its
shortest duration across the ranks in the trace (which removes the time spent waiting for
the last rank to arrive; with one rank it still includes that wait, and the table says so),
algorithm bandwidth = message bytes / latency, and bus bandwidth = algorithm bandwidth x
2(n-1)/n for all-reduce, x (n-1)/n for all-gather, reduce-scatter and all-to-all, x 1 for
the rest, n being the group size. Without a ``comms`` table the NCCL kernels are listed by
name, without bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import timeline
from gpu_trace_analyzer.metrics.workload import WorkloadProfile
from gpu_trace_analyzer.parsers.schema import TraceTables
from gpu_trace_analyzer.rules import _advice
from gpu_trace_analyzer.rules.base import register

#: Collectives without a payload: markers, not data movement.
_NO_PAYLOAD = ("wait", "barrier", "")


@dataclass(frozen=True, slots=True)
class CommOverheadConfig:
    """Thresholds of comm-overhead."""

    warning_comm_pct: float = 10.0
    """Communication share of the window at which the rule fires."""
    warning_exposed_pct: float = 5.0
    """Exposed (not overlapped) communication share of the window for a warning; below it
    the finding is an info: communication is large but hidden behind compute."""
    critical_exposed_pct: float = 25.0
    """Exposed communication share of the window at which the finding becomes critical."""
    small_message_bytes: int = 1_048_576
    """Median message size under which collectives are latency-bound (1 MiB): bucket them."""
    top_collectives: int = 8
    """How many collectives the evidence table lists."""


@register
class CommOverhead:
    """Communication share of the step, its exposed part, and per-collective bandwidth."""

    id: ClassVar[str] = "comm-overhead"
    title: ClassVar[str] = "Communication takes a large share of the step"
    description: ClassVar[str] = (
        "NCCL/RCCL communication over 10% of the profiled steps, and the part of it no "
        "compute kernel overlaps; per collective: calls, bytes, time, algorithm and bus "
        "bandwidth (TraceLens formulas)."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"kernels"})
    Config: ClassVar[type[CommOverheadConfig]] = CommOverheadConfig

    def check(self, ctx: AnalysisContext, cfg: CommOverheadConfig) -> Iterable[Finding]:
        """One finding for the device with the most exposed communication, when it fires."""
        breakdown = ctx.metric("timeline.breakdown", timeline.breakdown)
        over = breakdown.filter(
            (pl.col("comm_ns") > 0) & (pl.col("comm_pct") >= cfg.warning_comm_pct)
        )
        if over.height == 0:
            return
        worst = over.sort(["exposed_comm_ns", "rank"], descending=[True, False]).row(0, named=True)
        table, stats = collective_table(ctx, int(worst["rank"]), cfg.top_collectives)
        yield _finding(
            cfg,
            worst,
            over.height,
            table,
            stats,
            _advice.profile(ctx),
            _advice.collective_library(ctx),
        )


def normalize_collective(name: str) -> str:
    """A collective's canonical name: ``_allgather_base`` and ``all_gather`` -> allgather."""
    key = name.lower().strip("_")
    for suffix in ("_into_tensor_coalesced", "_tensor_coalesced", "_coalesced", "_base"):
        key = key.removesuffix(suffix)
    key = key.removeprefix("nccl:").strip("_")
    aliases = {
        "all_reduce": "allreduce",
        "all_gather": "allgather",
        "allgather_into_tensor": "allgather",
        "reducescatter": "reduce_scatter",
        "reduce_scatter_tensor": "reduce_scatter",
        "alltoall": "all_to_all",
        "all_to_allv": "all_to_all",
        "alltoall_base": "all_to_all",
        "all_to_all_single": "all_to_all",
    }
    return aliases.get(key, key)


def bus_factor(collective: str, group_size: int) -> float:
    """Bus bandwidth / algorithm bandwidth for a collective on ``group_size`` ranks."""
    n = max(group_size, 1)
    if collective == "allreduce":
        return 2.0 * (n - 1) / n
    if collective in ("allgather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    return 1.0


def collective_instances(ctx: AnalysisContext) -> pl.DataFrame:
    """One row per collective instance with its TraceLens latency.

    Columns: collective, pg_name, seq, group_size, bytes, latency_ns (min duration over the
    ranks present), ranks (how many ranks recorded it), rank_dur_ns (list per rank).
    Instances without a sequence number stay one per (rank, row).
    """
    comms = _normalized_comms(ctx)
    if comms.height == 0:
        return comms.select("collective", "pg_name", "seq", "group_size", "bytes", "dur_ns")
    keyed = comms.with_row_index("row").with_columns(
        pl.when(pl.col("seq").is_null())
        .then(pl.format("row{}", pl.col("row")))
        .otherwise(pl.format("{}:{}", pl.col("pg_name"), pl.col("seq")))
        .alias("instance")
    )
    return keyed.group_by("instance").agg(
        pl.col("collective").first(),
        pl.col("pg_name").first(),
        pl.col("seq").first(),
        pl.col("group_size").max(),
        pl.col("bytes").max(),
        pl.col("dur_ns").min().alias("latency_ns"),
        pl.col("rank").n_unique().alias("ranks"),
    )


def collective_table(
    ctx: AnalysisContext, rank: int, top: int
) -> tuple[EvidenceTable, dict[str, float | int | str]]:
    """The per-collective evidence table, and summary figures for the evidence dict.

    Calls, bytes, message sizes and time are the reported rank's own; the bandwidths come
    from every instance in the trace (latency = shortest duration over the ranks).
    """
    instances = collective_instances(ctx)
    on_rank = _normalized_comms(ctx).filter(pl.col("rank") == rank)
    if instances.height == 0 or on_rank.height == 0:
        return _kernel_table(ctx, rank, top), {"collective_source": "kernel names"}
    mine = on_rank.group_by("collective").agg(
        pl.len().alias("calls"),
        pl.col("bytes").sum().alias("bytes"),
        pl.col("bytes").median().alias("median_bytes"),
        pl.col("dur_ns").sum().alias("rank_time_ns"),
    )
    bandwidth = (
        _with_bus_factor(instances.with_columns(pl.col("group_size").fill_null(1)))
        .filter(pl.col("bytes").fill_null(0) > 0)
        .group_by("collective")
        .agg(
            pl.col("bytes").sum().alias("all_bytes"),
            pl.col("latency_ns").sum().alias("latency_ns"),
            (pl.col("bytes") * pl.col("factor")).sum().alias("bus_bytes"),
        )
    )
    grouped = mine.join(bandwidth, on="collective", how="left").sort(
        ["rank_time_ns", "collective"], descending=[True, False]
    )
    rows: list[list[str | int | float | None]] = [
        [
            str(r["collective"]),
            int(r["calls"]),
            None if not r["bytes"] else round(int(r["bytes"]) / 2**20, 3),
            None if not r["median_bytes"] else int(r["median_bytes"]),
            round(int(r["rank_time_ns"] or 0) / 1e6, 3),
            _gbps(r["all_bytes"], int(r["latency_ns"] or 0)),
            _gbps(r["bus_bytes"], int(r["latency_ns"] or 0)),
        ]
        for r in grouped.head(top).iter_rows(named=True)
    ]
    ranks = int(instances.select(pl.col("ranks").max()).item() or 1)
    basis = "min over ranks" if ranks > 1 else "one rank, includes wait"
    table = EvidenceTable(
        columns=[
            "collective",
            f"calls on rank {rank}",
            "MiB",
            "median msg bytes",
            "time ms",
            f"algbw GB/s ({basis})",
            f"busbw GB/s ({basis})",
        ],
        rows=rows,
    )
    stats: dict[str, float | int | str] = {
        "collective_source": "comms",
        "collective_calls": int(on_rank.height),
        "latency_basis": basis,
    }
    sized = on_rank.filter(pl.col("bytes").fill_null(0) > 0)
    if sized.height:
        stats["collective_bytes"] = int(sized["bytes"].sum())
        stats["median_message_bytes"] = int(sized.select(pl.col("bytes").median()).item())
    if bandwidth.height:
        latency = int(bandwidth["latency_ns"].sum())
        stats["busbw_gbps"] = _gbps(float(bandwidth["bus_bytes"].sum()), latency) or 0.0
    return table, stats


def _with_bus_factor(instances: pl.DataFrame) -> pl.DataFrame:
    """Add ``factor`` (`bus_factor`), computed once per distinct (collective, group size);
    rows keep their order."""
    pairs = instances.select("collective", "group_size").unique()
    factors = pairs.with_columns(
        pl.Series(
            "factor",
            [bus_factor(str(c), int(n)) for c, n in pairs.iter_rows()],
            dtype=pl.Float64,
        )
    )
    return instances.join(
        factors, on=["collective", "group_size"], how="left", maintain_order="left"
    )


def _normalized_comms(ctx: AnalysisContext) -> pl.DataFrame:
    """The comms table with canonical collective names, payload-less markers removed.

    Computed once per analysis; each distinct name is normalized once.
    """
    return ctx.metric("comm_overhead.normalized_comms", _normalize_comms)


def _normalize_comms(t: TraceTables) -> pl.DataFrame:
    raw = pl.col("collective").cast(pl.String).fill_null("")
    distinct = t.comms.select(raw.unique()).to_series().to_list()
    canonical = {name: normalize_collective(name) for name in distinct}
    return (
        t.comms.with_columns(
            raw.replace_strict(canonical, return_dtype=pl.String).alias("collective"),
            pl.col("pg_name").cast(pl.String).fill_null(""),
        )
        .filter(~pl.col("collective").is_in(_NO_PAYLOAD))
        .filter(pl.col("dur_ns").is_not_null())
    )


def _kernel_table(ctx: AnalysisContext, rank: int, top: int) -> EvidenceTable:
    """Without a comms table: communication kernels by name, calls and time."""
    kernels = ctx.tables.kernels.filter(
        (pl.col("rank") == rank) & (pl.col("category").cast(pl.String) == "comm")
    )
    grouped = (
        kernels.group_by(pl.col("name").cast(pl.String))
        .agg(pl.len().alias("calls"), pl.col("dur_ns").sum().alias("total_ns"))
        .sort("total_ns", descending=True)
        .head(top)
    )
    rows: list[list[str | int | float | None]] = [
        [str(r["name"]), int(r["calls"]), round(int(r["total_ns"]) / 1e6, 3)]
        for r in grouped.iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=["communication kernel", "calls", f"time on rank {rank} ms"], rows=rows
    )


def _gbps(n_bytes: float | None, dur_ns: int) -> float | None:
    """Bandwidth in GB/s (10^9 bytes per second); None without bytes or time."""
    if not n_bytes or dur_ns <= 0:
        return None
    return round(float(n_bytes) / dur_ns, 2)


def _finding(
    cfg: CommOverheadConfig,
    row: dict[str, Any],
    devices: int,
    table: EvidenceTable,
    stats: dict[str, float | int | str],
    profile: WorkloadProfile | None = None,
    library: str = "NCCL",
) -> Finding:
    """The finding for one device: shares, exposed time, collectives."""
    rank, device = int(row["rank"]), int(row["device"])
    comm_pct, exposed_pct = float(row["comm_pct"]), float(row["exposed_comm_pct"])
    comm_ns, exposed_ns = int(row["comm_ns"]), int(row["exposed_comm_ns"])
    if exposed_pct >= cfg.critical_exposed_pct:
        severity = Severity.CRITICAL
    elif exposed_pct >= cfg.warning_exposed_pct:
        severity = Severity.WARNING
    else:
        severity = Severity.INFO
    exposed_of_comm = 100.0 * exposed_ns / comm_ns if comm_ns else 0.0
    window = "profiled steps" if row["window_basis"] == "steps" else "GPU span"
    summary = (
        f"Communication on rank {rank} device {device} takes {comm_pct:.1f}% of the {window} "
        f"({comm_ns / 1e6:.1f} ms); {exposed_of_comm:.0f}% of it ({exposed_ns / 1e6:.1f} ms, "
        f"{exposed_pct:.1f}% of the window) is not overlapped by compute."
    )
    evidence: dict[str, float | int | str] = {
        "rank": rank,
        "device": device,
        "comm_ns": comm_ns,
        "comm_pct": round(comm_pct, 2),
        "exposed_comm_ns": exposed_ns,
        "exposed_comm_pct": round(exposed_pct, 2),
        "exposed_share_of_comm_pct": round(exposed_of_comm, 2),
        "compute_ns": int(row["compute_ns"]),
        "span_ns": int(row["span_ns"]),
        "devices_over_threshold": devices,
        **stats,
    }
    return Finding(
        rule_id=CommOverhead.id,
        severity=severity,
        title=CommOverhead.title,
        summary=summary,
        evidence=evidence,
        recommendation=_recommendation(cfg, exposed_of_comm, stats, profile, library),
        scope=Scope(
            rank=rank if devices == 1 else None,
            device=device if devices == 1 else None,
            start_ns=int(row["window_start_ns"]),
            end_ns=int(row["window_end_ns"]),
        ),
        impact_ns=exposed_ns,
        table=table,
    )


def _recommendation(
    cfg: CommOverheadConfig,
    exposed_of_comm: float,
    stats: dict[str, float | int | str],
    profile: WorkloadProfile | None = None,
    library: str = "NCCL",
) -> str:
    """Advice from what the numbers show (exposure, message size, volume) and from what runs:
    DDP/FSDP advice only where they run, all-to-all advice where all-to-all dominates,
    nothing about gradients on inference traces, RCCL named on ROCm."""
    wrapper = profile.data_parallel if profile is not None else "DDP"
    training = profile is None or profile.is_training
    kinds = profile.collectives if profile is not None else ()
    parts = []
    if kinds and kinds[0] == "all_to_all":
        parts.append(
            "all-to-all dominates (MoE token dispatch or sharded embeddings): overlap it with "
            "expert or dense compute, keep the exchange inside a node (place experts or "
            "embedding shards so most traffic stays on NVLink/xGMI), and cut the bytes per "
            "token (capacity factor, fp8/bf16 dispatch)"
        )
    if exposed_of_comm >= 50.0:
        if training and wrapper == "DDP":
            parts.append(
                "overlap communication with compute: keep DDP's bucketed all-reduce running "
                "during backward (no host syncs or `find_unused_parameters` in the step)"
            )
        elif training and wrapper == "FSDP":
            parts.append(
                "overlap communication with compute: set FSDP `backward_prefetch=BACKWARD_PRE` "
                "and `forward_prefetch=True`"
            )
        elif not training:
            parts.append(
                "overlap communication with compute: tensor-parallel all-reduces sit on the "
                "critical path of every layer; use the engine's fused/custom all-reduce, or a "
                "smaller tensor-parallel degree when the model fits on fewer GPUs"
            )
        else:
            parts.append(
                f"overlap {library} collectives with compute: issue them asynchronously on a "
                "separate stream and wait only where the result is needed"
            )
    median = stats.get("median_message_bytes")
    if isinstance(median, int) and 0 < median < cfg.small_message_bytes:
        bucket = "raise DDP `bucket_cap_mb` or " if training and wrapper == "DDP" else ""
        parts.append(
            f"messages are small (median {median:,} bytes): {bucket}coalesce collectives so "
            "each call moves more data"
        )
    if training and wrapper == "DDP":
        parts.append(
            "communicate less often with gradient accumulation (`model.no_sync()` on all but "
            "the last micro-batch), or send less with a compression hook "
            "(`bf16_compress_hook`, PowerSGD)"
        )
    elif training and wrapper is None and kinds[:1] != ("all_to_all",):
        parts.append(
            "communicate less often: accumulate gradients locally over several micro-batches "
            "and all-reduce once, or all-reduce them in bf16"
        )
    if not parts:
        parts.append(f"check the {library} topology and algorithm ({library}_DEBUG=INFO)")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."
