"""Every figure of a single-trace report, raw, for machines: `analyze --format json`.

The JSON renderer only sees the `Report` model (renderers never touch the metrics), so the
figures are computed here, from the same metrics the Markdown sections use, and travel in
``Report.data["raw"]``; `analyzer.report.json_report` lifts them to top-level keys. Values
are raw: int nanoseconds, plain floats, units in the key names (``gpu_time_ns``,
``achieved_flop_per_s``, ``pct_of_roof``). Schema: ``analyzer/report/report_schema.json``.
"""

from __future__ import annotations

import math
from typing import Any, Final

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics import idle_ledger, timeline
from gpu_trace_analyzer.metrics.op_families import op_families
from gpu_trace_analyzer.metrics.roofline import roofline
from gpu_trace_analyzer.metrics.steps import step_metrics

_TERA: Final = 1e12

#: Raw keys a single-report JSON document carries at top level (besides the report's own).
RAW_KEYS: Final = (
    "headline_figures",
    "op_groups",
    "kernels",
    "op_families",
    "steps",
    "idle_ledger",
)


def figures(ctx: AnalysisContext) -> dict[str, Any]:
    """The raw figures of one analysis, keyed as in `RAW_KEYS`."""
    return {
        "headline_figures": headline_figures(ctx),
        "op_groups": op_groups(ctx),
        "kernels": kernels(ctx),
        "op_families": families(ctx),
        "steps": steps(ctx),
        "idle_ledger": ledger_rows(ctx),
    }


def _num(value: object) -> float | None:
    """A float, or None for a missing or non-finite value (JSON has no NaN)."""
    if value is None:
        return None
    f = float(value)  # type: ignore[arg-type]
    return f if math.isfinite(f) else None


def _per_call(total: object, calls: int) -> float | None:
    value = _num(total)
    return None if value is None or calls <= 0 else value / calls


def _scaled(value: object, factor: float) -> float | None:
    f = _num(value)
    return None if f is None else f * factor


def op_groups(ctx: AnalysisContext) -> list[dict[str, Any]]:
    """The roofline's op groups (`metrics.roofline.Roofline.ops`), largest GPU time first:
    modeled groups per (device, op, shapes, dtype, roof), heuristic ones per op name. FLOPs
    and bytes are per call (modeled groups only, else null); rates are per second."""
    if ctx.tables.kernels.height == 0:
        return []
    out: list[dict[str, Any]] = []
    for r in roofline(ctx).ops.iter_rows(named=True):
        calls = int(r["calls"] or 0)
        out.append(
            {
                "name": r["op_name"],
                "shapes": r["shapes"],
                "dtype": r["dtype"],
                "device": r["device_key"],
                "basis": r["basis"],
                "pipe": r["pipe"],
                "roof_dtype": r["roof_dtype"],
                "calls": calls,
                "kernels": int(r["kernels"] or 0),
                "gpu_time_ns": int(r["gpu_time_ns"] or 0),
                "flops_per_call": _per_call(r["flops"], calls),
                "bytes_per_call": _per_call(r["bytes"], calls),
                "intensity_flop_per_byte": _num(r["intensity_flop_per_byte"]),
                "achieved_flop_per_s": _scaled(r["achieved_tflops"], _TERA),
                "achieved_bytes_per_s": _scaled(r["achieved_tb_per_s"], _TERA),
                "peak_flop_per_s": _scaled(r["peak_tflops"], _TERA),
                "roof_flop_per_s": _scaled(r["roof_tflops"], _TERA),
                "bound": r["bound"],
                "pct_of_roof": _num(r["pct_of_roof"]),
                "above_roof_calls": int(r["above_roof_calls"] or 0),
            }
        )
    return out


def kernels(ctx: AnalysisContext) -> list[dict[str, Any]]:
    """Per (kernel name, rank, device, stream): calls, total and mean ns, and the bound the
    roofline gives it (the one covering most of its time when its calls differ)."""
    k = roofline(ctx).kernels if ctx.tables.kernels.height else None
    if k is None or k.height == 0:
        return []
    keys = ["name", "rank", "device", "stream"]
    bound = (
        k.group_by([*keys, "bound"])
        .agg(pl.col("dur_ns").sum().alias("_ns"))
        .sort(["_ns", "bound"], descending=[True, False], nulls_last=True)
        .group_by(keys, maintain_order=True)
        .first()
        .select([*keys, "bound"])
    )
    table = (
        k.group_by(keys)
        .agg(pl.len().alias("calls"), pl.col("dur_ns").sum().alias("total_ns"))
        .join(bound, on=keys, how="left", nulls_equal=True)
        .sort(["total_ns", *keys], descending=[True, False, False, False, False])
    )
    return [
        {
            "name": r["name"],
            "rank": r["rank"],
            "device": r["device"],
            "stream": r["stream"],
            "calls": int(r["calls"]),
            "total_ns": int(r["total_ns"]),
            "mean_ns": float(r["total_ns"]) / int(r["calls"]),
            "bound": r["bound"],
        }
        for r in table.iter_rows(named=True)
    ]


def families(ctx: AnalysisContext) -> list[dict[str, Any]]:
    """GPU time by op family (`metrics.op_families`), largest first."""
    if ctx.tables.kernels.height == 0 and ctx.tables.ops.height == 0:
        return []
    table = op_families(ctx).table
    return [
        {
            "family": r["family"],
            "label": r["label"],
            "gpu_ns": int(r["gpu_ns"]),
            "share_pct": _num(r["share_pct"]),
            "calls": int(r["calls"]),
            "top_ops": list(r["top_ops"] or []),
        }
        for r in table.iter_rows(named=True)
    ]


_STEP_COLUMNS: Final = (
    "rank", "step", "start_ns", "end_ns", "step_ns", "cpu_dur_ns", "own_ns", "waited_ns",
    "gpu_ops", "gpu_busy_ns", "gpu_start_ns", "gpu_end_ns", "gpu_span_ns", "basis",
)  # fmt: skip


def steps(ctx: AnalysisContext) -> list[dict[str, Any]]:
    """Per (rank, step), in start order: the step accounting (`metrics.steps`)."""
    return [
        {c: r[c] for c in _STEP_COLUMNS}
        for r in step_metrics(ctx).select(_STEP_COLUMNS).iter_rows(named=True)
    ]


def ledger_rows(ctx: AnalysisContext) -> list[dict[str, Any]]:
    """The idle ledger per (rank, device, cause) (`metrics.idle_ledger.by_cause`)."""
    if ctx.tables.kernels.height == 0 and ctx.tables.memops.height == 0:
        return []
    return [
        {
            "rank": r["rank"],
            "device": r["device"],
            "cause": r["cause"],
            "idle_ns": int(r["idle_ns"]),
            "idle_pct": _num(r["idle_pct"]),
            "window_pct": _num(r["window_pct"]),
            "top_detail": r["top_detail"],
            "top_detail_ns": r["top_detail_ns"],
            "brief_ns": int(r["brief_ns"]),
        }
        for r in idle_ledger.by_cause(ctx).iter_rows(named=True)
    ]


def _median(values: pl.Series) -> float | None:
    return _num(values.median()) if values.len() else None


def headline_figures(ctx: AnalysisContext) -> dict[str, Any]:
    """The headline table's numbers: step time (median step_ns and CPU time), shares of the
    analysis window pooled over devices, and the roofline summary."""
    st = step_metrics(ctx)
    b = ctx.metric("timeline.breakdown", timeline.breakdown)
    span = int(b["span_ns"].sum()) if b.height else 0

    def share(col: str) -> float | None:
        return 100.0 * float(b[col].sum()) / span if span > 0 else None

    out: dict[str, Any] = {
        "steps": st.height,
        "step_time_median_ns": _median(st["step_ns"]),
        "cpu_step_time_median_ns": _median(st["cpu_dur_ns"]),
        "cpu_step_time_p10_ns": _num(st["cpu_dur_ns"].quantile(0.1)) if st.height else None,
        "cpu_step_time_p90_ns": _num(st["cpu_dur_ns"].quantile(0.9)) if st.height else None,
        "gpu_busy_of_step_median_ns": _median(st["gpu_busy_ns"]),
        "window_basis": str(b["window_basis"][0]) if b.height else None,
        "window_ns": span,
        "devices": b.select("rank", "device").unique().height if b.height else 0,
        "kernel_count": ctx.tables.kernels.height,
        "memop_count": ctx.tables.memops.height,
    }
    for name in ("busy", "compute", "comm", "memory", "exposed_comm", "idle"):
        out[f"{name}_ns"] = int(b[f"{name}_ns"].sum()) if b.height else 0
        out[f"{name}_pct"] = share(f"{name}_ns")
    s = roofline(ctx).summary if ctx.tables.kernels.height else None
    out["kernel_time_ns"] = s.kernel_time_ns if s else 0
    out["compute_bound_pct"] = 100.0 * s.compute_bound_share if s else None
    out["memory_bound_pct"] = 100.0 * s.memory_bound_share if s else None
    out["unclassified_pct"] = 100.0 * s.unclassified_share if s else None
    out["modeled_pct"] = 100.0 * s.modeled_share if s else None
    out["achieved_tensor_flop_per_s"] = _scaled(s.achieved_tensor_tflops, _TERA) if s else None
    out["tensor_peak_flop_per_s"] = _scaled(s.tensor_peak_tflops, _TERA) if s else None
    out["tensor_pct_of_peak"] = _num(s.tensor_pct_of_peak) if s else None
    out["tensor_dtype"] = s.tensor_dtype if s else None
    return out
