"""Every renderer over the same reports: a full one with hostile strings, and an empty one."""

from __future__ import annotations

import json
import re

import pytest
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity, SkippedRule
from gpu_trace_analyzer.report import json_report, markdown, terminal
from gpu_trace_analyzer.report.model import Code, Image, Paragraph, Report, Section, Strong, Table

HOSTILE = "<script>alert(1)</script> | `x` *bold* _u_ [link](http://e.com) # h"


def _report(findings: bool = True) -> Report:
    finding = Finding(
        rule_id="gpu-idle",
        severity=Severity.CRITICAL,
        title="GPU idle",
        summary=f"Idle 38.2% while {HOSTILE} ran; see `aten::item`.",
        evidence={"idle_pct": 38.2, "idle_ns": 184_000_000},
        recommendation="Raise `num_workers` and set `pin_memory=True`.",
        scope=Scope(rank=0),
        impact_ns=184_000_000,
        table=EvidenceTable(["kernel", "ms"], [[HOSTILE, 1.5], ["gemm|x", 2]]),
    )
    return Report(
        title=f"Trace analysis: {HOSTILE}",
        config_lines=[["PyTorch profiler trace · 1 x ", Code(HOSTILE)]],
        headline=Table(["metric", "value", "note"], [["GPU busy", "61.8%", HOSTILE]]),
        verdict=Paragraph.of("Idle.", " ", Strong("Fix it.")),
        findings=[finding] if findings else [],
        skipped=[SkippedRule("memory-headroom", "no [memory] events")],
        sections=[
            Section(
                "Top kernels",
                [
                    Paragraph.of("Kernels:", Code("a`b")),
                    Table(["kernel", "calls"], [[Code(HOSTILE), 3], [None, 1.25]], [False, True]),
                    Image("report_files/roofline h100.svg", alt="roofline"),
                ],
                key="kernels",
            )
        ],
        warnings=[f"truncated: {HOSTILE}"],
    )


def _table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def _outside_code(md: str) -> str:
    """The Markdown with code spans removed (their content is literal text, never markup)."""
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", md)


def test_markdown_escapes_every_trace_string() -> None:
    md = markdown.render(_report())
    plain = _outside_code(md)
    assert "<script>" not in plain
    assert "&lt;script&gt;" in plain
    assert "[link](http" not in plain  # no live link from trace text
    # Every table row has as many unescaped pipes as its header: no cell broke out.
    for line in _table_rows(md):
        body = line.replace("\\|", "")
        assert body.count("|") in {4, 3}, line
    assert "``a`b``" in md
    assert "![roofline](report_files/roofline%20h100.svg)" in md


def test_markdown_structure() -> None:
    md = markdown.render(_report())
    assert md.startswith("# Trace analysis: ")
    assert "### CRITICAL · GPU idle (`gpu-idle`)" in md
    assert "**Do this:** Raise `num_workers` and set `pin_memory=True`." in md
    assert "## Findings" in md and "### Skipped rules" in md
    assert md.index("## Headline") < md.index("## Findings") < md.index("## Top kernels")


def test_markdown_line_start_escaping_only_at_line_start() -> None:
    assert markdown.escape_text("1. a", line_start=True) == "1\\. a"
    assert markdown.escape_text("# a", line_start=True) == "\\# a"
    assert markdown.escape_text("615.4 ms") == "615.4 ms"


def test_json_round_trips_with_plain_strings() -> None:
    data = json.loads(json_report.render(_report()))
    assert data["schema_version"] == 2
    assert data["findings"][0]["rule_id"] == "gpu-idle"
    assert data["findings"][0]["severity"] == "critical"
    assert data["findings"][0]["evidence"]["idle_ns"] == 184_000_000
    assert data["sections"][0]["tables"][0]["rows"][0][0] == HOSTILE  # raw, JSON escapes it
    assert data["skipped"] == [{"rule_id": "memory-headroom", "reason": "no [memory] events"}]


def test_terminal_renders_markup_literally() -> None:
    text = terminal.render(_report(), width=100)
    assert "[link](http://e.com)" in text  # rich markup in trace text is not interpreted
    assert "CRITICAL" in text and "Do this:" in text


@pytest.mark.parametrize("render", [markdown.render, json_report.render, terminal.render])
def test_every_renderer_handles_an_empty_report(render: object) -> None:
    empty = Report(
        title="Trace analysis: empty",
        config_lines=[],
        headline=Table(["metric", "value", "note"], []),
        verdict=None,
        findings=[],
        skipped=[],
        sections=[],
    )
    out = render(empty)  # type: ignore[operator]
    assert "empty" in out


def test_version_labels_are_readable() -> None:
    from gpu_trace_analyzer.build import version_labels

    labels = version_labels(
        {
            "cuda_driver_version": "12080",  # CUDA's 1000 * major + 10 * minor
            "cuda_runtime_version": "12040",
            "pytorch_version": "2.6.0+cu124",
            "kineto_schema_version": "1",
            "nsys": "2026.2.1.210",
        }
    )
    assert labels == [
        "PyTorch 2.6.0+cu124",
        "CUDA runtime 12.4",
        "CUDA driver 12.8",
        "nsys 2026.2.1.210",
    ]
