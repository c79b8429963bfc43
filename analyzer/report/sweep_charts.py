"""Charts of a sweep (altair specs drawn to SVG and PNG with vl-convert, offline):

- ``sweep_heatmap``: GPU busy share over the swept label x the second label, one panel per
  device (CPU-only sweeps: throughput, since there is no GPU busy share to draw);
- ``sweep_scaling``: throughput against the swept label with ideal linear scaling from the
  smallest configuration drawn dashed, and median latency beside it, one line per series.

Files go to ``<stem>_files/`` beside the report (`write`); the report links them by that
folder's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import altair as alt
from gpu_trace_analyzer.report.chart_files import write_files
from gpu_trace_analyzer.sweep import Sweep

FORMATS: Final = ("svg", "png")


def _heatmap(s: Sweep) -> tuple[dict[str, Any], str] | None:
    second = s.second
    if second is None:
        return None
    gpu = not s.cpu_only
    rows: list[dict[str, Any]] = []
    panels = "device" if "device" not in (s.swept, second) else None
    for r in s.runs:
        value = r.gpu_busy_pct if gpu else r.samples_per_s
        if value is None:
            continue
        x = r.labels.get(s.swept, "")
        rows.append(
            {
                "x": x,
                "x_num": float(x) if s.numeric else 0.0,
                "y": r.labels.get(second, ""),
                "panel": r.labels.get(panels, "all") if panels else "all",
                "value": round(value, 3),
                "run": r.name,
            }
        )
    if not rows:
        return None
    what = "GPU busy (% of step time)" if gpu else "throughput (samples/s)"
    by_num: dict[tuple[float, str], str] = {}
    for row in rows:
        by_num.setdefault((float(row["x_num"]), str(row["x"])), str(row["x"]))
    x_order = [by_num[k] for k in sorted(by_num)]  # labels as given, numeric order first
    base = alt.Chart(alt.InlineData(values=rows)).encode(
        x=alt.X("x:O", title=s.swept, sort=x_order),
        y=alt.Y("y:O", title=second),
    )
    rect = base.mark_rect().encode(
        color=alt.Color("value:Q", title=what, scale=alt.Scale(scheme="viridis")),
        tooltip=["run:N", "x:O", "y:O", alt.Tooltip("value:Q", format=".1f", title=what)],
    )
    text = base.mark_text(fontSize=10, color="white").encode(text=alt.Text("value:Q", format=".1f"))
    chart = (
        alt.layer(rect, text)
        .properties(width=320, height=160)
        .facet(facet=alt.Facet("panel:N", title=panels or ""), columns=2)
        .properties(title=f"{what} by {s.swept} x {second}")
    )
    spec: dict[str, Any] = chart.to_dict()
    return spec, what


def _scaling(s: Sweep) -> dict[str, Any] | None:
    rows = []
    for series in s.series:
        for p in series.points:
            if p.run.samples_per_s is not None:
                rows.append(
                    {
                        "x": p.x if s.numeric else p.label,
                        "series": series.title,
                        "kind": "measured",
                        "samples_per_s": p.run.samples_per_s,
                    }
                )
            if p.ideal_samples_per_s is not None:
                rows.append(
                    {
                        "x": p.x,
                        "series": series.title,
                        "kind": "ideal linear",
                        "samples_per_s": p.ideal_samples_per_s,
                    }
                )
    lat = [
        {
            "x": p.x if s.numeric else p.label,
            "series": series.title,
            "latency_ms": p.run.latency_median_ns / 1e6,
        }
        for series in s.series
        for p in series.points
    ]
    if not lat:
        return None
    x = (
        alt.X("x:Q", title=s.swept, scale=alt.Scale(type="log", base=2))
        if s.numeric
        else alt.X("x:N", title=s.swept)
    )
    latency = (
        alt.Chart(alt.InlineData(values=lat))
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("latency_ms:Q", title="median step latency (ms)"),
            color=alt.Color("series:N", title="series"),
        )
        .properties(width=320, height=240, title="latency")
    )
    if not rows:
        only: dict[str, Any] = latency.to_dict()
        return only
    throughput = (
        alt.Chart(alt.InlineData(values=rows))
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("samples_per_s:Q", title="throughput (samples/s)", scale=alt.Scale(type="log")),
            color=alt.Color("series:N", title="series"),
            strokeDash=alt.StrokeDash(
                "kind:N",
                title="",
                scale=alt.Scale(domain=["measured", "ideal linear"], range=[[1, 0], [4, 3]]),
            ),
        )
        .properties(
            width=320,
            height=240,
            title="throughput against ideal linear scaling" if s.numeric else "throughput",
        )
    )
    chart = alt.hconcat(throughput, latency).properties(
        title=f"Throughput and latency against {s.swept}"
    )
    spec: dict[str, Any] = chart.to_dict()
    return spec


def write(s: Sweep, out_dir: Path) -> list[tuple[str, str]]:
    """Draw the sweep's charts into ``out_dir``; (link, alt text) of each, linked as
    ``<out_dir name>/<file>`` (the folder sits beside the report)."""
    out: list[tuple[str, str]] = []
    heat = _heatmap(s)
    if heat is not None:
        spec, what = heat
        first = write_files(spec, out_dir, "sweep_heatmap", FORMATS)[0]
        out.append((f"{out_dir.name}/{first.name}", f"Heatmap of {what}"))
    scaling = _scaling(s)
    if scaling is not None:
        first = write_files(scaling, out_dir, "sweep_scaling", FORMATS)[0]
        out.append(
            (f"{out_dir.name}/{first.name}", "Throughput against ideal scaling, and latency")
        )
    return out
