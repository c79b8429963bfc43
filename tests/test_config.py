"""Threshold configuration: defaults, pyproject.toml, --config, and every way to get it wrong."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from gpu_trace_analyzer.config import default_config, load_config, threshold_docs, thresholds
from gpu_trace_analyzer.parsers.errors import BadConfigError
from gpu_trace_analyzer.rules.gpu_idle import GpuIdleConfig


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, None)
    assert cfg.sources == ()
    assert cfg.rule_config("gpu-idle") == GpuIdleConfig()
    assert cfg.rule_config("gpu-idle").warning_idle_pct == 15.0
    assert cfg.rule_config("gpu-idle").critical_idle_pct == 40.0
    assert cfg.is_enabled("gpu-idle")
    assert set(cfg.rules) == set(default_config().rules)


def test_pyproject_without_analyzer_section_gives_defaults(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    cfg = load_config(tmp_path, None)
    assert cfg.sources == ()
    assert cfg.rule_config("gpu-idle") == GpuIdleConfig()


def test_pyproject_overrides_and_widens_int_to_float(tmp_path: Path) -> None:
    _write(
        tmp_path / "pyproject.toml",
        "[tool.analyzer.rules.gpu-idle]\nwarning_idle_pct = 20\ntop_gaps = 3\n",
    )
    cfg = load_config(tmp_path, None)
    rule = cfg.rule_config("gpu-idle")
    assert rule.warning_idle_pct == 20.0
    assert isinstance(rule.warning_idle_pct, float)
    assert rule.top_gaps == 3
    assert rule.critical_idle_pct == 40.0  # untouched default
    assert cfg.sources == (str(tmp_path / "pyproject.toml"),)
    assert cfg.rules["gpu-idle"].overridden_by == {
        "warning_idle_pct": str(tmp_path / "pyproject.toml"),
        "top_gaps": str(tmp_path / "pyproject.toml"),
    }


def test_only_the_cwd_pyproject_is_read(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", "[tool.analyzer.rules.gpu-idle]\nwarning_idle_pct = 20\n")
    child = tmp_path / "sub"
    child.mkdir()
    assert load_config(child, None).rule_config("gpu-idle").warning_idle_pct == 15.0


def test_config_file_wins_key_by_key(tmp_path: Path) -> None:
    _write(
        tmp_path / "pyproject.toml",
        "[tool.analyzer.rules.gpu-idle]\nwarning_idle_pct = 20\ncritical_idle_pct = 50\n",
    )
    extra = _write(tmp_path / "ci.toml", "[rules.gpu-idle]\nwarning_idle_pct = 25.5\n")
    cfg = load_config(tmp_path, extra)
    rule = cfg.rule_config("gpu-idle")
    assert rule.warning_idle_pct == 25.5
    assert rule.critical_idle_pct == 50.0
    assert cfg.sources == (str(tmp_path / "pyproject.toml"), str(extra))


def test_config_file_in_pyproject_layout(tmp_path: Path) -> None:
    other = _write(
        tmp_path / "other.toml", "[tool.analyzer.rules.host-sync]\nwarning_bubble_pct = 9\n"
    )
    assert load_config(tmp_path, other).rule_config("host-sync").warning_bubble_pct == 9.0


def test_enabled_false_disables(tmp_path: Path) -> None:
    conf = _write(tmp_path / "c.toml", "[rules.small-memcpy]\nenabled = false\n")
    cfg = load_config(tmp_path, conf)
    assert not cfg.is_enabled("small-memcpy")
    assert cfg.is_enabled("gpu-idle")
    assert cfg.rules["small-memcpy"].overridden_by["enabled"] == str(conf)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[rules.gpu-idel]\nwarning_idle_pct = 1\n", "unknown rule id 'gpu-idel'"),
        ("[rules.gpu-idle]\nwarning_idle = 1\n", "[rules.gpu-idle] warning_idle: unknown setting"),
        ("[rules.gpu-idle]\nwarning_idle_pct = 'high'\n", "expected a number, got string"),
        ("[rules.gpu-idle]\nwarning_idle_pct = true\n", "expected a number, got boolean"),
        ("[rules.gpu-idle]\ntop_gaps = 2.5\n", "top_gaps: expected an integer, got number"),
        ("[rules.gpu-idle]\nenabled = 'no'\n", "enabled: expected true or false"),
        ("[rules.gpu-idle]\nwarning_idle_pct = -1\n", "expected a finite number >= 0"),
        ("[rules.gpu-idle]\nwarning_idle_pct = nan\n", "expected a finite number >= 0"),
        ("[rulez.gpu-idle]\nwarning_idle_pct = 1\n", "unknown key 'rulez'"),
        ("rules = 3\n", "[rules] must be a table"),
        ("[rules]\ngpu-idle = 3\n", "[rules.gpu-idle] must be a table"),
        ("[rules.gpu-idle\n", "invalid TOML"),
    ],
)
def test_mistakes_name_the_file_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    conf = _write(tmp_path / "bad.toml", text)
    with pytest.raises(BadConfigError) as err:
        load_config(tmp_path, conf)
    message = str(err.value)
    assert fragment in message
    assert message.startswith(str(conf))
    assert err.value.exit_code == 2


def test_mistake_in_pyproject_names_pyproject(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", "[tool.analyzer.rules.gpu-idle]\nbogus = 1\n")
    with pytest.raises(BadConfigError, match=r"pyproject\.toml: \[rules\.gpu-idle\] bogus"):
        load_config(tmp_path, None)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(BadConfigError, match="config file not found"):
        load_config(tmp_path, tmp_path / "absent.toml")


def test_thresholds_in_declaration_order() -> None:
    names = [f.name for f in dataclasses.fields(GpuIdleConfig)]
    assert list(thresholds(GpuIdleConfig())) == names
    assert names[:2] == ["warning_idle_pct", "critical_idle_pct"]


def test_threshold_docs_from_docstrings_comments_and_metadata() -> None:
    @dataclasses.dataclass(frozen=True)
    class Sample:
        a_pct: float = 1.0
        """Share of the window
        that matters."""
        b_ns: int = 2  # two nanoseconds
        c_count: int = dataclasses.field(default=3, metadata={"doc": "from metadata"})
        d_bytes: int = 4

    docs = threshold_docs(Sample)
    assert docs == {
        "a_pct": "Share of the window that matters.",
        "b_ns": "two nanoseconds",
        "c_count": "from metadata",
    }


def test_every_threshold_of_my_rules_is_documented() -> None:
    from gpu_trace_analyzer.rules import (
        comm_overhead,
        gpu_idle,
        host_sync,
        launch_bound,
        pageable_memcpy,
        small_memcpy,
        stragglers,
    )

    configs = [
        comm_overhead.CommOverheadConfig,
        gpu_idle.GpuIdleConfig,
        host_sync.HostSyncConfig,
        launch_bound.LaunchBoundConfig,
        pageable_memcpy.PageableMemcpyConfig,
        small_memcpy.SmallMemcpyConfig,
        stragglers.StragglersConfig,
    ]
    for config in configs:
        docs = threshold_docs(config)
        missing = [f.name for f in dataclasses.fields(config) if not docs.get(f.name)]
        assert not missing, f"{config.__name__}: undocumented {missing}"
