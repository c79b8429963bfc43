"""One Kineto file to per-table column frames: streamed in chunks, decoded here or by this
process and a pool sharing them (`parsers.pool`), or (for files the stream cannot take)
decoded whole.

Both ways give the same frames in the same row order (`kineto_build.merge_kind_frames`), so
everything after this step is identical whichever way the file was read. Times are left on
the file's own origin; `kineto.parse_file` shifts them once the clock is known (the
``baseTimeNanoseconds`` key may come after the events).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl
from gpu_trace_analyzer.parsers.errors import AnalyzerError
from gpu_trace_analyzer.parsers.kineto_build import KindFrames, build_kind_frames, merge_kind_frames
from gpu_trace_analyzer.parsers.kineto_chunks import (
    CHUNK_BYTES,
    EventStream,
    NeedWholeFile,
    Piece,
    Span,
    SplitError,
    decode_events,
)
from gpu_trace_analyzer.parsers.kineto_events import Document
from gpu_trace_analyzer.parsers.kineto_read import GZIP_MAGIC, read_document, read_warnings
from gpu_trace_analyzer.parsers.kineto_time import NeedExactTimes
from gpu_trace_analyzer.parsers.pool import share_items, share_work

#: Files whose JSON text is at least this big are decoded by a process pool (when allowed):
#: below it, starting the workers costs more than it saves.
PARALLEL_MIN_BYTES: Final = 96 << 20


@dataclass(frozen=True, slots=True)
class Assembled:
    """A file's top-level keys, its frames per table, and what reading it lost."""

    document: Document
    frames: dict[str, list[pl.DataFrame]]
    first_x_ts: bytes | None
    warnings: list[str]


def read_file(
    path: Path, *, workers: int | None = 1, chunk_bytes: int = CHUNK_BYTES, whole: bool = False
) -> Assembled:
    """Frames of one Kineto file; ``workers=None`` picks a pool size from the file's size."""
    if not whole:
        try:
            return read_chunked(path, _worker_count(path, workers), chunk_bytes)
        except NeedWholeFile:
            pass
        except AnalyzerError as exc:  # raised deep in the stream: name the file
            if exc.path is None:
                raise type(exc)(exc.message, path) from exc
            raise
    return read_whole(path)


def read_whole(path: Path) -> Assembled:
    """The whole-file path: every event decoded at once (`kineto_read`)."""
    read = read_document(path)
    built = build_kind_frames(read.events)
    return Assembled(read.document, merge_kind_frames([built]), built.first_x_ts, [*read.warnings])


def read_chunked(path: Path, workers: int = 1, chunk_bytes: int = CHUNK_BYTES) -> Assembled:
    """The streaming path; raises `NeedWholeFile` for files it cannot take."""
    stream = EventStream(path, chunk_bytes)
    slices: list[KindFrames] | None = None
    if workers > 1 or stream.plain:
        slices = _parallel(stream, workers) if workers > 1 else _ranges_here(stream)
        if slices is None:  # a wrong boundary guess: redo it serially, validating each cut
            stream = EventStream(path, chunk_bytes)
    if slices is None:
        slices = _serial(stream)
    stream.finish_tail()
    found = stream.facts
    slices.append(build_kind_frames(found.tail_events, found.tail_skipped))
    kept = sum(s.events for s in slices)
    skipped = sum(s.skipped for s in slices)
    repaired = found.repaired + sum(s.repaired for s in slices)
    warnings = read_warnings(path, found.gzip_cut, found.dropped_bytes, kept, skipped, repaired)
    first = next((s.first_x_ts for s in slices if s.first_x_ts is not None), None)
    return Assembled(found.document(), merge_kind_frames(slices), first, warnings)


def _serial(stream: EventStream) -> list[KindFrames]:
    """Chunks decoded here, one at a time; a chunk that does not decode moves the cut back."""
    built: list[KindFrames] = []

    def accept(piece: Piece) -> bool:
        frames = build_payload(piece.payload)
        if frames is None:
            return False
        built.append(frames)
        return True

    for _ in stream.pieces(accept):
        pass
    return built


def _ranges_here(stream: EventStream) -> list[KindFrames] | None:
    """A plain file's chunks read by byte range and decoded here: no copies through the
    stream's buffer (a tenth of the time of a 47 MB file). None when a cut was wrong."""
    built = []
    for span in stream.spans():
        frames = build_span(span)
        if frames is None:
            return None
        built.append(frames)
    return built


def build_payload(payload: bytes) -> KindFrames | None:
    """One chunk's frames (a worker task), or None when the chunk is not whole events.

    Times decoded as numbers unless that would not be exact; then the chunk is decoded
    again with its times as text. The cyclic garbage collector is paused meanwhile: the
    chunk's hundreds of thousands of lists and Structs can form no cycle, and each
    collection it triggers would walk all of them (about a tenth of the build time).
    """
    with _collector_paused():
        return _build_payload(payload)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (and back on if it was on)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _build_payload(payload: bytes) -> KindFrames | None:
    try:
        events, skipped, repaired = decode_events(payload)
        try:
            return build_kind_frames(events, skipped, repaired)
        except NeedExactTimes:
            del events
            events, skipped, repaired = decode_events(payload, exact=True)
            return build_kind_frames(events, skipped, repaired)
    except SplitError:
        return None


def build_span(span: Span) -> KindFrames | None:
    """A worker task for a plain file: read the chunk's bytes, then as `build_payload`."""
    return build_payload(span.payload())


def _parallel(stream: EventStream, workers: int) -> list[KindFrames] | None:
    """Chunks decoded by this process and ``workers - 1`` spawned ones, in order: a plain
    file's chunks as byte ranges that whoever claims one reads itself (`share_items`), a
    gzip file's as text gunzipped here and handed out as it comes (`share_work`).

    None when a chunk turned out not to be whole events (a boundary guess inside a
    string), when the pool broke (a worker could not start: a script that calls this
    without the ``if __name__ == "__main__":`` guard spawn needs), or when the workers
    could not leave their results in the temporary folder (full): the caller then reads
    the file again serially.
    """
    try:
        if stream.plain:
            results = share_items(build_span, list(stream.spans()), workers - 1)
        else:
            payloads = (piece.payload for piece in stream.pieces())
            results = share_work(build_payload, payloads, workers - 1)
    except (BrokenProcessPool, OSError):
        return None
    built = [r for r in results if r is not None]
    return built if len(built) == len(results) else None


def _worker_count(path: Path, workers: int | None) -> int:
    """Workers for one file: as asked, or (None) the CPUs when the file is big enough."""
    if workers is not None:
        return max(1, workers)
    cpus = os.cpu_count() or 1
    if cpus < 2 or _json_size(path) < PARALLEL_MIN_BYTES:
        return 1
    return cpus


def _json_size(path: Path) -> int:
    """Size of the file's JSON text: the file size, or gzip's recorded size (mod 4 GiB)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            if handle.read(2) != GZIP_MAGIC:
                return size
            handle.seek(-4, os.SEEK_END)
            recorded = int.from_bytes(handle.read(4), "little")
    except OSError:
        return 0
    return recorded if recorded >= size else recorded + (1 << 32)
