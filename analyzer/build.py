"""Assemble a `Report` from an analysis: header, headline, findings, sections.

The only place that decides the report's order and content; renderers only format it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from analyzer.context import AnalysisContext
from analyzer.findings import Finding, SkippedRule, order_findings
from analyzer.metrics.timeline import kernel_devices
from analyzer.report import fmt
from analyzer.report.model import Code, Inline, Paragraph, Report, Strong, Table
from analyzer.sections import overview
from analyzer.sections.registry import SectionBuilder, registry
from parsers.schema import TraceMeta

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
    """Names of the devices that ran GPU work (all listed devices when none ran any)."""
    used = set(kernel_devices(ctx.tables).iter_rows())
    names = [
        d.name or "unnamed device"
        for d in ctx.tables.meta.devices
        if not used or (d.rank, d.device) in used
    ]
    return names


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
        second.append(("" if not second else " · ") + f"span {fmt.duration(span)}")
    versions = version_labels(meta.versions)
    if versions:
        second.append(("" if not second else " · ") + ", ".join(versions[:5]))
    if second:
        lines.append(second)
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


def version_labels(versions: Mapping[str, str]) -> list[str]:
    """Readable ``"CUDA runtime 12.4"`` labels: known entries first, then the rest."""
    ordered = [k for k in _VERSION_LABELS if k in versions]
    ordered += sorted(k for k in versions if k not in _VERSION_LABELS)
    labels = []
    for key in ordered:
        value = str(versions[key])
        if not value or key in _HIDDEN_VERSIONS:
            continue
        if key in _CUDA_ENCODED and value.isdigit() and int(value) >= 1000:
            value = f"{int(value) // 1000}.{int(value) % 1000 // 10}"
        labels.append(f"{_VERSION_LABELS.get(key, key)} {value}")
    return labels


def _span_ns(ctx: AnalysisContext) -> int | None:
    spans = [
        (r.span_start_ns, r.span_end_ns)
        for r in ctx.tables.meta.ranks
        if r.span_start_ns is not None and r.span_end_ns is not None
    ]
    if not spans:
        return None
    return max(int(e - s) for s, e in spans)


def _verdict(findings: Sequence[Finding]) -> Paragraph | None:
    if not findings:
        return None
    top = findings[0]
    summary = Paragraph.from_prose(top.summary)
    advice = Paragraph.from_prose(top.recommendation)
    return Paragraph((*summary.parts, " ", Strong("Do this:"), " ", *advice.parts))


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
        verdict=_verdict(ordered),
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
    return data


def _rows(df: pl.DataFrame) -> list[dict[str, object]]:
    return [dict(r) for r in df.iter_rows(named=True)]
