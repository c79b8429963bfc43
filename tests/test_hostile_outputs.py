"""Class 1: never write over an input. Every output path (``-o``, the chart folder,
``--charts-dir``, ``export --parquet``) that is, holds or lies inside an input is refused
with exit 2 and the input is left byte-for-byte unchanged; reports are written atomically."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SAMPLES
from hostile_support import digest, run_cli

Case = Callable[[Path], tuple[list[str], list[Path]]]


def _trace(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(SAMPLES / "synthetic_train.json.gz", tmp / "train.json.gz"))


def _ranks(tmp: Path) -> Path:
    return Path(shutil.copytree(SAMPLES / "synthetic_2rank", tmp / "ranks"))


def _o_is_input(tmp: Path) -> tuple[list[str], list[Path]]:
    t = _trace(tmp)
    return [str(t), "-o", str(t)], [t]


def _o_symlink_to_input(tmp: Path) -> tuple[list[str], list[Path]]:
    t = _trace(tmp)
    (tmp / "report.md").symlink_to(t)
    return [str(t), "-o", str(tmp / "report.md")], [t]


def _o_hardlink_to_input(tmp: Path) -> tuple[list[str], list[Path]]:
    t = _trace(tmp)
    os.link(t, tmp / "report.md")
    return [str(t), "-o", str(tmp / "report.md")], [t]


def _o_dotdot_spelling(tmp: Path) -> tuple[list[str], list[Path]]:
    t = _trace(tmp)
    (tmp / "sub").mkdir()
    return [str(t), "-o", str(tmp / "sub" / ".." / t.name)], [t]


def _o_inside_rank_dir(tmp: Path) -> tuple[list[str], list[Path]]:
    d = _ranks(tmp)
    return [str(d), "-o", str(d / "report.md")], [d]


def _o_is_rank_file(tmp: Path) -> tuple[list[str], list[Path]]:
    d = _ranks(tmp)
    return [str(d), "-o", str(d / "rank-0.json.gz")], [d]


def _charts_dir_is_input_dir(tmp: Path) -> tuple[list[str], list[Path]]:
    d = _ranks(tmp)
    return [str(d), "-o", str(tmp / "r.md"), "--charts-dir", str(d)], [d]


def _charts_dir_holds_input(tmp: Path) -> tuple[list[str], list[Path]]:
    t = _trace(tmp / "data")
    return [str(t), "-o", str(tmp / "r.md"), "--charts-dir", str(tmp)], [t]


def _default_charts_dir_holds_input(tmp: Path) -> tuple[list[str], list[Path]]:
    t = _trace(tmp / "r_files")
    return [str(t), "-o", str(tmp / "r.md")], [t]


def _charts_dir_is_input_file(tmp: Path) -> tuple[list[str], list[Path]]:
    t = _trace(tmp)
    return [str(t), "-o", str(tmp / "r.md"), "--charts-dir", str(t)], [t]


def _parquet_into_its_input(tmp: Path) -> tuple[list[str], list[Path]]:
    t = _trace(tmp)
    run_cli(["export", str(t), "--parquet", str(tmp / "pq")])
    return ["export", str(tmp / "pq"), "--parquet", str(tmp / "pq")], [tmp / "pq"]


def _parquet_holds_input(tmp: Path) -> tuple[list[str], list[Path]]:
    t = _trace(tmp)
    return ["export", str(t), "--parquet", str(tmp)], [t]


def _parquet_is_input_file(tmp: Path) -> tuple[list[str], list[Path]]:
    t = _trace(tmp)
    return ["export", str(t), "--parquet", str(t)], [t]


def _o_is_dcgm_input(tmp: Path) -> tuple[list[str], list[Path]]:
    t = _trace(tmp)
    m = Path(shutil.copy(SAMPLES / "dcgm" / "compute_bound.dmon.txt", tmp / "m.txt"))
    return [str(t), str(m), "-o", str(m)], [t, m]


CASES: dict[str, Case] = {
    f.__name__.lstrip("_"): f
    for f in (
        _o_is_input,
        _o_symlink_to_input,
        _o_hardlink_to_input,
        _o_dotdot_spelling,
        _o_inside_rank_dir,
        _o_is_rank_file,
        _charts_dir_is_input_dir,
        _charts_dir_holds_input,
        _default_charts_dir_holds_input,
        _charts_dir_is_input_file,
        _parquet_into_its_input,
        _parquet_holds_input,
        _parquet_is_input_file,
        _o_is_dcgm_input,
    )
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_over_an_input_is_refused(name: str, tmp_path: Path) -> None:
    argv, inputs = CASES[name](tmp_path)
    before = digest(inputs)
    run = run_cli(argv)
    assert run.code == 2, (run.code, run.stderr)
    assert run.stderr.count("\n") == 1 and "input" in run.stderr
    assert digest(inputs) == before


def test_an_interrupted_write_leaves_the_old_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report goes to a temporary file beside the target, renamed over it at the end:
    a failure before the rename leaves the old report whole and no temporary file."""
    t = _trace(tmp_path / "in")
    out = tmp_path / "out" / "r.md"
    out.parent.mkdir()
    out.write_text("old report\n")

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    run = run_cli([str(t), "-o", str(out)])
    assert run.code == 2 and "No space left" in run.stderr
    assert out.read_text() == "old report\n"
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".analyze-")]


def test_a_good_output_is_written_whole(tmp_path: Path) -> None:
    t = _trace(tmp_path / "in")
    out = tmp_path / "out" / "r.md"
    run = run_cli([str(t), "-o", str(out)])
    assert run.code == 0, run.stderr
    assert out.read_text().startswith("# ")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
