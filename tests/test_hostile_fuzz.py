"""Class 7: property-based fuzzing of real traces (hypothesis). Real Kineto traces from
``../shared/traces`` and the samples, the Nsight sample export and DCGM samples are mutated
(truncated at random offsets, bytes flipped, values replaced by extreme or wrong-typed
ones, hostile strings injected into every string field, SQLite tables and columns
dropped), and each run must keep the promise (`hostile_support.promise_broken`): a
documented exit code, at most one stderr line, no traceback, input unchanged, no
temporary files, nothing live in the Markdown, no escape sequence on the terminal.

Bounded for CI: ``derandomize=True`` (the same examples every run), a fixed
``max_examples`` per test, ``deadline=None`` (a slow example is not a failure); the whole
file runs in about a minute on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import sqlite3
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES, TRACES
from hostile_support import HOSTILE_STRINGS, check_run, terminal_escapes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

#: Real Kineto traces to mutate: the samples, plus small real ones from ../shared/traces
#: (HTA and TraceLens test data) when present.
_SHARED_KINETO = [
    "hta/with_gpu_user_annotation/step_based_trace_2543932.json.gz",
    "hta/critical_path/alexnet/benchmark_result_2869224_1695835535_trace.json.gz",
    "hta/amd_trace/mi250_minitoy_train_ROCm6_2_kineto.json.gz",
    "tracelens/inference__vllm_decode_full__graph_execution.json.gz",
    "hta/cpu_only/rank-34.Jul_15_10_52_41.1074.pt.trace.json.gz",
]
KINETO_SOURCES = [SAMPLES / "synthetic_train.json.gz"] + [
    TRACES / rel for rel in _SHARED_KINETO if (TRACES / rel).is_file()
]
DCGM_SOURCES = (
    sorted((SAMPLES / "dcgm").glob("*.dmon.txt"))[:2]
    + sorted((SAMPLES / "dcgm").glob("*.prom.gz"))[:2]
)

EXTREMES: list[Any] = [
    2**63,
    -(2**63) - 1,
    2**64 + 7,
    10**30,
    1e308,
    -1e308,
    -1,
    0,
    None,
    "",
    "abc",
    "1e999",
    [],
    {},
    [[2**40, 2**40, 2**40]],
    True,
]


@cache
def _plain(source: Path) -> bytes:
    raw = source.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


@cache
def _doc(source: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_plain(source))
    return doc


def _run_on(data: bytes, name: str, *, term: bool = False) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        out = Path(tmp) / "out" / "r.md"
        broken = check_run([path, "-o", out], [path], out)
        if term:
            txt = Path(tmp) / "out" / "r.txt"
            broken += check_run([path, "--format", "term", "-o", txt], [path])
            if txt.is_file():
                broken += [f"terminal: {e}" for e in terminal_escapes(txt.read_text())]
        return broken


sources = st.sampled_from(KINETO_SOURCES)


@FUZZ
@given(source=sources, fraction=st.floats(0.0, 1.0), gz=st.booleans())
def test_truncated_anywhere(source: Path, fraction: float, gz: bool) -> None:
    data = _plain(source)
    cut = data[: int(len(data) * fraction)]
    if gz:
        whole = gzip.compress(data)
        cut = whole[: int(len(whole) * fraction)]
    assert not _run_on(cut, "t.json.gz" if gz else "t.json")


@FUZZ
@given(
    source=sources,
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), min_size=1, max_size=12),
)
def test_bytes_flipped(source: Path, flips: list[tuple[float, int]]) -> None:
    data = bytearray(_plain(source))
    for where, value in flips:
        data[min(int(where * len(data)), len(data) - 1)] = value
    assert not _run_on(bytes(data), "f.json")


@FUZZ
@given(
    source=sources,
    picks=st.lists(
        st.tuples(
            st.floats(0.0, 1.0),
            st.sampled_from(["ts", "dur", "name", "pid", "tid", "ph", "cat", "args", "id"]),
            st.sampled_from(EXTREMES),
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_values_extreme_or_wrong_typed(source: Path, picks: list[tuple[float, str, Any]]) -> None:
    doc = json.loads(json.dumps(_doc(source)))
    events = doc.get("traceEvents") or [{}]
    for where, key, value in picks:
        events[min(int(where * len(events)), len(events) - 1)][key] = value
    assert not _run_on(json.dumps(doc).encode(), "v.json")


def _inject(value: Any, bad: str, depth: int = 0) -> Any:
    if isinstance(value, str):
        return value + bad
    if isinstance(value, dict) and depth < 6:
        return {k: _inject(v, bad, depth + 1) for k, v in value.items()}
    if isinstance(value, list) and depth < 6:
        return [_inject(v, bad, depth + 1) for v in value]
    return value


hostile = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(st.characters(codec="utf-8", categories=("Cc", "Cf", "Po", "Sm", "Ll")), max_size=12),
)


@FUZZ
@given(source=sources, bad=hostile)
def test_hostile_strings_in_every_field(source: Path, bad: str) -> None:
    doc = json.loads(json.dumps(_doc(source)))
    for event in doc.get("traceEvents") or []:
        for key in list(event):
            if key not in ("ph", "cat", "ts", "dur"):
                event[key] = _inject(event[key], bad)
    for key in doc:
        if key != "traceEvents":
            doc[key] = _inject(doc[key], bad)
    data = json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert not _run_on(data, "h.json", term=True)


NSYS_TABLES = [
    "CUPTI_ACTIVITY_KIND_KERNEL",
    "CUPTI_ACTIVITY_KIND_RUNTIME",
    "CUPTI_ACTIVITY_KIND_MEMCPY",
    "CUPTI_ACTIVITY_KIND_MEMSET",
    "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION",
    "NVTX_EVENTS",
    "StringIds",
    "TARGET_INFO_GPU",
    "TARGET_INFO_SESSION_START_TIME",
    "META_DATA_EXPORT",
    "PROCESSES",
    "GPU_METRICS",
    "TARGET_INFO_GPU_METRICS",
    "ENUM_CUDA_MEMCPY_OPER",
]


@cache
def _columns(table: str) -> list[str]:
    with sqlite3.connect(SAMPLES / "nsys_sample.sqlite") as conn:
        return [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]


@FUZZ
@given(
    drop_tables=st.lists(st.sampled_from(NSYS_TABLES), max_size=3, unique=True),
    drop_columns=st.lists(st.tuples(st.sampled_from(NSYS_TABLES), st.integers(0, 40)), max_size=4),
    values=st.lists(
        st.tuples(
            st.sampled_from(NSYS_TABLES),
            st.integers(0, 40),
            st.sampled_from(EXTREMES[:12]),
            st.integers(1, 4),
        ),
        max_size=4,
    ),
)
def test_nsys_tables_and_columns_dropped_or_bent(
    drop_tables: list[str], drop_columns: list[tuple[str, int]], values: list[Any]
) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        path = Path(shutil.copy(SAMPLES / "nsys_sample.sqlite", Path(tmp) / "e.sqlite"))
        conn = sqlite3.connect(path)
        for table, index, value, every in values:
            cols = _columns(table)
            col = cols[index % len(cols)]
            stored = value if not isinstance(value, list | dict) else json.dumps(value)
            if isinstance(stored, int) and not -(2**63) <= stored < 2**63:
                stored = float(stored)
            with contextlib.suppress(sqlite3.IntegrityError):  # NOT NULL: the schema forbids
                conn.execute(
                    f'UPDATE "{table}" SET "{col}" = ? WHERE rowid % {every} = 0', (stored,)
                )
        for table, index in drop_columns:
            cols = _columns(table)
            with contextlib.suppress(sqlite3.OperationalError):  # dropped, last or indexed
                conn.execute(f'ALTER TABLE "{table}" DROP COLUMN "{cols[index % len(cols)]}"')
        for table in drop_tables:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        conn.commit()
        conn.close()
        out = Path(tmp) / "out" / "r.md"
        broken = check_run([path, "-o", out], [path], out)
    assert not broken, broken


@FUZZ
@given(
    source=st.sampled_from(DCGM_SOURCES),
    fraction=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=6),
)
def test_dcgm_truncated_or_flipped(source: Path, fraction: float, flips: list[Any]) -> None:
    data = bytearray(source.read_bytes()[: max(1, int(source.stat().st_size * fraction))])
    for where, value in flips:
        data[min(int(where * len(data)), len(data) - 1)] = value
    assert not _run_on(bytes(data), source.name)


@pytest.mark.parametrize("source", KINETO_SOURCES, ids=lambda p: p.name[:40])
def test_sources_are_clean_reports(source: Path) -> None:
    """The unmutated sources keep the promise too (so a fuzz failure is the mutation's)."""
    assert not _run_on(source.read_bytes(), source.name)
