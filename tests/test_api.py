"""The library API (`analyzer.api`): what `load` accepts, what an `Analysis` holds, that
its reports equal the CLI's byte for byte, that the README's example runs, and that a
loaded trace is freed after ``del``."""

from __future__ import annotations

import gc
import re
import weakref
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, SAMPLES, shared_trace
from gpu_trace_analyzer import Analysis, load
from gpu_trace_analyzer.cli import main
from gpu_trace_analyzer.errors import BadConfigError
from gpu_trace_analyzer.parsers.schema import TABLE_NAMES
from gpu_trace_analyzer.report.model import Chart

TRAIN = SAMPLES / "synthetic_train.json.gz"
DCGM = SAMPLES / "dcgm" / "compute_bound.dmon.txt"
H100_BERT = "tracelens/h100__gaunernst_bert-small-uncased__1016001.json.gz"


def _readme_example() -> str:
    """The Python block under the README's "Library API" heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Library API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README's Library API section has no python block"
    return match.group(1)


def test_readme_example_is_five_lines() -> None:
    lines = [line for line in _readme_example().splitlines() if line.strip()]
    assert len(lines) == 5
    assert lines[0] == "from analyzer import load"


@pytest.mark.parametrize("where", ["sample", "shared"])
def test_readme_example_runs(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = TRAIN if where == "sample" else shared_trace(H100_BERT)
    code = _readme_example().replace('"sample_traces/synthetic_train.json.gz"', repr(str(trace)))
    assert repr(str(trace)) in code  # the example loads the path it shows
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    a = namespace["a"]
    assert isinstance(a, Analysis)
    # The text the example built is the CLI's report of the same trace, charts included.
    assert main([str(trace), "-o", str(tmp_path / "cli" / "report.md")]) == 0
    cli = (tmp_path / "cli" / "report.md").read_text(encoding="utf-8")
    assert namespace["text"] == cli
    assert "## Roofline" in cli and "](report_files/roofline_" in cli
    drawn = sorted(p.name for p in (tmp_path / "report_files").iterdir())
    assert drawn == sorted(p.name for p in (tmp_path / "cli" / "report_files").iterdir())
    assert a.findings_frame.height == len(a.findings) > 0


def test_load_accepts_str_path_list_and_directory() -> None:
    one = load(str(TRAIN))
    assert one.meta.paths == (str(TRAIN),)
    assert load(TRAIN).kernels.equals(one.kernels)
    ranks = load(SAMPLES / "synthetic_2rank")
    assert sorted(ranks.kernels["rank"].unique().to_list()) == [0, 1]
    both = load([TRAIN, DCGM])
    assert one.counters.height == 0 and both.counters.height > 0
    assert both.kernels.equals(one.kernels)
    via_kwarg = load(TRAIN, dcgm=DCGM)
    assert via_kwarg.counters.equals(both.counters)
    assert via_kwarg.meta.source == both.meta.source == "kineto+dcgm"


def test_tables_meta_steps_and_frames() -> None:
    a = load(TRAIN)
    for name in TABLE_NAMES:
        assert isinstance(a.table(name), pl.DataFrame)
        assert a.table(name) is getattr(a.tables, name)
    assert a.meta is a.tables.meta
    # The step table: one row per profiled step, as the trace's ProfilerStep annotations say.
    assert a.steps.height == a.tables.steps.height > 0
    assert a.steps["step"].to_list() == sorted(a.tables.steps["step"].to_list())
    frame = a.findings_frame
    assert frame["rule_id"].to_list() == [f.rule_id for f in a.findings]
    assert frame["severity"].to_list() == [f.severity.label for f in a.findings]
    assert frame["impact_ns"].to_list() == [f.impact_ns for f in a.findings]
    assert frame["impact_ns"].dtype == pl.Int64
    skipped = a.skipped_frame
    assert skipped.columns == ["rule_id", "reason"]
    assert skipped.rows() == [(s.rule_id, s.reason) for s in a.skipped]
    assert a.result is a.result  # rules ran once


def test_report_has_every_section_without_a_registry_argument(tmp_path: Path) -> None:
    """`build_report` used to drop Roofline and DCGM unless the caller passed them."""
    a = load(shared_trace(H100_BERT), dcgm=DCGM)
    keys = [s.key for s in a.report_model().sections]
    assert keys[:4] == ["time_by_family", "idle_ledger", "roofline", "counters"]
    assert "kernels" in keys or any("kernel" in k for k in keys)
    assert not any(isinstance(b, Chart) for s in a.report_model().sections for b in s.blocks)
    md = a.report("md")
    assert "## Roofline" in md and "## GPU counters (DCGM)" in md
    assert "](" not in md.split("## Roofline", 1)[1].split("\n## ", 1)[0]  # no folder: no chart
    assert a.report("json").startswith("{\n")
    assert "Roofline" in a.report("term")


def test_report_equals_the_cli_in_every_format(tmp_path: Path) -> None:
    a = load(TRAIN, dcgm=DCGM)
    for fmt in ("md", "json", "term"):
        out = tmp_path / fmt / f"report.{fmt}"
        assert main([str(TRAIN), str(DCGM), "--format", fmt, "-o", str(out)]) == 0
        charts = out.parent / "report_files" if fmt != "term" else None
        assert a.report(fmt, charts_dir=charts) == out.read_text(encoding="utf-8")


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(BadConfigError, match="unknown format 'html'"):
        load(TRAIN).report("html")


def test_a_deleted_analysis_frees_its_trace() -> None:
    a = load(TRAIN)
    a.report("md")  # fills every cache: metrics, derived frames, rule results
    assert a.tables.derived  # derived frames are cached on the tables the analysis owns
    refs: list[weakref.ref[object]] = [weakref.ref(a), weakref.ref(a.tables)]
    refs += [weakref.ref(frame) for frame in a.tables.derived.values()]
    kernels = a.kernels  # a frame the caller keeps does not keep the bundle alive
    del a
    gc.collect()
    assert [ref() for ref in refs] == [None] * len(refs)
    assert kernels.height > 0
