"""Small helpers shared by the section builders."""

from __future__ import annotations

from gpu_trace_analyzer.report.fmt import MAX_NAME_CHARS
from gpu_trace_analyzer.report.fmt import short_name as _short_name


def short_name(name: str, limit: int = MAX_NAME_CHARS) -> str:
    """A kernel or op name for a table cell: `analyzer.report.fmt.short_name` (C++ boilerplate
    dropped, cut in the middle to ``limit`` characters, the functor kept)."""
    return _short_name(name, limit)
