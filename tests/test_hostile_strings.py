"""Class 5: untrusted strings are inert in every output. Each hostile string goes into
every string field of a real sample (Kineto op, kernel and annotation names, argument
strings, device and host names; Nsight ``StringIds`` and GPU names; DCGM host and model
labels; the file name itself), and the report is checked: Markdown parsed with
markdown-it-py holds nothing live, terminal and JSON text hold no escape sequence, errors
stay one line."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES
from hostile_support import (
    HOSTILE_STRINGS,
    check_run,
    dump_json,
    live_markdown,
    load_json_trace,
    terminal_escapes,
)


def _poison(value: Any, bad: str) -> Any:
    """Every string in ``value`` (keys kept) with ``bad`` spliced into it."""
    if isinstance(value, str):
        return f"{value}{bad}" if value else bad
    if isinstance(value, dict):
        return {k: _poison(v, bad) for k, v in value.items()}
    if isinstance(value, list):
        return [_poison(v, bad) for v in value]
    return value


def _kineto(tmp: Path, bad: str) -> Path:
    doc = load_json_trace(SAMPLES / "synthetic_train.json.gz")
    keep = {"ph", "cat"}  # structure, not text: a wrong phase is another class of input
    for event in doc["traceEvents"]:
        for key, value in event.items():
            if key not in keep:
                event[key] = _poison(value, bad)
    for key in ("deviceProperties", "distributedInfo"):
        doc[key] = _poison(doc[key], bad)
    doc["hostname"] = bad
    return dump_json(doc, tmp / "poisoned.json")


def _nsys(tmp: Path, bad: str) -> Path:
    path = Path(shutil.copy(SAMPLES / "nsys_sample.sqlite", tmp / "poisoned.sqlite"))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE StringIds SET value = value || ?", (bad,))
        conn.execute("UPDATE TARGET_INFO_GPU SET name = name || ?", (bad,))
    conn.close()
    return path


def _dcgm(tmp: Path, bad: str) -> Path:
    text = gzip.decompress((SAMPLES / "dcgm" / "compute_bound.prom.gz").read_bytes()).decode()
    # label values escape backslash, double quote and newline (Prometheus text format)
    quoted = bad.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    text = re.sub(r'(modelName|Hostname)="([^"]*)"', lambda m: f'{m[1]}="{m[2]}{quoted}"', text)
    path = tmp / "poisoned.prom"
    path.write_text(text, encoding="utf-8")
    return path


def _strings(value: Any) -> list[str]:
    """Every string (keys too) in decoded JSON."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


MAKERS: dict[str, Callable[[Path, str], Path]] = {"kineto": _kineto, "nsys": _nsys, "dcgm": _dcgm}
CASES = [(kind, i) for kind in MAKERS for i in range(len(HOSTILE_STRINGS))]


@pytest.mark.parametrize(("kind", "index"), CASES, ids=[f"{k}-{i}" for k, i in CASES])
def test_hostile_strings_are_inert(kind: str, index: int, tmp_path: Path) -> None:
    bad = HOSTILE_STRINGS[index]
    trace = MAKERS[kind](tmp_path, bad)
    md = tmp_path / "out" / "report.md"
    broken = check_run([trace, "-o", md], [trace], md)
    if kind == "dcgm" and ("\r" in bad or "\x00" in bad):
        # a raw CR or NUL breaks the text format itself: a one-line error is right
        assert not md.exists() and not broken, broken
        return
    assert md.is_file(), broken
    term = tmp_path / "out" / "report.txt"
    broken += check_run([trace, "--format", "term", "-o", term], [trace])
    broken += [f"terminal: {e}" for e in terminal_escapes(term.read_text())]
    js = tmp_path / "out" / "report.json"
    broken += check_run([trace, "-o", js], [trace])
    broken += [
        f"json: {e}" for e in terminal_escapes(" ".join(_strings(json.loads(js.read_text()))))
    ]
    assert not broken, broken


FILE_NAMES = [
    "a\nb.json",
    "\x1b]52;c;ZXZpbA==\x07.json",
    "@octocat.json",
    "see https:__evil.example.json",
    "`tick`` `.json",
    "nul\x7fdel\x1b[2J.json",
]


@pytest.mark.parametrize("name", range(len(FILE_NAMES)))
def test_hostile_file_names_stay_inert(name: int, tmp_path: Path) -> None:
    """A file name is untrusted too: in the title, in warnings, in one-line errors."""
    good = tmp_path / FILE_NAMES[name]
    good.write_bytes(gzip.decompress((SAMPLES / "synthetic_train.json.gz").read_bytes()))
    md = tmp_path / "report.md"
    broken = check_run([good, "-o", md], [good], md)
    bad = tmp_path / ("bad" + FILE_NAMES[name])
    bad.write_text('{"traceEvents": [')
    broken += check_run([bad, "-o", tmp_path / "bad.md"], [bad])
    assert not broken, broken
    assert not live_markdown(md.read_text())
