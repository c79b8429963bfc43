"""The `Report` model: what renderers take. Renderers never touch raw tables.

Text that comes from a trace (kernel names, annotations, hostnames) travels as plain `str`
or `Code` and is escaped by every renderer; only the renderer decides how markup looks.
A section is a list of blocks (paragraphs, tables, images), so that a new analysis adds a
section without any renderer changing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpu_trace_analyzer.findings import Finding, SkippedRule


@dataclass(frozen=True, slots=True)
class Code:
    """Inline code: an identifier from the trace (kernel, op, file name), shown verbatim."""

    text: str


@dataclass(frozen=True, slots=True)
class Strong:
    """Emphasized text."""

    text: str


Inline = str | Code | Strong
Cell = str | int | float | Code | None


@dataclass(frozen=True, slots=True)
class Paragraph:
    """A run of inline pieces: plain text (escaped), code, strong."""

    parts: Sequence[Inline]

    @classmethod
    def of(cls, *parts: Inline) -> Paragraph:
        """Paragraph from pieces given as arguments."""
        return cls(tuple(parts))

    @classmethod
    def from_prose(cls, text: str) -> Paragraph:
        """Paragraph from rule-authored prose: `ticked` words become `Code` pieces."""
        pieces = text.split("`")
        if len(pieces) % 2 == 0:  # an unpaired backtick: keep the text as it is
            return cls((text,))
        return cls(tuple(Code(p) if i % 2 else p for i, p in enumerate(pieces) if p))


@dataclass(frozen=True, slots=True)
class Table:
    """A table. Column names carry units; numbers are pre-formatted strings or raw numbers."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    numeric: Sequence[bool] = ()  # per column: right-align (defaults to False)


@dataclass(frozen=True, slots=True)
class Image:
    """A chart written next to the report; ``path`` is relative to the report file."""

    path: str
    alt: str


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart as computed, not yet drawn: its Vega-Lite spec and alt text.

    Section builders return these; only the step that writes a report with a charts folder
    (`analyzer.report.chart_files.write_charts`) draws the spec to ``<stem>.<format>`` files
    and puts an `Image` (then ``caption``, if any) in its place. Without a charts folder the
    block and its caption are left out. Renderers never see a `Chart`.
    """

    spec: Mapping[str, Any]  # the Vega-Lite specification (altair's ``to_dict()``)
    alt: str
    stem: str  # file name without suffix, e.g. ``roofline_h100-sxm``
    formats: tuple[str, ...] = ("svg",)  # the first one is the file the report links
    caption: Paragraph | None = None  # shown under the image


Block = Paragraph | Table | Image | Chart


@dataclass(frozen=True, slots=True)
class Section:
    """A titled part of the report."""

    title: str
    blocks: Sequence[Block]
    key: str = ""  # stable machine name, used by JSON output
    lead: bool = False  # shown right after the headline and verdict, before the findings


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a renderer needs, already computed and formatted."""

    title: str
    config_lines: Sequence[Sequence[Inline]]  # the run's configuration, one line each
    headline: Table
    verdict: Paragraph | None
    findings: Sequence[Finding]
    skipped: Sequence[SkippedRule]
    sections: Sequence[Section]
    warnings: Sequence[str] = ()
    footnote: Sequence[Paragraph] = ()
    data: dict[str, object] = field(default_factory=dict)  # machine-readable figures for JSON
