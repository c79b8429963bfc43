"""gpu-idle: the GPU sits idle for a large share of the profiled steps.

Idle time is the analysis window's span minus the union of every kernel and memory
operation on the device (`analyzer.metrics.timeline.breakdown`; the window is the profiled
steps, or first to last GPU event without steps). The finding names the longest gaps and
what the main CPU thread was running during each, and picks the fix from the cause that
covers most of the idle time:

- *input pipeline*: the main thread was inside ``enumerate(DataLoader)...__next__``;
- *host sync*: the gap opened while the CPU was blocked in a synchronization call
  (``cudaStreamSynchronize``, ``.item()``...), so the queue had drained and refilled late;
- *launch overhead*: most idle time is in gaps shorter than HTA's 30 us kernel-wait limit;
- *optimizer*: the main thread was in ``Optimizer.step`` / ``zero_grad`` (unfused updates);
- otherwise the CPU op that covered most of the idle time, or "no CPU op recorded".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl

from analyzer.context import AnalysisContext
from analyzer.findings import EvidenceTable, Finding, Scope, Severity
from analyzer.metrics import timeline
from rules.base import register
from rules.host_sync import blocking_calls, drained_by_call, main_threads

_DATALOADER = r"enumerate\(DataLoader\)|DataLoader.*__next__"
_OPTIMIZER = r"(?i)optimizer"
_STEP = r"^ProfilerStep#"
_CPU_KINDS = ("cpu_op", "user_annotation")
_NO_OP = "(no CPU op on the main thread)"

_RECOMMENDATIONS = {
    "dataloader": (
        "The input pipeline starves the GPU: raise DataLoader `num_workers` (one per free "
        "CPU core is a good start), set `pin_memory=True`, `persistent_workers=True` and "
        "`prefetch_factor`, and move decoding and augmentation off the main process "
        "(or onto the GPU, e.g. DALI)."
    ),
    "sync": (
        "The GPU drains every time the CPU waits on it: remove host synchronizations from the "
        "step (`.item()`, `.cpu()`, `print(tensor)`, `torch.cuda.synchronize()`, "
        "boolean-mask indexing); accumulate losses on the GPU and read them every N steps "
        "(see the host-sync finding for the call sites)."
    ),
    "launch": (
        "The CPU cannot launch kernels as fast as the GPU runs them: capture the step with "
        "CUDA graphs (`torch.compile(mode='reduce-overhead')` or `torch.cuda.graphs`), "
        "fuse small ops with `torch.compile`, and raise the batch size so each kernel does "
        "more work."
    ),
    "optimizer": (
        "The optimizer update runs as many small CPU-launched ops: use the fused or foreach "
        "implementation (`torch.optim.AdamW(..., fused=True)`), or compile the optimizer step."
    ),
    "cpu": (
        "The GPU waits for CPU work on the main thread: profile that code path "
        "(`with_stack=True`, py-spy), move it out of the step or onto a background thread, "
        "and queue GPU work ahead of it so it overlaps."
    ),
    "untracked": (
        "The GPU waits while no recorded op runs on the main thread: the time goes to Python "
        "code between torch ops, to another thread or process, or to an op the profiler did "
        "not record; profile with `with_stack=True` or sample the process with py-spy to "
        "find it, then move it out of the step or overlap it with queued GPU work."
    ),
}


@dataclass(frozen=True, slots=True)
class GpuIdleConfig:
    """Thresholds of gpu-idle."""

    warning_idle_pct: float = 15.0
    """Idle share of the window (per rank and device) at which a warning is raised."""
    critical_idle_pct: float = 40.0
    """Idle share of the window at which the finding becomes critical."""
    top_gaps: int = 5
    """How many of the longest gaps the evidence table lists."""
    sync_gap_tolerance_us: float = 20.0
    """A gap counts as caused by a host sync when the GPU went idle after a sync call (or a
    blocking copy) started, or up to this long before, and was still idle when it returned."""
    launch_gap_us: float = 30.0
    """Gaps shorter than this are launch overhead (HTA's kernel-wait threshold)."""


@register
class GpuIdle:
    """GPU idle share of the profiled steps, its largest gaps and their CPU-side cause."""

    id: ClassVar[str] = "gpu-idle"
    title: ClassVar[str] = "GPU idle for a large share of the profiled steps"
    description: ClassVar[str] = (
        "Share of the profiled steps (or the GPU span) with no kernel or copy running on a "
        "device; lists the longest gaps with what the main CPU thread ran during each, and "
        "picks the fix from the dominant cause (input pipeline, host syncs, launch overhead, "
        "optimizer, other CPU work)."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"kernels"})
    Config: ClassVar[type[GpuIdleConfig]] = GpuIdleConfig

    def check(self, ctx: AnalysisContext, cfg: GpuIdleConfig) -> Iterable[Finding]:
        """One finding over the devices whose idle share is at or above the warning level."""
        breakdown = ctx.metric("timeline.breakdown", timeline.breakdown)
        over = breakdown.filter(pl.col("idle_pct") >= cfg.warning_idle_pct)
        if over.height == 0:
            return
        worst = over.sort("idle_pct", descending=True).row(0, named=True)
        gaps = timeline.idle_gaps(ctx.tables)
        rank, device = int(worst["rank"]), int(worst["device"])
        rank_gaps = gaps.filter((pl.col("rank") == rank) & (pl.col("device") == device))
        causes = attribute_gaps(ctx, rank, rank_gaps, cfg)
        yield _finding(ctx, cfg, over, worst, causes)


def _finding(
    ctx: AnalysisContext,
    cfg: GpuIdleConfig,
    over: pl.DataFrame,
    worst: dict[str, Any],
    causes: pl.DataFrame,
) -> Finding:
    """Build the finding for the worst device, with the per-gap table and the cause mix."""
    idle_pct = float(worst["idle_pct"])
    idle_ns = int(worst["idle_ns"])
    span_ns = int(worst["span_ns"])
    rank, device = int(worst["rank"]), int(worst["device"])
    severity = Severity.CRITICAL if idle_pct >= cfg.critical_idle_pct else Severity.WARNING
    steps = ctx.tables.steps.filter(pl.col("rank") == rank).height
    share = _cause_shares(causes)
    cause, cause_pct = max(share.items(), key=lambda kv: kv[1]) if share else ("untracked", 0.0)
    per_step = (
        f" ({idle_ns / steps / 1e6:.1f} ms per step over {steps} step{'s' if steps > 1 else ''})"
        if steps
        else ""
    )
    where = f"rank {rank} device {device}"
    others = over.height - 1
    also = f"; {others} more device(s) over {cfg.warning_idle_pct:g}%" if others else ""
    summary = (
        f"The GPU on {where} is idle {idle_pct:.1f}% of the "
        f"{'profiled steps' if worst['window_basis'] == 'steps' else 'GPU span'}: "
        f"{idle_ns / 1e6:.1f} ms of {span_ns / 1e6:.1f} ms{per_step}; "
        f"{cause_pct:.0f}% of it is {_cause_words(cause, causes, cfg)}{also}."
    )
    evidence: dict[str, float | int | str] = {
        "rank": rank,
        "device": device,
        "idle_pct": round(idle_pct, 2),
        "idle_ns": idle_ns,
        "span_ns": span_ns,
        "busy_ns": int(worst["busy_ns"]),
        "steps": steps,
        "gap_count": causes.height,
        "longest_gap_ns": int(causes.select(pl.col("dur_ns").max()).item() or 0),
        "devices_over_threshold": over.height,
        "dominant_cause": cause,
    }
    for name, pct in sorted(share.items()):
        evidence[f"idle_{name}_pct"] = round(pct, 1)
    return Finding(
        rule_id=GpuIdle.id,
        severity=severity,
        title=GpuIdle.title,
        summary=summary,
        evidence=evidence,
        recommendation=_RECOMMENDATIONS[cause],
        scope=Scope(
            rank=rank if over.height == 1 else None,
            device=device if over.height == 1 else None,
            start_ns=int(worst["window_start_ns"]),
            end_ns=int(worst["window_end_ns"]),
        ),
        impact_ns=int(over.select(pl.col("idle_ns").max()).item()),
        table=_gap_table(causes, cfg, int(worst["window_start_ns"])),
    )


def _cause_words(cause: str, causes: pl.DataFrame, cfg: GpuIdleConfig) -> str:
    """How the summary names a cause (with the op behind it for CPU work)."""
    if cause == "cpu":
        top = (
            causes.filter(pl.col("cause") == "cpu")
            .group_by("cpu_op")
            .agg(pl.col("dur_ns").sum())
            .with_columns(pl.col("cpu_op").cast(pl.String))
            .sort(["dur_ns", "cpu_op"], descending=[True, False])
        )
        lead = top.row(0, named=True) if top.height else None
        total = int(causes.select(pl.col("dur_ns").sum()).item() or 1)
        if lead is not None:
            share = 100.0 * int(lead["dur_ns"]) / total
            return f"CPU work inside ops, led by {lead['cpu_op']} ({share:.0f}% of the idle time)"
        return "CPU work inside ops"
    words = {
        "dataloader": "spent in the DataLoader (input pipeline)",
        "sync": "right after host synchronizations",
        "launch": f"in gaps under {cfg.launch_gap_us:g} us between kernels (launch overhead)",
        "optimizer": "in the optimizer step",
        "untracked": "outside any recorded CPU op on the main thread",
    }
    return words[cause]


def _cause_shares(causes: pl.DataFrame) -> dict[str, float]:
    """Percent of the idle time per cause."""
    total = int(causes["dur_ns"].sum()) if causes.height else 0
    if total == 0:
        return {}
    is_cause = {c: pl.col("cause") == c for c in _RECOMMENDATIONS}
    sums = causes.select(
        *(pl.col("dur_ns").filter(hit).sum().alias(c) for c, hit in is_cause.items()),
        *(hit.any().alias(f"_{c}") for c, hit in is_cause.items()),
    ).row(0, named=True)
    return {c: 100.0 * int(sums[c]) / total for c in is_cause if sums[f"_{c}"]}


def _gap_table(causes: pl.DataFrame, cfg: GpuIdleConfig, window_start_ns: int) -> EvidenceTable:
    """The longest gaps: when, how long, what the CPU ran, and the cause."""
    # Only gaps at least as long as the n-th longest can make the table: sort just those.
    shortest_kept = causes.get_column("dur_ns").top_k(cfg.top_gaps).min()
    top = (
        causes.filter(pl.col("dur_ns") >= shortest_kept)
        .sort(["dur_ns", "start_ns"], descending=[True, False])
        .head(cfg.top_gaps)
    )
    rows: list[list[str | int | float | None]] = [
        [
            round((int(r["start_ns"]) - window_start_ns) / 1e6, 3),
            round(int(r["dur_ns"]) / 1e6, 3),
            _op_label(r),
            round(float(r["cpu_op_pct"]), 1),
            str(r["cause"]),
        ]
        for r in top.iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=["gap start (ms into window)", "gap ms", "CPU op during gap", "% of gap", "cause"],
        rows=rows,
    )


def _op_label(row: dict[str, Any]) -> str:
    """What the CPU ran during a gap: ``outer > inner``, or the largest op between ops."""
    if row["cpu_op"] == _NO_OP:
        return _NO_OP
    if float(row["cpu_op_pct"]) < _COVERED_PCT:
        return f"between ops (largest: {row['cpu_op']})"
    inner = row.get("inner_op")
    return f"{row['cpu_op']} > {inner}" if inner else str(row["cpu_op"])


def attribute_gaps(
    ctx: AnalysisContext, rank: int, gaps: pl.DataFrame, cfg: GpuIdleConfig
) -> pl.DataFrame:
    """Each gap with the main-thread CPU ops running during it, and a cause.

    Columns: start_ns, end_ns, dur_ns, cpu_op (outermost op covering at least half the gap,
    else the op covering most of it), inner_op (innermost op covering at least half the
    gap, null when none), cpu_op_pct (share of the gap ``cpu_op`` covers), cause
    (dataloader, sync, launch, optimizer, cpu, untracked). Op names are categorical.
    """
    base = gaps.select("start_ns", "end_ns", "dur_ns").with_row_index("gap")
    in_time_order = (  # what both lookups below search
        base if base.get_column("start_ns").is_sorted() else base.sort("start_ns")
    )
    per_gap = _ops_per_gap(in_time_order, _main_thread_ops(ctx, rank))
    synced = _gaps_after_sync(ctx, rank, in_time_order, cfg)
    out = (
        timeline.join_on_key(base, per_gap.sort("gap"), "gap")
        .join(synced, on="gap", how="left", maintain_order="left")
        .with_columns(
            pl.col("cpu_op").fill_null(_NO_OP),
            pl.col("cpu_op_pct").fill_null(0.0),
            pl.col("after_sync").fill_null(False),
        )
    )
    # Gaps without an op are never covered, so their (absent) name flags do not matter.
    covered = pl.col("cpu_op_pct") >= _COVERED_PCT
    launch_limit = int(cfg.launch_gap_us * 1_000)
    cause = (
        pl.when(covered & pl.col("_loader").fill_null(False))
        .then(pl.lit("dataloader"))
        .when(pl.col("after_sync"))
        .then(pl.lit("sync"))
        .when(pl.col("dur_ns") < launch_limit)
        .then(pl.lit("launch"))
        .when(covered & pl.col("_optimizer").fill_null(False))
        .then(pl.lit("optimizer"))
        .when(~covered)
        .then(pl.lit("untracked"))
        .otherwise(pl.lit("cpu"))
    )
    return out.with_columns(cause.alias("cause")).drop("gap", "after_sync", "_loader", "_optimizer")


#: A gap is explained by an op when the op covers at least this share of it.
_COVERED_PCT = 50.0


def _main_thread_ops(ctx: AnalysisContext, rank: int) -> pl.DataFrame:
    """CPU ops and annotations of the rank's main thread (steps excluded), with end times.

    Names stay categorical (cheap to sort and copy), in the gaps' answers too.
    """
    threads = main_threads(ctx).filter(pl.col("rank") == rank)
    mine = (pl.col("rank") == rank) & pl.col("kind").is_in(_CPU_KINDS)
    if threads.height:  # one (pid, tid) per rank
        pid, tid = threads.row(0)[1:]
        mine = mine & (pl.col("pid") == pid) & (pl.col("tid") == tid)
    not_step = ~timeline.table_name_matches(ctx.tables, "ops", _STEP)
    return (
        ctx.tables.ops.lazy()
        .filter(mine & not_step)
        .select(
            "name",
            "depth",
            "start_ns",
            (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"),
        )
        .collect()
    )


def _ops_per_gap(gaps: pl.DataFrame, ops: pl.DataFrame) -> pl.DataFrame:
    """Per gap: ``cpu_op``, ``inner_op`` and ``cpu_op_pct`` (see `attribute_gaps`), and the
    name flags of `_with_name_flags`. ``gaps`` are in start order, ``gap`` names each.

    Ties (two ops covering the same share at the same depth) go to the earlier op.
    """
    schema = {"gap": pl.UInt32, "cpu_op": pl.Categorical, "inner_op": pl.Categorical}
    if ops.height == 0 or gaps.height == 0:
        return pl.DataFrame(
            schema={
                **schema,
                "cpu_op_pct": pl.Float64,
                "_loader": pl.Boolean,
                "_optimizer": pl.Boolean,
            }
        )
    in_order = ops if ops.get_column("start_ns").is_sorted() else ops.sort("start_ns")
    overlapping = _overlapping(
        gaps,
        in_order.with_row_index("op").rename({"start_ns": "op_start_ns", "end_ns": "op_end_ns"}),
    ).select(
        "gap",
        "op",
        "name",
        "depth",
        "op_start_ns",
        (
            100.0
            * (
                pl.min_horizontal("end_ns", "op_end_ns")
                - pl.max_horizontal("start_ns", "op_start_ns")
            )
            / pl.col("dur_ns")
        ).alias("pct"),
    )
    covering = overlapping.filter(pl.col("pct") >= _COVERED_PCT)
    chain = _outer_and_inner(covering).select(
        "gap",
        pl.col("outer_op").alias("cpu_op"),
        pl.when(pl.col("inner_op") != pl.col("outer_op"))
        .then(pl.col("inner_op"))
        .alias("inner_op"),
        pl.col("outer_pct").alias("cpu_op_pct"),
    )
    # Gaps no op covers by half: the op covering most of the gap (few gaps: a full sort).
    first = pl.col("gap").ne_missing(pl.col("gap").shift(1))
    largest = (
        overlapping.filter(~pl.col("gap").is_in(chain.get_column("gap").implode()))
        .sort(["gap", "pct", "depth", "op_start_ns"], descending=[False, True, False, False])
        .filter(first)
        .select(
            "gap",
            pl.col("name").alias("cpu_op"),
            pl.lit(None, dtype=chain.schema["inner_op"]).alias("inner_op"),
            pl.col("pct").alias("cpu_op_pct"),
        )
    )
    picked = pl.concat([chain, largest], how="vertical")
    return _with_name_flags(picked)


def _outer_and_inner(covering: pl.DataFrame) -> pl.DataFrame:
    """Per gap, of the ops covering it: the outermost (least deep, then earliest) as
    ``outer_op`` with ``outer_pct``, and the innermost (deepest, then latest) as
    ``inner_op``. Rows sorted by (gap, depth, op) make them each gap's first and last row;
    the three are packed into one integer key when they fit (one key sorts much faster)."""
    columns = ["gap", "depth", "op"]
    key = _packed_key(covering, columns)
    ordered = covering.sort(key) if key is not None else covering.sort(columns)
    first = pl.col("gap").ne_missing(pl.col("gap").shift(1))
    last = pl.col("gap").ne_missing(pl.col("gap").shift(-1))
    return pl.concat(
        [
            ordered.filter(first).select(
                "gap", pl.col("name").alias("outer_op"), pl.col("pct").alias("outer_pct")
            ),
            ordered.filter(last).select(pl.col("name").alias("inner_op")),
        ],
        how="horizontal",
    )


def _packed_key(frame: pl.DataFrame, columns: list[str]) -> pl.Expr | None:
    """One Int64 ordering rows as ``columns`` do (most significant first), or None when a
    column holds a null or a negative value or the columns need more than 63 bits."""
    widths = []
    for name in columns:
        col = pl.col(name)
        nulls, low, high = frame.select(
            col.null_count().alias("n"), col.min().alias("lo"), col.max().alias("hi")
        ).row(0)
        if nulls or (low is not None and low < 0):
            return None
        widths.append(int(high or 0).bit_length())
    if sum(widths) > 63:
        return None
    key = pl.lit(0, dtype=pl.Int64)
    shift = sum(widths)
    for name, width in zip(columns, widths, strict=True):
        shift -= width
        key = key + pl.col(name).cast(pl.Int64) * (1 << shift)
    return key


def _with_name_flags(picked: pl.DataFrame) -> pl.DataFrame:
    """Add ``_loader`` and ``_optimizer``: whether "cpu_op inner_op" names the input
    pipeline or the optimizer; each regex runs once per distinct (categorical) pair."""
    pairs = ["cpu_op", "inner_op"]
    text = pl.concat_str(
        pl.col("cpu_op").cast(pl.String),
        pl.col("inner_op").cast(pl.String).fill_null(""),
        separator=" ",
    )
    flags = (
        picked.select(pairs)
        .unique()
        .with_columns(
            text.str.contains(_DATALOADER).alias("_loader"),
            text.str.contains(_OPTIMIZER).alias("_optimizer"),
        )
    )
    return picked.join(flags, on=pairs, how="left", nulls_equal=True, maintain_order="left")


def _overlapping(gaps: pl.DataFrame, ops: pl.DataFrame) -> pl.DataFrame:
    """Every (gap, op) pair that overlap: gap columns, then the op's.

    Gaps of one device are disjoint, so in start order their ends are sorted too and the
    gaps an op overlaps are one run, found by binary search; other gaps take an inequality
    join.
    """
    ordered = gaps if gaps.get_column("start_ns").is_sorted() else gaps.sort("start_ns")
    if not ordered["end_ns"].is_sorted():
        return gaps.join_where(
            ops,
            pl.col("op_start_ns") < pl.col("end_ns"),
            pl.col("op_end_ns") > pl.col("start_ns"),
        )
    first = _first_ending_after(ordered.get_column("end_ns"), ops.get_column("op_start_ns"))
    stop = ordered["start_ns"].search_sorted(ops["op_end_ns"], side="left")
    return _pair_runs(ordered, ops, first, stop)


def _first_ending_after(ends: pl.Series, times: pl.Series) -> pl.Series:
    """``ends.search_sorted(times, side="right")`` (``ends`` sorted): the position of the
    first end after each time. Times in order (op starts) take one merge pass (an as-of
    join) instead of a binary search each."""
    if not times.is_sorted() or times.null_count():
        return ends.search_sorted(times, side="right")
    positions = pl.DataFrame(
        {"_at": ends, "_first": pl.int_range(ends.len(), dtype=pl.UInt32, eager=True)}
    )
    return (
        times.rename("_at")
        .to_frame()
        .join_asof(
            positions,
            on="_at",
            strategy="forward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
        .get_column("_first")
        .fill_null(ends.len())
    )


def _gaps_after_sync(
    ctx: AnalysisContext, rank: int, gaps: pl.DataFrame, cfg: GpuIdleConfig
) -> pl.DataFrame:
    """Gaps opened by a blocking call (`host_sync.drained_by_call`): the GPU ran dry while
    the CPU waited in a sync or a blocking copy, and stayed idle after it returned.

    A call can only drain gaps opening between its start (less the tolerance) and its end:
    in start order that is one run of gaps, found by binary search.
    """
    tolerance_ns = int(cfg.sync_gap_tolerance_us * 1_000)
    calls = blocking_calls(ctx).filter(pl.col("rank") == rank).select("start_ns", "end_ns")
    if calls.height == 0 or gaps.height == 0:
        return pl.DataFrame(schema={"gap": pl.UInt32, "after_sync": pl.Boolean})
    ordered = gaps.rename({"start_ns": "gap_start_ns", "end_ns": "gap_end_ns"}).sort("gap_start_ns")
    opened = ordered["gap_start_ns"]
    first = opened.search_sorted(calls["start_ns"] - tolerance_ns, side="left")
    stop = opened.search_sorted(calls["end_ns"], side="right")
    hits = _pair_runs(ordered, calls, first, stop).filter(drained_by_call(tolerance_ns))
    return hits.select("gap").unique().with_columns(pl.lit(True).alias("after_sync"))


def _pair_runs(
    ordered: pl.DataFrame, items: pl.DataFrame, first: pl.Series, stop: pl.Series
) -> pl.DataFrame:
    """Each row of ``items`` paired with rows ``first[i]`` to ``stop[i] - 1`` of ``ordered``:
    the columns of ``ordered``, then those of ``items``; rows without a partner drop out.

    Pairs come in no particular order: rows with one partner (most) first, gathered
    directly, then the longer runs, expanded.
    """
    length = stop.cast(pl.Int64) - first.cast(pl.Int64)
    one, many = length == 1, length > 1
    singles = pl.concat([ordered[first.filter(one)], items.filter(one)], how="horizontal")
    runs = (
        items.filter(many)
        .with_columns(
            pl.int_ranges(first.filter(many), stop.filter(many), dtype=pl.UInt32).alias("_pos")
        )
        .explode("_pos")
    )
    expanded = pl.concat([ordered[runs["_pos"]], runs.drop("_pos")], how="horizontal")
    return pl.concat([singles, expanded], how="vertical")
