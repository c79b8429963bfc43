"""JSON renderer: the `Report` as one JSON document (schema in the README).

Top-level keys: ``schema_version``, ``title``, ``config`` (lines of text), ``headline``
(``columns``/``rows``), ``findings`` and ``skipped`` (as in
``analyzer/report/findings_schema.json``), ``sections`` (``key``, ``title``, ``tables``,
``text``, ``images``), ``warnings``, ``data`` (machine-readable figures whose keys carry
their units: ``busy_ns``, ``idle_pct``; kept for compatibility), and since schema_version 2
every figure raw (`analyzer.raw_figures.RAW_KEYS`): ``headline_figures``, ``op_groups``,
``kernels``, ``op_families``, ``steps``, ``idle_ledger``. Schema:
``analyzer/report/report_schema.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from gpu_trace_analyzer.findings import finding_to_json
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
from gpu_trace_analyzer.untrusted import clean_tree

EXTENSION = ".json"
SCHEMA_VERSION = 2


def _text(parts: Sequence[Inline]) -> str:
    return "".join(p.text if isinstance(p, Code | Strong) else p for p in parts)


def _cell(value: Cell) -> Any:
    return value.text if isinstance(value, Code) else value


def _table(t: Table) -> dict[str, Any]:
    return {"columns": list(t.columns), "rows": [[_cell(c) for c in row] for row in t.rows]}


def _section(key: str, title: str, blocks: Sequence[Block]) -> dict[str, Any]:
    return {
        "key": key,
        "title": title,
        "text": [_text(b.parts) for b in blocks if isinstance(b, Paragraph)],
        "tables": [_table(b) for b in blocks if isinstance(b, Table)],
        "images": [{"path": b.path, "alt": b.alt} for b in blocks if isinstance(b, Image)],
    }


def to_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-ready data, every string cleaned (`analyzer.untrusted`):
    a consumer that prints a name must not print a trace's escape sequences."""
    cleaned: dict[str, Any] = clean_tree(
        {
            "schema_version": SCHEMA_VERSION,
            "title": report.title,
            "config": [_text(line) for line in report.config_lines],
            "headline": _table(report.headline),
            "verdict": None if report.verdict is None else _text(report.verdict.parts),
            "findings": [finding_to_json(f) for f in report.findings],
            "skipped": [{"rule_id": s.rule_id, "reason": s.reason} for s in report.skipped],
            "sections": [_section(s.key or s.title, s.title, s.blocks) for s in report.sections],
            "warnings": list(report.warnings),
            "data": {k: v for k, v in report.data.items() if k != "raw"},
            **_raw(report),
        }
    )
    return cleaned


def _raw(report: Report) -> dict[str, Any]:
    """The raw figures (`analyzer.raw_figures`), each under its own top-level key."""
    raw = report.data.get("raw")
    return dict(raw) if isinstance(raw, dict) else {}


def render(report: Report) -> str:
    """The report as indented JSON text (ends with a newline)."""
    encoded = msgspec.json.encode(to_dict(report), enc_hook=_enc_hook)
    return msgspec.json.format(encoded, indent=2).decode() + "\n"


def _enc_hook(obj: Any) -> Any:
    """Encode values msgspec does not know natively (numpy scalars from polars, NaN)."""
    if hasattr(obj, "item"):
        return obj.item()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")
