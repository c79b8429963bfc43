"""The rule engine: run the selected rules over one analysis, never letting one break it.

A rule runs only when what it ``needs`` is present; otherwise it is recorded as skipped
with the reason in words a user can act on ("profile with record_shapes=True"). A rule that
raises is recorded as skipped with "internal error in rule X: ..." and the report goes on.
Findings come back ordered by `order_findings` (severity, then time at stake).

``findings_to_json`` emits the findings and skipped rules exactly as
``analyzer/report/findings_schema.json`` documents them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gpu_trace_analyzer.config import AnalyzerConfig, RuleSettings, threshold_docs, thresholds
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity, SkippedRule, order_findings
from gpu_trace_analyzer.parsers.errors import AnalyzerError, BadConfigError
from gpu_trace_analyzer.parsers.schema import TABLE_NAMES
from gpu_trace_analyzer.rules.all import load_builtin_rules
from gpu_trace_analyzer.rules.base import Rule

#: The JSON Schema (draft 2020-12) of `findings_to_json`'s output.
FINDINGS_SCHEMA_PATH: Final = Path(__file__).resolve().parent / "report" / "findings_schema.json"

#: Why a table a rule needs may be empty, and what to change in the profiler call.
_TABLE_REASONS: Final[Mapping[str, str]] = {
    "kernels": "no GPU kernels in the trace (profile with ProfilerActivity.CUDA)",
    "memops": "no memcpy or memset on the GPU timeline",
    "runtime": "no CUDA/HIP runtime calls in the trace (profile with ProfilerActivity.CUDA)",
    "syncs": "no synchronization events in the trace",
    "ops": "no CPU ops in the trace (profile with ProfilerActivity.CPU)",
    "comms": "no collectives in the trace (no NCCL/RCCL or record_param_comms events)",
    "steps": "no profiled steps (no ProfilerStep#N annotations: call prof.step() each iteration)",
    "memory": "no `[memory]` events (profile with profile_memory=True)",
    "counters": "no counter samples (add a DCGM dump or Nsight GPU metrics)",
}

_CAPABILITY_REASONS: Final[Mapping[str, str]] = {
    "steps": _TABLE_REASONS["steps"],
    "shapes": "no CPU op shapes (profile with record_shapes=True)",
    "multi_rank": "single-rank trace (pass the directory of every rank's trace)",
    "memory_events": _TABLE_REASONS["memory"],
    "device_spec": "device unknown: pass --device, or --peak-tflops and --mem-bw-gbs",
}


@dataclass(frozen=True, slots=True)
class EngineResult:
    """What one engine run produced.

    ``skipped`` holds every rule that did not produce a verdict: unmet needs, disabled by
    configuration, or an internal error; ``errors`` is the subset that raised (a bug to
    report), so the CLI can warn about them.
    """

    findings: list[Finding]
    skipped: list[SkippedRule]
    errors: list[SkippedRule]
    ran: list[str]


@dataclass(frozen=True, slots=True)
class ThresholdInfo:
    """One threshold of a rule, for ``analyze rules``."""

    name: str
    type_name: str
    default: Any
    current: Any
    doc: str


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """One rule as ``analyze rules`` lists it."""

    id: str
    title: str
    description: str
    needs: tuple[str, ...]
    enabled: bool
    thresholds: tuple[ThresholdInfo, ...]


def selected_rule_ids(
    available: Sequence[str], select: Sequence[str] | None, skip: Sequence[str]
) -> list[str]:
    """The rule ids to consider, in registry order; unknown ids are a `BadConfigError`."""
    known = set(available)
    for flag, ids in (("--rules", select or ()), ("--skip", skip)):
        unknown = sorted(set(ids) - known)
        if unknown:
            raise BadConfigError(
                f"{flag}: unknown rule id(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
    chosen = [r for r in available if select is None or r in set(select)]
    return [r for r in chosen if r not in set(skip)]


def run_rules(
    ctx: AnalysisContext,
    cfg: AnalyzerConfig,
    select: Sequence[str] | None = None,
    skip: Sequence[str] = (),
) -> EngineResult:
    """Run the chosen rules: ``select`` (None = all enabled ones) minus ``skip``.

    A rule named in ``select`` runs even if the configuration disables it (the command line
    is the more specific choice). Rules left out by ``--rules`` / ``--skip`` are not listed
    as skipped: the user chose that; rules disabled by configuration are, with the reason.
    """
    registry = load_builtin_rules()
    findings: list[Finding] = []
    skipped: list[SkippedRule] = []
    errors: list[SkippedRule] = []
    ran: list[str] = []
    for rule_id in selected_rule_ids(sorted(registry), select, skip):
        rule_cls = registry[rule_id]
        settings = cfg.rules.get(rule_id)
        if settings is None:  # registered after the configuration was loaded: defaults
            settings = RuleSettings(enabled=True, config=rule_cls.Config(), overridden_by={})
        if select is None and not settings.enabled:
            where = settings.overridden_by.get("enabled", "configuration")
            skipped.append(SkippedRule(rule_id, f"disabled in {where}"))
            continue
        try:
            reason = unmet_need(ctx, rule_cls)
            if reason is not None:
                skipped.append(SkippedRule(rule_id, reason))
                continue
            produced = _check(rule_cls, ctx, settings.config)
        except AnalyzerError:  # bad user input (e.g. --device matching nothing): the CLI's
            raise
        except Exception as exc:  # a rule's bug must not take the report down
            errors.append(SkippedRule(rule_id, f"internal error in rule {rule_id}: {exc!r}"))
            continue
        ran.append(rule_id)
        findings.extend(produced)
    return EngineResult(
        findings=order_findings(findings),
        skipped=[*skipped, *errors],
        errors=errors,
        ran=ran,
    )


def _check(rule_cls: type[Rule], ctx: AnalysisContext, config: Any) -> list[Finding]:
    """Materialize a rule's findings, checking they are the rule's own and well formed."""
    produced = list(rule_cls().check(ctx, config))
    for finding in produced:
        if not isinstance(finding, Finding):
            raise TypeError(f"yielded {type(finding).__name__}, not a Finding")
        if finding.rule_id != rule_cls.id:
            raise ValueError(f"yielded a finding for rule {finding.rule_id!r}")
    return produced


def unmet_need(ctx: AnalysisContext, rule_cls: type[Rule]) -> str | None:
    """The reason the first unmet need of a rule is unmet, or None when all are met."""
    for need in sorted(rule_cls.needs):
        check = _CAPABILITIES.get(need)
        if check is not None:
            reason = check(ctx)
            if reason is not None:
                return reason
        elif need in TABLE_NAMES:
            if not ctx.has(need):
                return _TABLE_REASONS[need]
        else:
            raise ValueError(f"unknown need {need!r}")
    extra: Callable[[AnalysisContext], str | None] | None = getattr(rule_cls, "skip_reason", None)
    return extra(ctx) if extra is not None else None


def rank_ids(ctx: AnalysisContext) -> list[int]:
    """The ranks of the analysis: from the meta data and from every table's rows."""
    ranks = {r.rank for r in ctx.tables.meta.ranks}
    for name in ("kernels", "ops", "runtime", "steps"):
        column = ctx.tables.table(name)["rank"]
        ranks.update(int(r) for r in column.drop_nulls().unique().to_list())
    return sorted(ranks)


def _unless(ok: bool, need: str) -> str | None:
    """None when a capability is present, else the user-facing reason it is not."""
    return None if ok else _CAPABILITY_REASONS[need]


def _steps(ctx: AnalysisContext) -> str | None:
    return _unless(ctx.has("steps"), "steps")


def _shapes(ctx: AnalysisContext) -> str | None:
    """Some CPU op carries ``Input Dims`` (record_shapes=True)."""
    return _unless(bool(ctx.tables.ops["input_dims"].is_not_null().any()), "shapes")


def _multi_rank(ctx: AnalysisContext) -> str | None:
    return _unless(len(rank_ids(ctx)) > 1, "multi_rank")


def _memory_events(ctx: AnalysisContext) -> str | None:
    return _unless(ctx.has("memory"), "memory_events")


def _device_spec(ctx: AnalysisContext) -> str | None:
    """A device that ran kernels (or any listed device) has known peaks.

    The reason, when none does, is the device database's own ("'X' is not in the device
    database (trace reports 56 SMs); pass --device NAME, ...").
    """
    return ctx.metric("engine.device_spec", lambda _tables: _device_spec_reason(ctx))


def _device_spec_reason(ctx: AnalysisContext) -> str | None:
    from gpu_trace_analyzer.metrics.roofline import resolved_devices
    from gpu_trace_analyzer.metrics.timeline import kernel_devices

    found = resolved_devices(ctx.tables, ctx.options)
    used = kernel_devices(ctx.tables).drop_nulls()
    keys = [(int(r), int(d)) for r, d in used.iter_rows()] or sorted(found)
    resolved = [found[k] for k in keys if k in found]
    if any(r.known for r in resolved):
        return None
    if not resolved:
        return _CAPABILITY_REASONS["device_spec"]
    return f"device unknown: {resolved[0].reason}"


_CAPABILITIES: Final[Mapping[str, Callable[[AnalysisContext], str | None]]] = {
    "steps": _steps,
    "shapes": _shapes,
    "multi_rank": _multi_rank,
    "memory_events": _memory_events,
    "device_spec": _device_spec,
}


def exit_code_for(findings: Sequence[Finding], fail_on: Severity | None) -> int:
    """1 when a finding at or above ``fail_on`` exists (``--fail-on``), else 0."""
    if fail_on is None:
        return 0
    return 1 if any(f.severity >= fail_on for f in findings) else 0


def rules_listing(cfg: AnalyzerConfig) -> list[RuleInfo]:
    """Every registered rule with its description, needs and thresholds (default, current)."""
    registry = load_builtin_rules()
    listing = []
    for rule_id in sorted(registry):
        rule_cls = registry[rule_id]
        defaults = thresholds(rule_cls.Config())
        settings = cfg.rules.get(rule_id)
        current = thresholds(settings.config) if settings is not None else defaults
        docs = threshold_docs(rule_cls.Config)
        infos = tuple(
            ThresholdInfo(
                name=name,
                type_name=type(value).__name__,
                default=value,
                current=current[name],
                doc=docs.get(name, ""),
            )
            for name, value in defaults.items()
        )
        listing.append(
            RuleInfo(
                id=rule_id,
                title=rule_cls.title,
                description=rule_cls.description,
                needs=tuple(sorted(rule_cls.needs)),
                enabled=settings.enabled if settings is not None else True,
                thresholds=infos,
            )
        )
    return listing


def findings_to_json(result: EngineResult) -> dict[str, Any]:
    """The findings and skipped rules as documented in ``report/findings_schema.json``."""
    return {
        "findings": [finding_to_json(f) for f in result.findings],
        "skipped": [{"rule_id": s.rule_id, "reason": s.reason} for s in result.skipped],
    }


def finding_to_json(finding: Finding) -> dict[str, Any]:
    """One finding as a JSON-ready dict (non-finite numbers become null)."""
    scope = finding.scope
    table = None
    if finding.table is not None:
        table = {
            "columns": [str(c) for c in finding.table.columns],
            "rows": [[_json_scalar(cell) for cell in row] for row in finding.table.rows],
        }
    return {
        "rule_id": finding.rule_id,
        "severity": finding.severity.label,
        "title": finding.title,
        "summary": finding.summary,
        "evidence": {str(k): _json_scalar(v) for k, v in finding.evidence.items()},
        "recommendation": finding.recommendation,
        "scope": {
            "rank": scope.rank,
            "device": scope.device,
            "stream": scope.stream,
            "start_ns": scope.start_ns,
            "end_ns": scope.end_ns,
        },
        "impact_ns": int(finding.impact_ns),
        "table": table,
    }


def _json_scalar(value: Any) -> str | int | float | None:
    """A cell or evidence value as JSON allows it: NaN and infinities become null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):  # bool and numpy integers included
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    return str(value)


__all__ = [
    "FINDINGS_SCHEMA_PATH",
    "EngineResult",
    "RuleInfo",
    "ThresholdInfo",
    "exit_code_for",
    "findings_to_json",
    "rules_listing",
    "run_rules",
    "unmet_need",
]
