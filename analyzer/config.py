"""Rule thresholds: each rule's documented defaults, overridden from TOML files.

Where overrides come from, lowest to highest precedence:

1. the defaults of each rule's frozen ``Config`` dataclass;
2. ``[tool.analyzer]`` in ``pyproject.toml`` in the current working directory only (parent
   directories are not searched, so a report never depends on where a checkout happens to
   sit), laid out as ``[tool.analyzer.rules.gpu-idle]`` then ``warning_idle_pct = 20``;
3. a file given with ``--config FILE.toml``, laid out as ``[rules.gpu-idle]`` (a file that
   holds ``[tool.analyzer]``, such as another project's ``pyproject.toml``, is read from
   there instead). It wins key by key over the pyproject values.

Besides its thresholds, every rule table accepts ``enabled = false``. An unknown rule id, an
unknown threshold name, a value of the wrong type or a negative or non-finite number raises
`BadConfigError` naming the file and the key: a typo must never be silently ignored.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_trace_analyzer.parsers.errors import BadConfigError
from gpu_trace_analyzer.rules.all import load_builtin_rules
from gpu_trace_analyzer.rules.base import Rule

#: Keys allowed directly under ``[tool.analyzer]`` (or at the top of a --config file).
TOP_LEVEL_KEYS: frozenset[str] = frozenset({"rules"})
#: The key every rule table accepts besides its thresholds.
ENABLED_KEY = "enabled"


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """One rule's effective configuration: on or off, and its thresholds."""

    enabled: bool
    config: Any  # an instance of the rule's Config dataclass
    overridden_by: Mapping[str, str]  # threshold or `enabled` -> file that set it


@dataclass(frozen=True, slots=True)
class AnalyzerConfig:
    """The effective configuration of every registered rule, and the files it came from."""

    rules: Mapping[str, RuleSettings]
    sources: tuple[str, ...] = ()

    def rule_config(self, rule_id: str) -> Any:
        """The thresholds of one rule (its ``Config`` instance)."""
        return self.rules[rule_id].config

    def is_enabled(self, rule_id: str) -> bool:
        """Whether the configuration leaves the rule on."""
        return self.rules[rule_id].enabled


def default_config() -> AnalyzerConfig:
    """Every registered rule on, with its default thresholds."""
    rules = load_builtin_rules()
    return AnalyzerConfig(
        rules={rid: RuleSettings(True, cls.Config(), {}) for rid, cls in sorted(rules.items())}
    )


def load_config(cwd: Path, config_file: Path | None) -> AnalyzerConfig:
    """Defaults, then ``cwd/pyproject.toml``'s ``[tool.analyzer]``, then ``config_file``."""
    registry = load_builtin_rules()
    layers: list[tuple[str, Mapping[str, Any]]] = []
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        tool = _read_toml(pyproject).get("tool", {})
        section = tool.get("analyzer") if isinstance(tool, dict) else None
        if section is not None:
            layers.append((str(pyproject), _expect_table(section, pyproject, "tool.analyzer")))
    if config_file is not None:
        if not config_file.is_file():
            raise BadConfigError("config file not found", config_file)
        data = _read_toml(config_file)
        tool = data.get("tool")
        if isinstance(tool, dict) and "analyzer" in tool:
            layers.append(
                (str(config_file), _expect_table(tool["analyzer"], config_file, "tool.analyzer"))
            )
        else:
            layers.append((str(config_file), data))
    for source, layer in layers:
        _check_layer(source, layer, registry)
    settings = {rid: _settings_for(rid, cls, layers) for rid, cls in sorted(registry.items())}
    return AnalyzerConfig(rules=settings, sources=tuple(s for s, _ in layers))


def thresholds(config: Any) -> dict[str, Any]:
    """A rule ``Config`` instance as ``{field: value}`` in declaration order."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; any read or syntax problem is a `BadConfigError` naming it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise BadConfigError(f"invalid TOML: {exc}", path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BadConfigError(f"cannot read config file: {exc}", path) from exc


def _expect_table(value: Any, source: Path | str, key: str) -> Mapping[str, Any]:
    """``value`` if it is a TOML table, else a `BadConfigError` for ``key``."""
    if not isinstance(value, dict):
        raise BadConfigError(f"[{key}] must be a table, got {_describe(value)}", source)
    return value


def _check_layer(source: str, layer: Mapping[str, Any], registry: Mapping[str, Any]) -> None:
    """Reject unknown top-level keys and unknown rule ids in one file."""
    for key in layer:
        if key not in TOP_LEVEL_KEYS:
            allowed = ", ".join(sorted(TOP_LEVEL_KEYS))
            raise BadConfigError(f"unknown key {key!r} (allowed: {allowed})", source)
    rules = _expect_table(layer.get("rules", {}), source, "rules")
    for rule_id in rules:
        if rule_id not in registry:
            raise BadConfigError(
                f"[rules.{rule_id}]: unknown rule id {rule_id!r} "
                f"(known: {', '.join(sorted(registry))})",
                source,
            )


def _settings_for(
    rule_id: str, cls: type[Rule], layers: list[tuple[str, Mapping[str, Any]]]
) -> RuleSettings:
    """Apply every layer's table for one rule over its defaults, checking names and types."""
    hints = _field_types(cls.Config)
    values: dict[str, Any] = {}
    enabled = True
    origin: dict[str, str] = {}
    for source, layer in layers:
        rules = _expect_table(layer.get("rules", {}), source, "rules")
        if rule_id not in rules:
            continue
        table = _expect_table(rules[rule_id], source, f"rules.{rule_id}")
        for key, raw in table.items():
            where = f"[rules.{rule_id}] {key}"
            if key == ENABLED_KEY:
                enabled = _coerce(raw, bool, source, where)
            elif key in hints:
                values[key] = _coerce(raw, hints[key], source, where)
            else:
                known = ", ".join([ENABLED_KEY, *hints])
                raise BadConfigError(f"{where}: unknown setting (known: {known})", source)
            origin[key] = source
    return RuleSettings(enabled=enabled, config=cls.Config(**values), overridden_by=origin)


def _field_types(config_cls: type[Any]) -> dict[str, Any]:
    """Resolved type of every field of a rule's ``Config`` dataclass."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def _coerce(raw: Any, expected: Any, source: str, where: str) -> Any:
    """A TOML value checked against a threshold's declared type (ints widen to floats)."""
    origin = typing.get_origin(expected)
    if origin is tuple:
        return _coerce_tuple(raw, typing.get_args(expected), source, where)
    if expected is bool:
        if isinstance(raw, bool):
            return raw
    elif expected is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return _non_negative(raw, source, where)
    elif expected is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return _non_negative(float(raw), source, where)
    elif expected is str:
        if isinstance(raw, str):
            return raw
    else:
        raise BadConfigError(f"{where}: setting of unsupported type {expected!r}", source)
    raise BadConfigError(f"{where}: expected {_type_name(expected)}, got {_describe(raw)}", source)


def _coerce_tuple(raw: Any, args: tuple[Any, ...], source: str, where: str) -> tuple[Any, ...]:
    """A TOML array checked element by element against ``tuple[T, ...]``."""
    if not isinstance(raw, list):
        raise BadConfigError(f"{where}: expected an array, got {_describe(raw)}", source)
    element = args[0] if args else str
    return tuple(_coerce(item, element, source, f"{where}[{i}]") for i, item in enumerate(raw))


def _non_negative(value: float, source: str, where: str) -> Any:
    """Thresholds are shares, counts, sizes and durations: finite and never negative."""
    if not math.isfinite(value) or value < 0:
        raise BadConfigError(f"{where}: expected a finite number >= 0, got {value!r}", source)
    return value


def _type_name(expected: Any) -> str:
    """A user-facing name for a threshold type."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(expected, str(expected))


def _describe(value: Any) -> str:
    """A short description of a TOML value for error messages."""
    kind = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "table",
    }
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"


def threshold_docs(config_cls: type[Any]) -> dict[str, str]:
    """The documentation of each threshold of a rule ``Config`` dataclass.

    Taken from, in order: ``field(metadata={"doc": ...})``, the string literal written right
    after the field (a field docstring), or a ``#`` comment on the field's line.
    """
    docs: dict[str, str] = {}
    for f in dataclasses.fields(config_cls):
        doc = f.metadata.get("doc")
        if isinstance(doc, str):
            docs[f.name] = doc
    try:
        lines, _ = inspect.getsourcelines(config_cls)
    except (OSError, TypeError):
        return docs
    source = textwrap.dedent("".join(lines))
    tree = ast.parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    src_lines = source.splitlines()
    for index, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        if name in docs:
            continue
        following = body[index + 1] if index + 1 < len(body) else None
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[name] = " ".join(following.value.value.split())
            continue
        line = src_lines[node.lineno - 1]
        if "#" in line:
            docs[name] = line.split("#", 1)[1].strip()
    return docs
