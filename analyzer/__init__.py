"""GPU profiler trace analyzer: canonical tables in, insight report out.

``from analyzer import load`` is the library API (`analyzer.api`); it is imported on first
use, so that ``import analyzer`` stays cheap and the CLI can tune polars' allocator before
polars is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Analysis", "__version__", "load"]

if TYPE_CHECKING:
    from gpu_trace_analyzer.api import Analysis, load


def __getattr__(name: str) -> Any:
    """`load` and `Analysis` from `analyzer.api`, imported when first asked for."""
    if name in ("load", "Analysis"):
        from gpu_trace_analyzer import api

        return getattr(api, name)
    raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
