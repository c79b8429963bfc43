"""Charts computed by sections, drawn only by the writing step; the renderer map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpu_trace_analyzer.report import chart_files
from gpu_trace_analyzer.report.formats import RENDERERS, render, renderer
from gpu_trace_analyzer.report.model import Chart, Image, Paragraph, Report, Section, Table

SPEC = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "data": {"values": [{"x": 1, "y": 2}, {"x": 3, "y": 0.1}]},
    "mark": "point",
    "encoding": {"x": {"field": "x", "type": "quantitative"}, "y": {"field": "y"}},
}


def _report(*blocks: Paragraph | Table | Image | Chart) -> Report:
    section = Section("Charts", list(blocks), key="charts")
    return Report("t", [], Table(["metric"], []), None, [], [], [section])


def test_charts_are_drawn_only_with_a_folder(tmp_path: Path) -> None:
    caption = Paragraph.of("caption")
    chart = Chart(SPEC, "a test chart", "test_chart", ("svg", "png"), caption)
    report = _report(Paragraph.of("before"), chart, Paragraph.of("after"))
    dropped = chart_files.write_charts(report, None)
    assert [b for b in dropped.sections[0].blocks] == [
        Paragraph.of("before"),
        Paragraph.of("after"),
    ]
    assert list(tmp_path.iterdir()) == []
    folder = tmp_path / "report_files"
    drawn = chart_files.write_charts(report, folder).sections[0].blocks
    assert drawn[1] == Image("report_files/test_chart.svg", "a test chart")
    assert drawn[2] is caption
    assert (folder / "test_chart.svg").read_text().startswith("<svg")
    assert (folder / "test_chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.sections[0].blocks[1] is chart  # the computed report is left as it was


def test_spec_text_is_altairs_json() -> None:
    assert json.loads(chart_files.spec_text(SPEC)) == SPEC
    assert chart_files.spec_text(SPEC).startswith('{\n  "$schema"')  # sorted, indented


def test_unknown_chart_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown chart format 'pdf'"):
        chart_files.write_files(SPEC, tmp_path, "x", ("pdf",))


def test_renderer_map_names_every_format() -> None:
    report = _report(Paragraph.of("hello ", "world"))
    for name in RENDERERS:
        assert "hello world" in render(report, name)
    assert render(report, "json") == renderer("json")(report)
    with pytest.raises(KeyError, match="unknown report format 'pdf'"):
        renderer("pdf")


def test_a_chart_never_reaches_a_renderer() -> None:
    with pytest.raises(TypeError, match="Chart"):
        render(_report(Chart(SPEC, "alt", "stem")), "md")
