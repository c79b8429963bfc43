"""Class 4: tolerant where the ecosystem is tolerant. Chrome's trace viewer and Perfetto load
traces with raw control characters in strings, invalid UTF-8, a BOM, or one malformed event;
so do we, with a warning, keeping every other event. A WAL-mode Nsight export is read with
its write-ahead log, never silently stale, and the input stays untouched."""

from __future__ import annotations

import gzip
import random
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SAMPLES
from gpu_trace_analyzer.parsers.kineto import parse_file
from hostile_support import check_run, dump_json, load_json_trace


def _plain(tmp: Path) -> bytes:
    doc = load_json_trace(SAMPLES / "synthetic_train.json.gz")
    return dump_json(doc, tmp / "clean.json").read_bytes()


def _kernel_name_offsets(data: bytes) -> list[int]:
    """Offsets just inside the name string of every kernel event."""
    offsets = []
    at = 0
    while (at := data.find(b'"cat": "kernel", "name": "', at)) != -1:
        at += len(b'"cat": "kernel", "name": "')
        offsets.append(at)
    return offsets


def _splice(seed: int, insert: bytes) -> Callable[[bytes], tuple[bytes, int]]:
    """Insert ``insert`` into several kernel names; no event is lost."""

    def mutate(data: bytes) -> tuple[bytes, int]:
        offsets = sorted(random.Random(seed).sample(_kernel_name_offsets(data), 5), reverse=True)
        for at in offsets:
            data = data[:at] + insert + data[at:]
        return data, 0

    return mutate


def _bom(data: bytes) -> tuple[bytes, int]:
    return b"\xef\xbb\xbf" + data, 0


def _break_one_event(
    seed: int, how: Callable[[bytes], bytes]
) -> Callable[[bytes], tuple[bytes, int]]:
    """Make one kernel event in the middle malformed JSON; that event is lost."""

    def mutate(data: bytes) -> tuple[bytes, int]:
        offsets = _kernel_name_offsets(data)
        at = offsets[len(offsets) // 2 + seed]
        start = data.rfind(b"{", 0, at)
        end = data.find(b"}}", at) + 2
        return data[:start] + how(data[start:end]) + data[end:], 1

    return mutate


CASES: dict[str, Callable[[bytes], tuple[bytes, int]]] = {
    "control_soh": _splice(1, b"\x01"),
    "control_esc": _splice(2, b"\x1b[31m"),
    "raw_newline": _splice(3, b"line\nbreak"),
    "raw_tab_cr": _splice(4, b"\t\r"),
    "nul": _splice(5, b"\x00"),
    "invalid_utf8_ff": _splice(6, b"\xff\xfe"),
    "invalid_utf8_cut": _splice(7, b"\xc3\x28"),
    "invalid_utf8_overlong": _splice(8, b"\xc0\xaf"),
    "bom": _bom,
    "trailing_comma": _break_one_event(0, lambda e: e[:-2] + b",}}"),
    "missing_colon": _break_one_event(1, lambda e: e.replace(b'"ph": ', b'"ph" ', 1)),
    "bare_word": _break_one_event(2, lambda e: e.replace(b'"ph": "X"', b'"ph": X', 1)),
    "nan_value": _break_one_event(3, lambda e: e.replace(b'"dur": ', b'"dur": NaN, "x": ', 1)),
    "stray_quote": _break_one_event(4, lambda e: e.replace(b'"name": "', b'"name": ""', 1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("container", ["plain", "gzip"])
def test_tolerated_like_chrome(name: str, container: str, tmp_path: Path) -> None:
    clean = _plain(tmp_path)
    data, lost = CASES[name](clean)
    path = tmp_path / "bent.json"
    path.write_bytes(gzip.compress(data) if container == "gzip" else data)
    out = tmp_path / "r.md"
    broken = check_run([path, "-o", out], [path], out)
    assert not broken, broken
    text = out.read_text()
    assert ("not strict JSON" in text) or ("malformed" in text), text[:2000]
    expected = parse_file(tmp_path / "clean.json").kernels.height - lost
    assert parse_file(path).kernels.height == expected
    # the streaming path (small chunks: the bad bytes sit in a middle chunk) agrees
    assert parse_file(path, chunk_bytes=16 << 10).kernels.height == expected


def _wal_export(tmp: Path, marker: str) -> Path:
    """A WAL-mode copy of the sample export whose last change sits only in its WAL."""
    work = tmp / "work"
    work.mkdir()
    src = Path(shutil.copy(SAMPLES / "nsys_sample.sqlite", work / "e.sqlite"))
    conn = sqlite3.connect(src)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("UPDATE StringIds SET value = ? || value", (marker,))
    conn.commit()
    out = tmp / "in"
    out.mkdir()
    shutil.copy(src, out / "e.sqlite")
    shutil.copy(work / "e.sqlite-wal", out / "e.sqlite-wal")
    conn.close()
    return out / "e.sqlite"


@pytest.mark.parametrize("marker", ["walmarker_", "fresh_from_wal_"])
def test_uncheckpointed_wal_is_read(marker: str, tmp_path: Path) -> None:
    db = _wal_export(tmp_path, marker)
    assert (db.parent / "e.sqlite-wal").stat().st_size > 0
    out = tmp_path / "r.md"
    inputs = [db, db.parent / "e.sqlite-wal"]
    broken = check_run([db, "-o", out], inputs, out)
    assert not broken, broken
    text = out.read_text()
    assert marker in text, "names must come from the WAL, not stale pages"
    assert "write-ahead log" in text
    assert sorted(p.name for p in db.parent.iterdir()) == ["e.sqlite", "e.sqlite-wal"]
