"""JSON for `analyze sweep`: every figure raw, in units named by the key.

The document follows ``analyzer/report/sweep_schema.json`` (``schema_version`` 1): each
configuration's figures (``latency_median_ns``, ``samples_per_s``, ``gpu_busy_pct``,
``mfu_pct``...; null where not computable, e.g. GPU figures of a CPU-only trace), each
series with its scaling points, the best configuration per goal, the ceiling rows at the
largest configuration, the ranked recommendations and the notes. Strings are cleaned
(`analyzer.untrusted.clean_tree`).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from gpu_trace_analyzer.runs import RunSummary
from gpu_trace_analyzer.sweep import Best, Series, Sweep
from gpu_trace_analyzer.untrusted import clean_tree

SCHEMA_VERSION: Final = 1


def _run(r: RunSummary) -> dict[str, Any]:
    return {
        "name": r.name,
        "path": r.path,
        "labels": dict(r.labels),
        "devices": list(r.devices),
        "world_size": r.world_size,
        "steps": r.steps,
        "has_step_annotations": r.has_steps,
        "has_gpu": r.has_gpu,
        "step_time_ns": list(r.step_ns),
        "latency_median_ns": r.latency_median_ns,
        "latency_p90_ns": r.latency_p90_ns,
        "samples_per_step": r.samples_per_step,
        "samples_source": r.samples_source,
        "tokens_per_step": r.tokens_per_step,
        "tokens_source": r.tokens_source,
        "samples_per_s": r.samples_per_s,
        "tokens_per_s": r.tokens_per_s,
        "gpu_busy_pct": r.gpu_busy_pct,
        "gpu_ns_per_step": r.gpu_ns_per_step,
        "vendor": r.vendor,
        "modeled_flops_per_step": r.flops_per_step,
        "modeled_bytes_per_step": r.bytes_per_step,
        "peak_roof": r.peak_dtype,
        "peak_tflops": r.peak_tflops,
        "mfu_pct": r.mfu_pct,
        "achieved_tflops": r.achieved_tflops,
        "intensity_flop_per_byte": r.intensity_flop_per_byte,
        "memory_bound_kernel_pct": r.memory_bound_pct,
        "memory_bound_intensity_flop_per_byte": r.memory_bound_intensity,
        "memory_bound_by_name_pct": r.memory_bound_heuristic_pct,
        "kernel_ns_per_step": r.kernel_ns_per_step,
        "small_grid_kernel_pct": r.small_grid_pct,
        "peak_memory_bytes": r.peak_memory_bytes,
        "energy_per_step_j": r.energy_per_step_j,
        "energy_per_sample_j": r.energy_per_sample_j,
        "avg_power_w": r.avg_power_w,
        "idle_ns_per_step": dict(r.idle_ns_per_step),
        "notes": list(r.notes),
    }


def _series(s: Series) -> dict[str, Any]:
    return {
        "key": dict(s.key),
        "points": [
            {
                "x": p.x,
                "label": p.label,
                "run": p.run.name,
                "samples_per_s": p.run.samples_per_s,
                "ideal_samples_per_s": p.ideal_samples_per_s,
                "efficiency_pct": p.efficiency_pct,
                "growth_per_doubling_pct": p.growth_per_doubling_pct,
                "latency_median_ns": p.run.latency_median_ns,
                "gpu_busy_pct": p.run.gpu_busy_pct,
            }
            for p in s.points
        ],
        "plateau_x": s.plateau_x,
        "knee_x": s.knee_x,
        "noise": s.noise,
        "throughput_gain_x": s.throughput_gain_x,
        "latency_growth_x": s.latency_growth_x,
        "util_gain_pp": s.util_gain_pp,
        "util_gain_x": s.util_gain_x,
    }


def _best(b: Best) -> dict[str, Any]:
    return {
        "goal": b.goal,
        "run": b.run.name if b.run else None,
        "value": b.value,
        "unit": b.unit,
        "basis": b.why,
    }


def to_dict(s: Sweep) -> dict[str, Any]:
    """The sweep as JSON-ready data (strings cleaned)."""
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "sweep",
        "swept_label": s.swept,
        "swept_numeric": s.numeric,
        "second_label": s.second,
        "plateau_threshold_pct": s.plateau_pct,
        "latency_budget_ns": s.latency_budget_ns,
        "cpu_only": s.cpu_only,
        "runs": [_run(r) for r in s.runs],
        "series": [_series(x) for x in s.series],
        "best": [_best(b) for b in s.best],
        "ceiling": {
            "run": s.ceiling_run.name if s.ceiling_run else None,
            "why": s.ceiling_why,
            "rows": [
                {"what": c.what, "share_pct": c.share_pct, "of": c.of, "evidence": c.detail}
                for c in s.ceiling
            ],
        },
        "recommendations": [
            {"text": r.text, "gain_pct": r.gain_pct, "basis": r.basis} for r in s.recommendations
        ],
        "notes": list(s.notes),
    }
    cleaned: dict[str, Any] = clean_tree(doc)
    return cleaned


def render(s: Sweep) -> str:
    """Indented JSON text (ends with a newline)."""
    return msgspec.json.format(msgspec.json.encode(to_dict(s)), indent=2).decode() + "\n"
