"""Charts of `analyze scaling` (altair specs drawn offline with vl-convert, SVG and PNG):

- ``speedup``: measured speedup against the GPU count, with ideal linear scaling drawn as a
  dashed line through the baseline run;
- ``rank_steps``: every profiled step's time per rank, one panel per run (a point per step,
  the rank's median as a tick), so a slow, failed or cold rank stands out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import altair as alt
from gpu_trace_analyzer.report.chart_files import write_files
from gpu_trace_analyzer.scaling import ScalingReport, unit_word


def speedup_spec(d: ScalingReport) -> dict[str, Any]:
    """Speedup (measured and ideal) against the GPU count, as a Vega-Lite spec."""
    units = unit_word(d.runs)
    rows = []
    for r in d.runs:
        if r.speedup is not None:
            rows.append({units: r.gpus, "speedup": r.speedup, "series": "measured", "run": r.label})
        rows.append({units: r.gpus, "speedup": r.ideal_speedup, "series": "ideal", "run": r.label})
    counts = sorted({r.gpus for r in d.runs})
    x = alt.X(
        f"{units}:Q", title=f"{units}", scale=alt.Scale(zero=False), axis=alt.Axis(values=counts)
    )
    y = alt.Y("speedup:Q", title=f"speedup over {d.runs[0].gpus} {units} ({d.mode} scaling)")
    color = alt.Color(
        "series:N",
        title="",
        scale=alt.Scale(domain=["measured", "ideal"], range=["#d62728", "#7f7f7f"]),
    )
    base = alt.Chart(alt.InlineData(values=rows))
    lines = base.mark_line().encode(
        x=x,
        y=y,
        color=color,
        strokeDash=alt.StrokeDash(
            "series:N",
            legend=None,
            scale=alt.Scale(domain=["measured", "ideal"], range=[[1, 0], [6, 4]]),
        ),
    )
    points = base.mark_point(filled=True, size=60).encode(
        x=x,
        y=y,
        color=color,
        tooltip=["run:N", f"{units}:Q", alt.Tooltip("speedup:Q", format=".2f")],
    )
    chart = alt.LayerChart(layer=[lines, points]).properties(
        title=f"Speedup against {units}", width=420, height=300
    )
    spec: dict[str, Any] = chart.to_dict()
    return spec


def rank_steps_spec(d: ScalingReport) -> dict[str, Any]:
    """Each step's time per rank, one panel per run, status as color."""
    rows = [
        {"run": r.run, "rank": r.rank, "step_ms": ns / 1e6, "status": r.status}
        for r in d.ranks
        for ns in r.step_ns
    ]
    order = [r.label for r in d.runs]
    chart = (
        alt.Chart(alt.InlineData(values=rows))
        .mark_point(filled=True, opacity=0.7)
        .encode(
            x=alt.X("rank:O", title="rank"),
            y=alt.Y("step_ms:Q", title="step time (ms)"),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(
                    domain=["ok", "slow", "failed"], range=["#1f77b4", "#ff7f0e", "#d62728"]
                ),
            ),
            tooltip=["run:N", "rank:O", alt.Tooltip("step_ms:Q", format=".3f")],
        )
        .properties(width=alt.Step(28), height=220)
        .facet(column=alt.Column("run:N", sort=order, title=None))
        .resolve_scale(x="independent")
        .properties(title="Step time per rank (every profiled step)")
    )
    spec: dict[str, Any] = chart.to_dict()
    return spec


def write(d: ScalingReport, out_dir: Path) -> list[tuple[str, str]]:
    """Draw both charts into ``out_dir`` (SVG and PNG); (key, link) pairs, the link being
    ``<out_dir name>/<file>.svg`` (``out_dir`` sits beside the report)."""
    out = []
    for key, spec in (("speedup", speedup_spec(d)), ("rank_steps", rank_steps_spec(d))):
        svg = write_files(spec, out_dir, f"scaling_{key}", ("svg", "png"))[0]
        out.append((key, f"{out_dir.name}/{svg.name}"))
    return out
