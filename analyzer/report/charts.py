"""Charts: the roofline as a Vega-Lite spec (altair), written to SVG and PNG with vl-convert.

One chart per device: log-log axes, the memory roof slanting up (bandwidth x intensity) to each
compute roof's ridge point, then flat at that roof's peak; one roof per pipe/dtype the points
use, plus the vector FP32 roof for reference. Each op group is a point at (its arithmetic
intensity, its achieved TFLOP/s), sized by GPU time and colored by what bounds it; points
above their roof keep their measured position and are drawn as crosses.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Final

import altair as alt
import polars as pl
from gpu_trace_analyzer.devices import DeviceSpec
from gpu_trace_analyzer.report.chart_files import write_files

_TERA: Final = 1e12

BOUND_COLORS: Final = {"compute": "#d62728", "memory": "#1f77b4"}
ROOF_COLORS: Final = ["#222222", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f", "#bcbd22"]

X_TITLE: Final = "Arithmetic intensity (FLOP/byte)"
Y_TITLE: Final = "Throughput (TFLOP/s)"

#: Columns `roofline_chart` reads from its points frame.
POINT_COLUMNS: Final = (
    "op_name",
    "shapes",
    "intensity_flop_per_byte",
    "achieved_tflops",
    "gpu_time_ns",
    "bound",
    "pct_of_roof",
    "above_roof",
    "pipe",
    "roof_dtype",
)


def plottable(points: pl.DataFrame) -> pl.DataFrame:
    """The points a log-log chart can show: finite, positive intensity and throughput."""
    x, y = pl.col("intensity_flop_per_byte"), pl.col("achieved_tflops")
    return points.filter(
        (x > 0) & x.is_finite() & (y > 0) & y.is_finite() & pl.col("bound").is_not_null()
    )


def roof_label(pipe: str, dtype: str, peak_tflops: float) -> str:
    """``"tensor bf16 (989 TFLOP/s)"``."""
    return f"{pipe} {dtype} ({peak_tflops:,.3g} TFLOP/s)"


def _roofs_shown(points: pl.DataFrame, spec: DeviceSpec) -> list[tuple[str, str]]:
    pairs = points.select("pipe", "roof_dtype").unique().iter_rows()
    used = {(p, d) for p, d in pairs if p and d}
    used = {k for k in used if spec.peak(*k) is not None}
    if spec.peak("vector", "fp32") is not None:
        used.add(("vector", "fp32"))
    return [k for k in spec.roofs() if k in used]


def _x_domain(points: pl.DataFrame, ridges: list[float]) -> tuple[float, float]:
    values = [*points["intensity_flop_per_byte"].to_list(), *ridges]
    low = min(values) / 10
    high = max(values) * 10
    return 10 ** math.floor(math.log10(low)), 10 ** math.ceil(math.log10(high))


def roof_lines(spec: DeviceSpec, roofs: list[tuple[str, str]], x_min: float, x_max: float
               ) -> list[dict[str, Any]]:  # fmt: skip
    """Each roof as three vertices: (x_min, bw*x_min), the ridge (peak/bw, peak), (x_max, peak).

    Throughput in TFLOP/s, intensity in FLOP/byte; ``order`` keeps the vertices in sequence.
    """
    bw = spec.mem_bw_bytes_per_s
    rows: list[dict[str, Any]] = []
    for pipe, dtype in roofs:
        peak = spec.peak(pipe, dtype)
        if peak is None:
            continue
        ridge = peak / bw
        label = roof_label(pipe, dtype, peak / _TERA)
        vertices = ((x_min, bw * x_min), (ridge, peak), (x_max, peak))
        rows.extend(
            {
                "roof": label,
                "order": i,
                "intensity_flop_per_byte": x,
                "tflops": y / _TERA,
                "ridge": i == 1,
            }
            for i, (x, y) in enumerate(vertices)
        )
    return rows


def _point_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "op": r["op_name"],
        "shapes": r["shapes"] or "",
        "intensity_flop_per_byte": r["intensity_flop_per_byte"],
        "achieved_tflops": r["achieved_tflops"],
        "gpu_time_ms": (r["gpu_time_ns"] or 0) / 1e6,
        "bound": r["bound"],
        "pct_of_roof": r["pct_of_roof"],
        "roof": f"{r['pipe']} {r['roof_dtype']}",
        "status": "above its roof" if r["above_roof"] else "within roof",
    }


def _point_rows(points: pl.DataFrame) -> list[dict[str, Any]]:
    return [_point_row(r) for r in points.select(POINT_COLUMNS).iter_rows(named=True)]


def roofline_chart(points: pl.DataFrame, device_spec: DeviceSpec, title: str | None = None
                   ) -> alt.LayerChart:  # fmt: skip
    """The roofline of one device with ``points`` (op groups; see `POINT_COLUMNS`) on it.

    Points that cannot sit on log axes (zero FLOPs, zero time) are left out; callers say so.
    """
    shown = plottable(points)
    roofs = _roofs_shown(shown, device_spec)
    ridges = [r for r in (device_spec.ridge_flop_per_byte(*k) for k in roofs) if r]
    x_min, x_max = _x_domain(shown, ridges) if shown.height or ridges else (0.01, 1e4)
    lines = roof_lines(device_spec, roofs, x_min, x_max)
    y_values = [row["tflops"] for row in lines] + shown["achieved_tflops"].to_list()
    y_min = 10 ** math.floor(math.log10(max(min(y_values), 1e-9)))
    y_max = 10 ** math.ceil(math.log10(max(y_values) * 1.5))
    x_scale = alt.Scale(type="log", domain=[x_min, x_max])
    y_scale = alt.Scale(type="log", domain=[y_min, y_max])
    x = alt.X("intensity_flop_per_byte:Q", scale=x_scale, title=X_TITLE)
    y_roof = alt.Y("tflops:Q", scale=y_scale, title=Y_TITLE)
    roof_layer = (
        alt.Chart(alt.InlineData(values=lines))
        .mark_line(strokeWidth=1.5)
        .encode(
            x=x,
            y=y_roof,
            color=alt.Color("roof:N", title="Roof", scale=alt.Scale(range=ROOF_COLORS)),
            strokeDash=alt.StrokeDash("roof:N", legend=None),
            order=alt.Order("order:Q"),
            detail="roof:N",
        )
    )
    ridge_layer = (
        alt.Chart(alt.InlineData(values=[r for r in lines if r["ridge"]]))
        .mark_point(shape="diamond", filled=True, color="black", size=40)
        .encode(x=x, y=y_roof, tooltip=["roof:N", "intensity_flop_per_byte:Q", "tflops:Q"])
    )
    point_layer = (
        alt.Chart(alt.InlineData(values=_point_rows(shown)))
        .mark_point(filled=True, opacity=0.75)
        .encode(
            x=x,
            y=alt.Y("achieved_tflops:Q", scale=y_scale, title=Y_TITLE),
            size=alt.Size("gpu_time_ms:Q", title="GPU time (ms)"),
            color=alt.Color(
                "bound:N",
                title="Bound",
                scale=alt.Scale(domain=list(BOUND_COLORS), range=list(BOUND_COLORS.values())),
            ),
            shape=alt.Shape(
                "status:N",
                title="Point",
                scale=alt.Scale(
                    domain=["within roof", "above its roof"], range=["circle", "cross"]
                ),
            ),
            tooltip=[
                "op:N",
                "shapes:N",
                "roof:N",
                alt.Tooltip("intensity_flop_per_byte:Q", format=".3g", title="FLOP/byte"),
                alt.Tooltip("achieved_tflops:Q", format=".3g", title="TFLOP/s"),
                alt.Tooltip("pct_of_roof:Q", format=".1f", title="% of roof"),
                alt.Tooltip("gpu_time_ms:Q", format=".3f", title="GPU time (ms)"),
            ],
        )
    )
    heading = title or f"Roofline: {device_spec.name}"
    layered = alt.LayerChart(layer=[roof_layer, ridge_layer, point_layer])
    chart: alt.LayerChart = layered.resolve_scale(color="independent").properties(
        title=heading, width=640, height=420
    )
    return chart


def write_chart(chart: alt.TopLevelMixin, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write ``chart`` as ``<stem>.svg`` and ``<stem>.png`` in ``out_dir`` (created if needed).

    Rendering is local (vl-convert bundles Vega); nothing is downloaded.
    """
    svg, png = write_files(chart.to_dict(), out_dir, stem, ("svg", "png"))
    return svg, png
