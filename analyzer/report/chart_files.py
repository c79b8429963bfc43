"""Drawing a report's charts to files: the one step that turns `Chart` blocks into images.

Section builders compute charts as Vega-Lite specs (`analyzer.report.model.Chart`); the
report is written by a renderer that only formats. In between, `write_charts` draws each
spec with vl-convert (offline: it bundles Vega) into the charts folder beside the report
and puts an `Image` linking the first file, then the chart's caption, in its place. Without
a charts folder (a terminal report) the charts and their captions are left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from gpu_trace_analyzer.report.model import Block, Chart, Image, Report, Section
from gpu_trace_analyzer.untrusted import clean_tree

#: Pixel scale of PNG files (2: sharp on high-density screens).
PNG_SCALE = 2


def spec_text(spec: Mapping[str, Any]) -> str:
    """The spec as Vega-Lite JSON text, as altair's ``to_json()`` writes it.

    vl-convert is given this text, not the dict: it parses numbers from text slightly
    differently (the last digit of some coordinates), and the charts are drawn from the
    same text a user would save as a ``.vl.json`` file.
    """
    return json.dumps(spec, indent=2, sort_keys=True)


def write_files(
    spec: Mapping[str, Any], out_dir: Path, stem: str, formats: tuple[str, ...] = ("svg",)
) -> list[Path]:
    """Draw ``spec`` as ``<stem>.<format>`` in ``out_dir`` (created if needed), one file per
    format (``svg`` or ``png``); the paths in the order of ``formats``."""
    import vl_convert  # imported only when a chart is drawn

    out_dir.mkdir(parents=True, exist_ok=True)
    text = spec_text(clean_tree(spec))  # vl-convert aborts the process on a control char
    written = []
    for kind in formats:
        path = out_dir / f"{stem}.{kind}"
        if kind == "svg":
            path.write_text(vl_convert.vegalite_to_svg(text), encoding="utf-8")
        elif kind == "png":
            path.write_bytes(vl_convert.vegalite_to_png(text, scale=PNG_SCALE))
        else:
            raise ValueError(f"unknown chart format {kind!r}")
        written.append(path)
    return written


def draw(chart: Chart, out_dir: Path | None) -> list[Block]:
    """The blocks that replace ``chart``: its `Image` (drawn into ``out_dir``) and caption;
    nothing without ``out_dir``."""
    if out_dir is None:
        return []
    first = write_files(chart.spec, out_dir, chart.stem, chart.formats)[0]
    image = Image(f"{out_dir.name}/{first.name}", chart.alt)
    return [image] if chart.caption is None else [image, chart.caption]


def write_charts(report: Report, out_dir: Path | None) -> Report:
    """The report with every `Chart` drawn into ``out_dir`` and replaced by its `Image`
    (linked as ``<out_dir name>/<file>``: ``out_dir`` sits beside the report file), or left
    out when ``out_dir`` is None."""
    sections = []
    for section in report.sections:
        if not any(isinstance(b, Chart) for b in section.blocks):
            sections.append(section)
            continue
        blocks: list[Block] = []
        for block in section.blocks:
            blocks.extend(draw(block, out_dir) if isinstance(block, Chart) else [block])
        sections.append(Section(section.title, blocks, key=section.key))
    return replace(report, sections=sections)
