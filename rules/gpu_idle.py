"""gpu-idle: the GPU sits idle for a large share of the profiled steps: the idle ledger's
summary.

Idle time is the analysis window's span minus the union of every kernel and memory
operation on the device (`analyzer.metrics.timeline.breakdown`). Its causes are the idle
ledger's (`analyzer.metrics.idle_ledger`), one cause per idle nanosecond. This finding states
the idle share and the split; the rows that a dedicated rule explains (host syncs and
blocking copies: host-sync; the DataLoader: dataloader-stall; launch overhead:
launch-bound) are cited and left to them. It claims the rest: the GPU held by a dependency
(launched work not yet started), CPU work in a named op or Python frame, the boundary after
work queued before profiling, and "other".

Idle spent holding launched work behind a dependency outside the trace (a capture that
started mid-pipeline) is a property of the capture window, not of the profiled work: it
raises the finding to a warning at most, and the finding states the profiled work's own GPU
time instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import advice as _advice
from gpu_trace_analyzer.metrics import idle_ledger, pystacks, serving, timeline
from gpu_trace_analyzer.metrics.workload import WorkloadProfile, workload_profile
from gpu_trace_analyzer.rules.base import register

#: The ledger rows no dedicated rule explains: this finding claims them.
CAUSES = ("dependency_wait", "queued_boundary", "cpu_work", "other")
#: Which finding explains each of the other rows.
_EXPLAINED_BY = {
    "sync_wait": "host-sync",
    "blocking_copy": "host-sync",
    "dataloader": "dataloader-stall",
    "launch_overhead": "launch-bound",
    "comm_wait": "comm-overhead",
}


@dataclass(frozen=True, slots=True)
class GpuIdleConfig:
    """Thresholds of gpu-idle."""

    warning_idle_pct: float = 15.0
    """Idle share of the window (per rank and device) at which the finding is raised; it is
    a warning when the idle rows it claims (CPU work, other, queued boundary) reach this
    share of the window, else an informational summary of the ledger."""
    critical_idle_pct: float = 40.0
    """Share of the window in the claimed rows at which the finding becomes critical."""
    top_gaps: int = 5
    """How many ops or frames of the claimed CPU work the evidence table lists."""


@register
class GpuIdle:
    """GPU idle share of the profiled steps and its split by cause (the idle ledger)."""

    id: ClassVar[str] = "gpu-idle"
    title: ClassVar[str] = "GPU idle for a large share of the analysis window"
    description: ClassVar[str] = (
        "Share of the profiled steps (or the GPU span) with no kernel or copy running on a "
        "device, split by the idle ledger's causes; names the ops or Python frames of the "
        "CPU work the GPU waited on (rows no other rule explains)."
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
        yield _finding(ctx, cfg, over, worst)


def _finding(
    ctx: AnalysisContext, cfg: GpuIdleConfig, over: pl.DataFrame, worst: dict[str, Any]
) -> Finding:
    """The finding for the worst device: idle share, the ledger split, the claimed rows."""
    idle_pct = float(worst["idle_pct"])
    idle_ns, span_ns = int(worst["idle_ns"]), int(worst["span_ns"])
    rank, device = int(worst["rank"]), int(worst["device"])
    steps = ctx.tables.steps.filter(pl.col("rank") == rank).height
    rows = idle_ledger.by_cause(ctx).filter((pl.col("rank") == rank) & (pl.col("device") == device))
    profile = ctx.metric("workload", workload_profile)
    split = "; ".join(
        f"{_cause_words(r)} {float(r['idle_pct']):.0f}%"
        for r in rows.sort("idle_ns", descending=True).iter_rows(named=True)
        if float(r["idle_pct"]) >= 0.5
    )
    per_step = (
        f" ({idle_ns / steps / 1e6:.1f} ms per step over {steps} step{'s' if steps > 1 else ''})"
        if steps
        else ""
    )
    others = over.height - 1
    also = f" {others} more device(s) are over {cfg.warning_idle_pct:g}%." if others else ""
    window = "profiled steps" if worst["window_basis"] == "steps" else "GPU span"
    summary = (
        f"The GPU on rank {rank} device {device} is idle {idle_pct:.1f}% of the {window}: "
        f"{idle_ns / 1e6:.1f} ms of {span_ns / 1e6:.1f} ms{per_step}. By cause (idle "
        f"ledger): {split or 'none'}.{also}"
    )
    scope_rank = rank if over.height == 1 else None
    evidence: dict[str, float | int | str] = {
        "rank": rank,
        "device": device,
        "idle_pct": round(idle_pct, 2),
        "idle_ns": idle_ns,
        "span_ns": span_ns,
        "busy_ns": int(worst["busy_ns"]),
        "steps": steps,
        "devices_over_threshold": over.height,
        "dominant_cause": str(rows.sort("idle_ns", descending=True).item(0, "cause"))
        if rows.height
        else "none",
    }
    for r in rows.iter_rows(named=True):
        evidence[f"idle_{r['cause']}_pct"] = round(float(r["idle_pct"]), 1)
    evidence["python_stacks"] = int(pystacks.has_stacks(ctx))
    evidence.update(idle_ledger.claim_evidence(ctx, CAUSES, scope_rank))
    own = rows.filter(pl.col("cause").is_in(list(CAUSES)))
    own_pct = float(own["window_pct"].sum()) if own.height else 0.0
    evidence["idle_claimed_pct"] = round(own_pct, 2)
    held = rows.filter(pl.col("cause") == "dependency_wait")
    held_pct = float(held["window_pct"].sum()) if held.height else 0.0
    severity = _severity(own_pct, cfg, held_pct)
    capture_only = _capture_only(ctx)
    if capture_only:
        severity = Severity.INFO
        summary += (
            " The trace records CUDA/HIP graph capture (`capture_N_...` ranges) and no served "
            "steps: this idle time is a one-time start-up cost, not steady-state serving."
        )
    held_ns = int(held["idle_ns"].sum()) if held.height else 0
    mid_pipeline = held_ns > 0 and (
        idle_ledger.held_at_capture_start_ns(ctx, rank, device) >= 0.5 * held_ns
    )
    evidence["mid_pipeline"] = int(mid_pipeline)
    if held_pct >= 0.5 * idle_pct and mid_pipeline:
        summary += (
            f" The capture started mid-pipeline: the GPU held launched work that had not "
            f"started for {float(held['idle_ns'].sum()) / 1e6:.1f} ms; the profiled work's "
            f"own GPU time is {int(worst['busy_ns']) / 1e6:.1f} ms."
        )
    return Finding(
        rule_id=GpuIdle.id,
        severity=severity,
        title=GpuIdle.title,
        summary=summary,
        evidence=evidence,
        recommendation=_CAPTURE_ADVICE
        if capture_only
        else _recommendation(ctx, rows, profile, mid_pipeline) + _unrecorded_advice(ctx, rows),
        scope=Scope(
            rank=scope_rank,
            device=device if over.height == 1 else None,
            start_ns=int(worst["window_start_ns"]),
            end_ns=int(worst["window_end_ns"]),
        ),
        impact_ns=int(evidence["idle_claimed_ns"]),
        table=_claimed_table(ctx, rank, device, cfg),
    )


#: Advice for a trace of an engine's graph-capture start-up (no served steps).
_CAPTURE_ADVICE = (
    "This trace is the engine's graph-capture start-up (kernel compilation and capture runs), "
    "a one-time cost: profile served requests after capture to judge the steady state. To "
    "shorten start-up, keep the compile caches between runs (Inductor/Triton cache "
    "directories) and capture only the batch sizes you serve (vLLM "
    "`compilation_config.cudagraph_capture_sizes`, SGLang `--cuda-graph-max-bs`)."
)


def _capture_only(ctx: AnalysisContext) -> bool:
    """True when every serving phase the trace shows is graph capture (an engine's start-up
    capture run, e.g. vLLM's ``capture_8192_PIECEWISE``): its idle time is not the steady
    state, so it is reported, never raised."""
    phases = serving.phase_windows(ctx.tables)
    return phases.height > 0 and set(phases["phase"].to_list()) == {"graph capture"}


def _severity(own_pct: float, cfg: GpuIdleConfig, held_pct: float = 0.0) -> Severity:
    """By the share of the window in the rows this finding claims (its own share): idle
    that another finding explains raises that finding, not this one, which is then an
    informational summary. The share held by a dependency outside the trace (``held_pct``)
    is a property of the capture window: it alone never makes the finding critical."""
    if own_pct - held_pct >= cfg.critical_idle_pct:
        return Severity.CRITICAL
    return Severity.WARNING if own_pct >= cfg.warning_idle_pct else Severity.INFO


def _cause_words(row: dict[str, Any]) -> str:
    """A ledger row as the summary names it (with its top op or frame when known)."""
    name = idle_ledger.CAUSE_LABELS[str(row["cause"])]
    detail = row.get("top_detail")
    if detail and row["cause"] in ("dataloader", "cpu_work", "sync_wait", "blocking_copy"):
        return f"{name} (most in {detail})"
    return name


def _claimed_table(
    ctx: AnalysisContext, rank: int, device: int, cfg: GpuIdleConfig
) -> EvidenceTable:
    """The ops or Python frames of the CPU work the GPU waited on, most idle first."""
    rows = (
        idle_ledger.ledger(ctx)
        .filter(
            (pl.col("rank") == rank)
            & (pl.col("device") == device)
            & pl.col("cause").is_in(list(CAUSES))
        )
        .sort(["idle_ns", "cause"], descending=[True, False])
        .head(cfg.top_gaps)
    )
    return EvidenceTable(
        columns=["ledger row", "op or Python frame", "GPU idle ms"],
        rows=[
            [str(r["cause"]), _row_words(r), round(r["idle_ns"] / 1e6, 3)]
            for r in rows.iter_rows(named=True)
        ],
    )


def _top_phase(ctx: AnalysisContext, rows: pl.DataFrame, cause: str) -> str | None:
    """The outermost op or annotation (``## backward ##``) holding most of the lead cause's
    idle time on the device of ``rows`` (null when none is recorded)."""
    if rows.height == 0:
        return None
    rank, device = int(rows.item(0, "rank")), int(rows.item(0, "device"))
    phases = (
        idle_ledger.ledger(ctx)
        .filter(
            (pl.col("rank") == rank)
            & (pl.col("device") == device)
            & (pl.col("cause") == cause)
            & pl.col("phase").is_not_null()
        )
        .group_by("phase")
        .agg(pl.col("idle_ns").sum())
        .sort(["idle_ns", "phase"], descending=[True, False])
    )
    return str(phases.item(0, "phase")) if phases.height else None


#: Unrecorded host time ("other") at least this share of the idle gets its own advice when
#: another cause leads (when it leads, the main advice is about it).
UNRECORDED_ADVICE_PCT = 10.0


def _unrecorded_advice(ctx: AnalysisContext, rows: pl.DataFrame) -> str:
    """A second piece of advice for the ledger's ``other`` row (host work the trace does not
    record) when it is a large share of the idle but not the lead cause: record Python
    stacks (``with_stack=True``) to name the code, unless the trace already has them, in
    which case the time is not in the main thread's Python code at all."""
    if rows.height == 0:
        return ""
    lead = str(rows.sort("idle_ns", descending=True).item(0, "cause"))
    other = rows.filter(pl.col("cause") == "other")
    if lead == "other" or other.height == 0:
        return ""
    pct, ns = float(other.item(0, "idle_pct")), int(other.item(0, "idle_ns"))
    if pct < UNRECORDED_ADVICE_PCT:
        return ""
    phase = _top_phase(ctx, rows, "other")
    where = ""
    if phase:
        rank, device = int(rows.item(0, "rank")), int(rows.item(0, "device"))
        in_phase = idle_ledger.ledger(ctx).filter(
            (pl.col("rank") == rank)
            & (pl.col("device") == device)
            & (pl.col("cause") == "other")
            & (pl.col("phase") == phase)
        )
        where = f", most of it inside `{phase}` ({int(in_phase['idle_ns'].sum()) / 1e6:.1f} ms)"
    head = (
        f" Separately, {ns / 1e6:.1f} ms ({pct:.0f}% of the idle time) is host work the trace "
        f"does not record{where}"
    )
    if pystacks.has_stacks(ctx):
        return (
            head + ": the trace has Python stacks and no recorded op or user frame of the "
            "main thread covers it, so it runs on another thread or process, or in the "
            "interpreter between ops."
        )
    return (
        head + ": the trace has no Python stacks (recorded without `with_stack`), so nothing "
        "names that code. Profile again with `torch.profiler.profile(with_stack=True)` (or "
        "sample the process with py-spy) to find it."
    )


def _blocker_visible(ctx: AnalysisContext) -> bool:
    """Whether the trace records what can hold launched work back: a stream waiting on an
    event (``cudaStreamWaitEvent``/``hipStreamWaitEvent``) or an event being recorded."""
    waits = timeline.table_name_matches(ctx.tables, "runtime", r"StreamWaitEvent|EventRecord")
    return ctx.tables.runtime.filter(waits).height > 0


def _row_words(row: dict[str, Any]) -> str:
    """A claimed ledger row's op or frame, with the region (annotation) it ran in."""
    detail, phase = row.get("detail"), row.get("phase")
    words = str(detail or "(none recorded)")
    if phase and phase != detail:
        words += f" inside {phase}"
    return words


def _recommendation(
    ctx: AnalysisContext, rows: pl.DataFrame, profile: WorkloadProfile, mid_pipeline: bool
) -> str:
    """Advice for the largest ledger row: this finding's own, or a pointer to the finding
    that explains it."""
    if rows.height == 0:
        return "The GPU had no work queued: keep more work in flight."
    lead = rows.sort("idle_ns", descending=True).row(0, named=True)
    cause, detail = str(lead["cause"]), lead["top_detail"]
    if cause in _EXPLAINED_BY:
        return (
            f"Most idle time is {idle_ledger.CAUSE_LABELS[cause]}: see the "
            f"`{_EXPLAINED_BY[cause]}` finding for the call sites and the fix."
        )
    if cause == "dependency_wait" and not _blocker_visible(ctx):
        return (
            "Most idle time is the GPU holding launched work that had not started, with no "
            "visible blocker: the trace records no `*StreamWaitEvent`/`*EventRecord` calls "
            "and nothing ran on any recorded stream meanwhile, so what held the work is not "
            "in the trace (a sampled or filtered capture, or a dependency the profiler did "
            "not record). Do not act on this idle time yet: capture every stream and the "
            "full step (no sampling) to see what the held launches wait for."
        )
    if cause == "dependency_wait" and not mid_pipeline:
        return (
            "Most idle time is the GPU holding launched work that had not started: kernels "
            "waited on a cross-stream/event dependency (a collective or copy on another "
            "stream that had not run yet), not on the host call running meanwhile. Find "
            "the held launches (launch-to-start delay) in the trace viewer and reorder or "
            "overlap what they wait on: issue the collective earlier, or give independent "
            "work to the waiting stream."
        )
    if cause == "dependency_wait":
        waits = timeline.table_name_matches(ctx.tables, "runtime", r"StreamWaitEvent")
        event = (
            " (the trace records `*StreamWaitEvent` calls before the held launches)"
            if ctx.tables.runtime.filter(waits).height
            else ""
        )
        return (
            "The capture started mid-pipeline: most idle time is the GPU holding launched "
            "work that had not started, waiting on a cross-stream/event dependency on work "
            f"outside the trace{event} or on work queued before profiling. The host call "
            "running meanwhile (a blocking copy or sync queued behind that work) did not "
            "cause it, so making that call asynchronous changes nothing. Judge the profiled "
            "work by its own GPU time, and capture a window that starts once the pipeline "
            "is full (several steps after warm-up) to measure the steady state."
        )
    if cause == "queued_boundary":
        return (
            "The first profiled step waited for GPU work queued before profiling started: "
            "start the profiler after a warm-up step (`torch.profiler.schedule(wait=1, "
            "warmup=1, active=N)`) so that the window holds only profiled work."
        )
    stacks = pystacks.has_stacks(ctx)
    where = "Python frame" if stacks else "CPU op"
    brief = int(lead["brief_ns"] or 0) >= 0.5 * int(lead["idle_ns"])
    if cause == "cpu_work" and detail and brief:
        return (
            "The GPU waits between kernels while the CPU issues them: most of this idle time "
            f"is in gaps under 1 ms inside the {where} `{detail}`, so Python and framework "
            "overhead between launches sets the pace. "
            f"{_advice.per_kernel_overhead_fix(ctx, str(detail))}."
        )
    phase = _top_phase(ctx, rows, cause)
    inside = f" (inside `{phase}`)" if phase and phase != detail else ""
    if cause == "cpu_work" and detail:
        host = "between device steps" if not profile.is_training else "in the training step"
        fix = _advice.host_work_fix(ctx, str(detail), phase)
        return (
            f"The GPU waits for host-side work {host}, most of it in the {where} "
            f"`{detail}`{inside}: {fix}."
        )
    if not stacks:
        return (
            f"The GPU waits for host work that the trace does not record{inside}: recorded "
            "CPU ops cover less than half of those gaps, so no op can be named. Record "
            "Python stacks (`torch.profiler.profile(with_stack=True)`) or sample the process "
            "with py-spy to find the code; "
            + (_advice.host_work_fix(ctx, "", phase) if phase else "then move it out of the step")
            + "."
        )
    return (
        "The GPU waits while no recorded op or user Python frame runs on the main "
        "thread: the time goes to another thread or process, or to the interpreter "
        "between ops; look at the Python frames around the longest gaps in the trace."
    )
