"""The rule contract and the one registry every rule is listed in.

A rule is a class with a stable ``id``, a ``title`` (no numbers), the tables or metrics it
``needs``, a frozen dataclass of thresholds (``Config``) with documented defaults, and a
``check`` that yields findings. Rules never print or plot.

``needs`` names canonical tables (``kernels``, ``ops``, ``counters`` ...) that must have rows,
or capabilities: ``shapes`` (ops carry ``Input Dims``), ``steps``, ``multi_rank``,
``memory_events``. The engine records a rule whose needs are unmet as skipped, with the reason.
A rule whose inputs are alternatives (one source or another) may also define a static
``skip_reason(ctx) -> str | None``; the engine asks it after ``needs`` are met.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """Base of every rule's thresholds; subclasses add fields with defaults."""


class Rule(Protocol):
    """What the engine needs from a rule class."""

    id: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    needs: ClassVar[frozenset[str]]
    Config: ClassVar[type[Any]]

    def check(self, ctx: AnalysisContext, cfg: Any) -> Iterable[Finding]:
        """Yield findings (none when the condition does not hold)."""
        ...


_REGISTRY: dict[str, type[Rule]] = {}

R = TypeVar("R")


def register(cls: R) -> R:
    """Class decorator: add a rule to the registry under its ``id`` (ids are unique)."""
    rule_id: str = cls.id  # type: ignore[attr-defined]
    if rule_id in _REGISTRY and _REGISTRY[rule_id] is not cls:
        raise ValueError(f"duplicate rule id {rule_id!r}")
    _REGISTRY[rule_id] = cls  # type: ignore[assignment]
    return cls


def registry() -> dict[str, type[Rule]]:
    """Every registered rule by id (importing `rules.all` first registers the built-ins)."""
    return dict(_REGISTRY)
