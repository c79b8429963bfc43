"""What rules produce: `Finding`, its `Severity` and `Scope`.

A finding's ``title`` is stable wording without numbers (diffs and CI compare on it); the
``summary`` is one sentence with the numbers; ``evidence`` holds the figures behind it under
unit-suffixed keys; ``table`` is an optional evidence table the renderers show as is.
`finding_to_json` is the finding's JSON form, here beside the model so that the JSON renderer
and the engine share it without the renderer importing the engine.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """Ordered so that ``max()`` of severities is the worst one."""

    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        """Lower-case name as used on the command line and in JSON."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """`Severity` from its lower- or upper-case name."""
        return cls[text.strip().upper()]


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a finding applies. ``None`` means all (every rank, device, stream)."""

    rank: int | None = None
    device: int | None = None
    stream: int | None = None
    start_ns: int | None = None
    end_ns: int | None = None


@dataclass(frozen=True, slots=True)
class EvidenceTable:
    """A small table of evidence: header names (with units) and rows of cells."""

    columns: Sequence[str]
    rows: Sequence[Sequence[str | int | float | None]]


@dataclass(frozen=True, slots=True)
class Finding:
    """One diagnosis: what is wrong, the numbers that show it, and what to change."""

    rule_id: str
    severity: Severity
    title: str
    summary: str
    evidence: Mapping[str, float | int | str]
    recommendation: str
    scope: Scope = field(default_factory=Scope)
    impact_ns: int = 0  # time at stake, for ordering findings of equal severity
    table: EvidenceTable | None = None


@dataclass(frozen=True, slots=True)
class SkippedRule:
    """A rule that did not run, and why (its inputs are absent)."""

    rule_id: str
    reason: str


def order_findings(findings: Sequence[Finding]) -> list[Finding]:
    """Findings by severity (worst first), then by time at stake (largest first)."""
    return sorted(findings, key=lambda f: (-int(f.severity), -f.impact_ns, f.rule_id))


def finding_to_json(finding: Finding) -> dict[str, Any]:
    """One finding as a JSON-ready dict (non-finite numbers become null)."""
    scope = finding.scope
    table = None
    if finding.table is not None:
        table = {
            "columns": [str(c) for c in finding.table.columns],
            "rows": [[_json_scalar(cell) for cell in row] for row in finding.table.rows],
        }
    return {
        "rule_id": finding.rule_id,
        "severity": finding.severity.label,
        "title": finding.title,
        "summary": finding.summary,
        "evidence": {str(k): _json_scalar(v) for k, v in finding.evidence.items()},
        "recommendation": finding.recommendation,
        "scope": {
            "rank": scope.rank,
            "device": scope.device,
            "stream": scope.stream,
            "start_ns": scope.start_ns,
            "end_ns": scope.end_ns,
        },
        "impact_ns": int(finding.impact_ns),
        "table": table,
    }


def _json_scalar(value: Any) -> str | int | float | None:
    """A cell or evidence value as JSON allows it: NaN and infinities become null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):  # bool and numpy integers included
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    return str(value)
