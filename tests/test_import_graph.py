"""The flow runs one way: parsers -> analyzer model and metrics -> rules; report model -> renderers.

Every module under `parsers/`, `analyzer/` and `rules/` is parsed with `ast` (no import is
executed) and each of its project imports, at module level or inside a function, is checked:

- a rule (any module in `rules/` but the loader `rules.all`) imports only `rules.base` and the
  analyzer's model and metrics: `analyzer.context`, `analyzer.findings`, `analyzer.config`,
  `analyzer.devices` (the device peaks the rules compare against), `analyzer.metrics.*`,
  `analyzer.report.fmt` (unit formatting) and `parsers.schema` (the canonical tables' types).
  Never another rule: what several rules share lives in `analyzer.metrics`;
- a renderer (every module of `analyzer.report.formats.RENDERERS`) imports only the report
  model: `analyzer.report.model`, `analyzer.findings`, `analyzer.report.fmt`,
  `analyzer.untrusted`;
- a parser never imports `analyzer` or `rules`;
- a metric never imports `rules` nor the report layer (the flow does not turn back).

A failure lists every offending import as ``module:line imports target``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from gpu_trace_analyzer.report.formats import RENDERERS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("analyzer", "parsers", "rules")
IMPORT_ROOT = "gpu_trace_analyzer"

RULE_ALLOWED = (
    "rules.base",
    "analyzer.context",
    "analyzer.findings",
    "analyzer.config",
    "analyzer.devices",
    "analyzer.metrics",
    "analyzer.report.fmt",
    "parsers.schema",
)
RENDERER_ALLOWED = (
    "analyzer.report.model",
    "analyzer.findings",
    "analyzer.report.fmt",
    "analyzer.untrusted",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    """True when ``name`` is a module or package of the source tree."""
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from`` import reads (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if not (ROOT.joinpath(*package) / "__init__.py").is_file():
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for each import of a project module in the file at ``path``."""
    return source_imports(path.read_text(encoding="utf-8"), _module_name(path))


def source_imports(source: str, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for each project import in ``source``, the text of ``module``.

    ``from pkg import name`` counts as ``pkg.name`` when that is a module (``from
    analyzer.metrics import timeline``), else as ``pkg``.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=module)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, source_name(alias.name)) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            origin = source_name(_resolve(module, node))
            for alias in node.names:
                full = f"{origin}.{alias.name}"
                found.append((node.lineno, full if _is_module(full) else origin))
    return [(line, name) for line, name in found if name.split(".")[0] in PACKAGES]


def source_name(name: str) -> str:
    """An installed module name in source-folder terms: ``gpu_trace_analyzer.rules.x`` is
    ``rules.x``, ``gpu_trace_analyzer.parsers.x`` is ``parsers.x``, ``gpu_trace_analyzer.x``
    is ``analyzer.x`` (pyproject.toml's package-dir mapping); other names unchanged."""
    head, _, tail = name.partition(".")
    if head != IMPORT_ROOT:
        return name
    first = tail.split(".", 1)[0]
    if first in ("parsers", "rules"):
        return tail
    return "analyzer" + ("." + tail if tail else "")


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))
    }


def _within(name: str, allowed: tuple[str, ...]) -> bool:
    return any(name == a or name.startswith(a + ".") for a in allowed)


def _offences(modules: dict[str, Path], allowed: tuple[str, ...]) -> list[str]:
    return [
        f"{module}:{line} imports {target}"
        for module, path in modules.items()
        for line, target in project_imports(path)
        if not _within(target, allowed)
    ]


def test_the_scan_sees_the_project() -> None:
    """The checks below are not vacuous: the scan finds the rules, the renderers and imports."""
    modules = _modules()
    assert "rules.gpu_idle" in modules
    assert "parsers.kineto" in modules
    assert all(source_name(name) in modules for name in RENDERERS.values())
    imports = dict((t, line) for line, t in project_imports(modules["rules.gpu_idle"]))
    assert "rules.base" in imports and "analyzer.metrics.timeline" in imports


def test_rules_import_only_the_base_and_the_analyzers_model_and_metrics() -> None:
    rules = {
        m: p
        for m, p in _modules().items()
        if m.startswith("rules.") and m not in ("rules.all", "rules.base")
    }
    assert len(rules) >= 20
    offences = _offences(rules, RULE_ALLOWED)
    assert not offences, "rules import outside rules.base and the analyzer's model/metrics:\n" + (
        "\n".join(offences)
    )


def test_renderers_import_only_the_report_model() -> None:
    modules = _modules()
    renderers = {source_name(m): modules[source_name(m)] for m in RENDERERS.values()}
    offences = _offences(renderers, RENDERER_ALLOWED)
    assert not offences, "renderers import beyond the report model:\n" + "\n".join(offences)


def test_parsers_never_import_the_analyzer_or_rules() -> None:
    parsers = {m: p for m, p in _modules().items() if m.split(".")[0] == "parsers"}
    offences = _offences(parsers, ("parsers",))
    assert not offences, "parsers import the analyzer or rules:\n" + "\n".join(offences)


def test_metrics_never_import_rules_or_the_report() -> None:
    metrics = {m: p for m, p in _modules().items() if m.startswith("analyzer.metrics")}
    offences = [
        f"{module}:{line} imports {target}"
        for module, path in metrics.items()
        for line, target in project_imports(path)
        if target.split(".")[0] == "rules" or _within(target, ("analyzer.report",))
    ]
    assert not offences, "metrics import rules or the report layer:\n" + "\n".join(offences)


def test_a_cross_rule_import_is_caught() -> None:
    """The checker itself: a rule importing another rule or the engine, even lazily, is caught."""
    source = (ROOT / "rules" / "gpu_idle.py").read_text(encoding="utf-8")
    lines = len(source.splitlines())
    source += (
        "\n\ndef _late() -> None:\n"
        "    from gpu_trace_analyzer.rules.comm_overhead import bus_factor\n"
        "    from gpu_trace_analyzer import engine\n"
    )
    offences = [
        (line, target)
        for line, target in source_imports(source, "rules.gpu_idle")
        if not _within(target, RULE_ALLOWED)
    ]
    assert offences == [
        (lines + 4, "rules.comm_overhead"),
        (lines + 5, "analyzer.engine"),
    ]
