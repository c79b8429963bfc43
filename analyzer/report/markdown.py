"""Markdown renderer: a `Report` as GitHub-flavoured Markdown, ready to paste into a PR.

Every string that may come from a trace is escaped here: plain text has Markdown and HTML
metacharacters backslash-escaped or entity-encoded; code spans use a backtick fence longer
than any backtick run inside; pipes are escaped in table cells (GFM requires it even inside
code spans); newlines never reach a table row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from gpu_trace_analyzer.findings import EvidenceTable, Finding, Severity
from gpu_trace_analyzer.report.model import (
    Block,
    Cell,
    Code,
    Image,
    Inline,
    Paragraph,
    Report,
    Section,
    Strong,
    Table,
)
from gpu_trace_analyzer.untrusted import clean, defuse_markdown

EXTENSION = ".md"

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_LINE_START = re.compile(r"^(\s*)([#+\-=]|(?P<num>\d+)(?P<dot>[.)]))")
_SEVERITY_LABEL = {
    Severity.CRITICAL: "CRITICAL",
    Severity.WARNING: "WARNING",
    Severity.INFO: "INFO",
}


def escape_text(text: str, line_start: bool = False) -> str:
    """Plain text made inert: HTML entities, Markdown metacharacters, no line breaks.

    ``line_start``: the text begins a line, so a leading ``#``, ``-``, ``+``, ``=`` or
    ``1.`` (which would make a heading or list item) is escaped too.
    """
    text = clean(text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = defuse_markdown(_MD_SPECIAL.sub(r"\\\1", text))
    return _LINE_START.sub(_escape_line_start, text) if line_start else text


def _escape_line_start(m: re.Match[str]) -> str:
    """Escape what would make a line a heading, list item or setext underline."""
    if m.group("num") is not None:
        return f"{m.group(1)}{m.group('num')}\\{m.group('dot')}"
    return f"{m.group(1)}\\{m.group(2)}"


def code_span(text: str) -> str:
    """Inline code that shows ``text`` verbatim whatever backticks it holds (cleaned of
    control characters and line breaks: nothing inside a code span is live)."""
    text = clean(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_TICKED = re.compile(r"`([^`\n]+)`")


def prose(text: str, line_start: bool = False) -> str:
    """Rule-authored prose: `ticked` words become code spans, everything else is escaped.

    Summaries and recommendations are written by rules and may quote trace strings; the
    quoted part renders verbatim inside a code span, the rest is escaped text.
    """
    out: list[str] = []
    pos = 0
    for m in _TICKED.finditer(text):
        out.append(escape_text(text[pos : m.start()], line_start and pos == 0))
        out.append(code_span(m.group(1)))
        pos = m.end()
    out.append(escape_text(text[pos:], line_start and pos == 0))
    return "".join(out)


def _inline(part: Inline, line_start: bool = False) -> str:
    if isinstance(part, Code):
        return code_span(part.text)
    if isinstance(part, Strong):
        return f"**{escape_text(part.text)}**"
    return escape_text(part, line_start)


def _inlines(parts: Iterable[Inline], line_start: bool = True) -> str:
    return "".join(_inline(p, line_start and i == 0) for i, p in enumerate(parts))


def _cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, Code):
        return code_span(value.text).replace("|", "\\|")
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return str(value)
    return escape_text(value)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Cell]], numeric: Sequence[bool]) -> str:
    header = "| " + " | ".join(escape_text(c) for c in columns) + " |"
    aligns = [numeric[i] if i < len(numeric) else False for i in range(len(columns))]
    rule = "|" + "|".join("---:" if a else "---" for a in aligns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join([header, rule, *body])


def _block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return _inlines(block.parts)
    if isinstance(block, Table):
        return _table(block.columns, block.rows, block.numeric)
    if isinstance(block, Image):
        return f"![{escape_text(block.alt)}]({clean(block.path).replace(' ', '%20')})"
    raise TypeError(f"unknown block {type(block).__name__}")


def _section(section: Section, level: int = 2) -> str:
    parts = [f"{'#' * level} {escape_text(section.title)}"]
    parts.extend(_block(b) for b in section.blocks)
    return "\n\n".join(parts)


def _evidence_table(table: EvidenceTable) -> str:
    rows: list[list[Cell]] = [
        [Code(v) if isinstance(v, str) and i == 0 else v for i, v in enumerate(row)]
        for row in table.rows
    ]
    return _table(table.columns, rows, [False] * len(table.columns))


def _finding(f: Finding) -> str:
    label = _SEVERITY_LABEL[f.severity]
    lines = [
        f"### {label} · {escape_text(f.title)} ({code_span(f.rule_id)})",
        prose(f.summary, line_start=True),
    ]
    if f.table is not None and f.table.rows:
        lines.append(_evidence_table(f.table))
    lines.append(f"**Do this:** {prose(f.recommendation)}")
    return "\n\n".join(lines)


def _findings_section(report: Report) -> str:
    parts = ["## Findings"]
    if report.findings:
        parts.extend(_finding(f) for f in report.findings)
    else:
        parts.append("No rule fired on this input.")
    if report.skipped:
        items = "\n".join(f"- {code_span(s.rule_id)}: {prose(s.reason)}" for s in report.skipped)
        parts.append(f"### Skipped rules\n\n{items}")
    return "\n\n".join(parts)


def render(report: Report) -> str:
    """The whole report as Markdown text (ends with a newline)."""
    out = [f"# {escape_text(report.title)}"]
    if report.config_lines:
        out.append("  \n".join(_inlines(line) for line in report.config_lines))
    if report.warnings:
        items = "\n".join(f"- {escape_text(w)}" for w in report.warnings)
        out.append(f"> **Warnings while reading the input**\n>\n{_quote(items)}")
    out.append("## Headline\n\n" + _table(report.headline.columns, report.headline.rows, ()))
    if report.verdict is not None:
        out.append("**Verdict:** " + _inlines(report.verdict.parts, line_start=False))
    out.extend(_section(s) for s in report.sections if s.lead)
    out.append(_findings_section(report))
    out.extend(_section(s) for s in report.sections if not s.lead)
    if report.footnote:
        out.append(
            "## How to read this report\n\n" + "\n\n".join(_block(p) for p in report.footnote)
        )
    return "\n\n".join(out).rstrip() + "\n"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines())
