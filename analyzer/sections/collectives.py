"""Collectives against the link: bus bandwidth per collective and message size, and the wait.

Shown only when the trace has collectives with a size. The figures come from
`analyzer.metrics.collective_link` (NCCL-tests bandwidth definitions; instances matched
across ranks for the start spread); this module words them: which link the bandwidths are
compared against and why, one row per (collective, message-size bucket, group size), the
instances whose ranks arrived furthest apart, and a sentence per notable row quoting its
numbers: waiting (the late rank, not the link), far below the link, or near it.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics.collective_link import (
    FAR_BELOW_PCT,
    LATENCY_PER_STEP_NS,
    SLOW_ABSOLUTE_GBPS,
    WAITING_SHARE_PCT,
    LinkChoice,
    link_choice,
    link_table,
    spread_table,
)
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.model import Block, Cell, Paragraph, Section, Table

#: How many instances the arrival table lists.
_TOP_SPREAD = 5
_LABEL = {
    "allreduce": "all-reduce",
    "allgather": "all-gather",
    "reduce_scatter": "reduce-scatter",
    "all_to_all": "all-to-all",
}


def label(collective: str) -> str:
    """A collective's name as the report writes it (``all-reduce``)."""
    return _LABEL.get(collective, collective.replace("_", "-"))


def _gbps(value: float | None) -> Cell:
    return None if value is None else round(value, 2)


def _pct(value: float | None) -> Cell:
    return None if value is None else round(value, 1)


def _ms(ns: float | None) -> Cell:
    return None if ns is None else round(ns / 1e6, 3)


def _link_sentence(ctx: AnalysisContext, table: pl.DataFrame) -> Paragraph:
    """Which link the bandwidths are compared against, and why."""
    largest = int(table.select(pl.col("group_size").max()).item() or 1)
    choice: LinkChoice = link_choice(
        ctx.tables.meta, ctx.options.link, largest, ctx.options.device_override
    )
    if choice.link is None:
        why = choice.reason.removeprefix("no link figure: ")
        return Paragraph.of(f"Bus bandwidth is not compared with a link: {why}.")
    spec = choice.link
    caveat = "" if spec.confirmed else " (unconfirmed figure: " + spec.notes + ")"
    return Paragraph.of(
        f"Link assumed: {choice.reason}. Its peak is {spec.unidirectional_gbps:g} GB/s per "
        f"direction per GPU ({spec.bidirectional_gbps:g} GB/s bidirectional, as the vendor "
        "prints it); bus bandwidth counts the bytes each rank sends in one direction, so it is "
        f"compared with the {spec.unidirectional_gbps:g} GB/s, as NCCL-tests does{caveat}."
    )


def _row_sentence(r: dict[str, Any]) -> str | None:
    """The interpretation of one row, quoting its numbers (None when unremarkable)."""
    calls = "1 call" if r["count"] == 1 else f"{r['count']} calls"
    name = f"{label(r['collective'])} ({r['size_bucket']}, {calls})"
    pct = r["busbw_pct_of_link"]
    of_link = "" if pct is None else f", {pct:.1f}% of the link's {r['link_peak_gbps']:g} GB/s"
    bw = f"{r['busbw_gbps']:.1f} GB/s bus bandwidth{of_link}"
    if r["verdict"] == "waiting":
        traced, world = r.get("ranks_traced") or 0, r["group_size"]
        if traced and traced < world:
            who = (
                f"rank {r['last_rank']} was the later of the {traced} ranks traced, out of "
                f"{world}, in {r['last_rank_times']} of {r['matched']} matched calls; the "
                "ranks not traced may be the late ones"
            )
            fix = (
                "trace all ranks (or the slowest) to find the late one before changing the "
                "communication"
            )
        else:
            who = (
                f"rank {r['last_rank']} arrived last in {r['last_rank_times']} of "
                f"{r['matched']} matched calls"
            )
            fix = (
                "look at the late rank's work before the call (load imbalance, data loading, "
                "a host stall), not at the communication"
            )
        return (
            f"{name} is waiting, not slow: it reaches {bw}, but {r['wait_share_pct']:.0f}% of "
            f"its longest rank's time is the spread of its start across ranks (median "
            f"{fmt.duration(r['median_spread_ns'])}, up to {fmt.duration(r['max_spread_ns'])}; "
            f"{who}). Without the wait it runs at {r['busbw_nowait_gbps']:.1f} GB/s: {fix}."
        )
    floor = fmt.duration(r["latency_floor_ns"])
    if r["verdict"] == "latency-bound":
        return (
            f"{name} moves small messages (median {fmt.size(r['median_bytes'])}) in "
            f"{fmt.duration(r['mean_call_ns'])} per call, within twice the latency floor of "
            f"{floor} for {r['group_size']} ranks: {bw}; latency, not the link, sets the "
            "time: coalesce such calls."
        )
    if r["verdict"] == "small message, long time":
        return (
            f"{name} moves small messages (median {fmt.size(r['median_bytes'])}) but takes "
            f"{fmt.duration(r['mean_call_ns'])} per call, far above the latency floor of "
            f"{floor} for {r['group_size']} ranks (100 us x ceil(log2 n)): it is waiting for "
            "peers (or the host), not latency-bound; coalescing would not remove that wait."
        )
    if r["verdict"] == "below any link":
        return (
            f"{name} reaches only {bw} on messages of median {fmt.size(r['median_bytes'])}, "
            "below any datacenter link: the time is waiting for peers (or a stalled "
            "transfer), not the link's bandwidth."
        )
    if r["verdict"] == "far below link":
        if r["wait_share_pct"] is not None:
            return (
                f"{name} reaches only {bw} with ranks arriving close together "
                f"({r['wait_share_pct']:.0f}% of the time is start spread): the transfer "
                "itself is slow; check the NCCL topology, algorithm and protocol "
                "(`NCCL_DEBUG=INFO`)."
            )
        best, best_pct = r["busbw_best_gbps"], r["busbw_best_pct_of_link"]
        head = (
            f"{name} reaches {bw} from one rank's view, which cannot separate waiting for "
            "other ranks from the transfer"
        )
        if best is None or best_pct is None:
            return head + "."
        bound = f"its fastest call reaches {best:.1f} GB/s ({best_pct:.1f}% of the link)"
        if best_pct < FAR_BELOW_PCT:
            return (
                f"{head}; even {bound}, so the transfer is far below the link even without "
                "waiting: check the NCCL topology, algorithm and protocol (`NCCL_DEBUG=INFO`)."
            )
        return (
            f"{head}; {bound}, so the link can go faster and the slower calls are likely "
            "waiting: trace all ranks before tuning the topology."
        )
    return None


def _interpretation(table: pl.DataFrame) -> list[Block]:
    """Sentences for waiting rows, then the rest by time, at most four."""
    rows = table.to_dicts()
    order = sorted(rows, key=lambda r: (r["verdict"] != "waiting", -int(r["time_ns"])))
    sentences = [s for s in (_row_sentence(r) for r in order) if s][:4]
    top = rows[0]
    if _row_sentence(top) is None and top["busbw_pct_of_link"] is not None:
        sentences.insert(
            0,
            f"{label(top['collective'])} ({top['size_bucket']}), the most time, reaches "
            f"{top['busbw_gbps']:.1f} GB/s bus bandwidth, {top['busbw_pct_of_link']:.1f}% of "
            f"the link's {top['link_peak_gbps']:g} GB/s.",
        )
    if int(table["matched"].sum() or 0) == 0:
        sentences.append(
            "The trace has one rank's view of each call: the spread of start times across "
            "ranks is not in it, so each duration may include waiting for other ranks and the "
            "bandwidths are lower bounds."
        )
    return [Paragraph.from_prose(s) for s in sentences]


def _main_table(table: pl.DataFrame) -> Table:
    rows: list[list[Cell]] = [
        [
            label(r["collective"]),
            r["size_bucket"],
            r["group_size"],
            r["count"],
            r["matched"],
            _ms(r["time_ns"]),
            _gbps(r["algbw_gbps"]),
            _gbps(r["busbw_gbps"]),
            _gbps(r["busbw_nowait_gbps"]) if r["matched"] else None,
            _pct(r["busbw_pct_of_link"]),
            _ms(r["median_spread_ns"]),
            _pct(r["wait_share_pct"]),
            r["verdict"],
        ]
        for r in table.iter_rows(named=True)
    ]
    return Table(
        [
            "collective",
            "message size",
            "ranks in group",
            "calls",
            "matched across ranks",
            "time ms",
            "algbw GB/s",
            "busbw GB/s",
            "busbw without wait GB/s",
            "% of link",
            "median start spread ms",
            "wait share %",
            "verdict",
        ],
        rows,
        numeric=[False, False, *[True] * 10, False],
    )


def _spread_table(spread: pl.DataFrame) -> Table:
    rows: list[list[Cell]] = [
        [
            label(r["collective"]),
            fmt.size(r["bytes"]),
            r["ranks"],
            _ms(r["spread_ns"]),
            r["first_rank"],
            r["last_rank"],
            _ms(r["max_dur_ns"]),
            _pct(r["wait_share_pct"]),
        ]
        for r in spread.head(_TOP_SPREAD).iter_rows(named=True)
    ]
    return Table(
        [
            "collective",
            "message",
            "ranks seen",
            "start spread ms",
            "first rank",
            "last rank",
            "longest rank ms",
            "wait share %",
        ],
        rows,
        numeric=[False, True, True, True, True, True, True, True],
    )


def build(ctx: AnalysisContext, charts: bool = False) -> Section | None:
    """The "Collectives against the link" section, or None without sized collectives."""
    table = link_table(ctx)
    if table.height == 0:
        return None
    blocks: list[Block] = [
        _link_sentence(ctx, table),
        Paragraph.of(
            "Bandwidths follow NCCL-tests (doc/PERFORMANCE.md): algbw = bytes / time; busbw = "
            "algbw x 2(n-1)/n for all-reduce, x (n-1)/n for all-gather, reduce-scatter and "
            "all-to-all, x 1 for broadcast, reduce and send/recv. 'time ms' is the total over "
            "the calls of each call's mean duration over the ranks that recorded it; 'without "
            "wait' uses each call's shortest one. "
            f"Verdicts: waiting when the start spread is at least {WAITING_SHARE_PCT:.0f}% of "
            f"the longest rank's time and busbw is under {FAR_BELOW_PCT:.0f}% of the link; "
            "latency-bound when messages are under 1 MiB and a call takes at most twice "
            f"{LATENCY_PER_STEP_NS // 1000} us x ceil(log2 n) (a generous bound on NCCL's "
            "per-hop latency), else small message, long time; without a link figure, below "
            f"any link under {SLOW_ABSOLUTE_GBPS:g} GB/s for messages of 1 MiB or more."
        ),
        _main_table(table),
        *_interpretation(table),
    ]
    spread = spread_table(ctx)
    if spread.height:
        top = spread.row(0, named=True)
        if top["spread_ns"] > 0:
            widest = (
                f"the widest arrival spread is {fmt.duration(top['spread_ns'])} "
                f"({label(top['collective'])} of {fmt.size(top['bytes'])}: rank "
                f"{top['last_rank']} arrived last, after rank {top['first_rank']})"
            )
        else:
            widest = "in every one the ranks started together"
        blocks.append(Paragraph.of(f"{spread.height} calls were matched across ranks; {widest}."))
        if top["spread_ns"] > 0:
            blocks.append(_spread_table(spread))
    return Section("Collectives against the link", blocks, key="collectives")
