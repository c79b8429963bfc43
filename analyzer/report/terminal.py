"""Terminal renderer: the `Report` drawn with rich (tables, colored severities).

Rich markup in trace strings is neutralized: text goes in as `rich.text.Text`, never as
markup strings; and every string passes `analyzer.untrusted.clean` first, so no escape
sequence or control character from a trace reaches the terminal.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.report.model import (
    Block,
    Cell,
    Code,
    Image,
    Inline,
    Paragraph,
    Report,
    Strong,
    Table,
)
from gpu_trace_analyzer.untrusted import clean
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.rule import Rule as RichRule
from rich.table import Table as RichTable
from rich.text import Text

_STYLE = {Severity.CRITICAL: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "cyan"}


def _inline(parts: Sequence[Inline]) -> Text:
    out = Text()
    for p in parts:
        if isinstance(p, Code):
            out.append(clean(p.text), style="bold cyan")
        elif isinstance(p, Strong):
            out.append(clean(p.text), style="bold")
        else:
            out.append(clean(p))
    return out


def _cell(value: Cell) -> Text:
    if value is None:
        return Text("")
    if isinstance(value, Code):
        return Text(clean(value.text), style="cyan")
    if isinstance(value, float):
        return Text(f"{value:.4g}")
    return Text(clean(str(value)))


def _table(
    columns: Sequence[str], rows: Sequence[Sequence[Cell]], numeric: Sequence[bool]
) -> RichTable:
    t = RichTable(show_header=True, header_style="bold", expand=False)
    for i, c in enumerate(columns):
        t.add_column(Text(clean(c)), justify="right" if i < len(numeric) and numeric[i] else "left")
    for row in rows:
        t.add_row(*(_cell(v) for v in row))
    return t


def _block(b: Block) -> RenderableType:
    if isinstance(b, Paragraph):
        return _inline(b.parts)
    if isinstance(b, Table):
        return _table(b.columns, b.rows, b.numeric)
    if isinstance(b, Image):
        return Text(f"[chart: {clean(b.path)}]", style="dim")
    raise TypeError(type(b).__name__)


def _finding(f: Finding) -> RenderableType:
    title = Text()
    title.append(f.severity.name, style=_STYLE[f.severity])
    title.append(f" · {clean(f.title)} ")
    title.append(f"({clean(f.rule_id)})", style="dim")
    parts: list[RenderableType] = [Text(clean(f.summary))]
    if f.table is not None and f.table.rows:
        parts.append(_table(f.table.columns, f.table.rows, ()))
    do_this = Text("Do this: ", style="bold")
    do_this.append(clean(f.recommendation), style="")
    parts.append(do_this)
    return Panel(Group(*parts), title=title, title_align="left")


def render_to(console: Console, report: Report) -> None:
    """Print the report on a rich console."""
    console.print(Text(clean(report.title), style="bold underline"))
    for line in report.config_lines:
        console.print(_inline(line))
    for w in report.warnings:
        console.print(Text(f"warning: {clean(w)}", style="yellow"))
    console.print(_table(report.headline.columns, report.headline.rows, ()))
    if report.verdict is not None:
        v = Text("Verdict: ", style="bold")
        v.append_text(_inline(report.verdict.parts))
        console.print(v)
    for section in (s for s in report.sections if s.lead):
        console.print(RichRule(section.title))
        for b in section.blocks:
            console.print(_block(b))
    console.print(RichRule("Findings"))
    if not report.findings:
        console.print("No rule fired on this input.")
    for f in report.findings:
        console.print(_finding(f))
    if report.skipped:
        console.print(Text("Skipped rules:", style="bold"))
        for s in report.skipped:
            console.print(Text(f"  {clean(s.rule_id)}: {clean(s.reason)}", style="dim"))
    for section in (s for s in report.sections if not s.lead):
        console.print(RichRule(Text(clean(section.title))))
        for b in section.blocks:
            console.print(_block(b))


def render(report: Report, width: int = 120) -> str:
    """The report as plain terminal text of a fixed width (for files and tests)."""
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    render_to(console, report)
    return console.export_text()
