"""The renderer map: output format name to the module that renders a `Report` in it.

Each module has ``render(report) -> str``; adding a format is one module and one entry
here (the CLI's ``--format`` choices and `Analysis.report` read this map). Modules are
imported when used: rich, for one, is only loaded for the terminal format.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Final

from gpu_trace_analyzer.report.model import Report

#: Format name (``--format``) to the module rendering it.
RENDERERS: Final = {
    "md": "gpu_trace_analyzer.report.markdown",
    "json": "gpu_trace_analyzer.report.json_report",
    "term": "gpu_trace_analyzer.report.terminal",
}


def renderer(name: str) -> Callable[[Report], str]:
    """The ``render`` function of format ``name`` (KeyError names the known formats)."""
    if name not in RENDERERS:
        raise KeyError(f"unknown report format {name!r}; known: {', '.join(RENDERERS)}")
    render: Callable[[Report], str] = importlib.import_module(RENDERERS[name]).render
    return render


def render(report: Report, name: str) -> str:
    """``report`` as text in format ``name``."""
    return renderer(name)(report)
