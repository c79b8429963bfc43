"""Collectives against the link: bandwidth per collective and message size, and arrival spread.

Bandwidths follow NCCL-tests (https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md):
the algorithm bandwidth of a collective moving S bytes in t seconds is ``algbw = S / t``; the
bus bandwidth, comparable to the hardware peak whatever the rank count n, is
``busbw = algbw * 2(n-1)/n`` for all-reduce, ``algbw * (n-1)/n`` for all-gather, reduce-scatter
and all-to-all, and ``algbw`` for broadcast, reduce and send/recv. S is NCCL-tests' size: the
full buffer (all-gather: the gathered output; reduce-scatter: the input), which is the comms
table's ``bytes`` (max of input and output elements x dtype size). Bus bandwidth counts what
each rank sends in one direction, so it is compared against the link's *unidirectional* peak
(`analyzer.devices.LinkSpec`), as NCCL-tests results are.

Wait: a collective cannot finish on any rank before the last rank has arrived, so the kernels
of one instance overlap in time on every rank. Instances are matched across ranks by process
group and sequence number where the trace records one; otherwise by that overlap, in order,
per (process group, collective): the rows of one instance are one per rank and every one
starts before the earliest of them ends. The spread of an instance's start times says who
arrived last and by how much; the earliest rank's kernel spends that spread waiting. A
collective far below the link's peak whose time is mostly spread is waiting for a late rank,
not slow: its fix is the late rank's work (load imbalance), not faster communication.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.devices import LinkSpec, intra_node_link, link_by_name, match
from gpu_trace_analyzer.metrics.collectives import comms_by_launching_op
from gpu_trace_analyzer.parsers.schema import TraceMeta, TraceTables

__all__ = [
    "FAR_BELOW_PCT",
    "LATENCY_PER_STEP_NS",
    "SIZE_BUCKETS",
    "SLOW_ABSOLUTE_GBPS",
    "WAITING_SHARE_PCT",
    "LinkChoice",
    "arrival_spread",
    "bus_factor",
    "collective_instances",
    "collective_link_table",
    "latency_floor_ns",
    "link_choice",
    "link_table",
    "spread_table",
]

#: Collectives without a payload: markers, not data movement.
_NO_PAYLOAD: Final = ("wait", "barrier", "")
#: Lower bounds (bytes) and labels of the message-size buckets, smallest first.
SIZE_BUCKETS: Final[tuple[tuple[int, str], ...]] = (
    (0, "< 64 KiB"),
    (64 * 2**10, "64 KiB - 1 MiB"),
    (2**20, "1 - 16 MiB"),
    (16 * 2**20, "16 - 256 MiB"),
    (256 * 2**20, ">= 256 MiB"),
)
#: Under this median message size no link peak is reachable: the call is latency-bound when
#: its time is near the latency floor (`latency_floor_ns`), waiting when far above it.
_LATENCY_BOUND_BYTES: Final = 2**20
#: Latency per step of a ring/tree collective (ns). NCCL's tuning model (src/graph/tuning.cc)
#: puts the base and per-hop latencies of its ring/tree algorithms at a few to tens of
#: microseconds (inter-node hops included); 100 us per step of a log2(n)-deep tree is a
#: generous bound: a small message taking far longer than that is waiting, not latency.
LATENCY_PER_STEP_NS: Final = 100_000
#: Without a link figure, a bus bandwidth under this (GB/s) for a message of at least
#: `_SLOW_MIN_BYTES` is below any datacenter link (PCIe 3 x16 ~16 GB/s, 100 GbE ~12.5 GB/s).
SLOW_ABSOLUTE_GBPS: Final = 1.0
_SLOW_MIN_BYTES: Final = 2**20
#: Bus bandwidth under this share of the link's peak is "far below" it.
FAR_BELOW_PCT: Final = 25.0
#: Share of the longest rank's time spent in the start spread from which a collective is
#: "waiting": most of its time is the wait for the last rank, not the transfer.
WAITING_SHARE_PCT: Final = 50.0


def latency_floor_ns(group_size: int) -> int:
    """Generous latency floor of one collective call on ``group_size`` ranks:
    `LATENCY_PER_STEP_NS` x ceil(log2 n) (a tree's depth; at least one step)."""
    n = max(int(group_size), 2)
    return LATENCY_PER_STEP_NS * max(1, math.ceil(math.log2(n)))


def bus_factor(collective: str, group_size: int) -> float:
    """busbw / algbw for ``collective`` on ``group_size`` ranks (NCCL-tests PERFORMANCE.md)."""
    n = max(group_size, 1)
    if collective == "allreduce":
        return 2.0 * (n - 1) / n
    if collective in ("allgather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    return 1.0


@dataclass(frozen=True, slots=True)
class LinkChoice:
    """The link collectives are compared against, and why (for the report's sentence).

    ``link`` is None when no figure applies: the device is unknown, or the collectives span
    nodes and the trace does not say over what. ``spans_nodes`` is True when some group is
    larger than the GPUs the trace shows on one node.
    """

    link: LinkSpec | None
    reason: str
    spans_nodes: bool = False


def payload_comms(t: TraceTables) -> pl.DataFrame:
    """Communication rows with a duration and a payload collective (waits and barriers move
    no data), canonical names, empty process-group names as "" (comm-overhead's input too)."""
    return (
        comms_by_launching_op(t)
        .with_columns(
            pl.col("collective").fill_null(""),
            pl.col("pg_name").cast(pl.String).fill_null(""),
        )
        .filter(~pl.col("collective").is_in(_NO_PAYLOAD))
        .filter(pl.col("dur_ns").is_not_null())
    )


def _payload_comms(t: TraceTables) -> pl.DataFrame:
    """`payload_comms` with a start time (the spread needs one)."""
    return payload_comms(t).filter(pl.col("start_ns").is_not_null())


def _assign_instances(comms: pl.DataFrame) -> pl.Series:
    """An instance id per row: by (pg, seq) where seq exists, else by overlap in time.

    Overlap matching, per (pg, collective), rows by start: a row joins the open instance when
    its rank is not in it yet and it starts before the instance's earliest end; otherwise it
    opens a new one.
    """
    ids = [0] * comms.height
    next_id = 0
    rows = comms.with_row_index("row").sort("start_ns")
    seqs: dict[tuple[str, int], int] = {}
    open_: dict[tuple[str, str], tuple[int, set[int], int]] = {}
    for r in rows.iter_rows(named=True):
        row, rank = int(r["row"]), int(r["rank"])
        end = int(r["start_ns"]) + int(r["dur_ns"])
        if r["seq"] is not None:
            key = (str(r["pg_name"]), int(r["seq"]))
            if key not in seqs:
                seqs[key] = next_id
                next_id += 1
            ids[row] = seqs[key]
            continue
        group = (str(r["pg_name"]), str(r["collective"]))
        current = open_.get(group)
        if current is not None and rank not in current[1] and int(r["start_ns"]) <= current[2]:
            inst, ranks, min_end = current
            ranks.add(rank)
            open_[group] = (inst, ranks, min(min_end, end))
            ids[row] = inst
            continue
        open_[group] = (next_id, {rank}, end)
        ids[row] = next_id
        next_id += 1
    return pl.Series("instance", ids, dtype=pl.Int64)


def _rows_with_instance(t: TraceTables) -> pl.DataFrame:
    comms = _payload_comms(t)
    if comms.height == 0:
        return comms.with_columns(pl.lit(None, pl.Int64).alias("instance"))
    return comms.with_columns(_assign_instances(comms))


def collective_instances(tables: TraceTables) -> pl.DataFrame:
    """One row per collective instance matched across the ranks in the trace.

    Columns: instance, collective, pg_name, group_size, bytes (max over ranks), ranks (how
    many ranks recorded it), first_start_ns, last_start_ns, spread_ns (last - first start,
    0 with one rank), first_rank, last_rank (the last to arrive; null on a tie), min_dur_ns,
    mean_dur_ns, max_dur_ns, wait_share_pct (spread / longest duration, null with one rank).
    """
    rows = _rows_with_instance(tables)
    cols = [
        "instance",
        "collective",
        "pg_name",
        "group_size",
        "bytes",
        "ranks",
        "first_start_ns",
        "last_start_ns",
        "spread_ns",
        "first_rank",
        "last_rank",
        "min_dur_ns",
        "mean_dur_ns",
        "max_dur_ns",
        "wait_share_pct",
    ]
    if rows.height == 0:
        return pl.DataFrame(
            schema={
                c: pl.String()
                if c in ("collective", "pg_name")
                else (pl.Float64() if c in ("mean_dur_ns", "wait_share_pct") else pl.Int64())
                for c in cols
            }
        )
    inst = (
        rows.sort("start_ns")
        .group_by("instance", maintain_order=True)
        .agg(
            pl.col("collective").first(),
            pl.col("pg_name").first(),
            pl.col("group_size").max().cast(pl.Int64),
            pl.col("bytes").max(),
            pl.col("rank").n_unique().cast(pl.Int64).alias("ranks"),
            pl.col("start_ns").min().alias("first_start_ns"),
            pl.col("start_ns").max().alias("last_start_ns"),
            pl.col("rank").first().cast(pl.Int64).alias("first_rank"),
            pl.col("rank").last().cast(pl.Int64).alias("last_rank"),
            pl.col("dur_ns").min().alias("min_dur_ns"),
            pl.col("dur_ns").mean().alias("mean_dur_ns"),
            pl.col("dur_ns").max().alias("max_dur_ns"),
        )
        .with_columns((pl.col("last_start_ns") - pl.col("first_start_ns")).alias("spread_ns"))
        .with_columns(  # a tie has no first or last rank
            *(
                pl.when(pl.col("spread_ns") > 0).then(pl.col(c)).otherwise(None).alias(c)
                for c in ("first_rank", "last_rank")
            )
        )
        .with_columns(
            pl.when((pl.col("ranks") > 1) & (pl.col("max_dur_ns") > 0))
            .then(100.0 * pl.col("spread_ns") / pl.col("max_dur_ns"))
            .otherwise(None)
            .alias("wait_share_pct")
        )
    )
    return inst.select(cols).sort("first_start_ns")


def arrival_spread(tables: TraceTables, instances: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per instance recorded on two ranks or more: who arrived first and last, and the spread.

    The `collective_instances` columns, restricted to matched instances, largest spread first.
    Empty on single-rank inputs (the spread across ranks is not in the trace). ``instances``:
    `collective_instances` already computed for these tables.
    """
    inst = collective_instances(tables) if instances is None else instances
    return inst.filter(pl.col("ranks") > 1).sort(
        ["spread_ns", "first_start_ns"], descending=[True, False]
    )


def _node_gpus(meta: TraceMeta) -> int:
    """GPUs the trace shows on one node (deviceProperties of one rank), 0 when unknown.

    A rank that lists only its own GPU says nothing about the node: 0 then, not 1."""
    per_rank: dict[int, int] = {}
    for d in meta.devices:
        per_rank[d.rank] = per_rank.get(d.rank, 0) + 1
    most = max(per_rank.values(), default=0)
    return most if most > 1 else 0


def link_choice(
    meta: TraceMeta,
    link: str | LinkSpec | None = None,
    group_size: int | None = None,
    device: str | None = None,
) -> LinkChoice:
    """Which link collectives of ``group_size`` ranks are compared against, and why.

    ``--link`` (``link``) wins. Otherwise, when the group fits in the GPUs the trace shows on
    one node, the device's intra-node link (NVLink generation, xGMI, or the PCIe generation
    of a PCIe card). A group larger than one node crosses a network the trace does not name:
    no figure, and the reason says to pass ``--link``. ``device`` (``--device``) replaces the
    trace's device names.
    """
    if isinstance(link, LinkSpec):
        return LinkChoice(link, f"{link.name}: given")
    if link:
        spec = link_by_name(link)
        return LinkChoice(spec, f"{spec.name}: given with --link")
    names = [device] if device else sorted({d.name for d in meta.devices if d.name})
    specs = [s for s in (match(n) for n in names) if s is not None]
    if not specs:
        why = (
            "the trace names no device"
            if not names
            else f"{names[0]!r} is not in the device database"
        )
        return LinkChoice(None, f"no link figure: {why}; pass --link NAME (e.g. nvlink4, ib-ndr)")
    device_spec = specs[0]
    gpus = _node_gpus(meta)
    if group_size is not None and gpus and group_size > gpus:
        return LinkChoice(
            None,
            f"no link figure: groups of {group_size} ranks span nodes (the trace shows {gpus} "
            f"GPUs on a node) and the trace does not name the network; pass --link NAME "
            "(e.g. ib-ndr)",
            spans_nodes=True,
        )
    found = intra_node_link(device_spec.key)
    if found is None:
        return LinkChoice(None, f"no link figure for {device_spec.name}; pass --link NAME")
    where = (
        f"groups of up to {group_size} ranks fit the {gpus} GPUs the trace shows on one node"
        if group_size is not None and gpus
        else "assumed inside one node: the trace does not show how many GPUs a node has"
    )
    return LinkChoice(found, f"{found.name}: the {device_spec.name}'s intra-node link ({where})")


def _bucket_expr() -> pl.Expr:
    expr = pl.lit(SIZE_BUCKETS[0][1])
    for low, label in SIZE_BUCKETS[1:]:
        expr = pl.when(pl.col("bytes") >= low).then(pl.lit(label)).otherwise(expr)
    return expr


def _bucket_low() -> pl.Expr:
    expr = pl.lit(SIZE_BUCKETS[0][0], pl.Int64)
    for low, _ in SIZE_BUCKETS[1:]:
        expr = pl.when(pl.col("bytes") >= low).then(pl.lit(low, pl.Int64)).otherwise(expr)
    return expr


_TABLE_SCHEMA: Final = {
    "collective": pl.String(),
    "size_bucket": pl.String(),
    "bucket_min_bytes": pl.Int64(),
    "group_size": pl.Int64(),
    "count": pl.Int64(),
    "matched": pl.Int64(),
    "bytes": pl.Int64(),
    "median_bytes": pl.Float64(),
    "time_ns": pl.Int64(),
    "algbw_gbps": pl.Float64(),
    "busbw_gbps": pl.Float64(),
    "busbw_nowait_gbps": pl.Float64(),
    "busbw_best_gbps": pl.Float64(),
    "mean_call_ns": pl.Float64(),
    "latency_floor_ns": pl.Int64(),
    "ranks_traced": pl.Int64(),
    "link": pl.String(),
    "link_peak_gbps": pl.Float64(),
    "busbw_pct_of_link": pl.Float64(),
    "busbw_nowait_pct_of_link": pl.Float64(),
    "busbw_best_pct_of_link": pl.Float64(),
    "median_spread_ns": pl.Float64(),
    "max_spread_ns": pl.Int64(),
    "wait_share_pct": pl.Float64(),
    "last_rank": pl.Int64(),
    "last_rank_times": pl.Int64(),
    "verdict": pl.String(),
}


def with_bus_factor(instances: pl.DataFrame) -> pl.DataFrame:
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


def collective_link_table(
    tables: TraceTables,
    meta: TraceMeta | None = None,
    link: str | LinkSpec | None = None,
    *,
    device: str | None = None,
    instances: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per (collective, message-size bucket, group size): bandwidth against the link, and wait.

    Columns (units in the names): collective, size_bucket, bucket_min_bytes, group_size, count
    (instances), matched (instances seen on 2+ ranks), bytes (sum of S), median_bytes,
    time_ns (sum of each instance's mean duration over its ranks), algbw_gbps (sum S / time:
    as the ranks saw it, wait included), busbw_gbps (algbw x `bus_factor`),
    busbw_nowait_gbps (from each instance's shortest duration over its ranks, TraceLens'
    latency, which removes the wait where 2+ ranks recorded it), busbw_best_gbps (the
    fastest single instance: with one rank traced, the transfer bound), mean_call_ns,
    latency_floor_ns (`latency_floor_ns`), ranks_traced (most ranks recording one instance),
    link, link_peak_gbps (its
    unidirectional peak), busbw_pct_of_link, busbw_nowait_pct_of_link,
    busbw_best_pct_of_link, median_spread_ns and
    max_spread_ns (start spread of matched instances), wait_share_pct (sum of spreads / sum of
    the longest durations), last_rank (the rank most often last to arrive) and
    last_rank_times, verdict (`_verdict`). Rows: most time first. Empty without collectives.
    ``link`` (``--link``) and ``device`` (``--device``) choose the link (`link_choice`);
    ``instances``: `collective_instances` already computed for these tables.
    """
    meta = tables.meta if meta is None else meta
    inst = collective_instances(tables) if instances is None else instances
    inst = inst.filter(pl.col("bytes").fill_null(0) > 0)
    if inst.height == 0:
        return pl.DataFrame(schema=_TABLE_SCHEMA)
    inst = inst.with_columns(
        pl.col("group_size").fill_null(1),
        _bucket_expr().alias("size_bucket"),
        _bucket_low().alias("bucket_min_bytes"),
    )
    inst = with_bus_factor(inst)
    matched = pl.col("ranks") > 1
    grouped = inst.group_by("collective", "size_bucket", "bucket_min_bytes", "group_size").agg(
        pl.len().cast(pl.Int64).alias("count"),
        matched.sum().cast(pl.Int64).alias("matched"),
        pl.col("bytes").sum().alias("bytes"),
        pl.col("bytes").median().cast(pl.Float64).alias("median_bytes"),
        pl.col("mean_dur_ns").sum().alias("_time"),
        pl.col("min_dur_ns").sum().alias("_min_time"),
        pl.col("factor").first(),
        (pl.col("bytes") * pl.col("factor") / pl.col("min_dur_ns").cast(pl.Float64))
        .filter(pl.col("min_dur_ns") > 0)
        .max()
        .alias("_best"),
        pl.col("ranks").max().alias("_ranks_traced"),
        pl.col("spread_ns").filter(matched).median().cast(pl.Float64).alias("median_spread_ns"),
        pl.col("spread_ns").filter(matched).max().alias("max_spread_ns"),
        pl.col("spread_ns").filter(matched).sum().alias("_spread"),
        pl.col("max_dur_ns").filter(matched).sum().alias("_max_time"),
        pl.col("last_rank").filter(matched).mode().first().alias("last_rank"),
        pl.col("last_rank").filter(matched).alias("_last_ranks"),
    )
    rows = []
    for r in grouped.iter_rows(named=True):
        choice = link_choice(meta, link, int(r["group_size"]), device)
        peak = choice.link.unidirectional_gbps if choice.link is not None else None
        time_ns = float(r["_time"] or 0.0)
        algbw = r["bytes"] / time_ns if time_ns > 0 else None
        busbw = algbw * r["factor"] if algbw is not None else None
        min_time = float(r["_min_time"] or 0)
        nowait = r["bytes"] * r["factor"] / min_time if min_time > 0 else None
        wait_share = 100.0 * r["_spread"] / r["_max_time"] if r["_max_time"] else None
        mean_call = time_ns / r["count"] if r["count"] else None
        floor = latency_floor_ns(int(r["group_size"]))
        last = r["last_rank"]
        rows.append(
            {
                "collective": r["collective"],
                "size_bucket": r["size_bucket"],
                "bucket_min_bytes": r["bucket_min_bytes"],
                "group_size": r["group_size"],
                "count": r["count"],
                "matched": r["matched"],
                "bytes": r["bytes"],
                "median_bytes": r["median_bytes"],
                "time_ns": round(time_ns),
                "algbw_gbps": algbw,
                "busbw_gbps": busbw,
                "busbw_nowait_gbps": nowait,
                "busbw_best_gbps": r["_best"],
                "mean_call_ns": mean_call,
                "latency_floor_ns": floor,
                "ranks_traced": r["_ranks_traced"],
                "link": choice.link.key if choice.link is not None else None,
                "link_peak_gbps": peak,
                "busbw_pct_of_link": _pct(busbw, peak),
                "busbw_nowait_pct_of_link": _pct(nowait, peak),
                "busbw_best_pct_of_link": _pct(r["_best"], peak),
                "median_spread_ns": r["median_spread_ns"],
                "max_spread_ns": r["max_spread_ns"],
                "wait_share_pct": wait_share,
                "last_rank": last,
                "last_rank_times": None
                if last is None
                else sum(1 for x in r["_last_ranks"] if x == last),
                "verdict": _verdict(
                    int(r["matched"]),
                    wait_share,
                    _pct(busbw, peak),
                    r["median_bytes"],
                    mean_call,
                    floor,
                    busbw,
                ),
            }
        )
    return pl.DataFrame(rows, schema=_TABLE_SCHEMA).sort(
        ["time_ns", "collective", "bucket_min_bytes"], descending=[True, False, False]
    )


def _pct(value: float | None, peak: float | None) -> float | None:
    if value is None or not peak:
        return None
    return 100.0 * value / peak


def _verdict(
    matched: int,
    wait_share: float | None,
    pct: float | None,
    median_bytes: float | None,
    mean_call_ns: float | None = None,
    floor_ns: int = LATENCY_PER_STEP_NS,
    busbw: float | None = None,
) -> str:
    """``waiting``: the start spread is most of the time and the bus bandwidth is far below
    the link (or no link figure); small messages (median under 1 MiB) are ``latency-bound``
    when a call takes at most twice the latency floor (`latency_floor_ns`), else
    ``small message, long time`` (waiting for peers or the host, not latency); without a
    link figure a bus bandwidth under `SLOW_ABSOLUTE_GBPS` on messages of 1 MiB or more is
    ``below any link``; ``far below link`` / ``below link`` / ``near link`` by the share of
    peak; ``no link figure`` otherwise."""
    far = pct is None or pct < FAR_BELOW_PCT
    if matched and wait_share is not None and wait_share >= WAITING_SHARE_PCT and far:
        return "waiting"
    if median_bytes is not None and median_bytes < _LATENCY_BOUND_BYTES and far:
        if mean_call_ns is not None and mean_call_ns > 2 * floor_ns:
            return "small message, long time"
        return "latency-bound"
    if pct is None:
        if (
            busbw is not None
            and busbw < SLOW_ABSOLUTE_GBPS
            and (median_bytes or 0) >= _SLOW_MIN_BYTES
        ):
            return "below any link"
        return "no link figure"
    if pct < FAR_BELOW_PCT:
        return "far below link"
    if pct < 2 * FAR_BELOW_PCT:
        return "below link"
    return "near link"


def link_table(ctx: AnalysisContext) -> pl.DataFrame:
    """`collective_link_table` with the analysis' ``--link`` and ``--device``, computed once
    per analysis (the section and comm-overhead share it)."""
    instances = ctx.metric("collective_link.instances", collective_instances)
    return ctx.metric_with_options(
        "collective_link.table",
        lambda t, o: collective_link_table(
            t, t.meta, o.link, device=o.device_override, instances=instances
        ),
    )


def spread_table(ctx: AnalysisContext) -> pl.DataFrame:
    """`arrival_spread` of the analysis, computed once."""
    instances = ctx.metric("collective_link.instances", collective_instances)
    return ctx.metric("collective_link.spread", lambda t: arrival_spread(t, instances))
