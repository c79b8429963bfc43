"""Class 2: bounded memory and time on crafted files. Decompression is streamed with a cap
(DCGM included), every gzip member is read on the streaming path, a huge JSON header is
streamed, padding cannot grow the streaming buffer without bound, SQLite views are
refused and queries have a time budget, FIFOs, sockets, devices and pipes are refused at
once, and ``--jobs`` is capped at the core count."""

from __future__ import annotations

import gzip
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES
from gpu_trace_analyzer.parsers import dcgm, kineto_assemble, kineto_chunks, nsys_db
from gpu_trace_analyzer.parsers.errors import UnreadableInputError
from gpu_trace_analyzer.parsers.kineto import parse_file
from hostile_support import check_run, dump_json, load_json_trace, run_cli

# --- DCGM: decompression bombs stay within the cap ---------------------------------------

CAP = 4 << 20


def _bomb(kind: str) -> bytes:
    """A small .gz that inflates far past `CAP` (several shapes of bomb)."""
    if kind == "zeros":
        return gzip.compress(b"\0" * (40 << 20))
    if kind == "newlines":
        return gzip.compress(b"\n" * (40 << 20))
    if kind == "one_long_line":
        return gzip.compress(b'DCGM_FI_DEV_GPU_UTIL{gpu="0"} ' + b"9" * (40 << 20))
    if kind == "comments":
        return gzip.compress(b"# HELP padding\n" * (3 << 20))
    member = gzip.compress(b"# TYPE x gauge\n" * (1 << 19))  # 7.5 MB each
    return member * 6  # multi-member


@pytest.mark.parametrize("kind", ["zeros", "newlines", "one_long_line", "comments", "members"])
def test_dcgm_bomb_is_refused_within_the_cap(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dcgm, "MAX_TEXT_BYTES", CAP)
    bomb = tmp_path / "metrics.prom.gz"
    bomb.write_bytes(_bomb(kind))
    tracemalloc.start()
    try:
        run = run_cli([bomb, "-o", tmp_path / "r.md"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert run.code in (3, 4), run
    assert run.stderr.count("\n") == 1
    assert peak < 6 * CAP, f"held {peak >> 20} MiB"


def test_dcgm_multi_member_gzip_reads_every_member(tmp_path: Path) -> None:
    text = gzip.decompress((SAMPLES / "dcgm" / "compute_bound.prom.gz").read_bytes())
    for seed in range(3):
        cut = random.Random(seed).randrange(len(text) // 4, len(text) * 3 // 4)
        cut = text.index(b"\n", cut) + 1
        two = tmp_path / f"two{seed}.prom.gz"
        two.write_bytes(gzip.compress(text[:cut]) + gzip.compress(text[cut:]))
        one = tmp_path / f"one{seed}.prom"
        one.write_bytes(text)
        assert dcgm.parse(two).counters.equals(dcgm.parse(one).counters)


# --- Kineto: the streaming path takes multi-member gzip and huge headers ---------------


def _no_whole_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path) -> object:
        raise AssertionError(f"{path} fell back to the whole-file reader")

    monkeypatch.setattr(kineto_assemble, "read_whole", refuse)


@pytest.mark.parametrize("seed", range(4))
def test_multi_member_gzip_streams(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = gzip.decompress((SAMPLES / "synthetic_train.json.gz").read_bytes())
    cuts = sorted(random.Random(seed).sample(range(1, len(data)), seed + 1))
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    path = tmp_path / "members.json.gz"
    path.write_bytes(b"".join(gzip.compress(p) for p in parts))
    expected = parse_file(SAMPLES / "synthetic_train.json.gz")
    _no_whole_file(monkeypatch)
    got = parse_file(path, chunk_bytes=32 << 10)
    assert got.kernels.height == expected.kernels.height
    assert got.ops.height == expected.ops.height


@pytest.mark.parametrize("header_mb", [70, 90])
def test_huge_header_streams(
    header_mb: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = load_json_trace(SAMPLES / "synthetic_train.json.gz")
    blob = {"notes": "x" * (header_mb << 20)}
    ordered = {"deviceProperties": doc["deviceProperties"], "metadata": blob}
    ordered.update((k, v) for k, v in doc.items() if k not in ordered)
    path = dump_json(ordered, tmp_path / "big_header.json")
    _no_whole_file(monkeypatch)
    assert (
        parse_file(path).kernels.height
        == parse_file(SAMPLES / "synthetic_train.json.gz").kernels.height
    )


def _padded(where: str, size: int) -> Callable[[bytes], bytes]:
    def pad(data: bytes) -> bytes:
        at = re.search(rb'"traceEvents"\s*:\s*\[', data).end()  # type: ignore[union-attr]
        if where == "after_comma":
            at = re.compile(rb"\}\s*,").search(data, at + 1000).end()  # type: ignore[union-attr]
        elif where == "in_args":
            at = re.compile(rb'"args"\s*:\s*\{').search(data, at).end()  # type: ignore[union-attr]
        filler = b"\n" if where == "newlines" else b" "
        return data[:at] + filler * size + data[at:]

    return pad


@pytest.mark.parametrize("where", ["array_start", "after_comma", "in_args", "newlines"])
@pytest.mark.parametrize("container", ["plain", "gzip"])
def test_padding_cannot_grow_the_buffer(
    where: str, container: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the buffer limit at 1 MiB, 24 MiB of whitespace is refused in one line (the
    default limit is 256 MiB: no real event comes near it)."""
    monkeypatch.setattr(kineto_chunks, "MAX_EVENT_BYTES", 1 << 20)
    data = gzip.decompress((SAMPLES / "synthetic_train.json.gz").read_bytes())
    bent = _padded(where, 24 << 20)(data)
    path = tmp_path / "padded.json"
    path.write_bytes(gzip.compress(bent, 1) if container == "gzip" else bent)
    _no_whole_file(monkeypatch)
    broken = check_run([path, "-o", tmp_path / "r.md"], [path])
    run = run_cli([path, "-o", tmp_path / "r.md"])
    assert not broken and run.code == 3 and "bounded memory" in run.stderr, (broken, run)


# --- SQLite: views refused, queries on a time budget -----------------------------------

VIEWS = {
    "kernel_view": ("CUPTI_ACTIVITY_KIND_KERNEL", "SELECT * FROM k_real"),
    "string_view": ("StringIds", "SELECT * FROM k_real"),
    "nvtx_view": ("NVTX_EVENTS", "SELECT * FROM k_real"),
    "endless_view": (
        "CUPTI_ACTIVITY_KIND_RUNTIME",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i AS start, "
        "i AS end, i AS correlationId, i AS globalTid, i AS nameId FROM n",
    ),
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_sqlite_view_is_refused(name: str, tmp_path: Path) -> None:
    table, select = VIEWS[name]
    path = Path(shutil.copy(SAMPLES / "nsys_sample.sqlite", tmp_path / "v.sqlite"))
    conn = sqlite3.connect(path)
    conn.execute(f'ALTER TABLE "{table}" RENAME TO k_real')
    conn.execute(f'CREATE VIEW "{table}" AS {select}')
    conn.commit()
    conn.close()
    run = run_cli([path, "-o", tmp_path / "r.md"])
    assert run.code == 4 and "view" in run.stderr, run
    assert not check_run([path, "-o", tmp_path / "r.md"], [path])


def test_query_budget_stops_a_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nsys_db, "QUERY_BUDGET_S", 0.0)
    monkeypatch.setattr(nsys_db, "PROGRESS_OPS", 1)
    path = SAMPLES / "nsys_sample.sqlite"
    run = run_cli([path, "-o", tmp_path / "r.md"])
    assert run.code == 3 and "longer than" in run.stderr, run


# --- FIFO, socket, device, pipe: refused at once -------------------------------------------


def _fifo(tmp: Path) -> str:
    os.mkfifo(tmp / "fifo")
    return str(tmp / "fifo")


def _socket(tmp: Path) -> str:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp / "sock"))
    return str(tmp / "sock")


SPECIAL: dict[str, Callable[[Path], str]] = {
    "fifo": _fifo,
    "socket": _socket,
    "dev_zero": lambda tmp: "/dev/zero",
    "dev_urandom": lambda tmp: "/dev/urandom",
}


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_special_files_are_refused_at_once(name: str, tmp_path: Path) -> None:
    path = SPECIAL[name](tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", "from gpu_trace_analyzer.cli import entry; entry()", path],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 3, proc
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_process_substitution_says_what_to_do(tmp_path: Path) -> None:
    """``analyze <(zcat trace.json.gz)`` names a /dev/fd pipe: the message says what to do."""
    script = (
        f'exec {sys.executable} -c "from gpu_trace_analyzer.cli import entry; entry()" '
        f"<(zcat {SAMPLES / 'synthetic_train.json.gz'})"
    )
    proc = subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 3, proc
    assert "pipe" in proc.stderr and "analyze trace.json.gz" in proc.stderr


@pytest.mark.parametrize("jobs", [3, 64, 100_000])
def test_jobs_capped_at_core_count(jobs: int, tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    run = run_cli([SAMPLES / "synthetic_2rank", "--jobs", str(jobs), "-o", out])
    assert run.code == 0, run
    cores = os.cpu_count() or 1
    if jobs > cores:
        assert f"--jobs {jobs} lowered to {cores}" in out.read_text()


# --- Kineto: the whole-file fallback is capped too -----------------------------------------


def test_kineto_whole_file_fallback_refuses_a_bomb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Malformed JSON sends a file to the whole-file reader; its gzip is inflated within
    `kineto_read.MAX_WHOLE_FILE_BYTES`, refused in one line past it."""
    from gpu_trace_analyzer.parsers import kineto_read

    monkeypatch.setattr(kineto_read, "MAX_WHOLE_FILE_BYTES", CAP)
    doc = b'{"traceEvents": [' + b'{"ph": "X", "name": "k", "ts": 1, "dur": 1},' * 200_000
    bomb = tmp_path / "trace.json.gz"
    bomb.write_bytes(gzip.compress(doc))
    assert len(doc) > CAP
    with pytest.raises(UnreadableInputError, match="decompression bomb"):
        kineto_read.read_bytes(bomb)
    small = tmp_path / "small.json.gz"
    small.write_bytes(gzip.compress(doc[: CAP // 2]))
    data, cut = kineto_read.read_bytes(small)
    assert data == doc[: CAP // 2] and not cut
    cut_file = tmp_path / "cut.json.gz"
    cut_file.write_bytes(gzip.compress(doc[: CAP // 2])[:-200])
    data, cut = kineto_read.read_bytes(cut_file)
    assert cut and doc[: CAP // 2].startswith(data) and data
