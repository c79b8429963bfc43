"""Assemble a `Report` from an analysis: header, headline, findings, sections.

The only place that decides the report's order and content; renderers only format it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.devices import resolve
from gpu_trace_analyzer.findings import Finding, Severity, SkippedRule, order_findings
from gpu_trace_analyzer.metrics import timeline
from gpu_trace_analyzer.metrics.graphs import graph_replay
from gpu_trace_analyzer.metrics.op_families import op_families
from gpu_trace_analyzer.metrics.timeline import kernel_devices
from gpu_trace_analyzer.metrics.workload import workload_profile
from gpu_trace_analyzer.parsers.errors import BadConfigError
from gpu_trace_analyzer.parsers.schema import TraceMeta
from gpu_trace_analyzer.raw_figures import figures
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.model import Code, Inline, Paragraph, Report, Strong, Table
from gpu_trace_analyzer.sections import overview
from gpu_trace_analyzer.sections.registry import SectionBuilder, registry

_SOURCE_NAMES = {
    "kineto": "PyTorch profiler trace",
    "nsys": "Nsight Systems export",
    "dcgm": "DCGM metrics",
    "parquet": "canonical tables (Parquet)",
}

#: Version entries that say nothing to a reader (file schema numbers).
_HIDDEN_VERSIONS = frozenset({"schemaVersion", "schema_version", "kineto_schema_version"})


def _title(meta: TraceMeta) -> str:
    names = [Path(p).name or p for p in meta.paths]
    label = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    ranks = len(meta.ranks)
    suffix = f" ({ranks} ranks)" if ranks > 1 else ""
    return f"Trace analysis: {label}{suffix}"


def used_devices(ctx: AnalysisContext) -> list[str]:
    """Names of the devices that ran GPU work (all listed devices when none ran any); a device
    the trace does not name is shown as identified from its properties when they are
    unambiguous (`analyzer.devices.identify`)."""
    used = set(kernel_devices(ctx.tables).iter_rows())
    try:
        resolved = resolve(ctx.tables.meta, ctx.options)
    except BadConfigError:
        resolved = {}
    names = [
        resolved[(d.rank, d.device)].label
        if (d.rank, d.device) in resolved
        else d.name or "unnamed device"
        for d in ctx.tables.meta.devices
        if not used or (d.rank, d.device) in used
    ]
    if not names and len({(d.name, d.num_sms) for d in ctx.tables.meta.devices}) == 1:
        # Kernels ran on a device index the trace does not describe, and it describes one
        # device type only: the roofline assumes that type; say so.
        d = ctx.tables.meta.devices[0]
        label = resolved[(d.rank, d.device)].label if (d.rank, d.device) in resolved else d.name
        names = [f"{label or 'unnamed device'} (assumed: the only device type described)"]
    return names


def workload_line(ctx: AnalysisContext) -> list[Inline]:
    """The header's workload profile: mode, stack, graphs (with replayed share), options."""
    profile = ctx.metric("workload", workload_profile)
    line: list[Inline] = [Strong("Workload:"), " ", profile.describe()]
    g = ctx.metric("graph_replay", graph_replay)
    if g.launches and g.kernel_ns:
        line.append(f" · {fmt.pct(g.share_pct)} of kernel time replayed from graphs")
    return line


def config_lines(ctx: AnalysisContext) -> list[list[Inline]]:
    """The run's configuration: source, devices, ranks, steps, span, versions."""
    meta = ctx.tables.meta
    sources = list(dict.fromkeys(_SOURCE_NAMES.get(s, s) for s in meta.source.split("+")))
    first: list[Inline] = [" + ".join(sources)]
    devices = Counter(used_devices(ctx))
    if devices:
        first.append(" · ")
        for i, (name, n) in enumerate(sorted(devices.items())):
            first.extend([", " if i else "", f"{n} x ", Code(name)])
    ranks = len(meta.ranks)
    if ranks:
        first.append(f" · {ranks} rank{'s' if ranks > 1 else ''}")
        if meta.world_size and meta.world_size != ranks:
            first.append(f" of a world of {meta.world_size}")
    lines: list[list[Inline]] = [first]
    second: list[Inline] = []
    steps = ctx.tables.steps
    if steps.height:
        nums = steps["step"]
        unique = nums.n_unique()
        per = f" on each of {ranks} ranks" if ranks > 1 and steps.height == unique * ranks else ""
        first_step, last_step = int(nums.min()), int(nums.max())  # type: ignore[arg-type]
        label = f"step {first_step}" if unique == 1 else f"steps {first_step}-{last_step}"
        plural = "s" if unique > 1 else ""
        second.append(f"{label} ({unique} profiled step{plural}{per})")
    span = _span_ns(ctx)
    if span:
        second.append(("" if not second else " · ") + _span_text(ctx, span))
    versions = version_labels(meta.versions)
    if versions:
        second.append(("" if not second else " · ") + ", ".join(versions[:5]))
    if second:
        lines.append(second)
    if ctx.tables.kernels.height or ctx.tables.ops.height:
        lines.append(workload_line(ctx))
    return lines


#: Display names of the version entries, in the order the header lists them.
_VERSION_LABELS = {
    "pytorch_version": "PyTorch",
    "cuda_runtime_version": "CUDA runtime",
    "cuda_driver_version": "CUDA driver",
    "hip_runtime_version": "HIP runtime",
    "hip_driver_version": "HIP driver",
    "nccl_version": "NCCL",
    "cupti_version": "CUPTI",
    "roctracer_version": "roctracer",
}
#: CUDA encodes versions as 1000 * major + 10 * minor (12040 is 12.4).
_CUDA_ENCODED = frozenset({"cuda_runtime_version", "cuda_driver_version"})
#: HIP encodes versions as 10,000,000 * major + 100,000 * minor + patch (60443483 is 6.4.43483).
_HIP_ENCODED = frozenset({"hip_runtime_version", "hip_driver_version"})


def is_rocm(versions: Mapping[str, str]) -> bool:
    """True when the trace was recorded on ROCm (HIP or roctracer versions present)."""
    return any(k in versions for k in (*_HIP_ENCODED, "roctracer_version"))


def hip_version(value: str) -> str:
    """``"6.4.43483"`` from HIP's encoded ``"60443483"`` (other text unchanged)."""
    if not value.isdigit() or int(value) < 10_000_000:
        return value
    n = int(value)
    return f"{n // 10_000_000}.{n // 100_000 % 100}.{n % 100_000}"


def version_labels(versions: Mapping[str, str]) -> list[str]:
    """Readable ``"CUDA runtime 12.4"`` labels: known entries first, then the rest.

    On ROCm the collective library is RCCL (it reports itself through NCCL's version API)."""
    ordered = [k for k in _VERSION_LABELS if k in versions]
    ordered += sorted(k for k in versions if k not in _VERSION_LABELS)
    rocm = is_rocm(versions)
    labels = []
    for key in ordered:
        value = str(versions[key])
        if not value or key in _HIDDEN_VERSIONS:
            continue
        if key in _CUDA_ENCODED and value.isdigit() and int(value) >= 1000:
            value = f"{int(value) // 1000}.{int(value) % 1000 // 10}"
        if key in _HIP_ENCODED:
            value = hip_version(value)
        label = "RCCL" if key == "nccl_version" and rocm else _VERSION_LABELS.get(key, key)
        labels.append(f"{label} {value}")
    return labels


def _span_text(ctx: AnalysisContext, span: int) -> str:
    """The trace span, and the analysis window every share is of when it differs (a trace
    that records CPU work before and after its GPU work: 19.1 ms of trace, 10.7 ms window)."""
    text = f"trace span {fmt.duration(span)}"
    windows = ctx.metric("timeline.breakdown", timeline.breakdown)
    if windows.height == 0:
        return text
    lengths = (windows["window_end_ns"] - windows["window_start_ns"]).to_list()
    window = max((int(n) for n in lengths if n is not None), default=0)
    if window <= 0 or fmt.duration(window) == fmt.duration(span):
        return text
    basis = (
        "profiled steps"
        if (windows["window_basis"] == "steps").all()
        else "first to last GPU event"
    )
    return f"{text} · analysis window {fmt.duration(window)} ({basis})"


def _span_ns(ctx: AnalysisContext) -> int | None:
    spans = [
        (r.span_start_ns, r.span_end_ns)
        for r in ctx.tables.meta.ranks
        if r.span_start_ns is not None and r.span_end_ns is not None
    ]
    if not spans:
        return None
    return max(int(e - s) for s, e in spans)


def _verdict(ctx: AnalysisContext, findings: Sequence[Finding]) -> Paragraph | None:
    """Where the time goes (largest op family first), then the top actionable finding (a
    warning or critical one) and its fix. An informational finding never becomes the
    verdict: without an actionable one the verdict says so."""
    lead = overview.family_sentence(ctx)
    actionable = [f for f in findings if f.severity >= Severity.WARNING]
    if not actionable:
        if not findings:
            return Paragraph.of(lead) if lead else None
        calm = "No actionable problem found: the findings below are informational."
        return Paragraph.of(f"{lead} {calm}" if lead else calm)
    top = actionable[0]
    summary = Paragraph.from_prose(top.summary)
    advice = Paragraph.from_prose(top.recommendation)
    opening: tuple[str, ...] = (lead, " ") if lead else ()
    return Paragraph((*opening, *summary.parts, " ", Strong("Do this:"), " ", *advice.parts))


FOOTNOTE = (
    Paragraph.of(
        "Shares are of the analysis window's wall time on each GPU: the profiled steps when "
        "the trace has ProfilerStep annotations, else first to last GPU event. Busy is the "
        "union of kernels and memory operations over all streams; compute, communication "
        "and memory shares are unions of their own kernels and may overlap. Exposed "
        "communication is the part of communication not overlapped by any compute kernel."
    ),
)


def build_report(
    ctx: AnalysisContext,
    findings: Sequence[Finding],
    skipped: Sequence[SkippedRule],
    charts: bool = False,
    sections: Sequence[SectionBuilder] | None = None,
) -> Report:
    """The complete report for one analysis: every section of the registry (or of
    ``sections``) whose inputs are present; with ``charts``, their charts as `Chart` blocks
    (drawn to files by `analyzer.report.chart_files.write_charts`, never here)."""
    ordered = order_findings(findings)
    headline = Table(["metric", "value", "note"], overview.headline_rows(ctx))
    built = [build(ctx, charts) for build in (registry() if sections is None else sections)]
    meta = ctx.tables.meta
    return Report(
        title=_title(meta),
        config_lines=config_lines(ctx),
        headline=headline,
        verdict=_verdict(ctx, ordered),
        findings=ordered,
        skipped=list(skipped),
        sections=[section for section in built if section is not None],
        warnings=list(meta.warnings),
        footnote=FOOTNOTE,
        data=_data(ctx),
    )


def _data(ctx: AnalysisContext) -> dict[str, object]:
    """Machine-readable figures for the JSON output (units in the keys)."""
    b = overview.breakdown(ctx)
    steps = overview.step_times(ctx)
    data: dict[str, object] = {
        "breakdown": _rows(b),
        "steps": _rows(steps),
        "kernel_count": ctx.tables.kernels.height,
        "memop_count": ctx.tables.memops.height,
    }
    if b.height:
        data["overall"] = overview.overall_shares(b)
    if ctx.tables.kernels.height or ctx.tables.ops.height:
        profile = ctx.metric("workload", workload_profile)
        g = ctx.metric("graph_replay", graph_replay)
        data["workload"] = {
            "mode": profile.mode,
            "frameworks": list(profile.frameworks),
            "features": list(profile.features),
            "graph_launches": profile.graph_launches,
            "graph_replayed_pct": g.share_pct,
            "fused_attention_kernels": len(profile.fused_attention),
            "collectives": list(profile.collectives),
        }
        fam = op_families(ctx).table
        data["families"] = _rows(fam.drop("top_ops")) if fam.height else []
    data["raw"] = figures(ctx)  # lifted to top-level keys by the JSON renderer
    return data


def _rows(df: pl.DataFrame) -> list[dict[str, object]]:
    return [dict(r) for r in df.iter_rows(named=True)]
