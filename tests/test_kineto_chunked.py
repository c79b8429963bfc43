"""The streaming reader gives exactly the tables of the whole-file reader.

`parsers.kineto_chunks` cuts the event array into chunks at guessed event boundaries and
decodes them one by one (or in a process pool); `kineto_read` decodes the file at once. Every
real trace, cut into small chunks so that each has many, must give equal tables, meta and
warnings both ways; so must truncated files (cut inside the first chunk, right after a
chunk boundary, inside the last chunk, inside the keys after the event array, and gzip
streams cut short), files whose strings look like event boundaries, files with malformed
events, and float timestamps that need the exact text path.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from pathlib import Path
from typing import Any

import pytest
from conftest import TRACES, needs_shared, shared_trace
from gpu_trace_analyzer.parsers.errors import AnalyzerError
from gpu_trace_analyzer.parsers.kineto import parse_file
from gpu_trace_analyzer.parsers.kineto_assemble import read_chunked
from gpu_trace_analyzer.parsers.kineto_chunks import EventStream, candidates
from gpu_trace_analyzer.parsers.schema import TABLE_NAMES, TraceTables
from test_kineto import KINETO_FILES

#: Each real trace is cut into about six chunks (more would only make this file slower).
_CHUNKS = 6
_MIN_CHUNK = 512


def _json_size(path: Path) -> int:
    data = path.read_bytes()
    return len(gzip.decompress(data)) if data[:2] == b"\x1f\x8b" else len(data)


def _chunk_for(path: Path) -> int:
    return max(_MIN_CHUNK, _json_size(path) // _CHUNKS)


def assert_same(whole: TraceTables, chunked: TraceTables) -> None:
    """Equal tables (values, order, dtypes) and equal meta, warnings included."""
    for name in TABLE_NAMES:
        a, b = whole.table(name), chunked.table(name)
        assert a.schema == b.schema, name
        assert a.equals(b), f"{name}: {a.height} rows whole, {b.height} chunked"
    assert whole.meta == chunked.meta


def _outcome(path: Path, **kwargs: Any) -> TraceTables | tuple[type[AnalyzerError], str]:
    try:
        return parse_file(path, **kwargs)
    except AnalyzerError as exc:
        return type(exc), str(exc)


def assert_same_outcome(path: Path, chunk_bytes: int, workers: int = 1) -> None:
    """The same tables, or the same error, both ways."""
    whole = _outcome(path, whole=True)
    chunked = _outcome(path, chunk_bytes=chunk_bytes, workers=workers)
    if isinstance(whole, TraceTables) and isinstance(chunked, TraceTables):
        assert_same(whole, chunked)
    else:
        assert whole == chunked


@needs_shared
@pytest.mark.parametrize("rel", KINETO_FILES)
def test_every_real_trace_streams_to_the_same_tables(rel: str) -> None:
    path = TRACES / rel
    chunk = _chunk_for(path)
    stream = EventStream(path, chunk)  # the file really is cut into several chunks
    if _json_size(path) > 4 * _MIN_CHUNK:
        assert sum(1 for _ in stream.pieces()) >= 2
    assert_same(parse_file(path, whole=True), parse_file(path, chunk_bytes=chunk))


@needs_shared
def test_process_pool_gives_the_same_tables() -> None:
    path = shared_trace("hta/trace_filter/sampled_rank-0.json.gz")  # gzip: chunks are piped
    assert_same(parse_file(path, whole=True), parse_file(path, chunk_bytes=64 << 10, workers=2))


@needs_shared
def test_process_pool_reads_plain_files_by_range(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    path.write_bytes(gzip.decompress(shared_trace("hta/cupti_profiler/"
                     "benchmark_result_924719_1679055439_trace.json.gz").read_bytes()))  # fmt: skip
    assert_same(parse_file(path, whole=True), parse_file(path, chunk_bytes=64 << 10, workers=2))


@needs_shared
def test_full_temporary_folder_falls_back_to_the_serial_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers leave results in a temporary folder; when it cannot be written, the file
    is read in this process instead, with the same tables."""
    path = tmp_path / "trace.json"
    path.write_bytes(gzip.decompress(shared_trace("hta/trace_filter/sampled_rank-0.json.gz")
                                     .read_bytes()))  # fmt: skip

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gpu_trace_analyzer.parsers.pool.tempfile.TemporaryDirectory", full)
    assert_same(parse_file(path, whole=True), parse_file(path, chunk_bytes=64 << 10, workers=2))


# --- truncated files ----------------------------------------------------------------------


def _text(rel: str) -> bytes:
    data = shared_trace(rel).read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _boundaries(text: bytes, chunk: int) -> list[int]:
    """Where the streaming reader cuts ``text`` into chunks (ends of their last events)."""
    start = text.index(b"[", text.index(b'"traceEvents"')) + 1
    ends = []
    position = start
    while position + chunk < len(text):
        window = text[position : position + chunk]
        found = next(candidates(window), None)
        if found is None:
            break
        ends.append(position + found[0])
        position += found[1]
    return ends


_CUT_TRACES = (
    "hta/timeline_analysis/sampled_rank-0.json.gz",  # keys only before the events
    "hta/cupti_profiler/benchmark_result_924719_1679055439_trace.json.gz",  # keys after too
    "tracelens/h100__gaunernst_bert-small-uncased__1016001.json.gz",  # float timestamps
)


@needs_shared
@pytest.mark.parametrize("rel", _CUT_TRACES)
def test_truncated_traces_stream_to_the_same_tables(tmp_path: Path, rel: str) -> None:
    text = _text(rel)
    chunk = 64 << 10
    ends = _boundaries(text, chunk)
    assert len(ends) >= 3
    array_end = text.rindex(b"]")
    cuts = {
        "inside the first chunk": chunk // 2,
        "just after a chunk boundary": ends[1] + 3,
        "inside the last chunk": (ends[-1] + len(text)) // 2,
        "inside the keys after the events": array_end + (len(text) - array_end) // 2,
        "right after an event": ends[-1],
    }
    for where, cut in cuts.items():
        path = tmp_path / f"{where.replace(' ', '_')}.json"
        path.write_bytes(text[:cut])
        whole = _outcome(path, whole=True)
        assert isinstance(whole, TraceTables), where
        if cut < array_end:
            assert any("truncated" in w for w in whole.meta.warnings), where
        assert_same_outcome(path, chunk)


@needs_shared
def test_truncated_gzip_streams_the_same(tmp_path: Path) -> None:
    data = shared_trace("hta/trace_filter/sampled_rank-1.json.gz").read_bytes()
    for fraction in (0.3, 0.9):
        path = tmp_path / f"cut{fraction}.json.gz"
        path.write_bytes(data[: int(len(data) * fraction)])
        prefix = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(path.read_bytes())
        assert 0 < len(prefix) < len(gzip.decompress(data))
        assert_same_outcome(path, 64 << 10)
        tables = parse_file(path, chunk_bytes=64 << 10)
        assert any("gzip stream ends early" in w for w in tables.meta.warnings)


def test_truncated_before_the_first_event_is_the_same_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{"schemaVersion": 1, "traceEvents": [{"ph": "X", "na')
    assert_same_outcome(path, _MIN_CHUNK)
    assert isinstance(_outcome(path), tuple)


# --- synthetic edge cases ---------------------------------------------------------------


def _kernel(i: int, name: str, ts: Any = None) -> dict[str, Any]:
    return {"ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": 7,
            "ts": i * 10 if ts is None else ts, "dur": 5,
            "args": {"stream": 7, "correlation": i, "grid": [1, 1, 1]}}  # fmt: skip


def _write(path: Path, events: list[dict[str, Any]], **top: Any) -> Path:
    path.write_text(json.dumps({"schemaVersion": 1, **top, "traceEvents": events}, indent=1))
    return path


def test_text_that_looks_like_boundaries(tmp_path: Path) -> None:
    # Where a boundary guess can be wrong: a string ending in '}, {' (its closing quote
    # then looks like the next event's first key) and objects in a list inside args. C++
    # names with '}, ' inside are common too. Every event has one of the three.
    events = [_kernel(i, "void f<{lambda()#1}, {") for i in range(0, 3000, 3)]
    events += [_kernel(i, "at::native::{lambda(float)#1}, at::detail") for i in range(1, 3000, 3)]
    nested = [_kernel(i, "k") for i in range(2, 3000, 3)]
    for event in nested:
        event["args"]["Process Group Ranks"] = [{"rank": 0}, {"rank": 1}]
    path = _write(tmp_path / "tricky.json", events + nested)
    text = path.read_bytes()
    guesses = len(re.findall(rb'\}\s*,\s*\{\s*"', text))
    assert guesses > 1.5 * text.count(b'"ph"')  # many more guesses than real boundaries
    for workers in (1, 2):
        assert_same_outcome(path, 4 << 10, workers=workers)
    assert parse_file(path, chunk_bytes=4 << 10).kernels.height == 3000


def test_malformed_events_are_skipped_alike_in_every_chunk(tmp_path: Path) -> None:
    events: list[Any] = [_kernel(i, "k") for i in range(2000)]
    for i in range(0, 2000, 97):
        events[i] = {"ph": 5, "name": "bad"} if i % 2 else [1, 2, 3]
    path = _write(tmp_path / "odd.json", events)
    assert_same_outcome(path, 4 << 10)
    warning = next(w for w in parse_file(path, chunk_bytes=4 << 10).meta.warnings if "skip" in w)
    assert f"skipped {len(range(0, 2000, 97))} malformed events" in warning


def test_float_times_that_need_their_text(tmp_path: Path) -> None:
    # Epoch microseconds with three decimals do not fit a float64; four decimals carry a
    # half nanosecond that rounds up. Both go through the exact text path.
    events = [_kernel(i, "k", ts=f"@{1712195495505583 + i}.{i % 1000:03d}") for i in range(500)]
    events += [_kernel(500 + i, "k", ts=f"@{i}.{i % 10000:04d}") for i in range(500)]
    text = re.sub(r'"@([0-9.]+)"', r"\1", json.dumps({"traceEvents": events}))
    path = tmp_path / "floats.json"
    path.write_text(text)
    assert_same_outcome(path, 4 << 10)
    starts = parse_file(path, chunk_bytes=4 << 10).kernels["start_ns"].to_list()
    assert 1712195495505583 * 1000 + 0 in starts  # 1712195495505583.000 us, exactly
    assert (1712195495505583 + 7) * 1000 + 7 in starts
    assert 7 * 1000 + 1 in starts  # 7.0007 us = 7000.7 ns -> 7001 ns (half up)


def test_base_time_after_the_events_moves_every_chunk(tmp_path: Path) -> None:
    events = [_kernel(i, "k") for i in range(2000)]
    path = tmp_path / "base_after.json"
    path.write_text(
        json.dumps({"traceEvents": events, "baseTimeNanoseconds": 1_700_000_000 * 10**9})
    )
    assert_same_outcome(path, 4 << 10)
    tables = parse_file(path, chunk_bytes=4 << 10)
    assert tables.meta.clock == "epoch"
    assert tables.kernels["start_ns"].min() == 1_700_000_000 * 10**9


def test_chunked_reader_takes_real_traces_without_falling_back() -> None:
    # The streaming path must not quietly hand real traces to the whole-file reader.
    if not TRACES.is_dir():
        pytest.skip("../shared/traces is absent")
    path = TRACES / "hta/trace_filter/sampled_rank-0.json.gz"
    read = read_chunked(path, 1, 64 << 10)
    assert sum(len(parts) for parts in read.frames.values()) > len(read.frames)
