"""The `analyze` command end to end: every real input, error lines, exit codes, formats."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pytest
from conftest import SAMPLES, TRACES, needs_shared
from gpu_trace_analyzer.cli import main

DOCUMENTED_EXIT_CODES = {0, 3, 4, 5}


def _inputs() -> list[Path]:
    if not TRACES.is_dir():
        return []
    files = [p for p in sorted(TRACES.rglob("*")) if p.is_file() and p.name != "README.md"]
    return [*files, TRACES / "hta" / "trace_filter"]


@needs_shared
@pytest.mark.parametrize("path", _inputs(), ids=lambda p: str(p.relative_to(TRACES)))
def test_every_shared_input_gives_a_report_or_one_clear_line(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.md"
    code = main([str(path), "-o", str(out)])
    captured = capsys.readouterr()
    assert code in DOCUMENTED_EXIT_CODES, captured.err
    assert "Traceback" not in captured.err and "internal error" not in captured.err
    if code == 0:
        text = out.read_text(encoding="utf-8")
        assert text.startswith("# Trace analysis: ")
        assert "## Headline" in text and "## Findings" in text
    else:
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, captured.err
        assert path.name in lines[0]
        assert not out.exists()


@needs_shared
def test_two_rank_directory_report(tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    assert main([str(TRACES / "hta" / "trace_filter"), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "(2 ranks)" in text.splitlines()[0]
    ranks = text.split("## Ranks", 1)[1].split("##", 1)[0]
    rows = [line for line in ranks.splitlines() if line.startswith(("| 0 ", "| 1 "))]
    assert len(rows) == 2


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (b"", 4, "empty file"),
        (b"this is not json at all", 4, ""),
        (b'{"schemaVersion": 1, "events": []}', 4, "traceEvents"),
        (b'{"traceEvents": []}', 5, ""),
    ],
)
def test_bad_inputs_give_one_line_and_documented_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, code: int, words: str
) -> None:
    path = tmp_path / "trace.json"
    path.write_bytes(content)
    assert main([str(path)]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trace.json" in err[0] and words in err[0]
    assert path.read_bytes() == content  # never written to


def test_corrupt_gzip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = gzip.compress(b'{"traceEvents": [' + b'{"ph": "X"},' * 1000 + b"{}]}")
    path = tmp_path / "trace.json.gz"
    path.write_bytes(good[:20] + b"\x00" * 40 + good[60:])
    assert main([str(path)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trace.json.gz" in err[0]


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["/nonexistent/trace.json"]) == 3
    assert "/nonexistent/trace.json" in capsys.readouterr().err


def test_bad_option_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(SAMPLES / "synthetic_train.json.gz"), "--format", "pdf"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_unknown_rule_id_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(SAMPLES / "synthetic_train.json.gz"), "--rules", "no-such-rule"]) == 2
    assert "no-such-rule" in capsys.readouterr().err


def test_fail_on_sets_the_exit_code(tmp_path: Path) -> None:
    sample = str(SAMPLES / "synthetic_train.json.gz")
    out = str(tmp_path / "r.json")
    assert main([sample, "-o", out]) == 0
    severities = {f["severity"] for f in json.loads(Path(out).read_text())["findings"]}
    # The sample is 30% idle: gpu-idle fires as a warning (15% <= idle < 40%).
    assert "warning" in severities and "critical" not in severities
    assert main([sample, "-o", out, "--fail-on", "warning"]) == 1
    assert main([sample, "-o", out, "--fail-on", "critical"]) == 0
    assert main([sample, "-o", out, "--fail-on", "warning", "--skip", "gpu-idle"]) in {0, 1}


def test_json_format_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(SAMPLES / "synthetic_train.json.gz"), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema_version"] == 2
    assert {f["rule_id"] for f in data["findings"]} >= {"gpu-idle"}
    assert (
        data["data"]["kernel_count"]
        == json.loads((SAMPLES / "synthetic_train.truth.json").read_text())["counts"]["kernels"]
    )


def test_rules_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    for rule_id in ("gpu-idle", "comm-overhead", "dataloader-stall", "memory-headroom"):
        assert f"{rule_id}:" in out
    assert "warning_idle_pct" in out or "idle_pct" in out


def test_export_parquet_round_trip_and_duckdb(tmp_path: Path) -> None:
    sample = SAMPLES / "synthetic_train.json.gz"
    out_dir = tmp_path / "tables"
    assert main(["export", str(sample), "--parquet", str(out_dir)]) == 0
    truth = json.loads((SAMPLES / "synthetic_train.truth.json").read_text())
    relation = duckdb.sql(f"select count(*) from '{out_dir / 'kernels.parquet'}'")
    assert relation is not None
    rows = relation.fetchall()
    assert rows[0][0] == truth["counts"]["kernels"]
    # Reading the Parquet directory back gives the same report as the trace itself.
    a, b = tmp_path / "a" / "r.md", tmp_path / "b" / "r.md"  # same name: same chart links
    assert main([str(sample), "-o", str(a)]) == 0
    assert main([str(out_dir), "-o", str(b)]) == 0
    # The title names the input; the rest is the same.
    assert a.read_text().split("\n", 1)[1] == b.read_text().split("\n", 1)[1]


def test_console_script_entry_exits_with_main_code_and_flushes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`entry` skips the interpreter's teardown: the report must still be complete on a
    pipe, and the exit code must be main's (3: missing input)."""
    import subprocess
    import sys

    run = [sys.executable, "-c", "from gpu_trace_analyzer.cli import entry; entry()"]
    sample = str(SAMPLES / "synthetic_train.json.gz")
    ok = subprocess.run([*run, sample], capture_output=True, text=True, check=False)
    assert ok.returncode == main([sample, "--format", "md"])
    assert ok.stdout == capsys.readouterr().out
    assert ok.stdout.count("\n") > 50
    missing = subprocess.run(
        [*run, str(tmp_path / "absent.json")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 3
    assert missing.stderr.startswith("analyze: error: ") and "absent.json" in missing.stderr
