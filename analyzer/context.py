"""`AnalysisContext`: what rules read: the tables, plus derived metrics computed once.

Metrics are pure functions of the tables; the context caches each by name so that rules
asking for the same metric share one computation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gpu_trace_analyzer.parsers.schema import TraceTables

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    """User choices that change analysis, not rendering."""

    device_override: str | None = None  # --device NAME
    peak_tflops: float | None = None  # --peak-tflops for an unknown device
    mem_bw_gbs: float | None = None  # --mem-bw-gbs for an unknown device
    samples_per_step: int | None = None
    link: str | None = None  # --link NAME: the interconnect collectives run over


@dataclass(slots=True)
class AnalysisContext:
    """The tables of one analysis and a cache of metrics derived from them."""

    tables: TraceTables
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    _cache: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str, compute: Callable[[TraceTables], T]) -> T:
        """The metric ``name``, computed by ``compute(tables)`` on first use."""
        if name not in self._cache:
            self._cache[name] = compute(self.tables)
        value: T = self._cache[name]
        return value

    def metric_with_options(
        self, name: str, compute: Callable[[TraceTables, AnalysisOptions], T]
    ) -> T:
        """Like `metric`, for metrics that also depend on the analysis options."""
        if name not in self._cache:
            self._cache[name] = compute(self.tables, self.options)
        value: T = self._cache[name]
        return value

    def has(self, table: str) -> bool:
        """Whether a canonical table has any rows."""
        return self.tables.table(table).height > 0

    def cached(self) -> Mapping[str, Any]:
        """The metrics computed so far (for renderers that show them)."""
        return dict(self._cache)
