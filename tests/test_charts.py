"""The roofline chart's Vega-Lite spec: log scales, axis titles with units, roof geometry.

Geometry is checked against the H100 SXM datasheet by hand: 3.35 TB/s of HBM, 989.4 TFLOP/s
BF16 on the tensor pipe (ridge at 989.4 / 3.35 = 295.34 FLOP/byte) and 67 TFLOP/s FP32 on the
vector pipe (ridge at 67 / 3.35 = 20 FLOP/byte).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from gpu_trace_analyzer.devices import match
from gpu_trace_analyzer.report.charts import X_TITLE, Y_TITLE, roofline_chart, write_chart

HBM_TB_PER_S = 3.35


def _points() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "op_name": ["aten::addmm", "aten::gelu", "aten::copy_"],
            "shapes": ["4096x4096, 4096x4096", "256x4096", "256x4096, 256x4096"],
            "intensity_flop_per_byte": [1365.4, 0.25, 0.0],
            "achieved_tflops": [642.3, 1.05, 0.0],
            "gpu_time_ns": [214_000, 1_000, 2_000],
            "bound": ["compute", "memory", "memory"],
            "pct_of_roof": [64.9, 125.2, 62.6],
            "above_roof": [False, True, False],
            "pipe": ["tensor", "vector", "vector"],
            "roof_dtype": ["bf16", "fp32", "fp32"],
        }
    )


def _spec() -> dict[str, Any]:
    spec = match("NVIDIA H100 80GB HBM3")
    assert spec is not None
    chart_spec: dict[str, Any] = roofline_chart(_points(), spec).to_dict()
    return chart_spec


def _layers() -> list[dict[str, Any]]:
    layers: list[dict[str, Any]] = _spec()["layer"]
    return layers


def _values(index: int) -> list[dict[str, Any]]:
    """A layer's data rows, inline or in the spec's top-level ``datasets``."""
    spec = _spec()
    data = spec["layer"][index]["data"]
    rows: list[dict[str, Any]] = (
        data["values"] if "values" in data else spec["datasets"][data["name"]]
    )
    return rows


def _roof_vertices() -> dict[str, list[dict[str, Any]]]:
    lines = _values(0)
    roofs: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(lines, key=lambda r: (r["roof"], r["order"])):
        roofs.setdefault(row["roof"], []).append(row)
    return roofs


def test_every_layer_is_log_log_with_units_in_the_titles() -> None:
    for layer in _layers():
        x, y = layer["encoding"]["x"], layer["encoding"]["y"]
        assert x["scale"]["type"] == "log" and y["scale"]["type"] == "log"
        assert x["title"] == X_TITLE == "Arithmetic intensity (FLOP/byte)"
        assert y["title"] == Y_TITLE == "Throughput (TFLOP/s)"


def test_one_roof_per_pipe_used_plus_vector_fp32() -> None:
    assert sorted(_roof_vertices()) == [
        "tensor bf16 (989 TFLOP/s)",
        "vector fp32 (67 TFLOP/s)",
    ]


@pytest.mark.parametrize(
    ("roof", "peak_tflops"),
    [("tensor bf16 (989 TFLOP/s)", 989.4), ("vector fp32 (67 TFLOP/s)", 67.0)],
)
def test_memory_roof_slants_up_to_the_ridge_then_goes_flat(roof: str, peak_tflops: float) -> None:
    start, ridge, end = _roof_vertices()[roof]
    # Slanted part: throughput = bandwidth x intensity, from the left edge up to the ridge.
    assert start["tflops"] == pytest.approx(HBM_TB_PER_S * start["intensity_flop_per_byte"])
    assert ridge["intensity_flop_per_byte"] == pytest.approx(peak_tflops / HBM_TB_PER_S)
    assert ridge["tflops"] == pytest.approx(peak_tflops)
    assert ridge["tflops"] == pytest.approx(HBM_TB_PER_S * ridge["intensity_flop_per_byte"])
    # Flat part: the compute roof at its peak out to the right edge.
    assert end["tflops"] == pytest.approx(peak_tflops)
    assert start["intensity_flop_per_byte"] < ridge["intensity_flop_per_byte"]
    assert end["intensity_flop_per_byte"] > ridge["intensity_flop_per_byte"]


def test_ridge_points_are_marked() -> None:
    ridges = {r["roof"]: r["intensity_flop_per_byte"] for r in _values(1)}
    assert ridges["tensor bf16 (989 TFLOP/s)"] == pytest.approx(295.343, rel=1e-5)
    assert ridges["vector fp32 (67 TFLOP/s)"] == pytest.approx(20.0)


def test_points_sized_by_time_colored_by_bound() -> None:
    points = _layers()[2]
    values = _values(2)
    # The copy has no FLOPs: it cannot sit on a log axis and is left out.
    assert [v["op"] for v in values] == ["aten::addmm", "aten::gelu"]
    assert values[0]["gpu_time_ms"] == pytest.approx(0.214)
    enc = points["encoding"]
    assert enc["x"]["field"] == "intensity_flop_per_byte"
    assert enc["y"]["field"] == "achieved_tflops"
    assert enc["size"]["field"] == "gpu_time_ms" and "ms" in enc["size"]["title"]
    assert enc["color"]["field"] == "bound"
    assert [v["status"] for v in values] == ["within roof", "above its roof"]
    assert enc["shape"]["scale"]["range"] == ["circle", "cross"]


def test_axes_cover_every_point_and_roof() -> None:
    layer = _layers()[0]
    x_low, x_high = layer["encoding"]["x"]["scale"]["domain"]
    y_low, y_high = layer["encoding"]["y"]["scale"]["domain"]
    assert x_low <= 0.25 and x_high >= 1365.4
    assert y_low <= HBM_TB_PER_S * x_low and y_high >= 989.4


def test_write_chart_renders_svg_and_png(tmp_path: Path) -> None:
    spec = match("AMD Instinct MI300X")
    assert spec is not None
    chart = roofline_chart(_points(), spec, title="MI300X")
    svg, png = write_chart(chart, tmp_path / "charts", "roofline_mi300x")
    assert svg.name == "roofline_mi300x.svg" and png.name == "roofline_mi300x.png"
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<svg") and "Arithmetic intensity (FLOP/byte)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
