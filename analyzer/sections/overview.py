"""The headline table and the per-rank table: the timeline metrics at a glance."""

from __future__ import annotations

from typing import Final

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics import idle_ledger, timeline
from gpu_trace_analyzer.metrics.op_families import op_families
from gpu_trace_analyzer.metrics.roofline import roofline
from gpu_trace_analyzer.metrics.steps import step_metrics
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.model import Cell, Paragraph, Section, Table


def breakdown(ctx: AnalysisContext) -> pl.DataFrame:
    """The steps-window breakdown, computed once per analysis."""
    return ctx.metric("timeline.breakdown", timeline.breakdown)


def step_times(ctx: AnalysisContext) -> pl.DataFrame:
    """Per-step times: ``dur_ns`` is the CPU step time; ``gpu_busy_ns`` and ``gpu_span_ns``
    the GPU time of the work the step launched (`analyzer.metrics.steps`)."""
    return step_metrics(ctx).with_columns(pl.col("cpu_dur_ns").alias("dur_ns"))


def _step_row(steps: pl.DataFrame) -> list[Cell]:
    """The headline step-time row: the CPU step time, and the GPU time of the step's own
    work (busy union and first-to-last span of what it launched)."""
    d = steps["dur_ns"]
    ranks = steps["rank"].n_unique()
    scope = f"{steps.height} step{'s' if steps.height > 1 else ''}" + (
        f" over {ranks} ranks" if ranks > 1 else ""
    )
    busy, span = steps["gpu_busy_ns"].median(), steps["gpu_span_ns"].median()
    waited = int(steps["waited_ns"].sum())
    wait_note = (
        f"; {fmt.duration(waited)} of CPU time waited on work launched before the step"
        if waited
        else ""
    )
    own = (
        f"; GPU time of the step's own work: busy {fmt.duration(busy)}, span "  # type: ignore[arg-type]
        f"{fmt.duration(span)}{wait_note}"  # type: ignore[arg-type]
        if int(steps["gpu_ops"].sum())
        else ""
    )
    return [
        "step time (median)",
        fmt.duration(d.median()),  # type: ignore[arg-type]
        f"CPU step time, p10 {fmt.duration(d.quantile(0.1))}, p90 "
        f"{fmt.duration(d.quantile(0.9))}{own}; {scope}",
    ]


def overall_shares(b: pl.DataFrame) -> dict[str, float]:
    """Time-weighted shares over every rank and device: each total over the total span."""
    span = float(b["span_ns"].sum()) if b.height else 0.0
    names = ("busy", "compute", "comm", "memory", "exposed_comm", "idle")
    if span <= 0:
        return {f"{n}_pct": float("nan") for n in names}
    return {f"{n}_pct": 100.0 * float(b[f"{n}_ns"].sum()) / span for n in names}


def headline_rows(ctx: AnalysisContext) -> list[list[Cell]]:
    """Rows of the headline table: step time, GPU busy, time split."""
    rows: list[list[Cell]] = []
    steps = step_times(ctx)
    if steps.height:
        rows.append(_step_row(steps))
    b = breakdown(ctx)
    if b.height == 0:
        rows.append(["GPU activity", "none", "the trace holds no GPU kernels or copies"])
        return rows
    s = overall_shares(b)
    basis = str(b["window_basis"][0])
    window = "the profiled steps" if basis == "steps" else "first to last GPU event"
    devices = b.select("rank", "device").unique().height
    if devices > 1:  # time-weighted over every device: the per-rank table shows each one
        window += f", all {devices} devices together (per device: Ranks table)"
    rows.append(["GPU busy", fmt.pct(s["busy_pct"]), f"idle {fmt.pct(s['idle_pct'])} of {window}"])
    rows.append(
        [
            "compute / communication / memory ops",
            f"{fmt.pct(s['compute_pct'])} / {fmt.pct(s['comm_pct'])} / {fmt.pct(s['memory_pct'])}",
            f"exposed communication {fmt.pct(s['exposed_comm_pct'])}",
        ]
    )
    rows.extend(roofline_rows(ctx))
    return rows


#: Share of the modeled tensor-op time in memory-bound ops from which the headline's tensor
#: throughput is qualified (a bandwidth-limited op's share of the tensor roof is not use).
TENSOR_MEMORY_BOUND_QUALIFY: Final = 0.5


def roofline_rows(ctx: AnalysisContext) -> list[list[Cell]]:
    """Headline rows from the roofline: achieved tensor throughput and the bound mix."""
    if ctx.tables.kernels.height == 0:
        return []
    s = roofline(ctx).summary
    rows: list[list[Cell]] = []
    if s.achieved_tensor_tflops is not None and s.tensor_peak_tflops:
        own = (
            f"modeled ops reach {fmt.pct(s.modeled_pct_of_own_roof)} of their own roofs "
            "(time-weighted)"
            if s.modeled_pct_of_own_roof is not None
            else ""
        )
        modeled = f"modeled ops only ({fmt.pct(100.0 * s.modeled_share)} of kernel time modeled)"
        roof = (
            f"{fmt.pct(s.tensor_pct_of_peak)} of the {s.tensor_peak_tflops:,.0f} TFLOP/s "
            f"{s.tensor_dtype} tensor roof"
        )
        if s.tensor_memory_bound_share >= TENSOR_MEMORY_BOUND_QUALIFY:
            # Memory-bound tensor ops are limited by bandwidth: the share of the tensor roof
            # would read as "tensor cores mostly unused" when the ops sit near their roof.
            rows.append(
                [
                    "achieved tensor throughput",
                    f"{s.achieved_tensor_tflops:.1f} TFLOP/s (memory-bound ops)",
                    f"{roof}, but {fmt.pct(100.0 * s.tensor_memory_bound_share)} of the modeled "
                    "tensor-op time is memory-bound, so this is no measure of tensor-core use: "
                    f"{own or 'see the roofline'}; {modeled}",
                ]
            )
        else:
            rows.append(
                [
                    "achieved tensor throughput",
                    f"{s.achieved_tensor_tflops:.1f} TFLOP/s",
                    f"{roof}; {own + '; ' if own else ''}{modeled}",
                ]
            )
    note = "modeled from shapes and device peaks"
    if s.heuristic_share > 0:
        note = f"{fmt.pct(100.0 * s.heuristic_share)} of kernel time classified by name only"
    if s.unclassified_note:
        note += "; decode steps: name-only GEMM/MoE kernels left unclassified (no shapes)"
    if s.decode_attention_share > 0:
        note += "; decode attention memory-bound (reads the KV cache per token)"
    if s.unknown_devices:
        note += "; device unknown: pass --device for a roofline"
    rows.append(
        [
            "kernel time by bound",
            f"{fmt.pct(100.0 * s.compute_bound_share, 0)} compute-bound, "
            f"{fmt.pct(100.0 * s.memory_bound_share, 0)} memory-bound, "
            f"{fmt.pct(100.0 * s.unclassified_share, 0)} unclassified",
            note,
        ]
    )
    return rows


#: Idle share of the window under which the Ranks table names no largest idle cause.
RANK_IDLE_CAUSE_MIN_PCT: Final = 1.0


def ranks_section(ctx: AnalysisContext, charts: bool = False) -> Section | None:
    """Per rank and device: span, steps, busy/compute/comm/memory/idle shares, and the idle
    ledger's largest cause (the same per-device figures as the ledger section, so the two
    cannot disagree; HTA's per-stream host/kernel-wait split stays a metric,
    `timeline.idle_breakdown`, checked against HTA's own output in the tests, but it cannot
    see launched work held on the GPU and read as "99.9% host wait" on a capture whose GPU
    sat waiting on a dependency)."""
    b = breakdown(ctx)
    if b.height == 0:
        return None
    steps = step_times(ctx)
    per_rank_steps = (
        steps.group_by("rank").agg(
            pl.len().alias("steps"), pl.col("dur_ns").median().alias("step_median_ns")
        )
        if steps.height
        else pl.DataFrame(
            schema={"rank": pl.Int32(), "steps": pl.UInt32(), "step_median_ns": pl.Float64()}
        )
    )
    largest = idle_ledger.largest_cause(ctx).select(
        "rank", "device", pl.col("cause").alias("top_cause"), pl.col("idle_pct").alias("top_pct")
    )
    table = b.join(per_rank_steps, on="rank", how="left").join(
        largest, on=["rank", "device"], how="left"
    )
    rows: list[list[Cell]] = []
    for r in table.sort("rank", "device").iter_rows(named=True):
        if r["top_cause"] is None:
            top = ""
        elif r["idle_pct"] is not None and r["idle_pct"] < RANK_IDLE_CAUSE_MIN_PCT:
            top = f"n/a (idle {fmt.pct(r['idle_pct'])})"
        else:
            top = f"{idle_ledger.CAUSE_SHORT[r['top_cause']]} {fmt.pct(r['top_pct'])}"
        rows.append(
            [
                r["rank"],
                r["device"],
                fmt.ms(r["span_ns"]),
                r["steps"] or 0,
                fmt.ms(r["step_median_ns"]) if r["step_median_ns"] is not None else "",
                fmt.pct(r["busy_pct"]),
                fmt.pct(r["compute_pct"]),
                fmt.pct(r["comm_pct"]),
                fmt.pct(r["exposed_comm_pct"]),
                fmt.pct(r["memory_pct"]),
                fmt.pct(r["idle_pct"]),
                top,
            ]
        )
    columns = [
        "rank",
        "device",
        "window ms",
        "steps",
        "step ms (median)",
        "busy",
        "compute",
        "comm",
        "exposed comm",
        "memory ops",
        "idle",
        "largest idle cause (% of idle)",
    ]
    note = Paragraph.of(
        "Shares are of each rank's analysis window. Largest idle cause: the device's biggest "
        "row of the idle ledger (Idle time by cause), as a share of its idle time; not named "
        f"when the device is idle under {RANK_IDLE_CAUSE_MIN_PCT:g}% of the window."
    )
    return Section(
        "Ranks",
        [Table(columns, rows, numeric=[True] * (len(columns) - 1) + [False]), note],
        key="ranks",
    )


def family_sentence(ctx: AnalysisContext) -> str | None:
    """The verdict's first sentence: the largest op family and its share, then the next two.

    ``"81.8% of GPU time is attention (unfused: matmul, softmax, matmul); then GEMM 10.7%,
    copies and fills 3.2%."`` None when the trace holds no GPU work.
    """
    fam = op_families(ctx)
    if fam.table.height == 0:
        return None
    rows = fam.table.head(3).rows(named=True)
    first = rows[0]
    exposed = _exposed_comm(ctx) if any(r["family"] == "comm" for r in rows) else ""
    if first["family"] == "comm" and exposed:
        text = (
            f"{fmt.pct(first['share_pct'])} of summed GPU kernel time is communication, but "
            f"only {exposed} is exposed communication (not overlapped by compute)"
        )
    else:
        text = f"{fmt.pct(first['share_pct'])} of GPU time is {first['label']}"
    rest = [
        f"{r['label']} {fmt.pct(r['share_pct'])}"
        + (f" (exposed: {exposed})" if r["family"] == "comm" and exposed else "")
        for r in rows[1:]
        if r["share_pct"] >= 0.5
    ]
    if rest:
        text += "; then " + ", ".join(rest)
    return text + "."


def _exposed_comm(ctx: AnalysisContext) -> str:
    """``27.4% of rank 0's window``: the share of the analysis window in which communication
    runs with no compute beside it, on the device with the most of it ("" without a
    window). A share of summed kernel time says nothing about what communication costs."""
    b = breakdown(ctx).filter(pl.col("span_ns") > 0)
    if b.height == 0:
        return ""
    worst = b.sort(["exposed_comm_ns", "rank"], descending=[True, False]).row(0, named=True)
    where = f"rank {worst['rank']}'s" if b["rank"].n_unique() > 1 else "the"
    return f"{fmt.pct(worst['exposed_comm_pct'])} of {where} window"
