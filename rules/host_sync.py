"""host-sync: the CPU blocks on the GPU (syncs, blocking copies, ``.item()``-style reads).

The blocking calls are `analyzer.metrics.host_blocking`'s: synchronization API calls,
blocking copies (non-async ``cudaMemcpy``, ``hipMemcpyWithStream``, async copies to or from
pageable memory) and the reads of a device scalar into Python (``.item()``,
``_local_scalar_dense``), each with the CPU op and, when the trace has Python stacks, the
innermost user frame that issued it. Calls are ranked by the time the CPU was blocked.

Blocking costs GPU time only when the GPU runs dry while the CPU waits: that is the idle
ledger's ``sync_wait`` and ``blocking_copy`` rows (`analyzer.metrics.idle_ledger`), the idle
time *inside* the calls, which this finding claims and its severity follows. What happens on
the CPU after a call returns is charged to what ran then, not to the call.

Severity and advice follow the steady state: GPU idle inside one-time calls of the first
profiled step (`idle_ledger.cold_start_split`, the cold-start finding's cost) is reported
apart and left out of the thresholds.

When the GPU idles under 1% of the window inside the calls (`expected_bubble_pct`), the CPU
is waiting for results it needs while the GPU computes them: removing or deferring the calls
would not change GPU time, so the finding is informational and says so, with no fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import host_blocking, idle_ledger, intervals, segments, timeline
from gpu_trace_analyzer.metrics.workload import WorkloadProfile, workload_profile
from gpu_trace_analyzer.rules.base import register

#: The ledger rows this finding claims.
CAUSES = ("sync_wait", "blocking_copy")
_NO_OP = host_blocking.NO_OP


@dataclass(frozen=True, slots=True)
class HostSyncConfig:
    """Thresholds of host-sync."""

    warning_bubble_pct: float = 5.0
    """GPU idle time inside blocking calls, as a share of the window, that raises a
    warning."""
    critical_bubble_pct: float = 40.0
    """Share of the window idled inside blocking calls at which the finding is critical."""
    info_bubble_pct: float = 0.5
    """Below the warning level, report (as info) blocking calls that idle at least this
    share of the window."""
    info_blocked_pct: float = 5.0
    """Also report (as info) calls that block the CPU this share of the window while the
    GPU stays busy (they cost nothing yet, but cap how far ahead the CPU can queue)."""
    expected_bubble_pct: float = 1.0
    """Below this share of the window idled inside the calls, the CPU waits for GPU results
    it needs while the GPU stays busy (expected): informational, no fix advised."""
    top_sites: int = 8
    """How many call sites the evidence table lists."""


@register
class HostSync:
    """Blocking host calls ranked by CPU-blocked time, with the op and frame issuing them."""

    id: ClassVar[str] = "host-sync"
    title: ClassVar[str] = "CPU blocks on the GPU in synchronizations"
    description: ClassVar[str] = (
        "Synchronization calls, blocking copies and .item()-style reads in the profiled "
        "steps, ranked by the time the CPU was blocked, with the CPU op and Python frame "
        "that issued each; the GPU idle time inside them (idle ledger rows sync_wait and "
        "blocking_copy) sets the severity."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"runtime"})
    Config: ClassVar[type[HostSyncConfig]] = HostSyncConfig

    def check(self, ctx: AnalysisContext, cfg: HostSyncConfig) -> Iterable[Finding]:
        """One finding for the rank whose calls block the CPU longest, over a threshold."""
        calls = host_blocking.blocking_calls(ctx)
        if calls.height == 0:
            return
        per_rank = _per_rank(ctx, calls)
        worst = per_rank.sort(["blocked_ns", "calls", "rank"], descending=[True, True, False])
        row = worst.row(0, named=True)
        severity = _severity(row, cfg)
        if severity is None:
            return
        rank = int(row["rank"])
        profile = ctx.metric("workload", workload_profile)
        mine = calls.filter(pl.col("rank") == rank)
        yield _finding(ctx, cfg, severity, row, mine, per_rank, profile)


def sync_calls(ctx: AnalysisContext) -> pl.DataFrame:
    """The blocking calls inside each rank's window (`host_blocking.blocking_calls`)."""
    return host_blocking.blocking_calls(ctx)


def _per_rank(ctx: AnalysisContext, calls: pl.DataFrame) -> pl.DataFrame:
    """Per rank: call counts by kind, blocked time (union of call intervals), the GPU idle
    inside the calls (ledger), the window and the step count."""
    blocked = intervals.union_ns(calls, ["rank"]).rename({"union_ns": "blocked_ns"})
    windows = host_blocking.rank_windows(ctx).select(
        "rank", (pl.col("window_end_ns") - pl.col("window_start_ns")).alias("span_ns")
    )
    steps = ctx.tables.steps.group_by("rank").agg(pl.len().alias("steps"))
    counts = calls.group_by("rank").agg(
        pl.len().alias("calls"),
        (pl.col("kind") == "sync").sum().alias("sync_calls"),
        (pl.col("kind") == "copy").sum().alias("memcpy_calls"),
        (pl.col("kind") == "read").sum().alias("read_calls"),
        pl.col("dur_ns").max().alias("longest_ns"),
    )
    rows = idle_ledger.by_cause(ctx).filter(pl.col("cause").is_in(list(CAUSES)))
    idle = rows.group_by("rank", "device").agg(pl.col("idle_ns").sum(), pl.col("window_pct").sum())
    idle = idle.group_by("rank").agg(
        pl.col("idle_ns").sum().alias("bubble_ns"), pl.col("window_pct").max().alias("bubble_pct")
    )
    out = (
        counts.join(blocked, on="rank")
        .join(windows, on="rank", how="left")
        .join(idle, on="rank", how="left")
        .join(steps, on="rank", how="left")
        .with_columns(
            pl.col("steps").fill_null(0),
            pl.col("span_ns").fill_null(0),
            pl.col("bubble_ns").fill_null(0),
            pl.col("bubble_pct").fill_null(0.0),
        )
    )
    split = idle_ledger.cold_start_split(ctx)
    cold_idle = split.group_by("rank").agg(pl.col("cold_ns").sum().alias("cold_idle_ns"))
    cold_calls = (
        host_blocking.first_step_outliers(ctx)
        .group_by("rank")
        .agg(pl.col("dur_ns").sum().alias("cold_blocked_ns"))
    )
    out = (
        out.join(cold_idle, on="rank", how="left")
        .join(cold_calls, on="rank", how="left")
        .with_columns(pl.col("cold_idle_ns").fill_null(0), pl.col("cold_blocked_ns").fill_null(0))
    )

    def of_window(ns: pl.Expr) -> pl.Expr:
        return pl.when(pl.col("span_ns") > 0).then(100.0 * ns / pl.col("span_ns")).otherwise(0.0)

    return out.with_columns(
        of_window(pl.col("blocked_ns")).alias("blocked_pct"),
        of_window(pl.col("bubble_ns") - pl.col("cold_idle_ns")).alias("steady_bubble_pct"),
        of_window(pl.col("blocked_ns") - pl.col("cold_blocked_ns")).alias("steady_blocked_pct"),
    )


def _severity(row: dict[str, Any], cfg: HostSyncConfig) -> Severity | None:
    """By the share of the window the GPU sat idle inside the calls in the steady state:
    one-time calls of the first profiled step are the cold-start finding's, not this one's."""
    bubble_pct = float(row["steady_bubble_pct"])
    if bubble_pct >= cfg.critical_bubble_pct:
        return Severity.CRITICAL
    if bubble_pct >= cfg.warning_bubble_pct:
        return Severity.WARNING
    blocked_pct = float(row["steady_blocked_pct"])
    if bubble_pct >= cfg.info_bubble_pct or blocked_pct >= cfg.info_blocked_pct:
        return Severity.INFO
    return None


_KIND_WORDS = {
    "sync": "synchronization call",
    "copy": "blocking copy",
    "read": ".item()-style read",
}


def _finding(
    ctx: AnalysisContext,
    cfg: HostSyncConfig,
    severity: Severity,
    row: dict[str, Any],
    calls: pl.DataFrame,
    per_rank: pl.DataFrame,
    profile: WorkloadProfile,
) -> Finding:
    """The finding for one rank: counts, blocked time, GPU idle inside, the call sites."""
    rank = int(row["rank"])
    sync_n, copy_n, read_n = (int(row[k]) for k in ("sync_calls", "memcpy_calls", "read_calls"))
    blocked_ns, bubble_ns, span_ns = (int(row[k]) for k in ("blocked_ns", "bubble_ns", "span_ns"))
    steps = int(row["steps"])
    sites = _sites(ctx, calls, rank)
    top = sites.row(0, named=True)
    total = sync_n + copy_n + read_n
    per_step = f" ({total / steps:.1f} per step)" if steps else ""
    where = _site_words(top)
    summary = (
        f"Rank {rank} blocks the CPU {blocked_ns / 1e6:.2f} ms "
        f"({float(row['blocked_pct']):.1f}% of the {span_ns / 1e6:.1f} ms window) in "
        f"{sync_n} synchronization call(s), {copy_n} blocking copy call(s) and {read_n} "
        f".item()-style read(s){per_step}; the GPU sat idle {bubble_ns / 1e6:.2f} ms inside "
        f"those calls ({float(row['bubble_pct']):.1f}% of the window). The longest-blocking "
        f"site is {where}: {int(top['total_ns']) / 1e6:.2f} ms in {int(top['calls'])} call(s)."
    )
    pageable = calls.filter(pl.col("pageable"))
    if pageable.height:
        summary += (
            f" {pageable.height} of the copy calls touch pageable host memory: their "
            f"{int(pageable['dur_ns'].sum()) / 1e6:.2f} ms of CPU-blocked time is the "
            "`pageable-memcpy` finding's cost (see it), counted here only for the ranking."
        )
    cold_ns = int(row["cold_idle_ns"])
    if cold_ns:
        summary += (
            f" {cold_ns / 1e6:.2f} ms of the GPU idle inside the calls is in one-time "
            "first-step call(s), a cold-start cost (see `cold-start`); the steady state idles "
            f"{(bubble_ns - cold_ns) / 1e6:.2f} ms ({float(row['steady_bubble_pct']):.2f}% of "
            "the window), which sets this finding's severity and advice."
        )
    expected = float(row["steady_bubble_pct"]) < cfg.expected_bubble_pct
    idle_inside_ns = _gpu_idle_inside(ctx, calls, rank)
    busy_inside_pct = 100.0 * (blocked_ns - idle_inside_ns) / blocked_ns if blocked_ns else 0.0
    gpu_idle_inside = busy_inside_pct < 50.0
    if expected and gpu_idle_inside:
        summary += (
            " The CPU waits for GPU results it needs (expected); not a bottleneck: the GPU is "
            f"idle {idle_inside_ns / 1e6:.2f} of the {blocked_ns / 1e6:.2f} ms "
            f"inside these calls (busy {busy_inside_pct:.1f}%), but only the "
            f"{bubble_ns / 1e6:.2f} ms above is charged to them: the idle ledger puts the rest on "
            "other causes (nothing launched, or launched work held by another dependency), so "
            "removing or deferring the calls would not change the GPU time; see Idle time by "
            "cause."
        )
    elif expected:
        summary += (
            " The CPU waits for GPU results it needs (expected); not a bottleneck: inside "
            f"these calls the GPU is busy {busy_inside_pct:.1f}% of the time, so removing or "
            "deferring them would not change the GPU time."
        )
    evidence: dict[str, float | int | str] = {
        "rank": rank,
        "sync_calls": sync_n,
        "blocking_memcpy_calls": copy_n,
        "item_read_calls": read_n,
        "blocked_ns": blocked_ns,
        "blocked_pct": round(float(row["blocked_pct"]), 2),
        "gpu_idle_in_calls_ns": bubble_ns,
        "gpu_idle_in_calls_pct": round(float(row["bubble_pct"]), 2),
        "cold_start_idle_ns": cold_ns,
        "steady_idle_in_calls_ns": bubble_ns - cold_ns,
        "steady_idle_in_calls_pct": round(float(row["steady_bubble_pct"]), 2),
        "gpu_busy_in_calls_pct": round(busy_inside_pct, 2),
        "longest_call_ns": int(row["longest_ns"]),
        "window_ns": span_ns,
        "steps": steps,
        "ranks_with_syncs": per_rank.height,
        "top_api": str(top["api"]),
        "top_op": str(top["op"]),
        "top_frame": str(top["frame"] or ""),
        **idle_ledger.claim_evidence(ctx, CAUSES, rank),
    }
    return Finding(
        rule_id=HostSync.id,
        severity=severity,
        title=HostSync.title,
        summary=summary,
        evidence=evidence,
        recommendation=(
            (_EXPECTED_IDLE_ADVICE if gpu_idle_inside else _EXPECTED_ADVICE)
            if expected
            else _recommendation(sites, profile)
        ),
        scope=Scope(
            rank=rank,
            start_ns=int(calls.select(pl.col("start_ns").min()).item()),
            end_ns=int(calls.select(pl.col("end_ns").max()).item()),
        ),
        impact_ns=bubble_ns,
        table=EvidenceTable(
            columns=[
                "API",
                "kind",
                "CPU op",
                "Python frame",
                "calls",
                "CPU blocked ms",
                "GPU idle inside ms",
            ],
            rows=[
                [
                    str(s["api"]),
                    _KIND_WORDS.get(str(s["kind"]), str(s["kind"])),
                    str(s["op"]),
                    str(s["frame"] or ""),
                    int(s["calls"]),
                    round(int(s["total_ns"]) / 1e6, 3),
                    round(int(s["idle_ns"]) / 1e6, 3),
                ]
                for s in sites.head(cfg.top_sites).iter_rows(named=True)
            ],
        ),
    )


def _gpu_idle_inside(ctx: AnalysisContext, calls: pl.DataFrame, rank: int) -> int:
    """GPU idle time of the rank's devices (union of their idle gaps) inside the union of the
    rank's blocking calls, measured from the timeline rather than the ledger's attribution."""
    mine = calls.filter(pl.col("rank") == rank)
    gaps = timeline.idle_gaps(ctx.tables).filter(pl.col("rank") == rank)
    if mine.height == 0 or gaps.height == 0:
        return 0
    c_s, c_e = segments.merge(mine.get_column("start_ns"), mine.get_column("end_ns"))
    g_s, g_e = segments.merge(gaps.get_column("start_ns"), gaps.get_column("end_ns"))
    return int(segments.overlap_ns(g_s, g_e, c_s, c_e).sum())


def _site_words(site: dict[str, Any]) -> str:
    """``cudaMemcpyAsync in aten::_local_scalar_dense at file.py(12): fn``."""
    words = str(site["api"])
    if site["op"] != _NO_OP:
        words += f" in {site['op']}"
    if site["frame"]:
        words += f" at {site['frame']}"
    return words


def _sites(ctx: AnalysisContext, calls: pl.DataFrame, rank: int) -> pl.DataFrame:
    """Calls grouped by (API, kind, innermost op, frame), most CPU-blocked time first, with
    the ledger's GPU idle inside each site's calls."""
    label = pl.coalesce(
        pl.col("frame"),
        pl.when(pl.col("op") == _NO_OP)
        .then(pl.col("api"))
        .otherwise(pl.concat_str(pl.col("api"), pl.lit(" in "), pl.col("op"))),
    )
    grouped = (
        calls.with_columns(label.alias("detail"))
        .group_by("api", "kind", "op", "under", "frame", "detail")
        .agg(pl.len().alias("calls"), pl.col("dur_ns").sum().alias("total_ns"))
    )
    idle = (
        idle_ledger.ledger(ctx)
        .filter((pl.col("rank") == rank) & pl.col("cause").is_in(list(CAUSES)))
        .group_by("detail")
        .agg(pl.col("idle_ns").sum())
    )
    # A detail (frame) shared by several sites: its idle goes to the longest-blocking one.
    ranked = grouped.sort(["total_ns", "api"], descending=[True, False])
    first = ranked.with_columns(pl.col("detail").is_first_distinct().alias("_first"))
    return (
        first.join(idle, on="detail", how="left", maintain_order="left")
        .with_columns(pl.when(pl.col("_first")).then(pl.col("idle_ns")).otherwise(0).fill_null(0))
        .drop("_first", "detail")
    )


_EXPECTED_ADVICE = (
    "Nothing to fix here: these calls read results the program needs while the GPU is busy "
    "computing them. Revisit them only if another finding shows the CPU must run further "
    "ahead to keep the GPU fed."
)
_EXPECTED_IDLE_ADVICE = (
    "Nothing to fix in these calls: the GPU idle time inside them has another cause (see the "
    "Idle time by cause section); the calls only wait through it."
)
_ITEM_OPS = r"aten::(item|_local_scalar_dense|is_nonzero)"
_NONZERO_OPS = r"aten::(nonzero|masked_select|unique|_unique2|index|repeat_interleave)"
_COPY_OPS = r"aten::(to|_to_copy|copy_|cpu)"


def _recommendation(sites: pl.DataFrame, profile: WorkloadProfile) -> str:
    """Fix advice for the kinds of call sites present, most blocking first, naming them;
    sites blocking under 5% of the longest one's time get no advice of their own."""
    longest = int(sites["total_ns"].max() or 0)  # type: ignore[arg-type]
    top = sites.row(0, named=True)
    sites = sites.filter(pl.col("total_ns") >= 0.05 * longest)
    ops = " ".join([*sites["op"].to_list(), *sites["under"].to_list()])
    loop = "training loop" if profile.is_training else "step loop"
    advice = []
    if pl.Series([ops]).str.contains(_ITEM_OPS).item() or "read" in sites["kind"].to_list():
        advice.append(
            "replace `.item()` / `float(tensor)` / `if tensor:` in the step with on-GPU "
            "accumulation read every N steps"
        )
    if pl.Series([ops]).str.contains(_NONZERO_OPS).item():
        advice.append(
            "avoid data-dependent output shapes (`nonzero`, boolean-mask indexing, `unique`): "
            "use `torch.where` with a fixed shape, or pass `size=` where the op accepts it"
        )
    if pl.Series([ops]).str.contains(_COPY_OPS).item() or "copy" in sites["kind"].to_list():
        advice.append(
            "make host-device copies asynchronous (pinned host memory, "
            "`.to(..., non_blocking=True)`, then an event) and read results later"
        )
    if _NO_OP in set(sites["op"].to_list()):
        advice.append(
            "remove explicit `torch.cuda.synchronize()` / `stream.synchronize()` from the "
            f"{loop} (keep them only around timing code outside profiled steps)"
        )
    if not advice:
        advice.append("move the synchronizing calls out of the step or defer them")
    return (
        f"Start with {_site_words(top)}. Remove or defer the blocking calls: "
        + "; ".join(advice)
        + "."
    )
