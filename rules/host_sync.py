"""host-sync: the CPU blocks on the GPU (device, stream and event syncs, blocking copies).

Counted, per rank, inside the analysis window (the profiled steps, or the whole trace
without steps):

- synchronization API calls, the calls of Nsight Systems' ``cuda_api_sync`` rule and their
  event and HIP / driver twins: ``cudaDeviceSynchronize``, ``cudaStreamSynchronize``,
  ``cudaEventSynchronize``, ``cuCtxSynchronize``, ``cuStreamSynchronize``,
  ``cuEventSynchronize``, ``hipDeviceSynchronize``, ``hipStreamSynchronize``,
  ``hipEventSynchronize`` (Nsight's version suffixes such as ``_v3020`` are ignored);
- blocking copies, Nsight's ``cuda_memcpy_sync``: the non-async ``cudaMemcpy*`` /
  ``hipMemcpy*`` calls, except host-to-device copies of at most 64,000 bytes (they return
  before the copy completes) and copies within one device.

The blocked time is the union of those calls' CPU intervals. Blocking alone costs nothing
when the GPU has queued work; the cost is the *drain*: the GPU runs out of work while the
CPU waits, then idles until the CPU has queued more. So severity and time at stake follow
the GPU idle gaps that opened during a call and were still open when it returned, not the
blocked time. The thresholds match gpu-idle's (these gaps are part of its idle time).

Each call is attributed to the innermost CPU op containing it on the same thread
(``aten::_local_scalar_dense`` for ``.item()``, ``aten::nonzero``, ``aten::copy_``...) and
to the outermost one, so the table says which line of the model to look at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import polars as pl

from analyzer.context import AnalysisContext
from analyzer.findings import EvidenceTable, Finding, Scope, Severity
from analyzer.metrics import timeline
from parsers.schema import TraceTables
from rules.base import register

#: Runtime or driver calls that block the host until the device (or a stream/event) is done.
SYNC_API_PATTERN: Final = (
    r"^(cuda(Device|Stream|Event)Synchronize|cu(Ctx|Stream|Event)Synchronize"
    r"|hip(Device|Stream|Event)Synchronize)(_v\d+)?$"
)
#: Non-async copy calls (Nsight's cuda_memcpy_sync candidates).
SYNC_MEMCPY_PATTERN: Final = (
    r"^(cuda|hip)Memcpy(2D|3D|ToSymbol|FromSymbol|Peer|DtoH|HtoD|DtoD)?(_v\d+)?$"
)
#: Nsight's cuda_memcpy_sync leaves out host-to-device copies up to this size.
SMALL_HTOD_BYTES: Final = 64_000
_STEP = r"^ProfilerStep#"
_CPU_KINDS = ("cpu_op", "user_annotation")
_NO_OP = "(no CPU op: called directly)"


@dataclass(frozen=True, slots=True)
class HostSyncConfig:
    """Thresholds of host-sync."""

    warning_bubble_pct: float = 5.0
    """GPU idle time opened by syncs (the queue drained while the CPU waited), as a share of
    the window, that raises a warning."""
    critical_bubble_pct: float = 40.0
    """Share of the window idled by syncs at which the finding becomes critical."""
    info_bubble_pct: float = 0.5
    """Below the warning level, report (as info) syncs that idle at least this share of the
    window; syncs that leave the GPU busy cost nothing and are not reported."""
    drain_tolerance_us: float = 20.0
    """A GPU gap belongs to a call when the GPU went idle after the call started (or up to
    this long before) and was still idle when the call returned."""
    top_sites: int = 8
    """How many (call, op) sites the evidence table lists."""


@register
class HostSync:
    """Host-device synchronizations and blocking copies, and the ops that triggered them."""

    id: ClassVar[str] = "host-sync"
    title: ClassVar[str] = "CPU blocks on the GPU in synchronizations"
    description: ClassVar[str] = (
        "Device, stream and event synchronization calls and blocking (non-async) copies in "
        "the profiled steps: count, CPU time blocked, the GPU idle time each opens (the "
        "queue drains while the CPU waits), and the CPU ops that triggered them (.item(), "
        "nonzero, .cpu()...)."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"runtime"})
    Config: ClassVar[type[HostSyncConfig]] = HostSyncConfig

    def check(self, ctx: AnalysisContext, cfg: HostSyncConfig) -> Iterable[Finding]:
        """One finding for the rank whose syncs idle the GPU most, when over a threshold."""
        calls = with_drain_gaps(ctx, sync_calls(ctx), cfg.drain_tolerance_us)
        if calls.height == 0:
            return
        per_rank = _per_rank(ctx, calls)
        worst = per_rank.sort(["bubble_ns", "calls", "rank"], descending=[True, True, False])
        row = worst.row(0, named=True)
        severity = _severity(row, cfg)
        if severity is None:
            return
        rank = int(row["rank"])
        yield _finding(cfg, severity, row, calls.filter(pl.col("rank") == rank), per_rank)


def sync_calls(ctx: AnalysisContext) -> pl.DataFrame:
    """The blocking calls inside each rank's window, with the ops that contain them.

    Columns: rank, pid, tid, api (version suffix removed), kind (sync, memcpy), start_ns,
    end_ns, dur_ns, op (innermost containing CPU op), under (outermost one).
    """
    calls = blocking_calls(ctx)
    return _with_containing_ops(ctx, calls.with_row_index("call")).drop("call")


def blocking_calls(ctx: AnalysisContext) -> pl.DataFrame:
    """Sync API calls and blocking copies inside each rank's window (see the module doc).

    Columns: rank, pid, tid, api, kind (sync, memcpy), start_ns, end_ns, dur_ns. Computed
    once per analysis (gpu-idle asks for it too).
    """
    return ctx.metric("host_sync.blocking_calls", lambda _tables: _blocking_calls(ctx))


def _blocking_calls(ctx: AnalysisContext) -> pl.DataFrame:
    runtime = ctx.tables.runtime
    api = pl.col("name").cast(pl.String).str.replace(r"_v\d+$", "").alias("api")
    sync_api = timeline.table_name_matches(ctx.tables, "runtime", SYNC_API_PATTERN)
    sync_copy = timeline.table_name_matches(ctx.tables, "runtime", SYNC_MEMCPY_PATTERN)
    syncs = runtime.filter(sync_api).with_columns(api)
    copies = _blocking_copies(ctx, runtime.filter(sync_copy).with_columns(api))
    calls = pl.concat(
        [
            syncs.select(_CALL_COLUMNS).with_columns(pl.lit("sync").alias("kind")),
            copies.select(_CALL_COLUMNS).with_columns(pl.lit("memcpy").alias("kind")),
        ],
        how="vertical",
    ).with_columns((pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"))
    windows = rank_windows(ctx)
    calls = calls.join(windows, on="rank", how="inner").filter(
        (pl.col("start_ns") >= pl.col("window_start_ns"))
        & (pl.col("start_ns") < pl.col("window_end_ns"))
    )
    return calls.select("rank", "pid", "tid", "api", "kind", "start_ns", "end_ns", "dur_ns").sort(
        "rank", "start_ns"
    )


def drained_by_call(tolerance_ns: int) -> pl.Expr:
    """Whether a GPU gap (``gap_start_ns``, ``gap_end_ns``) was opened by a blocking call
    (``start_ns``, ``end_ns``): the GPU ran out of work while the call blocked (or up to
    ``tolerance_ns`` before it began) and was still idle when the call returned."""
    return (
        (pl.col("gap_start_ns") >= pl.col("start_ns") - tolerance_ns)
        & (pl.col("gap_start_ns") <= pl.col("end_ns"))
        & (pl.col("gap_end_ns") > pl.col("end_ns"))
    )


_CALL_COLUMNS = ["rank", "pid", "tid", "api", "start_ns", "dur_ns"]


def _blocking_copies(ctx: AnalysisContext, copies: pl.DataFrame) -> pl.DataFrame:
    """The non-async copy calls ``copies``, less small host-to-device and same-device ones
    (Nsight's rule)."""
    if copies.height == 0:
        return copies
    memops = ctx.tables.memops.select(
        "rank", "correlation", pl.col("kind").cast(pl.String).alias("copy_kind"), "bytes"
    ).filter(pl.col("correlation").is_not_null())
    linked = copies.join(memops, on=["rank", "correlation"], how="left")
    small_htod = (pl.col("copy_kind") == "HtoD") & (pl.col("bytes") <= SMALL_HTOD_BYTES)
    same_device = pl.col("copy_kind") == "DtoD"
    return linked.filter(~(small_htod | same_device).fill_null(False))


def _with_containing_ops(ctx: AnalysisContext, calls: pl.DataFrame) -> pl.DataFrame:
    """Add ``op`` (innermost CPU op containing each call on its thread) and ``under``.

    An inequality join finds the ops containing each call in time (on any thread), which
    stays small however many calls and ops there are; the thread must then match. Ops that
    contain no call at all are left out first (`_around_a_call`).
    """
    ops = ctx.tables.ops
    if calls.height == 0:
        return calls.with_columns(pl.lit(_NO_OP).alias("op"), pl.lit(_NO_OP).alias("under"))
    could_contain = _around_a_call(ops, calls)
    candidates = ops.filter(
        could_contain
        & pl.col("kind").is_in(_CPU_KINDS)
        & ~timeline.table_name_matches(ctx.tables, "ops", _STEP)
    )
    if candidates.height == 0:
        return calls.with_columns(pl.lit(_NO_OP).alias("op"), pl.lit(_NO_OP).alias("under"))
    threads = ["rank", "pid", "tid"]
    containing = calls.join_where(
        candidates.select(
            *(pl.col(c).alias(f"op_{c}") for c in threads),
            pl.col("name").alias("op_name"),
            "depth",
            pl.col("start_ns").alias("op_start_ns"),
            (pl.col("start_ns") + pl.col("dur_ns")).alias("op_end_ns"),
        ),
        pl.col("op_start_ns") <= pl.col("start_ns"),
        pl.col("op_end_ns") >= pl.col("end_ns"),
    ).filter(pl.all_horizontal(pl.col(c) == pl.col(f"op_{c}") for c in threads))
    chain = (
        containing.sort("depth")
        .group_by("call")
        .agg(pl.col("op_name").last().alias("op"), pl.col("op_name").first().alias("under"))
        .with_columns(pl.col("op", "under").cast(pl.String))
    )
    return calls.join(chain, on="call", how="left").with_columns(
        pl.col("op").fill_null(_NO_OP), pl.col("under").fill_null(_NO_OP)
    )


def _around_a_call(ops: pl.DataFrame, calls: pl.DataFrame) -> pl.Expr:
    """Whether an op spans, in time, at least one of ``calls`` (on any thread).

    With ops in start order, one merge pass (an as-of join) gives each op the earliest end
    among the calls starting at or after it; the op spans a call when that end comes
    before its own. Otherwise cheap bounds: long enough, and around some call.
    """
    start = ops.get_column("start_ns")
    if start.null_count() or not start.is_sorted():
        return (
            (pl.col("dur_ns") >= calls["dur_ns"].min())
            & (pl.col("start_ns") <= calls["start_ns"].max())
            & (pl.col("start_ns") + pl.col("dur_ns") >= calls["end_ns"].min())
        )
    ordered = calls.select("start_ns", "end_ns").sort("start_ns")
    earliest_end = ordered.select(
        pl.col("start_ns").alias("_at"),
        pl.col("end_ns").reverse().cum_min().reverse().alias("_end"),
    )
    nearest = (
        start.rename("_at")
        .to_frame()
        .join_asof(earliest_end, on="_at", strategy="forward", check_sortedness=False)
    )
    return pl.lit(nearest.get_column("_end") <= start + ops.get_column("dur_ns"))


def with_drain_gaps(ctx: AnalysisContext, calls: pl.DataFrame, tolerance_us: float) -> pl.DataFrame:
    """Add ``bubble_ns``: the GPU idle gap each call left behind on its rank (0 when none).

    A gap (from `timeline.idle_gaps`, per device) belongs to a call when `drained_by_call`
    holds: the GPU ran dry while the CPU was blocked and stayed idle until the CPU had
    queued more work. A gap is counted once, for the latest call that returned inside it
    (the first such call when several returned at the same time).
    """
    tolerance_ns = int(tolerance_us * 1_000)
    gaps = timeline.idle_gaps(ctx.tables).select(
        "rank",
        pl.col("start_ns").alias("gap_start_ns"),
        pl.col("end_ns").alias("gap_end_ns"),
        pl.col("dur_ns").alias("gap_ns"),
    )
    indexed = calls.with_row_index("call")
    if indexed.height == 0 or gaps.height == 0:
        return indexed.with_columns(pl.lit(0, dtype=pl.Int64).alias("bubble_ns")).drop("call")
    # Candidates by time (an inequality join, small however many calls and gaps), then rank.
    pairs = indexed.select(
        "call",
        pl.col("rank").alias("call_rank"),
        "start_ns",
        "end_ns",
        (pl.col("start_ns") - tolerance_ns).alias("from_ns"),
    ).join_where(
        gaps,
        pl.col("gap_start_ns") >= pl.col("from_ns"),
        pl.col("gap_start_ns") <= pl.col("end_ns"),
    )
    matched = (
        pairs.filter((pl.col("rank") == pl.col("call_rank")) & drained_by_call(tolerance_ns))
        .sort(["end_ns", "call"], descending=[True, False])
        .unique(["rank", "gap_start_ns", "gap_end_ns"], keep="first")
        .group_by("call")
        .agg(pl.col("gap_ns").sum().alias("bubble_ns"))
    )
    return (
        indexed.join(matched, on="call", how="left")
        .with_columns(pl.col("bubble_ns").fill_null(0).cast(pl.Int64))
        .drop("call")
    )


def _per_rank(ctx: AnalysisContext, calls: pl.DataFrame) -> pl.DataFrame:
    """Per rank: call counts, blocked time (union of call intervals), GPU idle opened by the
    calls, the window and the step count."""
    blocked = timeline.union_ns(calls, ["rank"]).rename({"union_ns": "blocked_ns"})
    windows = rank_windows(ctx).select(
        "rank", (pl.col("window_end_ns") - pl.col("window_start_ns")).alias("span_ns")
    )
    steps = ctx.tables.steps.group_by("rank").agg(pl.len().alias("steps"))
    counts = calls.group_by("rank").agg(
        pl.len().alias("calls"),
        (pl.col("kind") == "sync").sum().alias("sync_calls"),
        (pl.col("kind") == "memcpy").sum().alias("memcpy_calls"),
        pl.col("dur_ns").max().alias("longest_ns"),
        pl.col("bubble_ns").sum().alias("bubble_ns"),
    )
    out = counts.join(blocked, on="rank").join(windows, on="rank", how="left")
    out = out.join(steps, on="rank", how="left").with_columns(
        pl.col("steps").fill_null(0), pl.col("span_ns").fill_null(0)
    )
    share = {
        f"{name}_pct": pl.when(pl.col("span_ns") > 0)
        .then(100.0 * pl.col(f"{name}_ns") / pl.col("span_ns"))
        .otherwise(0.0)
        for name in ("blocked", "bubble")
    }
    return out.with_columns(**share)


def _severity(row: dict[str, Any], cfg: HostSyncConfig) -> Severity | None:
    """By the share of the window the GPU sat idle because of the syncs."""
    bubble_pct = float(row["bubble_pct"])
    if bubble_pct >= cfg.critical_bubble_pct:
        return Severity.CRITICAL
    if bubble_pct >= cfg.warning_bubble_pct:
        return Severity.WARNING
    return Severity.INFO if bubble_pct >= cfg.info_bubble_pct else None


def _finding(
    cfg: HostSyncConfig,
    severity: Severity,
    row: dict[str, Any],
    calls: pl.DataFrame,
    per_rank: pl.DataFrame,
) -> Finding:
    """The finding for one rank: counts, blocked time, GPU idle opened, and the call sites."""
    rank = int(row["rank"])
    sync_n, copy_n = int(row["sync_calls"]), int(row["memcpy_calls"])
    blocked_ns, bubble_ns, span_ns = (
        int(row["blocked_ns"]),
        int(row["bubble_ns"]),
        int(row["span_ns"]),
    )
    steps = int(row["steps"])
    sites = _sites(calls)
    top = sites.row(0, named=True)
    per_step = f" ({(sync_n + copy_n) / steps:.1f} per step)" if steps else ""
    summary = (
        f"Rank {rank} makes {sync_n} synchronization call(s) and {copy_n} blocking copy "
        f"call(s){per_step}, blocking the CPU {blocked_ns / 1e6:.2f} ms; the GPU ran dry "
        f"during them and stayed idle {bubble_ns / 1e6:.2f} ms "
        f"({float(row['bubble_pct']):.1f}% of the {span_ns / 1e6:.1f} ms window), most of it "
        f"after {top['api']} "
        + ("called directly, outside any CPU op." if top["op"] == _NO_OP else f"in {top['op']}.")
    )
    evidence: dict[str, float | int | str] = {
        "rank": rank,
        "sync_calls": sync_n,
        "blocking_memcpy_calls": copy_n,
        "blocked_ns": blocked_ns,
        "blocked_pct": round(float(row["blocked_pct"]), 2),
        "gpu_idle_after_sync_ns": bubble_ns,
        "gpu_idle_after_sync_pct": round(float(row["bubble_pct"]), 2),
        "longest_call_ns": int(row["longest_ns"]),
        "window_ns": span_ns,
        "steps": steps,
        "ranks_with_syncs": per_rank.height,
        "top_api": str(top["api"]),
        "top_op": str(top["op"]),
    }
    return Finding(
        rule_id=HostSync.id,
        severity=severity,
        title=HostSync.title,
        summary=summary,
        evidence=evidence,
        recommendation=_recommendation(sites),
        scope=Scope(
            rank=rank,
            start_ns=int(calls.select(pl.col("start_ns").min()).item()),
            end_ns=int(calls.select(pl.col("end_ns").max()).item()),
        ),
        impact_ns=bubble_ns,
        table=EvidenceTable(
            columns=["API", "CPU op", "under", "calls", "blocked ms", "GPU idle after ms"],
            rows=[
                [
                    str(s["api"]),
                    str(s["op"]),
                    str(s["under"]),
                    int(s["calls"]),
                    round(int(s["total_ns"]) / 1e6, 3),
                    round(int(s["bubble_ns"]) / 1e6, 3),
                ]
                for s in sites.head(cfg.top_sites).iter_rows(named=True)
            ],
        ),
    )


def _sites(calls: pl.DataFrame) -> pl.DataFrame:
    """Calls grouped by (API, innermost op, outermost op), most GPU idle opened first."""
    return (
        calls.group_by("api", "op", "under")
        .agg(
            pl.len().alias("calls"),
            pl.col("dur_ns").sum().alias("total_ns"),
            pl.col("bubble_ns").sum().alias("bubble_ns"),
        )
        .sort(["bubble_ns", "total_ns", "api"], descending=[True, True, False])
    )


_ITEM_OPS = r"aten::(item|_local_scalar_dense|is_nonzero)"
_NONZERO_OPS = r"aten::(nonzero|masked_select|unique|_unique2|index|repeat_interleave)"
_COPY_OPS = r"aten::(to|_to_copy|copy_|cpu)"


def _recommendation(sites: pl.DataFrame) -> str:
    """Fix advice for the kinds of call sites present, most costly first."""
    ops = " ".join([*sites["op"].to_list(), *sites["under"].to_list()])
    advice = []
    if pl.Series([ops]).str.contains(_ITEM_OPS).item():
        advice.append(
            "replace `.item()` / `float(tensor)` / `if tensor:` in the step with on-GPU "
            "accumulation read every N steps"
        )
    if pl.Series([ops]).str.contains(_NONZERO_OPS).item():
        advice.append(
            "avoid data-dependent output shapes (`nonzero`, boolean-mask indexing, `unique`): "
            "use `torch.where` with a fixed shape, or pass `size=` where the op accepts it"
        )
    if pl.Series([ops]).str.contains(_COPY_OPS).item():
        advice.append(
            "make device-to-host copies asynchronous (`.to('cpu', non_blocking=True)` into "
            "pinned memory, then an event) and read them later"
        )
    if _NO_OP in set(sites["op"].to_list()):
        advice.append(
            "remove explicit `torch.cuda.synchronize()` / `stream.synchronize()` from the "
            "training loop (keep them only around timing code outside profiled steps)"
        )
    if not advice:
        advice.append("move the synchronizing calls out of the step or defer them")
    return "Remove or defer the synchronizations: " + "; ".join(advice) + "."


def main_threads(ctx: AnalysisContext) -> pl.DataFrame:
    """Per rank, the (pid, tid) of the main thread: the one holding the ProfilerStep
    annotations, else the one issuing the most runtime calls, else the busiest op thread.
    Computed once per analysis.
    """
    return ctx.metric("host_sync.main_threads", _main_threads)


def _main_threads(t: TraceTables) -> pl.DataFrame:
    # GPU user annotations (a ProfilerStep range copied onto a stream row) are not threads.
    ops = t.ops.lazy().filter(pl.col("kind") != "gpu_user_annotation")
    candidates = (  # rows of each choice, in order, and each thread's weight in it
        (ops.filter(timeline.table_name_matches(t, "ops", _STEP)), pl.len()),
        (t.runtime.lazy(), pl.len()),
        (ops.filter(pl.col("depth") == 0), pl.col("dur_ns").sum()),
    )
    picked: list[pl.DataFrame] = []
    seen: set[int] = set()
    for rows, weight in candidates:  # a later choice is looked at only if a rank needs it
        unseen = (
            rows.filter(~pl.col("rank").is_in(sorted(seen)))
            .select("rank", "pid", "tid", "dur_ns")
            .collect()
        )
        if unseen.height == 0:  # every rank here already has its thread
            continue
        best = (
            unseen.group_by("rank", "pid", "tid")
            .agg(weight.alias("weight"))
            .sort(["weight", "pid", "tid"], descending=[True, False, False], maintain_order=True)
            .group_by("rank", maintain_order=True)
            .first()
        )
        seen.update(int(r) for r in best["rank"].to_list())
        picked.append(best.select("rank", "pid", "tid"))
    if not picked:
        return pl.DataFrame(schema={"rank": pl.Int32, "pid": pl.Int64, "tid": pl.Int64})
    return pl.concat(picked, how="vertical")


def rank_windows(ctx: AnalysisContext) -> pl.DataFrame:
    """Per rank, the window CPU-side rules look at: [window_start_ns, window_end_ns).

    The profiled steps (to the end of the GPU work they launched) when the rank has steps,
    else the whole trace: first to last event of any kind (CPU op, runtime call, GPU event).
    ``window_basis`` says which (steps, trace). Computed once per analysis (several rules
    ask for it).
    """
    return ctx.metric("host_sync.rank_windows", _rank_windows)


def _rank_windows(t: TraceTables) -> pl.DataFrame:
    span = (  # per table first: four small results to combine, not 1.3 M rows to concatenate
        pl.col("start_ns").min().alias("start_ns"),
        (pl.col("start_ns") + pl.col("dur_ns")).max().alias("end_ns"),
    )
    spans = [
        timeline.aggregate(frame, ["rank"], *span)
        for frame in (t.ops, t.runtime, t.kernels, t.memops)
        if frame.height
    ]
    if not spans:
        return pl.DataFrame(
            schema={
                "rank": pl.Int32(),
                "window_start_ns": pl.Int64(),
                "window_end_ns": pl.Int64(),
                "window_basis": pl.String(),
            }
        )
    whole = (
        pl.concat(spans, how="vertical")
        .group_by("rank")
        .agg(
            pl.col("start_ns").min().alias("window_start_ns"),
            pl.col("end_ns").max().alias("window_end_ns"),
        )
        .with_columns(pl.lit("trace").alias("window_basis"))
    )
    steps = timeline.step_windows(t)
    if steps.height == 0:
        return whole.sort("rank")
    stepped = (
        steps.group_by("rank")
        .agg(
            pl.col("start_ns").min().alias("window_start_ns"),
            pl.max_horizontal(pl.col("end_ns").max(), pl.col("gpu_end_ns").max()).alias(
                "window_end_ns"
            ),
        )
        .with_columns(pl.lit("steps").alias("window_basis"))
    )
    rest = whole.join(stepped.select("rank"), on="rank", how="anti")
    return pl.concat([stepped, rest.select(stepped.columns)], how="vertical").sort("rank")
