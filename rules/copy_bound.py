"""copy-bound: memory copies take a large share of the GPU's busy time.

A GPU that is "busy" copying is not computing: when host-to-device parameter copies (FSDP or
DeepSpeed CPU offload, tensors rebuilt on the host every step) fill most of the busy time, the
job runs at the speed of the PCIe/host path, and no kernel or sync change helps. Per (rank,
device) inside the analysis window: copy time is the union of memcpy intervals (memsets are
not copies), busy time the union of kernels, copies and memsets
(`analyzer.metrics.timeline.breakdown`). The rule fires when copies reach
``warning_busy_pct`` of busy time and ``min_window_pct`` of the window; it reports, per
direction (HtoD, DtoH, DtoD, PtoP), bytes, GPU time and achieved GB/s (bytes / summed copy
durations), and the CPU op and enclosing annotation or NVTX range that issued the copies
(``aten::copy_`` under ``FSDP::pre_forward (...)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.devices import LinkSpec, link_by_name
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import advice as _advice
from gpu_trace_analyzer.metrics import intervals, timeline
from gpu_trace_analyzer.metrics.host_blocking import copies_with_callers
from gpu_trace_analyzer.metrics.workload import WorkloadProfile
from gpu_trace_analyzer.parsers.schema import TraceMeta
from gpu_trace_analyzer.rules.base import register

#: Copy directions, in report order; memsets and host-to-host copies are not GPU copies.
_DIRECTIONS = ("HtoD", "DtoH", "DtoD", "PtoP")
#: Directions that cross the host link (PCIe).
_HOST_PATH = ("HtoD", "DtoH")
#: PCIe links a host copy is compared against when ``--link`` names none (newest first).
_PCIE_LINKS = ("pcie5-x16", "pcie4-x16")


@dataclass(frozen=True, slots=True)
class CopyBoundConfig:
    """Thresholds of copy-bound."""

    warning_busy_pct: float = 30.0
    """Copy share of GPU busy time at which the rule fires (a warning)."""
    critical_busy_pct: float = 60.0
    """Copy share of GPU busy time at which the finding becomes critical."""
    min_window_pct: float = 5.0
    """Copy time as a share of the window under which nothing is reported: a mostly idle
    GPU whose few busy moments are copies has an idle problem, not a copy problem."""
    top_sources: int = 5
    """How many issuing ops / ranges the evidence table lists."""


@register
class CopyBound:
    """Memory copies dominate GPU busy time: GB/s per direction and who issues them."""

    id: ClassVar[str] = "copy-bound"
    title: ClassVar[str] = "Memory copies take most of the GPU's busy time"
    description: ClassVar[str] = (
        "Memcpy time over 30% of GPU busy time (critical over 60%): bytes, time and GB/s "
        "per direction, the op or NVTX range issuing the copies, advice by context."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"memops"})
    Config: ClassVar[type[CopyBoundConfig]] = CopyBoundConfig

    def check(self, ctx: AnalysisContext, cfg: CopyBoundConfig) -> Iterable[Finding]:
        """One finding for the device with the most copy time, when copies dominate."""
        copies = copies_with_callers(ctx).filter(pl.col("kind").cast(pl.String).is_in(_DIRECTIONS))
        if copies.height == 0:
            return
        per_device = _copy_shares(ctx, copies)
        over = per_device.filter(
            (pl.col("copy_busy_pct") >= cfg.warning_busy_pct)
            & (pl.col("copy_window_pct") >= cfg.min_window_pct)
        )
        if over.height == 0:
            return
        worst = over.sort(["copy_ns", "rank"], descending=[True, False]).row(0, named=True)
        mine = copies.filter(
            (pl.col("rank") == worst["rank"]) & (pl.col("device") == worst["device"])
        )
        calls = ctx.tables.runtime.select("rank", "correlation").drop_nulls().unique()
        mine = mine.join(
            calls.with_columns(pl.lit(True).alias("has_call")),
            on=["rank", "correlation"],
            how="left",
            maintain_order="left",
        ).with_columns(pl.col("has_call").fill_null(False))
        finding = _finding(cfg, worst, mine, over.height, _advice.profile(ctx), _host_links(ctx))
        top_kind = str(finding.evidence["top_direction"])
        host = same_host_ranks(ctx.tables.meta, int(worst["rank"]))
        yield _with_concurrency(finding, concurrent_host_copies(copies, worst, top_kind, host))


#: Per-GPU copy rates within this fraction of each other count as "equal".
_EQUAL_RATE = 0.05
#: Share of the reported GPU's copy time overlapped by the other GPUs' copies from which the
#: copies are "concurrent".
_CONCURRENT_PCT = 50.0


def same_host_ranks(meta: TraceMeta, rank: int) -> list[int]:
    """Ranks on ``rank``'s host: the same hostname when the trace records one, else the
    same trace file (one nsys report holds one host's processes)."""
    infos = {r.rank: r for r in meta.ranks}
    me = infos.get(rank)
    if me is None:
        return [rank]
    if me.hostname:
        return sorted(r.rank for r in meta.ranks if r.hostname == me.hostname)
    return sorted(r.rank for r in meta.ranks if r.path == me.path and not r.hostname)


def concurrent_host_copies(
    copies: pl.DataFrame, row: dict[str, Any], kind: str, ranks: list[int] | None = None
) -> dict[str, float | int | str]:
    """Host-path copies of ``kind`` on the reported GPU and the other GPUs of its host
    (``ranks``, `same_host_ranks`; a GPU is a (rank, device)), inside each one's window:
    how much of the reported GPU's copy time the others' copies overlap (union(A) +
    union(others) - union(all)), and the host's aggregate rate over the union of all of
    them (all bytes / union). Empty when ``kind`` does not cross the host link or no other
    GPU of the host copies in that direction."""
    if kind not in _HOST_PATH:
        return {}
    rank, device = int(row["rank"]), int(row["device"])
    mine = copies.filter(
        pl.col("rank").is_in(ranks or [rank])
        & (pl.col("kind").cast(pl.String) == kind)
        & (pl.col("start_ns") < pl.col("window_end_ns"))
        & (pl.col("start_ns") + pl.col("dur_ns") > pl.col("window_start_ns"))
    ).with_columns(
        (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"),
        ((pl.col("rank") == rank) & (pl.col("device") == device)).alias("own"),
    )
    gpus = mine.select("rank", "device").unique().height
    if gpus < 2:
        return {}
    spans = mine.select("own", "start_ns", "end_ns")

    def union(df: pl.DataFrame) -> int:
        return int(intervals.union_ns(df.select("start_ns", "end_ns"), [])["union_ns"][0])

    own = spans.filter(pl.col("own"))
    others = spans.filter(~pl.col("own"))
    if own.height == 0 or others.height == 0:
        return {}
    own_ns, all_ns = union(own), union(spans)
    overlap = own_ns + union(others) - all_ns
    rates = (
        mine.group_by("rank", "device")
        .agg(pl.col("bytes").fill_null(0).sum().alias("b"), pl.col("dur_ns").sum().alias("t"))
        .filter(pl.col("t") > 0)
        .with_columns((pl.col("b") / pl.col("t")).alias("gbps"))
    )
    per_gpu = [float(x) for x in rates["gbps"].to_list()]
    low, high = min(per_gpu, default=0.0), max(per_gpu, default=0.0)
    return {
        f"{kind}_gpus_on_host": gpus,
        f"{kind}_overlap_ns": overlap,
        f"{kind}_overlap_pct": round(100.0 * overlap / own_ns, 1) if own_ns else 0.0,
        f"{kind}_aggregate_gbps": round(int(mine["bytes"].fill_null(0).sum()) / all_ns, 2)
        if all_ns
        else 0.0,
        f"{kind}_per_gpu_gbps_equal": int(high > 0 and (high - low) <= _EQUAL_RATE * high),
    }


def _with_concurrency(finding: Finding, conc: dict[str, float | int | str]) -> Finding:
    """The finding with the host's concurrent copies in its summary and evidence."""
    if not conc:
        return finding
    kind = str(finding.evidence["top_direction"])
    pct = float(conc[f"{kind}_overlap_pct"])
    if pct < _CONCURRENT_PCT:
        return replace(finding, evidence={**finding.evidence, **conc})
    n = int(conc[f"{kind}_gpus_on_host"])
    overlap_ms = int(conc[f"{kind}_overlap_ns"]) / 1e6
    text = (
        f" The {n} GPUs of this host copy {kind} at the same time ({overlap_ms:.1f} ms, "
        f"{pct:.0f}% of this GPU's {kind} time, overlaps the others' copies): together they move "
        f"{float(conc[f'{kind}_aggregate_gbps']):.1f} GB/s, so compare that, not one GPU's rate, "
        "with the host's bandwidth."
    )
    if conc[f"{kind}_per_gpu_gbps_equal"]:
        text += (
            " Every GPU gets the same rate: a limit they share upstream (a PCIe switch, the "
            "CPU root port or host memory), not each GPU's own link, sets it."
        )
    return replace(finding, summary=finding.summary + text, evidence={**finding.evidence, **conc})


def _host_links(ctx: AnalysisContext) -> tuple[LinkSpec, ...]:
    """The PCIe links host copies are compared against: ``--link`` when it names a PCIe
    link, else Gen5 and Gen4 x16 (the trace does not say which the host has)."""
    if ctx.options.link:
        given = link_by_name(ctx.options.link)
        if given.kind == "pcie":
            return (given,)
    return tuple(link_by_name(k) for k in _PCIE_LINKS)


def _copy_shares(ctx: AnalysisContext, copies: pl.DataFrame) -> pl.DataFrame:
    """Per (rank, device): copy union (ns), busy time, span, and the copy shares (%)."""
    breakdown = ctx.metric("timeline.breakdown", timeline.breakdown)
    clipped = copies.select(
        "rank",
        "device",
        pl.max_horizontal("start_ns", "window_start_ns").alias("start_ns"),
        pl.min_horizontal(pl.col("start_ns") + pl.col("dur_ns"), "window_end_ns").alias("end_ns"),
    ).filter(pl.col("end_ns") > pl.col("start_ns"))
    union = intervals.union_ns(clipped, ["rank", "device"]).rename({"union_ns": "copy_ns"})
    return (
        breakdown.join(union, on=["rank", "device"], how="inner")
        .filter(pl.col("busy_ns") > 0)
        .with_columns(
            (100.0 * pl.col("copy_ns") / pl.col("busy_ns")).alias("copy_busy_pct"),
            (100.0 * pl.col("copy_ns") / pl.col("span_ns")).alias("copy_window_pct"),
        )
    )


def _directions(copies: pl.DataFrame) -> pl.DataFrame:
    """Per direction: copies, bytes, summed GPU time and GB/s, most time first."""
    return (
        copies.group_by(pl.col("kind").cast(pl.String).alias("kind"))
        .agg(
            pl.len().alias("copies"),
            pl.col("bytes").fill_null(0).sum().alias("bytes"),
            pl.col("dur_ns").sum().alias("gpu_ns"),
        )
        .with_columns(
            pl.when(pl.col("gpu_ns") > 0)
            .then(pl.col("bytes") / pl.col("gpu_ns"))
            .otherwise(None)
            .alias("gbps")
        )
        .sort(["gpu_ns", "kind"], descending=[True, False])
    )


def _sources(copies: pl.DataFrame, top: int) -> pl.DataFrame:
    """Per (direction, issuing op, enclosing range): copies, bytes, GPU time, most first."""
    return (
        copies.with_columns(
            pl.col("kind").cast(pl.String),
            pl.col("op").fill_null("(not linked to a CPU op)"),
            pl.col("under").fill_null(""),
        )
        .group_by("kind", "op", "under")
        .agg(
            pl.len().alias("copies"),
            pl.col("bytes").fill_null(0).sum().alias("bytes"),
            pl.col("dur_ns").sum().alias("gpu_ns"),
        )
        .sort(["gpu_ns", "kind", "op", "under"], descending=[True, False, False, False])
        .head(top)
    )


def _finding(
    cfg: CopyBoundConfig,
    row: dict[str, Any],
    copies: pl.DataFrame,
    devices: int,
    profile: WorkloadProfile,
    links: tuple[LinkSpec, ...] = (),
) -> Finding:
    """The finding for one device: copy share, per-direction bandwidth against the PCIe link,
    issuing ranges, and how many copies no CPU op issued (the trace could not link them)."""
    rank, device = int(row["rank"]), int(row["device"])
    busy_pct, window_pct = float(row["copy_busy_pct"]), float(row["copy_window_pct"])
    severity = Severity.CRITICAL if busy_pct >= cfg.critical_busy_pct else Severity.WARNING
    directions = _directions(copies)
    sources = _sources(copies, cfg.top_sources)
    top = directions.row(0, named=True)
    compute_pct = 100.0 * int(row["compute_ns"]) / int(row["span_ns"]) if row["span_ns"] else 0.0
    named = sources.filter(~pl.col("op").str.starts_with("(not linked"))
    issuer = ""
    if named.height:
        first = named.row(0, named=True)
        where = f" under `{first['under']}`" if first["under"] else ""
        issuer = f" The largest linked source is `{first['op']}`{where}."
    rate = f" at {top['gbps']:.1f} GB/s" if top["gbps"] else ""
    link_text, link_evidence = _against_links(top, links)
    unlinked = copies.filter(
        (pl.col("kind").cast(pl.String) == top["kind"]) & pl.col("op").is_null()
    )
    if unlinked.height:
        no_call = int((~unlinked["has_call"]).sum()) if "has_call" in unlinked.columns else 0
        why = (
            " (the trace has no runtime call with their correlation id)"
            if no_call == unlinked.height
            else ""
        )
        issuer += (
            f" {unlinked.height} of the {int(top['copies'])} {top['kind']} copies "
            f"({int(unlinked['bytes'].fill_null(0).sum()) / 1e9:.2f} GB) are not linked to a "
            f"CPU op{why}, so their issuer is unknown."
        )
    summary = (
        f"Memory copies on rank {rank} device {device} take {busy_pct:.1f}% of the GPU's busy "
        f"time ({int(row['copy_ns']) / 1e6:.1f} ms, {window_pct:.1f}% of the window) while "
        f"compute kernels take {compute_pct:.1f}% of the window: the GPU mostly waits on "
        f"copies. Most is {top['kind']}: {int(top['copies'])} copies, "
        f"{int(top['bytes']) / 1e9:.2f} GB in {int(top['gpu_ns']) / 1e6:.1f} ms{rate}"
        f"{link_text}.{issuer}"
    )
    evidence: dict[str, float | int | str] = {
        "rank": rank,
        "device": device,
        "copy_ns": int(row["copy_ns"]),
        "busy_ns": int(row["busy_ns"]),
        "compute_ns": int(row["compute_ns"]),
        "span_ns": int(row["span_ns"]),
        "copy_busy_pct": round(busy_pct, 2),
        "copy_window_pct": round(window_pct, 2),
        "devices_over_threshold": devices,
        "top_direction": str(top["kind"]),
    }
    for r in directions.iter_rows(named=True):
        evidence[f"{r['kind']}_bytes"] = int(r["bytes"])
        evidence[f"{r['kind']}_gpu_ns"] = int(r["gpu_ns"])
        if r["gbps"]:
            evidence[f"{r['kind']}_gbps"] = round(float(r["gbps"]), 2)
    evidence.update(link_evidence)
    evidence[f"{top['kind']}_unlinked_copies"] = unlinked.height
    evidence[f"{top['kind']}_unlinked_bytes"] = int(unlinked["bytes"].fill_null(0).sum())
    if named.height:
        evidence["top_issuing_op"] = str(named["op"][0])
        evidence["top_issuing_range"] = str(named["under"][0])
    table_rows: list[list[str | int | float | None]] = [
        [
            str(r["kind"]),
            int(r["copies"]),
            round(int(r["bytes"]) / 1e9, 3),
            round(int(r["gpu_ns"]) / 1e6, 3),
            None if r["gbps"] is None else round(float(r["gbps"]), 2),
            "(all)",
            "",
        ]
        for r in directions.iter_rows(named=True)
    ]
    table_rows += [
        [
            str(r["kind"]),
            int(r["copies"]),
            round(int(r["bytes"]) / 1e9, 3),
            round(int(r["gpu_ns"]) / 1e6, 3),
            round(int(r["bytes"]) / int(r["gpu_ns"]), 2) if r["gpu_ns"] else None,
            str(r["op"]),
            str(r["under"]),
        ]
        for r in sources.iter_rows(named=True)
    ]
    return Finding(
        rule_id=CopyBound.id,
        severity=severity,
        title=CopyBound.title,
        summary=summary,
        evidence=evidence,
        recommendation=_recommendation(str(top["kind"]), sources, profile),
        scope=Scope(
            rank=rank if devices == 1 else None,
            device=device if devices == 1 else None,
            start_ns=int(row["window_start_ns"]),
            end_ns=int(row["window_end_ns"]),
        ),
        impact_ns=int(row["copy_ns"]),
        table=EvidenceTable(
            columns=["direction", "copies", "GB", "GPU ms", "GB/s", "CPU op", "under"],
            rows=table_rows,
        ),
    )


def _against_links(
    top: dict[str, Any], links: tuple[LinkSpec, ...]
) -> tuple[str, dict[str, float | int | str]]:
    """A host copy's GB/s as a share of each PCIe link's per-direction peak (text, evidence);
    nothing for device-side copies, which do not cross the host link."""
    if top["kind"] not in _HOST_PATH or not top["gbps"] or not links:
        return "", {}
    gbps = float(top["gbps"])
    shares = [(spec, 100.0 * gbps / spec.unidirectional_gbps) for spec in links]
    text = ", ".join(
        f"{pct:.0f}% of {spec.name}'s {spec.unidirectional_gbps:g} GB/s per direction"
        for spec, pct in shares
    )
    unknown = "" if len(links) == 1 else " (the trace does not say which link the host has)"
    evidence: dict[str, float | int | str] = {
        f"{top['kind']}_pct_of_{spec.key.replace('-', '_')}": round(pct, 1) for spec, pct in shares
    }
    return f": {text}{unknown}", evidence


def _recommendation(direction: str, sources: pl.DataFrame, profile: WorkloadProfile) -> str:
    """Advice by what copies and who issues them: FSDP CPU offload, host tensors, DtoD."""
    ranges = " ".join(sources["under"].to_list() + sources["op"].to_list())
    fsdp = "FSDP" in ranges or profile.data_parallel == "FSDP"
    if direction == "HtoD" and fsdp:
        text = (
            "These host-to-device copies are FSDP bringing parameters back from CPU offload "
            "(`FSDP::pre_forward`): if the sharded parameters fit in GPU memory, drop "
            "`CPUOffload(offload_params=True)`; otherwise shard over more GPUs so less is "
            "offloaded, and prefetch (`forward_prefetch=True`"
            + (", `backward_prefetch=BACKWARD_PRE`" if profile.is_training else "")
            + ") so the next unit's copy overlaps this unit's compute"
        )
    elif direction == "HtoD":
        text = (
            "Keep the data on the device: create tensors there (`device=` at construction) "
            "instead of rebuilding them on the host each step; for inputs that must come "
            "from the host, copy from pinned memory with `.to(device, non_blocking=True)` on "
            "a side stream one step ahead so the copy overlaps compute"
        )
    elif direction == "DtoH":
        text = (
            "Keep results on the GPU: read back only what the host needs, once per step "
            "(accumulate metrics on the device), into pinned buffers with "
            "`non_blocking=True` so the copy overlaps the next step's compute"
        )
    else:
        text = (
            "Avoid device-side copies: drop `.contiguous()`, `.clone()` and dtype/layout "
            "conversions that materialize copies (keep one layout end to end, use in-place "
            "ops, preallocate and write into buffers)"
        )
    return text + "."
