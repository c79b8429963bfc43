"""The rule engine: needs, skips, errors, selection, ordering, exit codes and the JSON schema."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
import synthetic
from conftest import shared_trace
from gpu_trace_analyzer.config import load_config
from gpu_trace_analyzer.context import AnalysisContext, AnalysisOptions
from gpu_trace_analyzer.engine import (
    EngineResult,
    exit_code_for,
    findings_to_json,
    rules_listing,
    run_rules,
)
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity, SkippedRule
from gpu_trace_analyzer.parsers import kineto
from gpu_trace_analyzer.parsers.errors import BadConfigError
from gpu_trace_analyzer.parsers.schema import (
    DeviceInfo,
    RankInfo,
    TraceMeta,
    TraceTables,
    table_from_columns,
)
from gpu_trace_analyzer.rules.all import load_builtin_rules

SCHEMA_PATH = (
    Path(__file__).resolve().parent.parent / "analyzer" / "report" / "findings_schema.json"
)


@dataclass(frozen=True, slots=True)
class _Cfg:
    impact_ns: int = 10
    """Time at stake of the finding the test rule yields."""


def _rule(
    rule_id: str,
    needs: frozenset[str] = frozenset(),
    severity: Severity = Severity.WARNING,
    raises: bool = False,
    wrong_id: bool = False,
) -> type[Any]:
    """A throw-away rule class yielding one finding (or raising)."""

    class _Rule:
        id: ClassVar[str] = rule_id
        title: ClassVar[str] = f"test rule {rule_id}"
        description: ClassVar[str] = "a rule made by the engine tests"
        Config: ClassVar[type[_Cfg]] = _Cfg

        def check(self, ctx: AnalysisContext, cfg: _Cfg) -> Iterable[Finding]:
            if raises:
                raise RuntimeError("boom")
            yield Finding(
                rule_id="someone-else" if wrong_id else rule_id,
                severity=severity,
                title=self.title,
                summary=f"{rule_id} fired with {cfg.impact_ns} ns at stake.",
                evidence={"impact_ns": cfg.impact_ns, "ratio": math.nan},
                recommendation="Do the thing.",
                scope=Scope(rank=0, start_ns=0, end_ns=100),
                impact_ns=cfg.impact_ns,
                table=EvidenceTable(columns=["name", "ms"], rows=[["k<1>", 1.5], ["x", None]]),
            )

    _Rule.needs = needs  # type: ignore[attr-defined]
    return _Rule


@pytest.fixture
def only_test_rules(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, type[Any]]]:
    """Replace the registry by test rules for one test (restored afterwards)."""
    load_builtin_rules()
    monkeypatch.setattr(rules.base, "_REGISTRY", {})
    made: dict[str, type[Any]] = {}

    def add(cls: type[Any]) -> None:
        rules.base.register(cls)
        made[cls.id] = cls

    add(_rule("t-warn", severity=Severity.WARNING))
    add(_rule("t-crit", severity=Severity.CRITICAL))
    add(_rule("t-info", severity=Severity.INFO))
    add(_rule("t-steps", needs=frozenset({"steps"})))
    add(_rule("t-shapes", needs=frozenset({"ops", "shapes"})))
    add(_rule("t-multi", needs=frozenset({"multi_rank"})))
    add(_rule("t-memory", needs=frozenset({"memory_events"})))
    add(_rule("t-device", needs=frozenset({"device_spec"})))
    add(_rule("t-kernels", needs=frozenset({"kernels"})))
    add(_rule("t-raise", raises=True))
    add(_rule("t-wrong", wrong_id=True))
    add(_rule("t-typo", needs=frozenset({"stepz"})))
    yield made


def _tables(device_name: str = "Acme Frobnicator 9000", ranks: int = 1) -> TraceTables:
    """One kernel per rank, one CPU op without shapes, no steps or memory events."""
    meta = TraceMeta(
        source="kineto",
        paths=("x.json",),
        ranks=tuple(RankInfo(rank=r, path=f"r{r}.json") for r in range(ranks)),
        devices=tuple(DeviceInfo(rank=r, device=0, name=device_name) for r in range(ranks)),
    )
    kernels = table_from_columns(
        "kernels",
        {
            "rank": list(range(ranks)),
            "device": [0] * ranks,
            "stream": [7] * ranks,
            "name": ["k"] * ranks,
            "category": ["other"] * ranks,
            "start_ns": [0] * ranks,
            "dur_ns": [10] * ranks,
        },
    )
    ops = table_from_columns(
        "ops",
        {"rank": [0], "op_id": [0], "name": ["aten::add"], "start_ns": [0], "dur_ns": [5]},
    )
    return TraceTables(meta=meta, kernels=kernels, ops=ops)


def _run(tmp_path: Path, tables: TraceTables, **kw: Any) -> EngineResult:
    return run_rules(AnalysisContext(tables), load_config(tmp_path, None), **kw)


def test_unmet_needs_are_skipped_with_reasons(
    tmp_path: Path, only_test_rules: dict[str, type[Any]]
) -> None:
    result = _run(tmp_path, _tables())
    reasons = {s.rule_id: s.reason for s in result.skipped}
    assert reasons["t-steps"].startswith("no profiled steps")
    assert reasons["t-shapes"] == "no CPU op shapes (profile with record_shapes=True)"
    assert reasons["t-multi"].startswith("single-rank trace")
    assert reasons["t-memory"] == "no `[memory]` events (profile with profile_memory=True)"
    assert reasons["t-device"].startswith("device unknown: ")
    assert "pass --device" in reasons["t-device"]
    assert reasons["t-raise"] == "internal error in rule t-raise: RuntimeError('boom')"
    assert reasons["t-wrong"].startswith("internal error in rule t-wrong: ValueError(")
    assert (
        reasons["t-typo"] == "internal error in rule t-typo: ValueError(\"unknown need 'stepz'\")"
    )
    assert {e.rule_id for e in result.errors} == {"t-raise", "t-wrong", "t-typo"}
    assert sorted(result.ran) == ["t-crit", "t-info", "t-kernels", "t-warn"]


def test_needs_met(tmp_path: Path, only_test_rules: dict[str, type[Any]]) -> None:
    result = _run(tmp_path, _tables(device_name="NVIDIA H100 80GB HBM3", ranks=2))
    assert {"t-multi", "t-device", "t-kernels"} <= set(result.ran)
    empty = TraceTables(meta=TraceMeta(source="kineto", paths=()))
    skipped = {s.rule_id: s.reason for s in _run(tmp_path, empty).skipped}
    assert skipped["t-kernels"].startswith("no GPU kernels in the trace")


def test_findings_ordered_by_severity_then_impact(
    tmp_path: Path, only_test_rules: dict[str, type[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text("[rules.t-kernels]\nimpact_ns = 500\n", encoding="utf-8")
    cfg = load_config(tmp_path, conf)
    result = run_rules(AnalysisContext(_tables()), cfg)
    order = [(f.rule_id, f.severity, f.impact_ns) for f in result.findings]
    assert order == [
        ("t-crit", Severity.CRITICAL, 10),
        ("t-kernels", Severity.WARNING, 500),
        ("t-warn", Severity.WARNING, 10),  # t-device is skipped: the device is unknown
        ("t-info", Severity.INFO, 10),
    ]


def test_select_and_skip(tmp_path: Path, only_test_rules: dict[str, type[Any]]) -> None:
    result = _run(tmp_path, _tables(), select=["t-warn", "t-steps"], skip=["t-steps"])
    assert result.ran == ["t-warn"]
    assert result.skipped == []
    with pytest.raises(BadConfigError, match=r"--rules: unknown rule id\(s\) nope"):
        _run(tmp_path, _tables(), select=["nope"])
    with pytest.raises(BadConfigError, match=r"--skip: unknown rule id\(s\) zip"):
        _run(tmp_path, _tables(), skip=["zip"])


def test_disabled_rule_is_skipped_unless_selected(
    tmp_path: Path, only_test_rules: dict[str, type[Any]]
) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text("[rules.t-warn]\nenabled = false\n", encoding="utf-8")
    cfg = load_config(tmp_path, conf)
    result = run_rules(AnalysisContext(_tables()), cfg)
    assert SkippedRule("t-warn", f"disabled in {conf}") in result.skipped
    assert "t-warn" not in result.ran
    chosen = run_rules(AnalysisContext(_tables()), cfg, select=["t-warn"])
    assert chosen.ran == ["t-warn"]


def test_bad_device_option_is_a_user_error(
    tmp_path: Path, only_test_rules: dict[str, type[Any]]
) -> None:
    ctx = AnalysisContext(_tables(), options=AnalysisOptions(device_override="no-such-gpu"))
    with pytest.raises(BadConfigError, match="--device"):
        run_rules(ctx, load_config(tmp_path, None), select=["t-device"])


@pytest.mark.parametrize(
    ("severities", "fail_on", "code"),
    [
        ([], Severity.WARNING, 0),
        ([Severity.INFO], Severity.WARNING, 0),
        ([Severity.INFO, Severity.WARNING], Severity.WARNING, 1),
        ([Severity.WARNING], Severity.CRITICAL, 0),
        ([Severity.CRITICAL], Severity.CRITICAL, 1),
        ([Severity.CRITICAL], Severity.WARNING, 1),
        ([Severity.CRITICAL], None, 0),
    ],
)
def test_exit_code_for(severities: list[Severity], fail_on: Severity | None, code: int) -> None:
    findings = [Finding("x", s, "t", "s", {}, "r") for s in severities]
    assert exit_code_for(findings, fail_on) == code


def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def test_json_matches_schema(tmp_path: Path, only_test_rules: dict[str, type[Any]]) -> None:
    result = _run(tmp_path, _tables())
    doc = findings_to_json(result)
    jsonschema.Draft202012Validator.check_schema(_schema())
    jsonschema.validate(doc, _schema(), cls=jsonschema.Draft202012Validator)
    text = json.dumps(doc, allow_nan=False)  # NaN evidence must have become null
    first = json.loads(text)["findings"][0]
    assert first["rule_id"] == "t-crit"
    assert first["severity"] == "critical"
    assert first["evidence"] == {"impact_ns": 10, "ratio": None}
    assert first["scope"] == {
        "rank": 0,
        "device": None,
        "stream": None,
        "start_ns": 0,
        "end_ns": 100,
    }
    assert first["table"] == {"columns": ["name", "ms"], "rows": [["k<1>", 1.5], ["x", None]]}
    assert {
        "rule_id": "t-raise",
        "reason": "internal error in rule t-raise: RuntimeError('boom')",
    } in doc["skipped"]
    for finding in doc["findings"]:
        widths = {len(row) for row in finding["table"]["rows"]}
        assert widths <= {len(finding["table"]["columns"])}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["findings"][0].update(severity="fatal"),
        lambda d: d["findings"][0].pop("scope"),
        lambda d: d["findings"][0]["evidence"].update(bad=[1, 2]),
        lambda d: d["findings"][0].update(impact_ns=-1),
        lambda d: d["findings"][0].update(extra=1),
        lambda d: d["skipped"].append({"rule_id": "Bad Id", "reason": "x"}),
    ],
)
def test_schema_rejects_malformed_documents(
    tmp_path: Path, only_test_rules: dict[str, type[Any]], mutate: Any
) -> None:
    doc = findings_to_json(_run(tmp_path, _tables()))
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, _schema(), cls=jsonschema.Draft202012Validator)


def test_rules_listing_of_the_real_registry(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text("[rules.gpu-idle]\nwarning_idle_pct = 22\nenabled = false\n", encoding="utf-8")
    listing = {info.id: info for info in rules_listing(load_config(tmp_path, conf))}
    assert set(listing) == set(load_builtin_rules())
    mine = {
        "gpu-idle",
        "launch-bound",
        "comm-overhead",
        "host-sync",
        "pageable-memcpy",
        "small-memcpy",
        "stragglers",
    }
    assert mine <= set(listing)
    idle = listing["gpu-idle"]
    assert not idle.enabled
    assert idle.needs == ("kernels",)
    warn = next(t for t in idle.thresholds if t.name == "warning_idle_pct")
    assert (warn.default, warn.current, warn.type_name) == (15.0, 22.0, "float")
    assert warn.doc.startswith("Idle share of the window")
    for rule_id in mine:
        info = listing[rule_id]
        assert info.title and info.description and info.thresholds
        assert not any(ch.isdigit() for ch in info.title), info.title
        assert all(t.doc for t in info.thresholds), rule_id


def test_rule_registered_after_config_runs_with_defaults(
    tmp_path: Path, only_test_rules: dict[str, type[Any]]
) -> None:
    cfg = load_config(tmp_path, None)
    rules.base.register(_rule("t-late", severity=Severity.INFO))
    result = run_rules(AnalysisContext(_tables()), cfg, select=["t-late"])
    (finding,) = result.findings
    assert finding.evidence["impact_ns"] == _Cfg().impact_ns


MINE = [
    "comm-overhead",
    "gpu-idle",
    "host-sync",
    "launch-bound",
    "pageable-memcpy",
    "small-memcpy",
    "stragglers",
]


def test_fail_on_with_real_and_synthetic_traces(tmp_path: Path) -> None:
    """--fail-on semantics end to end: the input-bound ResNet has a critical finding
    (dataloader-stall: the idle ledger charges most of its 43% idle to the DataLoader); the
    generator's healthy run has none at warning or above."""
    cfg = load_config(tmp_path, None)
    path = shared_trace("tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz")
    bound = run_rules(AnalysisContext(kineto.parse(path)), cfg, select=[*MINE, "dataloader-stall"])
    assert exit_code_for(bound.findings, Severity.CRITICAL) == 1
    assert exit_code_for(bound.findings, Severity.WARNING) == 1
    assert exit_code_for(bound.findings, None) == 0
    healthy = synthetic.healthy().write(tmp_path / "healthy.json.gz")
    calm = run_rules(AnalysisContext(kineto.parse(healthy)), cfg, select=MINE)
    assert exit_code_for(calm.findings, Severity.WARNING) == 0
    assert exit_code_for(calm.findings, Severity.CRITICAL) == 0
