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
from gpu_trace_analyzer.metrics import advice as _advice
from gpu_trace_analyzer.metrics import timeline
from gpu_trace_analyzer.metrics.collective_link import (
    collective_instances as matched_instances,
)
from gpu_trace_analyzer.metrics.collective_link import (
    link_table,
    payload_comms,
    with_bus_factor,
)
from gpu_trace_analyzer.metrics.workload import WorkloadProfile
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.rules.base import register


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
    """Median message size under which collectives are latency-bound (2^20 bytes): bucket them."""
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
        waits = waiting_collectives(ctx)
        stats.update(_wait_evidence(waits))
        stats.update(_stream_evidence(ctx, int(worst["rank"]), int(worst["device"])))
        stats.update(collective_phases(ctx, int(worst["rank"])))
        yield _finding(
            cfg,
            worst,
            over.height,
            table,
            stats,
            _advice.profile(ctx),
            _advice.collective_library(ctx),
        )


def waiting_collectives(ctx: AnalysisContext) -> dict[str, dict[str, Any]]:
    """Collective types that mostly wait for a late rank (`analyzer.metrics.collective_link`:
    start spread at least half the longest rank's time, bus bandwidth far below the link):
    per type, its largest waiting row of the "Collectives against the link" table, kept when
    waiting rows hold at least half of that type's time."""
    table = link_table(ctx)
    if table.height == 0:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for kind in table["collective"].unique().to_list():
        rows = table.filter(pl.col("collective") == kind)
        waiting = rows.filter(pl.col("verdict") == "waiting").sort("time_ns", descending=True)
        total = int(rows["time_ns"].sum() or 0)
        if waiting.height and total and 2 * int(waiting["time_ns"].sum() or 0) >= total:
            out[str(kind)] = waiting.row(0, named=True)
    return out


def _wait_evidence(waits: dict[str, dict[str, Any]]) -> dict[str, float | int | str]:
    """Evidence figures of the waiting collectives (start spread, last rank)."""
    ev: dict[str, float | int | str] = {}
    if waits:
        ev["waiting_collectives"] = ",".join(sorted(waits))
    for kind, row in waits.items():
        ev[f"wait_share_pct_{kind}"] = round(float(row["wait_share_pct"]), 1)
        ev[f"max_start_spread_ns_{kind}"] = int(row["max_spread_ns"])
        ev[f"last_rank_{kind}"] = int(row["last_rank"])
        if row.get("ranks_traced") is not None:
            ev[f"ranks_traced_{kind}"] = int(row["ranks_traced"])
            ev[f"group_size_{kind}"] = int(row["group_size"])
    return ev


def _stream_evidence(ctx: AnalysisContext, rank: int, device: int) -> dict[str, str | int]:
    """Which streams the collectives and the compute kernels of one device use: advice to put
    communication "on its own stream" is void when the trace shows it already is."""
    k = ctx.tables.kernels.filter((pl.col("rank") == rank) & (pl.col("device") == device))
    is_comm = pl.col("category").cast(pl.String) == "comm"
    comm = sorted(int(x) for x in k.filter(is_comm)["stream"].drop_nulls().unique().to_list())
    compute = sorted(int(x) for x in k.filter(~is_comm)["stream"].drop_nulls().unique().to_list())
    if not comm:
        return {}
    return {
        "comm_streams": ",".join(map(str, comm)),
        "compute_streams": ",".join(map(str, compute)),
        "comm_on_own_stream": int(not set(comm) & set(compute)),
    }


#: Enclosing CPU ranges that say which part of the program issues a collective, in order of
#: precedence: (phase, pattern on the range's name).
_PHASES: tuple[tuple[str, str], ...] = (
    ("optimizer", r"^Optimizer\.step#"),
    ("FSDP", r"FSDP"),
    ("TorchRec", r"(?i)torchrec|TrainPipeline"),
)


def collective_phases(ctx: AnalysisContext, rank: int) -> dict[str, str]:
    """Per collective on ``rank``: the phase enclosing most of its calls (``phase_<kind>``:
    optimizer / FSDP / TorchRec; the range name in ``phase_range_<kind>``), from the CPU
    range on the launching thread that contains the launch call; and the streams it runs
    on (``streams_<kind>``). All-gather in ``Optimizer.step#Shampoo.step`` is the
    optimizer's communication, not FSDP's parameter gather."""
    t = ctx.tables
    comms = _normalized_comms(ctx).filter(pl.col("rank") == rank)
    if comms.height == 0 or "correlation" not in comms.columns:
        return {}
    out: dict[str, str] = {}
    k = t.kernels.filter(pl.col("rank") == rank).select("correlation", "stream")
    streams = (
        comms.join(k, on="correlation", how="inner")
        .group_by("collective")
        .agg(pl.col("stream").drop_nulls().unique().sort())
    )
    for kind, ids in streams.iter_rows():
        if ids:
            out[f"streams_{kind}"] = ",".join(str(int(x)) for x in ids)
    launches = comms.select("collective", "correlation").join(
        t.runtime.filter(pl.col("rank") == rank).select(
            "correlation", "tid", pl.col("start_ns").alias("launch_ns")
        ),
        on="correlation",
        how="inner",
    )
    name = pl.col("name").cast(pl.String)
    ranges = t.ops.filter(pl.col("rank") == rank).select(
        "tid",
        name.alias("range"),
        "start_ns",
        (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"),
    )
    for phase, pattern in _PHASES:
        found = ranges.filter(pl.col("range").str.contains(pattern))
        if found.height == 0 or launches.height == 0:
            continue
        inside = (
            launches.join(found, on="tid", how="inner")
            .filter(
                (pl.col("launch_ns") >= pl.col("start_ns"))
                & (pl.col("launch_ns") <= pl.col("end_ns"))
            )
            .unique(["collective", "correlation"])
        )
        calls = launches.group_by("collective").len()
        counts = inside.group_by("collective").agg(
            pl.len().alias("n"), pl.col("range").mode().first()
        )
        for kind, n, rng in counts.iter_rows():
            total = int(calls.filter(pl.col("collective") == kind)["len"].sum())
            if f"phase_{kind}" not in out and total and 2 * int(n) >= total:
                out[f"phase_{kind}"] = phase
                out[f"phase_range_{kind}"] = str(rng)
    return out


def collective_instances(ctx: AnalysisContext) -> pl.DataFrame:
    """One row per collective instance with its TraceLens latency.

    Columns: collective, pg_name, group_size, bytes, latency_ns (min duration over the ranks
    present), ranks (how many ranks recorded it). Instances are matched across ranks by
    `analyzer.metrics.collective_link.collective_instances` (sequence number, else overlap in
    time), so a trace without sequence numbers still gets the wait removed.
    """
    inst = ctx.metric("collective_link.instances", matched_instances)
    return inst.select(
        "collective",
        "pg_name",
        "group_size",
        "bytes",
        pl.col("min_dur_ns").alias("latency_ns"),
        "ranks",
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
        with_bus_factor(instances.with_columns(pl.col("group_size").fill_null(1)))
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
            None if not r["bytes"] else round(int(r["bytes"]) / fmt.MB, 3),
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
            "MB",
            "median msg bytes",
            "time ms",
            f"algbw GB/s ({basis})",
            f"busbw GB/s ({basis})",
        ],
        rows=rows,
    )
    total_ns = int(mine["rank_time_ns"].sum() or 0)
    stats: dict[str, float | int | str] = {
        "collective_source": "comms",
        "collective_calls": int(on_rank.height),
        "latency_basis": basis,
    }
    for r in grouped.iter_rows(named=True):
        if total_ns > 0:
            stats[f"time_pct_{r['collective']}"] = round(
                100.0 * int(r["rank_time_ns"] or 0) / total_ns, 1
            )
    sized = on_rank.filter(pl.col("bytes").fill_null(0) > 0)
    if sized.height:
        stats["collective_bytes"] = int(sized["bytes"].sum())
        stats["median_message_bytes"] = int(sized.select(pl.col("bytes").median()).item())
    if bandwidth.height:
        latency = int(bandwidth["latency_ns"].sum())
        stats["busbw_gbps"] = _gbps(float(bandwidth["bus_bytes"].sum()), latency) or 0.0
    return table, stats


def _normalized_comms(ctx: AnalysisContext) -> pl.DataFrame:
    """The comms table with canonical collective names, payload-less markers removed.

    Computed once per analysis; each distinct name is normalized once.
    """
    return ctx.metric("comm_overhead.normalized_comms", payload_comms)


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
    waits = {
        kind: {
            "wait_share_pct": stats.get(f"wait_share_pct_{kind}"),
            "max_spread_ns": stats.get(f"max_start_spread_ns_{kind}"),
            "last_rank": stats.get(f"last_rank_{kind}"),
            "ranks_traced": stats.get(f"ranks_traced_{kind}"),
            "group_size": stats.get(f"group_size_{kind}"),
        }
        for kind in str(stats.get("waiting_collectives", "")).split(",")
        if kind
    }
    return Finding(
        rule_id=CommOverhead.id,
        severity=severity,
        title=CommOverhead.title,
        summary=summary,
        evidence=evidence,
        recommendation=_recommendation(cfg, exposed_of_comm, stats, profile, library, waits),
        scope=Scope(
            rank=rank if devices == 1 else None,
            device=device if devices == 1 else None,
            start_ns=int(row["window_start_ns"]),
            end_ns=int(row["window_end_ns"]),
        ),
        impact_ns=exposed_ns,
        table=table,
    )


def _shares(stats: dict[str, float | int | str], kinds: tuple[str, ...]) -> dict[str, float]:
    """Share (%) of communication time per collective, from the evidence (``time_pct_*``);
    without per-collective times, the profile's most-time-first order with no shares."""
    shares = {
        key.removeprefix("time_pct_"): float(value)
        for key, value in stats.items()
        if key.startswith("time_pct_") and isinstance(value, int | float)
    }
    return shares or dict.fromkeys(kinds, 0.0)


def _recommendation(
    cfg: CommOverheadConfig,
    exposed_of_comm: float,
    stats: dict[str, float | int | str],
    profile: WorkloadProfile | None = None,
    library: str = "NCCL",
    waits: dict[str, dict[str, Any]] | None = None,
) -> str:
    """Advice per collective type, most time first, in the parallelism that runs it: TorchRec
    or MoE advice for all-to-all, FSDP prefetch for all-gather/reduce-scatter, DDP bucketing,
    ``no_sync`` and compression hooks only for the all-reduce share of a DDP run, nothing
    about gradients on inference traces, RCCL named on ROCm. A collective that waits for a
    late rank (``waits``) gets advice about that rank's work, not about communication; a
    collective already on its own stream is not told to move to one."""
    wrapper = profile.data_parallel if profile is not None else "DDP"
    training = profile is None or profile.is_training
    kinds = profile.collectives if profile is not None else ()
    torchrec = profile is not None and profile.uses("TorchRec")
    shares = _shares(stats, kinds)
    exposed = exposed_of_comm >= 50.0
    waits = waits or {}
    own = stats.get("comm_on_own_stream") == 1
    streams = str(stats.get("comm_streams", ""))
    parts: list[str] = []
    for kind, pct in shares.items():
        if pct and pct < 10.0 and parts:
            continue
        share = f" ({pct:.0f}% of communication time)" if pct else ""
        label = {
            "allgather": "all-gather",
            "reduce_scatter": "reduce-scatter",
            "allreduce": "all-reduce",
            "all_to_all": "all-to-all",
        }.get(kind, kind)
        phase = stats.get(f"phase_{kind}")
        own_streams = str(stats.get(f"streams_{kind}", streams))
        if kind in waits:
            parts.append(_waiting_advice(label, share, waits[kind]))
        elif phase == "optimizer":
            parts.append(
                f"{label}{share} runs inside `{stats.get(f'phase_range_{kind}')}`: it is the "
                "optimizer's own communication (e.g. Distributed Shampoo's gather of "
                "preconditioned updates), not a parameter gather: use the optimizer's "
                "settings (communication dtype such as `communication_dtype=BF16`, the size of "
                "its distributed groups) or step it less often, not FSDP prefetch"
            )
        elif phase == "TorchRec" and kind != "all_to_all":
            parts.append(
                f"{label}{share} runs inside TorchRec's pipeline: pipeline it behind compute "
                "with `TrainPipelineSparseDist` and cut the bytes (`QCommsConfig`)"
            )
        elif kind == "all_to_all" and torchrec:
            parts.append(
                f"all-to-all{share} is TorchRec's sparse input and embedding distribution: "
                "pipeline it behind compute with `TrainPipelineSparseDist` (the next batch's "
                "input distribution overlaps this batch's forward/backward), revisit the "
                "sharding plan (fewer table-wise shards across nodes, row/column-wise sharding "
                "of the largest tables) to cut the bytes exchanged, and quantize the embedding "
                "comms (`QCommsConfig` with fp16/bf16 forward and backward precision)"
            )
        elif kind == "all_to_all":
            parts.append(
                f"all-to-all{share} (MoE token dispatch or sharded embeddings): overlap it "
                "with expert or dense compute, keep the exchange inside a node (place experts "
                "or embedding shards so most traffic stays on NVLink/xGMI), and cut the bytes "
                "per token (capacity factor, fp8/bf16 dispatch)"
            )
        elif kind in ("allgather", "reduce_scatter") and (wrapper == "FSDP" or phase == "FSDP"):
            parts.append(
                f"{label}{share} is FSDP's parameter gather / gradient "
                "reduction: prefetch so it overlaps compute (`forward_prefetch=True`, "
                "`backward_prefetch=BACKWARD_PRE`) and keep `limit_all_gathers=True` so "
                "prefetching does not exhaust memory"
            )
        elif kind in ("allgather", "reduce_scatter") and own:
            parts.append(
                f"{label}{share} already runs on its own stream ({_streams(own_streams)}, apart "
                "from compute) yet is exposed: issue it earlier (the next gather while the "
                "current layer computes) and wait only where the result is used, and move "
                "fewer or lower-precision bytes"
            )
        elif kind in ("allgather", "reduce_scatter"):
            parts.append(
                f"{label}{share}: issue it asynchronously (`async_op=True`) on "
                "its own stream and wait only where the result is used, and gather fewer or "
                "lower-precision bytes"
            )
        elif kind == "allreduce" and training and wrapper == "DDP":
            overlap = (
                "keep DDP's bucketed all-reduce running during backward (no host syncs or "
                "`find_unused_parameters` in the step), "
                if exposed
                else ""
            )
            parts.append(
                f"all-reduce{share} is DDP's gradient reduction: {overlap}communicate less "
                "often with gradient accumulation (`model.no_sync()` on all but the last "
                "micro-batch), or send less with a compression hook (`bf16_compress_hook`, "
                "PowerSGD)"
            )
        elif kind == "allreduce" and training and wrapper is None:
            parts.append(
                f"all-reduce{share}: communicate less often: accumulate gradients locally over "
                "several micro-batches and all-reduce once, or all-reduce them in bf16"
            )
        elif kind == "allreduce" and not training and exposed:
            parts.append(
                f"all-reduce{share}: tensor-parallel all-reduces sit on the critical path of "
                "every layer; use the engine's fused/custom all-reduce, or a smaller "
                "tensor-parallel degree when the model fits on fewer GPUs"
            )
        elif kind == "allreduce" and training and wrapper == "FSDP" and exposed:
            parts.append(
                f"all-reduce{share}: set FSDP `backward_prefetch=BACKWARD_PRE` and "
                "`forward_prefetch=True` so gradient reduction overlaps backward"
            )
    if exposed and not parts and own:
        parts.append(
            f"{library} collectives already run on their own stream ({_streams(streams)}) yet "
            "are exposed: issue them earlier, before the compute that can hide them, and "
            "wait only where the result is needed"
        )
    elif exposed and not parts:
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
    if not parts:
        parts.append(f"check the {library} topology and algorithm ({library}_DEBUG=INFO)")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _streams(text: str) -> str:
    """``"84,203"`` as ``streams 84 and 203`` (``stream 84`` for one)."""
    ids = [x for x in text.split(",") if x]
    if len(ids) == 1:
        return f"stream {ids[0]}"
    return "streams " + ", ".join(ids[:-1]) + " and " + ids[-1]


def _waiting_advice(label: str, share: str, wait: dict[str, Any]) -> str:
    """Advice for a collective that mostly waits for a late rank: that rank's work."""
    spread = wait.get("max_spread_ns")
    last = wait.get("last_rank")
    by = f" by up to {fmt.duration(spread)}" if isinstance(spread, int) else ""
    traced, world = wait.get("ranks_traced"), wait.get("group_size")
    partial = isinstance(traced, int) and isinstance(world, int) and traced < world
    share_pct = wait.get("wait_share_pct")
    spent = (
        f"{share_pct:.0f}% of the longest rank's time in it is the spread of its start across ranks"
        if isinstance(share_pct, int | float)
        else "most of its time is the spread of its start across ranks"
    )
    if partial:
        # Fewer ranks traced than the group: the late rank may be one not in the trace.
        who = (
            f"rank {last} is the later of the {traced} ranks traced, out of {world}, "
            f"arriving late{by}"
            if last is not None
            else f"one of the {traced} ranks traced, out of {world}, arrives late"
        )
        return (
            f"{label}{share} is waiting, not slow: {spent} ({who}); the straggler may be any "
            f"of the {world} ranks, so trace all of them (or the slowest) and even out the "
            "work before the call there (uneven batches or shards, data loading, a host "
            "stall), since faster communication would not shorten the wait"
        )
    who = f"rank {last} arrives last{by}" if last is not None else "one rank arrives late"
    return (
        f"{label}{share} is waiting, not slow: {spent} ({who}); even out the work before it "
        f"on rank {last if last is not None else 'the late rank'} (uneven batches or shards, "
        "data loading, a host stall: see the Collectives against the link section), since "
        "faster communication would not shorten the wait"
    )
