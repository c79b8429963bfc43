"""Import every rule module in this package so that each registers itself."""

from __future__ import annotations

import importlib
import pkgutil

from gpu_trace_analyzer import rules
from gpu_trace_analyzer.rules.base import Rule, registry

_NOT_RULES = frozenset({"all", "base"})


def load_builtin_rules() -> dict[str, type[Rule]]:
    """Import the built-in rule modules (idempotent) and return the registry."""
    for info in pkgutil.iter_modules(rules.__path__):
        if info.name not in _NOT_RULES and not info.name.startswith("_"):
            importlib.import_module(f"{rules.__name__}.{info.name}")
    return registry()
