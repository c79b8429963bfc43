"""The report's sections, in report order: the one list `build_report` walks.

Every builder has one signature, ``build(ctx, charts) -> Section | None``: None when its
inputs are absent; with ``charts``, it also computes its charts as `Chart` blocks (Vega-Lite
specs; drawing them to files is the writer's step, `analyzer.report.chart_files`). Adding a
section is one module and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable

from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.report.model import Section

#: ``build(ctx, charts)``: the section, or None when the trace lacks its inputs.
SectionBuilder = Callable[[AnalysisContext, bool], Section | None]


def registry() -> list[SectionBuilder]:
    """Where the time goes (shown right after the headline), idle time by cause, roofline,
    DCGM counters, per-rank breakdown, collectives against the link, top kernels, memory
    operations."""
    from gpu_trace_analyzer.sections import (
        collectives,
        counters,
        idle_ledger,
        kernels,
        memops,
        overview,
        roofline,
        time_by_family,
    )

    return [
        time_by_family.build,
        idle_ledger.build,
        roofline.build,
        counters.build,
        overview.ranks_section,
        collectives.build,
        kernels.build,
        memops.build,
    ]
