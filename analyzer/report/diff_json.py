"""JSON for `analyze diff`: every figure raw, in units named by the key.

The document follows ``analyzer/report/diff_schema.json`` (``schema_version`` 1): the
verdict and the step-time change with its bootstrap interval, each headline metric (base,
candidate, delta in the metric's unit), every op group and kernel with calls and GPU ns per
step on each side, the findings that changed, and the notes. Strings are cleaned
(`analyzer.untrusted.clean_tree`).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from gpu_trace_analyzer.diff import (
    NOISE_METHOD,
    FindingChange,
    GroupDelta,
    Metric,
    RunDiff,
    SideInfo,
)
from gpu_trace_analyzer.untrusted import clean_tree

SCHEMA_VERSION: Final = 1


def _side(s: SideInfo) -> dict[str, Any]:
    return {
        "paths": list(s.paths),
        "devices": list(s.devices),
        "device_family": list(s.device_family),
        "world_size": s.world_size,
        "steps": s.steps,
        "has_step_annotations": s.has_steps,
        "versions": dict(s.versions),
        "workload_mode": s.mode,
        "step_time_ns": list(s.step_ns),
    }


def _metric(m: Metric) -> dict[str, Any]:
    unit = m.unit
    out: dict[str, Any] = {
        "key": m.key,
        "label": m.label,
        "unit": unit,
        "better": m.better,
        f"base_{unit}": m.base,
        f"candidate_{unit}": m.candidate,
        f"delta_{unit}": m.delta,
        "delta_pct_of_base": m.delta_pct,
    }
    if m.change is not None:
        out["ci_low_pct"] = m.change.ci_low_pct
        out["ci_high_pct"] = m.change.ci_high_pct
        out["outside_noise"] = m.change.outside_noise
    return out


def _group(g: GroupDelta) -> dict[str, Any]:
    return {
        "name": g.name,
        "shapes": g.shapes,
        "dtype": g.dtype,
        "side": g.side,
        "base_calls_per_step": g.base_calls_per_step,
        "candidate_calls_per_step": g.candidate_calls_per_step,
        "base_gpu_ns_per_step": g.base_ns_per_step,
        "candidate_gpu_ns_per_step": g.candidate_ns_per_step,
        "delta_gpu_ns_per_step": g.delta_ns,
    }


def _finding(fc: FindingChange) -> dict[str, Any]:
    f = fc.candidate or fc.base
    return {
        "rule_id": fc.rule_id,
        "rank": fc.rank,
        "stream": fc.stream,
        "change": fc.kind,
        "base_severity": fc.base.severity.label if fc.base else None,
        "candidate_severity": fc.candidate.severity.label if fc.candidate else None,
        "title": f.title if f else "",
    }


def to_dict(d: RunDiff) -> dict[str, Any]:
    """The comparison as JSON-ready data (strings cleaned)."""
    s = d.step
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "diff",
        "verdict": d.verdict,
        "step_time": {
            "base_ns": s.base,
            "candidate_ns": s.candidate,
            "delta_ns": s.delta,
            "delta_pct": s.delta_pct,
            "ci_low_pct": s.ci_low_pct,
            "ci_high_pct": s.ci_high_pct,
            "noise_estimate": s.has_noise_estimate,
            "outside_noise": s.outside_noise,
            "method": NOISE_METHOD,
        },
        "base": _side(d.base),
        "candidate": _side(d.candidate),
        "metrics": [_metric(m) for m in d.metrics],
        "op_groups": [_group(g) for g in d.op_groups],
        "kernels_matched": d.kernels_matched,
        "kernels": [_group(g) for g in d.kernels],
        "findings": [_finding(fc) for fc in d.findings],
        "findings_unchanged": d.findings_unchanged,
        "notes": list(d.notes),
    }
    cleaned: dict[str, Any] = clean_tree(doc)
    return cleaned


def render(d: RunDiff) -> str:
    """Indented JSON text (ends with a newline)."""
    return msgspec.json.format(msgspec.json.encode(to_dict(d)), indent=2).decode() + "\n"
