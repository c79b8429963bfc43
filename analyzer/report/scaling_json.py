"""JSON for `analyze scaling`: every figure raw, in units named by the key.

The document follows ``analyzer/report/scaling_schema.json`` (``schema_version`` 1): the
mode and baseline, the thresholds, one object per run (GPU count and its source, median step
ns, speedup, ideal speedup, efficiency %, communication shares and ns per step), per rank
(steps, median, distribution, cold start, status with reasons) and per node, the
interpretation sentences and the recommendations. Strings are cleaned
(`analyzer.untrusted.clean_tree`).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from gpu_trace_analyzer.scaling import (
    NodeRow,
    RankRow,
    Recommendation,
    RunRow,
    ScalingReport,
    ideal_step_ns,
)
from gpu_trace_analyzer.untrusted import clean_tree

SCHEMA_VERSION: Final = 1


def _run(r: RunRow, base: RunRow, mode: str) -> dict[str, Any]:
    return {
        "label": r.label,
        "paths": list(r.paths),
        "gpus": r.gpus,
        "gpus_source": r.gpus_source,
        "has_gpu_activity": r.has_gpu,
        "steps": r.steps,
        "step_median_ns": r.step_median_ns,
        "ideal_step_ns": ideal_step_ns(r, base, mode),  # type: ignore[arg-type]
        "throughput_steps_per_s": r.throughput_steps_per_s,
        "speedup": r.speedup,
        "ideal_speedup": r.ideal_speedup,
        "efficiency_pct": r.efficiency_pct,
        "comm_pct": r.comm_pct,
        "exposed_comm_pct": r.exposed_comm_pct,
        "comm_per_step_ns": r.comm_per_step_ns,
        "exposed_comm_per_step_ns": r.exposed_comm_per_step_ns,
        "comm_source": r.comm_source,
        "collectives_per_step": r.collectives_per_step,
        "transfer_per_step_ns": r.transfer_per_step_ns,
        "wait_per_step_ns": r.wait_per_step_ns,
        "comm_bytes_per_step": r.comm_bytes_per_step,
        "comm_gbs": r.comm_gbs,
        "shared_cpu_host": r.shared_cpu_host,
        "rank_cv_pct": r.rank_cv_pct,
        "failed_ranks": list(r.failed_ranks),
        "slow_ranks": list(r.slow_ranks),
        "cold_start_ranks": list(r.cold_ranks),
    }


def _rank(r: RankRow) -> dict[str, Any]:
    lat = r.latency
    cold = r.cold_start
    return {
        "run": r.run,
        "gpus": r.gpus,
        "rank": r.rank,
        "node": r.node,
        "steps": r.steps,
        "step_median_ns": r.step_median_ns,
        "throughput_steps_per_s": r.throughput_steps_per_s,
        "compute_per_step_ns": r.compute_per_step_ns,
        "idle_pct": r.idle_pct,
        "comm_pct": r.comm_pct,
        "wait_per_step_ns": r.wait_per_step_ns,
        "memory_peak_bytes": r.memory_peak_bytes,
        "step_ns": list(r.step_ns),
        "latency": None
        if lat is None
        else {
            "steps": lat.steps,
            "min_ns": lat.min_ns,
            "max_ns": lat.max_ns,
            "mean_ns": lat.mean_ns,
            "std_ns": lat.std_ns,
            "cv_pct": lat.cv_pct,
            "within_pct": lat.within_pct,
        },
        "cold_start": None
        if cold is None
        else {
            "first_step": cold.first_step,
            "first_step_ns": cold.first_ns,
            "median_other_steps_ns": cold.median_ns,
            "ratio": cold.ratio,
            "excess_ns": cold.excess_ns,
        },
        "status": r.status,
        "reasons": list(r.reasons),
    }


def _node(n: NodeRow) -> dict[str, Any]:
    return {
        "run": n.run,
        "gpus": n.gpus,
        "node": n.node,
        "ranks": list(n.ranks),
        "steps_min": n.steps_min,
        "steps_max": n.steps_max,
        "step_median_ns": n.step_median_ns,
        "throughput_steps_per_s": n.throughput_steps_per_s,
        "rank_cv_pct": n.rank_cv_pct,
        "idle_pct": n.idle_pct,
        "memory_peak_bytes": n.memory_peak_bytes,
        "status": n.status,
    }


def _rec(r: Recommendation) -> dict[str, Any]:
    return {"title": r.title, "gain_ns_per_step": r.gain_ns_per_step, "text": r.text}


def to_dict(d: ScalingReport) -> dict[str, Any]:
    """The scaling report as JSON-ready data (strings cleaned)."""
    th = d.thresholds
    base = d.runs[0]
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "scaling",
        "mode": d.mode,
        "baseline": d.baseline,
        "thresholds": {
            "slow_pct": th.slow_pct,
            "within_pct": th.within_pct,
            "cold_start_ratio": th.cold_ratio,
            "cold_start_min_excess_ms": th.cold_min_excess_ms,
            "cold_start_min_steps": th.cold_min_steps,
        },
        "runs": [_run(r, base, d.mode) for r in d.runs],
        "ranks": [_rank(r) for r in d.ranks],
        "nodes": [_node(n) for n in d.nodes],
        "interpretation": {
            "scaling": list(d.scaling_text),
            "symmetry": list(d.symmetry_text),
            "latency": list(d.latency_text),
            "cold_start": list(d.cold_text),
        },
        "recommendations": [_rec(r) for r in d.recommendations],
        "notes": list(d.notes),
    }
    cleaned: dict[str, Any] = clean_tree(doc)
    return cleaned


def render(d: ScalingReport) -> str:
    """Indented JSON text (ends with a newline)."""
    return msgspec.json.format(msgspec.json.encode(to_dict(d)), indent=2).decode() + "\n"
