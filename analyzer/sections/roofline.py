"""The Roofline section: GPU time by bound, the devices' roofs, top ops, one chart per device."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.devices import DeviceSpec, ResolvedDevice
from gpu_trace_analyzer.metrics.roofline import Roofline, RooflineSummary, roofline
from gpu_trace_analyzer.metrics.timeline import kernel_devices
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.model import (
    Block,
    Cell,
    Chart,
    Code,
    Paragraph,
    Section,
    Strong,
    Table,
)
from gpu_trace_analyzer.sections.common import short_name

TOP_OPS: Final = 15
_ORIGINS: Final = {
    "trace name": "the name in the trace",
    "--device": "--device",
    "--peak-tflops/--mem-bw-gbs": "--peak-tflops and --mem-bw-gbs",
    "properties": "its properties in the trace",
}
ABOVE_ROOF_SHOWN: Final = 3


def build(ctx: AnalysisContext, charts: bool) -> Section | None:
    """The section, or None for a trace without kernels. With ``charts``, one `Chart` per
    device (``roofline_<device>``, SVG and PNG when drawn) with its caption."""
    if ctx.tables.kernels.height == 0:
        return None
    result = roofline(ctx)
    blocks: list[Block] = [_intro(result.summary, ctx), _bound_table(result.summary)]
    blocks.extend(_device_blocks(result, set(kernel_devices(ctx.tables).iter_rows())))
    tensor = _tensor_paragraph(result.summary)
    if tensor is not None:
        blocks.append(tensor)
    if result.ops.height:
        blocks.extend(_ops_blocks(result.ops))
    blocks.extend(_above_roof_blocks(result.ops))
    if charts:
        blocks.extend(_chart_blocks(result))
    blocks.append(_how_to_read())
    return Section("Roofline", blocks, key="roofline")


def _intro(summary: RooflineSummary, ctx: AnalysisContext) -> Paragraph:
    modeled, heuristic = (
        fmt.pct(100 * summary.modeled_share),
        fmt.pct(100 * summary.heuristic_share),
    )
    parts: list[str | Code | Strong] = [
        "What bounds each kernel: ",
        Strong(modeled),
        " of kernel time comes from ops the perf model covers (FLOPs and bytes from the recorded "
        "shapes, compared with the device's roofs); ",
        Strong(heuristic),
        " is classified from the kernel's name only (heuristic: GEMM, attention and convolution "
        "kernels count as compute-bound, elementwise, reduction, norm and copy kernels as "
        "memory-bound).",
    ]
    if summary.decode_attention_note:
        parts.append(
            f" Attention kernels running decode ({fmt.pct(100 * summary.decode_attention_share)}"
            " of kernel time) count as memory-bound instead: " + summary.decode_attention_note + "."
        )
    if summary.unclassified_note:
        parts.extend(
            [
                " Except here (step ",
                Code(summary.decode_step[:100]),
                "): " + summary.unclassified_note + ".",
            ]
        )
    has_shapes = ctx.tables.ops.filter(pl.col("input_dims").is_not_null()).height > 0
    if not has_shapes:
        parts.append(
            " The trace records no input shapes (profile with record_shapes=True to model ops)."
        )
    return Paragraph(tuple(parts))


def _bound_table(s: RooflineSummary) -> Table:
    rows: list[list[Cell]] = [
        [
            "compute-bound",
            fmt.pct(100 * s.modeled_compute_bound_share),
            fmt.pct(100 * s.heuristic_compute_bound_share),
            fmt.pct(100 * s.compute_bound_share),
        ],
        [
            "memory-bound",
            fmt.pct(100 * s.modeled_memory_bound_share),
            fmt.pct(100 * s.heuristic_memory_bound_share),
            fmt.pct(100 * s.memory_bound_share),
        ],
        [
            "unclassified (communication, other"
            + (", name-only decode GEMMs" if s.unclassified_note else "")
            + ")",
            "",
            "",
            fmt.pct(100 * s.unclassified_share),
        ],
    ]
    return Table(
        ["GPU time", "modeled", "heuristic", "total"],
        rows,
        numeric=[False, True, True, True],
    )


def _peaks_text(spec: DeviceSpec) -> str:
    roofs = ", ".join(
        f"{pipe} {dtype} {fmt_tflops((spec.peak(pipe, dtype) or 0) / 1e12)}"
        for pipe, dtype in spec.roofs()
    )
    return f"{spec.mem_bw_bytes_per_s / 1e9:,.0f} GB/s; {roofs} TFLOP/s"


def _device_blocks(result: Roofline, used: set[tuple[int, int]]) -> list[Block]:
    """One paragraph per distinct device the kernels ran on (``used``: their (rank, device)
    pairs): its spec, or why there is none."""
    seen: dict[str, ResolvedDevice] = {}
    for key, resolved in sorted(result.devices.items()):
        if key in used:
            seen.setdefault(_device_id(resolved), resolved)
    return [_device_paragraph(r) for r in seen.values()]


def _device_id(resolved: ResolvedDevice) -> str:
    return resolved.spec.key if resolved.spec else f"unknown:{resolved.trace_name}"


def _device_paragraph(resolved: ResolvedDevice) -> Paragraph:
    spec = resolved.spec
    if spec is None:
        return Paragraph.of(
            Strong("Unknown device"),
            " ",
            Code(resolved.label),
            f": {resolved.reason}. Its kernels are classified by name only; no roofline chart.",
        )
    parts: list[str | Code | Strong] = [
        "Device ",
        Code(resolved.label),
        f" is taken as {spec.name} (from {_ORIGINS.get(resolved.origin, resolved.origin)}): "
        f"{_peaks_text(spec)}. "
        f"Source: {spec.source}.",
    ]
    if not spec.confirmed:
        parts.extend([" ", Strong("Unconfirmed peak"), ": not every figure could be checked."])
    parts.extend(f" Note: {note}." for note in resolved.notes if "unconfirmed peak" not in note)
    return Paragraph(tuple(parts))


def _tensor_paragraph(s: RooflineSummary) -> Paragraph | None:
    if s.achieved_tensor_tflops is None:
        return None
    peak = (
        f", {fmt.pct(s.tensor_pct_of_peak)} of the {fmt_tflops(s.tensor_peak_tflops)} TFLOP/s "
        f"{s.tensor_dtype} peak"
        if s.tensor_peak_tflops
        else ""
    )
    return Paragraph.of(
        "Achieved tensor throughput: modeled tensor-core ops ran at ",
        Strong(f"{fmt_tflops(s.achieved_tensor_tflops)} TFLOP/s"),
        f"{peak}, over {fmt.duration(s.tensor_gpu_time_ns)} of their own GPU time.",
    )


def fmt_tflops(value: float | None) -> str:
    """TFLOP/s with three significant digits (``989``, ``34.9``, ``0.0421``)."""
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _num(value: float | None, digits: str = ".3g") -> str:
    return "" if value is None else format(value, digits)


def _op_row(r: Mapping[str, object]) -> list[Cell]:
    modeled = r["basis"] == "modeled"
    shapes = r["shapes"]
    dtype = r["dtype"]
    pct = r["pct_of_roof"]
    return [
        Code(short_name(str(r["op_name"]), 60)),
        Code(short_name(str(shapes), 48)) if shapes else "",
        str(dtype) if dtype else "",
        f"{r['pipe']} {r['roof_dtype']}" if modeled else "",
        fmt.count(int(str(r["calls"]))),
        fmt.ms(float(str(r["gpu_time_ns"])), 3),
        fmt_tflops(_as_float(r["achieved_tflops"])) if modeled else "",
        _num(_as_float(r["achieved_tb_per_s"])) if modeled else "",
        _num(_as_float(r["intensity_flop_per_byte"])) if modeled else "",
        str(r["bound"] or ""),
        fmt.pct(_as_float(pct)) if modeled and pct is not None else "",
        ("modeled" + (", above roof" if r["above_roof"] else "")) if modeled else "heuristic",
    ]


def _as_float(value: object) -> float | None:
    return None if value is None else float(str(value))


def _ops_blocks(ops: pl.DataFrame) -> list[Block]:
    top = ops.head(TOP_OPS)
    rows = [_op_row(r) for r in top.iter_rows(named=True)]
    columns = [
        "op",
        "shapes",
        "dtype",
        "roof",
        "calls",
        "GPU time ms",
        "TFLOP/s",
        "TB/s",
        "FLOP/byte",
        "bound",
        "% of roof",
        "basis",
    ]
    numeric = [False, False, False, False, True, True, True, True, True, False, True, False]
    intro = Paragraph.of(
        f"Top {top.height} of {fmt.count(ops.height)} op groups by GPU time (an op's GPU time is "
        "the union of its kernels' intervals; heuristic rows group unmodeled kernels by the op "
        "that launched them, or by kernel name when none is linked):"
    )
    return [intro, Table(columns, rows, numeric=numeric)]


def _above_roof_blocks(ops: pl.DataFrame) -> list[Block]:
    if ops.height == 0:
        return []
    above = ops.filter(pl.col("above_roof_calls") > 0)
    if above.height == 0:
        return []
    calls = int(above["above_roof_calls"].sum())
    worst = above.sort("pct_of_roof", descending=True, nulls_last=True).head(ABOVE_ROOF_SHOWN)
    parts: list[str | Code | Strong] = [
        Strong("Inconsistency"),
        f": {fmt.count(calls)} op calls ran faster than their roof allows (over 100% of roof). "
        "Either the perf model overcounts their FLOPs or bytes, or the measurement beats the "
        "model's assumptions (data served from L2 cache while the memory roof assumes every "
        "byte comes from DRAM; a clock above the datasheet's; durations rounded to whole "
        "microseconds in older traces). They are shown as measured, not clipped. Highest: ",
    ]
    for i, r in enumerate(worst.iter_rows(named=True)):
        parts.extend(
            [
                "; " if i else "",
                Code(short_name(str(r["op_name"]), 60)),
                f" {r['shapes'] or ''} at {fmt.pct(r['pct_of_roof'])} of roof",
            ]
        )
    parts.append(".")
    return [Paragraph(tuple(parts))]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "device"


def _chart_blocks(result: Roofline) -> list[Block]:
    """One chart per known device with plottable points."""
    specs = _specs_by_key(result.devices)
    blocks: list[Block] = []
    modeled = result.ops.filter(pl.col("basis") == "modeled") if result.ops.height else None
    if modeled is None or modeled.height == 0:
        return blocks
    from gpu_trace_analyzer.report import charts  # altair takes 0.2 s to import: only when drawing

    for key in sorted(set(modeled["device_key"].drop_nulls().to_list())):
        spec = specs.get(key)
        points = modeled.filter(pl.col("device_key") == key)
        shown = charts.plottable(points)
        if spec is None or shown.height == 0:
            continue
        chart = charts.roofline_chart(points, spec)
        stem = f"roofline_{_slug(key)}"
        caption = _chart_caption(spec, shown.height, points.height - shown.height, stem)
        blocks.append(
            Chart(chart.to_dict(), f"Roofline of {spec.name}", stem, ("svg", "png"), caption)
        )
    return blocks


def _chart_caption(spec: DeviceSpec, shown: int, left_out: int, stem: str) -> Paragraph:
    extra = (
        f"; {left_out} op groups without FLOPs (copies, gathers) cannot sit on log axes"
        if left_out
        else ""
    )
    return Paragraph.of(
        f"Roofline of {spec.name}: {shown} op groups at (FLOP/byte, achieved TFLOP/s), sized by "
        f"GPU time, colored by bound; crosses are above their roof{extra}. PNG beside it: ",
        Code(f"{stem}.png"),
        ".",
    )


def _specs_by_key(devices: Mapping[tuple[int, int], ResolvedDevice]) -> dict[str, DeviceSpec]:
    return {r.spec.key: r.spec for r in devices.values() if r.spec is not None}


def _how_to_read() -> Paragraph:
    return Paragraph.of(
        "How to read: an op's roof is min(peak FLOP/s of its pipe, bandwidth x its FLOP/byte); "
        "% of roof is the time the roof allows over the time measured, so 100% is the hardware "
        "limit. Memory-bound ops gain from fusion and fewer bytes (lower precision, fewer "
        "copies); compute-bound ops from tensor cores and larger, better-shaped GEMMs. Low % of "
        "roof on small ops usually means launch overhead or too little parallel work."
    )
