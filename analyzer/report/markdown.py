"""Markdown renderer: a `Report` as GitHub-flavoured Markdown, ready to paste into a PR.

Every string that may come from a trace is escaped here: plain text has Markdown and HTML
metacharacters backslash-escaped or entity-encoded; code spans use a backtick fence longer
than any backtick run inside; pipes are escaped in table cells (GFM requires it even inside
code spans); newlines never reach a table row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

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

#: GitHub's limit on the body of a comment, in characters: `render_summary` and the diff's
#: comment stay within it.
COMMENT_LIMIT: Final = 65_536
_CUT_NOTE_RESERVE: Final = 160
#: Findings shown in full at the top of a summary.
SUMMARY_FINDINGS: Final = 3

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


def code_cell(text: str) -> str:
    """`code_span` for a table cell: a ``|`` inside would end the cell, so it is escaped."""
    return code_span(text).replace("|", "\\|")


def table_header(columns: Sequence[str], numeric: Sequence[bool]) -> str:
    """A pipe table's header and rule line; numeric columns are right-aligned."""
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    return f"{head}\n{rule}"


def table_row(cells: Sequence[str]) -> str:
    """One pipe-table row of already escaped cells."""
    return "| " + " | ".join(cells) + " |"


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


# --- Size discipline: tables cut by whole rows to fit a limit -----------------------------


@dataclass
class CutTable:
    """A table the budget may cut: fixed text before and after, a header, its rows."""

    before: str
    header: str
    rows: list[str]
    after: str = ""
    kept: int = -1  # rows kept (-1: all)

    def text(self) -> str:
        """The table with the rows kept, and a note saying how many were cut."""
        rows = self.rows if self.kept < 0 else self.rows[: self.kept]
        body = "\n".join([self.header, *rows])
        cut = len(self.rows) - len(rows)
        note = (
            f"\n\n*{cut} more rows cut to fit GitHub's {COMMENT_LIMIT:,}-character comment "
            "limit; `--format json` has every row.*"
            if cut
            else ""
        )
        return f"{self.before}{body}{note}{self.after}"


Piece = str | CutTable


def join_pieces(parts: Sequence[Piece]) -> str:
    """The pieces as one document, blank lines between them (ends with a newline)."""
    return "\n\n".join(p if isinstance(p, str) else p.text() for p in parts).rstrip() + "\n"


def fit(parts: list[Piece], limit: int = COMMENT_LIMIT) -> str:
    """Join ``parts`` within ``limit`` characters: when too long, tables keep rows in
    order (earlier tables first) while the budget lasts; never a partial row."""
    text = join_pieces(parts)
    if len(text) <= limit:
        return text
    tables = [p for p in parts if isinstance(p, CutTable)]
    for t in tables:
        t.kept = 0
    budget = limit - len(join_pieces(parts)) - _CUT_NOTE_RESERVE * len(tables)
    for t in tables:
        kept = 0
        for row in t.rows:
            if len(row) + 1 > budget:
                break
            budget -= len(row) + 1
            kept += 1
        t.kept = kept if kept < len(t.rows) else -1
    return join_pieces(parts)


# --- Summary: one screen, the rest collapsed ----------------------------------------------


def _cut_table(
    columns: Sequence[str], rows: Sequence[Sequence[Cell]], numeric: Sequence[bool] = ()
) -> CutTable:
    header, rule, *body = _table(columns, rows, numeric).split("\n")
    return CutTable("", f"{header}\n{rule}", body)


def _details(summary: str, body: Sequence[Piece]) -> list[Piece]:
    """``body`` inside a ``<details>`` block titled ``summary`` (already escaped); GitHub
    renders Markdown inside it when a blank line follows the summary."""
    return [f"<details>\n<summary>{summary}</summary>", *body, "</details>"]


def _section_pieces(section: Section) -> list[Piece]:
    out: list[Piece] = [
        _cut_table(b.columns, b.rows, b.numeric) if isinstance(b, Table) else _block(b)
        for b in section.blocks
    ]
    return _details(escape_text(section.title), out)


def family_line(report: Report) -> str | None:
    """The "Where the time goes" section as one line: each op family and its share."""
    section = next((s for s in report.sections if s.key == "time_by_family"), None)
    table = next((b for b in section.blocks if isinstance(b, Table)), None) if section else None
    if table is None or len(table.columns) < 2 or not table.rows:
        return None
    shares = " · ".join(f"{_cell(r[0])} {_cell(r[1])}" for r in table.rows)
    return f"**Time by op family:** {shares}"


def _short_finding(f: Finding) -> str:
    label = _SEVERITY_LABEL[f.severity]
    return "\n\n".join(
        [
            f"### {label} · {escape_text(f.title)} ({code_span(f.rule_id)})",
            prose(f.summary, line_start=True),
            f"**Do this:** {prose(f.recommendation)}",
        ]
    )


def _full_finding(f: Finding) -> list[Piece]:
    label = _SEVERITY_LABEL[f.severity]
    out: list[Piece] = [
        f"#### {label} · {escape_text(f.title)} ({code_span(f.rule_id)})",
        prose(f.summary, line_start=True),
    ]
    if f.table is not None and f.table.rows:
        rows: list[list[Cell]] = [
            [Code(v) if isinstance(v, str) and i == 0 else v for i, v in enumerate(row)]
            for row in f.table.rows
        ]
        out.append(_cut_table(f.table.columns, rows))
    out.append(f"**Do this:** {prose(f.recommendation)}")
    return out


def summary_pieces(report: Report) -> list[Piece]:
    """The summary's parts: title, configuration, headline, the time-by-family line, the
    top `SUMMARY_FINDINGS` findings with their advice; then, collapsed, every finding with
    its evidence, the skipped rules, each section, the warnings and how to read it."""
    out: list[Piece] = [f"# {escape_text(report.title)}"]
    if report.config_lines:
        out.append("  \n".join(_inlines(line) for line in report.config_lines))
    if report.warnings:
        n = len(report.warnings)
        out.append(f"> **{n} warning{'s' if n > 1 else ''} while reading the input** (below)")
    out.append("## Headline")
    out.append(_cut_table(report.headline.columns, report.headline.rows))
    line = family_line(report)
    if line:
        out.append(line)
    out.append("## Top findings")
    top = report.findings[:SUMMARY_FINDINGS]
    out.extend(_short_finding(f) for f in top) if top else out.append("No rule fired.")
    if report.findings or report.skipped:
        body: list[Piece] = []
        for f in report.findings:
            body.extend(_full_finding(f))
        if report.skipped:
            body.append(
                "\n".join(f"- {code_span(s.rule_id)}: {prose(s.reason)}" for s in report.skipped)
            )
        n, k = len(report.findings), len(report.skipped)
        title = f"All {n} finding{'s' if n != 1 else ''} with evidence"
        title += f"; {k} skipped rule{'s' if k != 1 else ''}" if k else ""
        out.extend(_details(title, body))
    for section in report.sections:
        out.extend(_section_pieces(section))
    if report.warnings:
        items = "\n".join(f"- {escape_text(w)}" for w in report.warnings)
        out.extend(_details("Warnings while reading the input", [items]))
    if report.footnote:
        out.extend(_details("How to read this report", [_block(p) for p in report.footnote]))
    return out


def render_summary(report: Report, limit: int = COMMENT_LIMIT) -> str:
    """The report on one screen (`summary_pieces`), at most ``limit`` characters: tables are
    cut by whole rows, last ones first, each with a note."""
    return fit(summary_pieces(report), limit)
