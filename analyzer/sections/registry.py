"""The optional report sections, in report order, each `build(ctx, out_dir)`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from analyzer.context import AnalysisContext
from analyzer.report.model import Section

SectionBuilder = Callable[[AnalysisContext, Path | None], Section | None]


def registry() -> list[SectionBuilder]:
    """Roofline, then DCGM counters: each returns None when its inputs are absent."""
    from analyzer.sections import counters, idle_ledger, roofline

    return [roofline.build, counters.build, idle_ledger.build]
