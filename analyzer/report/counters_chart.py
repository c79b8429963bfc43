"""The DCGM time-series chart: one line per GPU, one facet row per metric, as SVG.

Takes tidy, already-downsampled points (the counters section prepares them: renderers never
touch raw tables): columns ``time_s`` (seconds from the first sample), ``metric`` (a display
label with its unit), ``gpu`` (a label such as ``node-a:0``) and ``value``. Each facet has its
own y scale, since ratios, percent and watts do not share one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import altair as alt
import polars as pl
import vl_convert as vlc

from analyzer.untrusted import clean_tree

FACET_WIDTH_PX = 560
FACET_HEIGHT_PX = 110


def counters_chart(points: pl.DataFrame, title: str) -> Any:
    """A faceted line chart of the points (an altair FacetChart), facets in first-seen order."""
    order = list(dict.fromkeys(points["metric"].to_list()))
    base = alt.Chart(points.to_arrow())
    lines = (
        base.mark_line(strokeWidth=1.2)
        .encode(
            x=alt.X("time_s:Q", title="time since first sample (s)"),
            y=alt.Y("value:Q", title=None),
            color=alt.Color("gpu:N", title="GPU"),
            tooltip=["gpu:N", "metric:N", "time_s:Q", "value:Q"],
        )
        .properties(width=FACET_WIDTH_PX, height=FACET_HEIGHT_PX)
    )
    return (
        lines.facet(row=alt.Row("metric:N", title=None, sort=order))
        .resolve_scale(y="independent")
        .properties(title=title)
    )


def write_svg(chart: Any, path: Path) -> Path:
    """Render the chart to SVG with vl-convert (offline) and write it to ``path``."""
    svg = vlc.vegalite_to_svg(clean_tree(chart.to_dict()))  # a control char aborts vl-convert
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg, encoding="utf-8")
    return path
