"""The optional report sections, in report order, each `build(ctx, out_dir)`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from analyzer.context import AnalysisContext
from analyzer.report.model import Section

SectionBuilder = Callable[[AnalysisContext, Path | None], Section | None]


def registry() -> list[SectionBuilder]:
    """Where the time goes (shown right after the headline), roofline, DCGM counters: each
    returns None when its inputs are absent."""
    from analyzer.sections import counters, roofline, time_by_family

    return [time_by_family.build, roofline.build, counters.build]
