"""Per-rank parsing by a local process pool or by Ray gives the tables of a serial parse.

The reference is the plain serial parse of the same directory (`parsers.kineto.parse`, one
rank after the other in this process); the executors must reproduce it exactly, rank
order, op ids and meta included. Ray tests start a local Ray (skipped when Ray is not
installed; CI installs the ``ray`` extra).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SAMPLES, TRACES, needs_shared, shared_trace
from gpu_trace_analyzer.cli import main
from gpu_trace_analyzer.executor import ExecutorOptions, parse_ranks
from gpu_trace_analyzer.parsers import kineto
from gpu_trace_analyzer.parsers.errors import BadConfigError, EmptyTraceError
from gpu_trace_analyzer.parsers.schema import TABLE_NAMES, TraceTables
from gpu_trace_analyzer.trace import load


def assert_same(expected: TraceTables, got: TraceTables) -> None:
    for name in TABLE_NAMES:
        assert expected.table(name).equals(got.table(name)), name
    assert expected.meta == got.meta


def _directories() -> list[Path]:
    """The multi-rank traces: the synthetic one, and the real one when ../shared is there."""
    real = TRACES / "hta/trace_filter"
    return [SAMPLES / "synthetic_2rank", *([real] if real.is_dir() else [])]


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_pool_matches_the_serial_parse(jobs: int) -> None:
    directory = SAMPLES / "synthetic_2rank"
    expected = kineto.parse(directory)
    got = load([directory], ExecutorOptions(kind="local", jobs=jobs))
    assert_same(expected, got)
    assert got.ranks() == [0, 1]


@needs_shared
def test_local_pool_on_real_ranks() -> None:
    directory = shared_trace("hta/trace_filter")
    assert_same(kineto.parse(directory), load([directory], ExecutorOptions(jobs=2)))


def test_errors_in_a_worker_keep_their_type_and_file(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "synthetic_2rank" / "rank-0.json.gz", tmp_path / "rank-0.json.gz")
    empty = tmp_path / "rank-1.json"
    empty.write_text('{"traceEvents": []}')
    files = sorted(tmp_path.iterdir())
    with pytest.raises(EmptyTraceError) as serial:
        kineto.parse(tmp_path)
    with pytest.raises(EmptyTraceError) as pooled:
        parse_ranks(files, ExecutorOptions(jobs=2))
    assert str(pooled.value) == str(serial.value)
    assert str(empty) in str(pooled.value)


def test_options_are_checked() -> None:
    with pytest.raises(BadConfigError, match="at least 1"):
        ExecutorOptions(jobs=0)
    with pytest.raises(BadConfigError, match="needs --executor ray"):
        ExecutorOptions(ray_address="127.0.0.1:6379")
    with pytest.raises(BadConfigError, match="unknown executor"):
        ExecutorOptions(kind="dask")


def test_ray_missing_is_one_line_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code = main([str(SAMPLES / "synthetic_2rank"), "--executor", "ray", "--format", "md"])
    err = capsys.readouterr().err
    assert code == BadConfigError.exit_code
    assert err.count("\n") == 1
    assert "pip install '.[ray]'" in err


def test_cli_jobs_one_gives_the_same_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = SAMPLES / "synthetic_2rank"
    assert main([str(directory), "-o", str(tmp_path / "a.md")]) == 0
    assert main([str(directory), "--jobs", "1", "-o", str(tmp_path / "b.md")]) == 0
    assert (tmp_path / "a.md").read_text() == (tmp_path / "b.md").read_text().replace(
        "b_files", "a_files"
    )


@pytest.fixture(scope="module")
def local_ray() -> Iterator[object]:
    """One local Ray for the Ray tests of this module, shut down after them."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")
    from gpu_trace_analyzer.executor import _start_ray

    _start_ray(ray, None)
    yield ray
    ray.shutdown()


def test_ray_matches_the_local_executor(local_ray: object) -> None:
    for directory in _directories():
        local = load([directory], ExecutorOptions(kind="local", jobs=2))
        on_ray = load([directory], ExecutorOptions(kind="ray"))
        assert_same(local, on_ray)


def test_ray_carries_errors_back(local_ray: object, tmp_path: Path) -> None:
    empty = tmp_path / "rank-0.json"
    empty.write_text('{"traceEvents": []}')
    with pytest.raises(EmptyTraceError, match=r"rank-0\.json"):
        parse_ranks([empty], ExecutorOptions(kind="ray"))
