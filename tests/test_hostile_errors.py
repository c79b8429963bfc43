"""Class 3: no internal error from an input. Realistic broken inputs (an Nsight export
without its kernel table, TEXT or NULL in integer columns, dangling string ids, nameless
kernels and ops, times and ids beyond int64 or past 2262, shapes whose product overflows,
unparseable dates, deeply nested JSON, unusable output paths) give a report with a warning
or a one-line error with a documented exit code, never exit 70 or a traceback."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SAMPLES
from hostile_support import check_run, dump_json, load_json_trace, run_cli

NSYS_EDITS: dict[str, list[str]] = {
    "no_kernel_table": ["DROP TABLE CUPTI_ACTIVITY_KIND_KERNEL"],
    "no_gpu_tables": [
        "DROP TABLE CUPTI_ACTIVITY_KIND_KERNEL",
        "DROP TABLE CUPTI_ACTIVITY_KIND_MEMCPY",
        "DROP TABLE CUPTI_ACTIVITY_KIND_MEMSET",
    ],
    "text_in_start": ["UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET start = 'abc' WHERE rowid % 3 = 0"],
    "null_in_end": ["UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET end = NULL WHERE rowid % 2 = 0"],
    "text_in_correlation": ["UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET correlationId = 'x'"],
    "dangling_name_ids": ["UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET shortName = 987654321"],
    "null_kernel_names": [
        "UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET shortName = NULL, demangledName = NULL"
    ],
    "real_beyond_int64": ["UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET start = 1e30 WHERE rowid = 1"],
    "end_before_start": ["UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET end = start - 1000"],
    "huge_grid": ["UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET gridX = 9223372036854775807"],
    "no_string_ids": ["DROP TABLE StringIds"],
    "null_gpu_name": ["UPDATE TARGET_INFO_GPU SET name = NULL, smCount = 'many'"],
    "blob_in_name_id": ["UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET shortName = x'00ff'"],
    "nvtx_text_null": ["UPDATE NVTX_EVENTS SET text = NULL, textId = 424242"],
}


_RELAX = [  # the same table without NOT NULL constraints, so NULLs can be written
    "CREATE TABLE k2 AS SELECT * FROM CUPTI_ACTIVITY_KIND_KERNEL",
    "DROP TABLE CUPTI_ACTIVITY_KIND_KERNEL",
    "ALTER TABLE k2 RENAME TO CUPTI_ACTIVITY_KIND_KERNEL",
]


def _nsys(tmp: Path, edits: list[str]) -> Path:
    path = Path(shutil.copy(SAMPLES / "nsys_sample.sqlite", tmp / "export.sqlite"))
    conn = sqlite3.connect(path)
    if any("NULL" in sql and "KERNEL" in sql for sql in edits):
        edits = [*_RELAX, *edits]
    for sql in edits:
        conn.execute(sql)
    conn.commit()
    conn.close()
    return path


def _edit_events(
    pick: Callable[[dict[str, Any]], bool], edit: Callable[[dict[str, Any]], None]
) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        doc = load_json_trace(SAMPLES / "synthetic_train.json.gz")
        for index, event in enumerate(doc["traceEvents"]):
            if pick(event) and index % 3 == 0:
                edit(event)
        return dump_json(doc, tmp / "edited.json")

    return make


def _is(cat: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("cat") == cat


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda e: e.__setitem__(key, value)


def _set_arg(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda e: e.setdefault("args", {}).__setitem__(key, value)


def _deep(tmp: Path) -> Path:
    doc = load_json_trace(SAMPLES / "synthetic_train.json.gz")
    text = dump_json(doc, tmp / "x.json").read_text()
    nested = "[" * 200_000 + "]" * 200_000
    text = text.replace('"args": {', f'"args": {{"deep": {nested}, ', 1)
    path = tmp / "deep.json"
    path.write_text(text)
    return path


def _csv_dates(tmp: Path) -> Path:
    path = tmp / "dcgm.csv"
    path.write_text(
        "timestamp,hostname,gpu,DCGM_FI_PROF_SM_ACTIVE,POWER\n"
        "2024-05-01T10:00:00Z,n1,0,0.5,300.5\n"
        "yesterday at noon,n1,0,0.6,301.5\n"
        "2024-13-45T99:99:99Z,n1,0,0.6,301.5\n"
    )
    return path


def _csv_all_bad_dates(tmp: Path) -> Path:
    path = tmp / "dcgm.csv"
    path.write_text("timestamp,gpu,POWER\nnot a date,0,300\n99999999999999999999999,0,1\n")
    return path


KINETO_EDITS: dict[str, Callable[[Path], Path]] = {
    "ts_1e30": _edit_events(_is("kernel"), _set("ts", 1e30)),
    "ts_past_2262": _edit_events(_is("cpu_op"), _set("ts", 1e16)),
    "dur_huge": _edit_events(_is("kernel"), _set("dur", 2**70)),
    "dur_negative": _edit_events(_is("cpu_op"), _set("dur", -5)),
    "dur_text": _edit_events(_is("kernel"), _set("dur", "abc")),
    "external_id_2p70": _edit_events(_is("cpu_op"), _set_arg("External id", 2**70)),
    "correlation_2p70": _edit_events(_is("kernel"), _set_arg("correlation", 2**70)),
    "input_dims_overflow": _edit_events(
        _is("cpu_op"), _set_arg("Input Dims", [[2**40, 2**40, 2**40], [-1, 2**62]])
    ),
    "input_dims_wrong_type": _edit_events(_is("cpu_op"), _set_arg("Input Dims", "3x3")),
    "op_without_name": _edit_events(_is("cpu_op"), lambda e: e.pop("name", None)),
    "kernel_name_null": _edit_events(_is("kernel"), _set("name", None)),
    "kernel_name_number": _edit_events(_is("kernel"), _set("name", 12345)),
    "pid_text": _edit_events(_is("kernel"), _set("pid", "gpu zero")),
    "tid_huge": _edit_events(_is("cpu_op"), _set("tid", 2**65)),
    "args_not_object": _edit_events(_is("kernel"), _set("args", [1, 2, 3])),
    "grid_wrong": _edit_events(_is("kernel"), _set_arg("grid", "big")),
    "deep_nesting": _deep,
    "csv_bad_dates": _csv_dates,
    "csv_only_bad_dates": _csv_all_bad_dates,
}


def _nsys_edit(edits: list[str]) -> Callable[[Path], Path]:
    return lambda tmp: _nsys(tmp, edits)


for _name, _edits in NSYS_EDITS.items():
    KINETO_EDITS[f"nsys_{_name}"] = _nsys_edit(_edits)


@pytest.mark.parametrize("name", sorted(KINETO_EDITS))
def test_broken_input_is_a_report_or_one_line(name: str, tmp_path: Path) -> None:
    trace = KINETO_EDITS[name](tmp_path)
    out = tmp_path / "out" / "r.md"
    broken = check_run([trace, "-o", out], [trace], out)
    assert not broken, broken


def test_output_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    trace = SAMPLES / "synthetic_train.json.gz"
    assert not check_run([trace, "-o", tmp_path / "afile" / "r.md"], [trace])
    assert not check_run(
        [trace, "-o", tmp_path / "r.md", "--charts-dir", tmp_path / "afile"], [trace]
    )
    assert not check_run(["export", trace, "--parquet", tmp_path / "afile"], [trace])


@pytest.mark.parametrize("redirect", ["closed", "full"])
def test_stdout_closed_or_full(redirect: str) -> None:
    """stdout closed (``>&-``) or full (``>/dev/full``): one line, exit 2-5, or 0."""
    trace = SAMPLES / "synthetic_train.json.gz"
    code = "from gpu_trace_analyzer.cli import entry; entry()"
    args = [sys.executable, "-c", code, str(trace), "--format", "md"]
    if redirect == "full" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    stdout: Any = None
    if redirect == "full":
        stdout = open("/dev/full", "w")  # noqa: SIM115
    proc = subprocess.run(
        args,
        cwd=REPO,
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        close_fds=True,
        pass_fds=(),
        preexec_fn=(lambda: __import__("os").close(1)) if redirect == "closed" else None,
    )
    if stdout is not None:
        stdout.close()
    assert proc.returncode in (0, 2, 3), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") <= 1, proc.stderr


def test_unreadable_directory_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory that cannot be listed (``chmod 000``; simulated, since root reads all)."""
    folder = Path(shutil.copytree(SAMPLES / "synthetic_2rank", tmp_path / "ranks"))
    real = os.scandir

    def refuse(path: Any = ".") -> Any:
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", refuse)
    run = run_cli([folder, "-o", tmp_path / "r.md"])
    assert run.code == 3 and "Permission denied" in run.stderr, run


def test_read_only_output_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-o`` into a read-only folder (simulated: root may write anywhere)."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "ro" / "r.md"
    run = run_cli([SAMPLES / "synthetic_train.json.gz", "-o", out])
    assert run.code == 2 and "Permission denied" in run.stderr and run.stderr.count("\n") == 1
    assert not out.exists()
