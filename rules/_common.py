"""Names some rules import from here; the helpers themselves live in
`analyzer.metrics.host_blocking` so that rules never import each other (not a rule:
`rules.all` skips modules starting with ``_``)."""

from __future__ import annotations

from gpu_trace_analyzer.metrics.host_blocking import copies_with_callers, window_scope

__all__ = ["copies_with_callers", "window_scope"]
