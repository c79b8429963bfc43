"""PyTorch profiler (Kineto) Chrome-trace JSON to canonical tables.

``parse(path)`` reads a ``.json`` or ``.json.gz`` file, or a directory of per-rank files
(one multi-rank trace). Every schema era is handled: 2021 ``Kernel``/``Runtime``/``Operator``
categories with integer epoch microseconds, current lowercase categories with float
microseconds relative to ``baseTimeNanoseconds``, ROCm (HIP names, no occupancy), MTIA
(``mtia_ccp_events`` are the accelerator's kernels, ``mtia_runtime`` its runtime calls, as
HTA treats them), CPU-only traces (empty GPU tables, still a valid bundle).

Pipeline per file: `kineto_chunks` (the file streamed, gunzipped and cut into chunks of
whole events; truncation salvage) -> `kineto_build` (each chunk decoded and turned into
one frame per event kind, in this process or by a pool of processes: `kineto_assemble`) ->
`kineto_link` (categories, nesting, steps, collectives) -> `TraceTables`, validated. A
file the stream cannot take (malformed, odd layout) is read whole by `kineto_read`, which
gives the same tables or the one-line error. Times are exact integer nanoseconds on the
Unix epoch whenever the trace carries absolute time.

A directory's rank files are parsed by ``parse_ranks`` (the analyzer passes its executor:
a process pool or Ray), then merged (`merge_ranks`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import polars as pl
from gpu_trace_analyzer.parsers.detect import classify_dir
from gpu_trace_analyzer.parsers.errors import UnreadableInputError, UnsupportedFormatError
from gpu_trace_analyzer.parsers.kineto_assemble import read_file
from gpu_trace_analyzer.parsers.kineto_chunks import CHUNK_BYTES
from gpu_trace_analyzer.parsers.kineto_link import finish
from gpu_trace_analyzer.parsers.kineto_meta import FileFacts, clock, devices, facts, rank_from_name
from gpu_trace_analyzer.parsers.schema import RankInfo, TraceMeta, TraceTables, concat_tables

SOURCE = "kineto"


#: Parses a directory's rank files, in order (the caller may run them in parallel).
RankParser = Callable[[Sequence[Path]], list[TraceTables]]


def parse(
    path: Path, *, workers: int | None = 1, parse_ranks: RankParser | None = None
) -> TraceTables:
    """Parse a Kineto trace file, or a directory of per-rank trace files.

    ``workers``: processes that decode one large file's chunks (None: one per CPU when
    the file is large; 1: in this process). ``parse_ranks``: how a directory's rank files
    are parsed (default: one after the other, here).
    """
    path = Path(path)
    if path.is_dir():
        return parse_dir(path, parse_ranks)
    if not path.exists():
        raise UnreadableInputError("no such file", path)
    return parse_file(path, workers=workers)


def parse_file(
    path: Path, *, workers: int | None = 1, chunk_bytes: int = CHUNK_BYTES, whole: bool = False
) -> TraceTables:
    """Parse one Kineto file into validated tables of a single rank.

    The file is streamed in chunks of ``chunk_bytes`` of JSON; ``workers`` processes decode
    them (None: as many as there are CPUs when the file is large, else 1). ``whole=True``
    decodes the file at once instead (same tables; kept to check the streaming path).
    """
    read = read_file(path, workers=workers, chunk_bytes=chunk_bytes, whole=whole)
    file_facts = facts(read.document)
    rank, rank_from_trace, rank_warning = _rank(file_facts, path)
    clock_name, offset_ns = clock(read.first_x_ts, file_facts.base_time_ns)
    finished = finish(read.frames, rank, path.name, offset_ns)
    tables = finished.tables
    warnings = [*read.warnings, *finished.warnings, *rank_warning]
    meta = TraceMeta(
        source=SOURCE,
        paths=(str(path),),
        clock=clock_name,
        ranks=(
            RankInfo(
                rank=rank,
                path=str(path),
                world_size=file_facts.world_size,
                backend=file_facts.backend,
                rank_from_trace=rank_from_trace,
                span_start_ns=_span(tables, start=True),
                span_end_ns=_span(tables, start=False),
                hostname=file_facts.hostname,
            ),
        ),
        devices=devices(file_facts.devices, rank),
        world_size=file_facts.world_size,
        versions=dict(file_facts.versions),
        flags=dict(file_facts.flags),
        warnings=tuple(warnings),
    )
    return TraceTables(meta=meta, **tables).validate()


def _rank(file_facts: FileFacts, path: Path) -> tuple[int, bool, list[str]]:
    """The rank, whether the trace itself said so, and a warning when it did not."""
    if file_facts.rank is not None:
        return file_facts.rank, True, []
    from_name = rank_from_name(path)
    if from_name is not None:
        return (
            from_name,
            False,
            [f"{path.name}: no distributedInfo.rank; rank {from_name} taken from the file name"],
        )
    return 0, False, [f"{path.name}: no rank in the trace or its file name; assumed rank 0"]


_SPAN_TABLES = ("kernels", "memops", "runtime", "syncs", "ops")


def _span(tables: dict[str, pl.DataFrame], *, start: bool) -> int | None:
    """First start or last end over the rank's timed events."""
    values = []
    for name in _SPAN_TABLES:
        frame = tables[name]
        if frame.height == 0:
            continue
        expr = pl.col("start_ns").min() if start else (pl.col("start_ns") + pl.col("dur_ns")).max()
        values.append(frame.select(expr).item())
    found = [v for v in values if v is not None]
    if not found:
        return None
    return int(min(found) if start else max(found))


def parse_dir(path: Path, parse_ranks: RankParser | None = None) -> TraceTables:
    """Parse a directory of per-rank Kineto files as one multi-rank trace."""
    groups = classify_dir(path)
    files = sorted(groups.get("kineto", []))
    if not files:
        raise UnsupportedFormatError("directory holds no Kineto trace files", path)
    parts = parse_ranks(files) if parse_ranks is not None else [parse_file(f) for f in files]
    ignored = sum(len(v) for k, v in groups.items() if k != "kineto")
    return merge_ranks(path, parts, ignored)


def merge_ranks(path: Path, parts: Sequence[TraceTables], ignored: int = 0) -> TraceTables:
    """One bundle from the rank files of directory ``path`` (each its own rank)."""
    unique, rank_warnings = _unique_ranks(list(parts))
    meta = _merged_meta(path, unique, rank_warnings, ignored)
    return concat_tables(unique, meta).validate()


def _unique_ranks(parts: list[TraceTables]) -> tuple[list[TraceTables], list[str]]:
    """Give each file its own rank: a repeated rank moves to the next unused number."""
    used: set[int] = set()
    result = []
    warnings = []
    for part in parts:
        info = part.meta.ranks[0]
        rank = info.rank
        if rank in used:
            new_rank = max(used) + 1
            warnings.append(
                f"{Path(info.path).name}: rank {rank} already taken by another file; "
                f"assigned rank {new_rank}"
            )
            part = _with_rank(part, new_rank)
            rank = new_rank
        used.add(rank)
        result.append(part)
    return result, warnings


def _with_rank(part: TraceTables, rank: int) -> TraceTables:
    """The same tables and meta under another rank number."""
    tables = {
        name: frame.with_columns(pl.lit(rank, dtype=frame.schema["rank"]).alias("rank"))
        for name in _RANKED_TABLES
        if (frame := part.table(name)).height
    }
    meta = replace(
        part.meta,
        ranks=tuple(replace(r, rank=rank, rank_from_trace=False) for r in part.meta.ranks),
        devices=tuple(replace(d, rank=rank) for d in part.meta.devices),
    )
    return replace(part, meta=meta, **tables)


_RANKED_TABLES = ("kernels", "memops", "runtime", "syncs", "ops", "comms", "steps", "memory")


def _merged_meta(
    path: Path, parts: list[TraceTables], rank_warnings: list[str], ignored: int
) -> TraceMeta:
    """One meta for the directory: ranks and devices of all files, first value elsewhere."""
    metas = [p.meta for p in parts]
    clocks = {m.clock for m in metas}
    warnings = [w for m in metas for w in m.warnings] + rank_warnings
    if len(clocks) > 1:
        warnings.append(f"{path.name}: ranks mix epoch and relative clocks; times not comparable")
    if ignored:
        warnings.append(f"{path.name}: ignored {ignored} files that are not Kineto traces")
    versions: dict[str, str] = {}
    flags: dict[str, str] = {}
    for m in metas:
        versions.update({k: v for k, v in m.versions.items() if k not in versions})
        flags.update({k: v for k, v in m.flags.items() if k not in flags})
    world = next((m.world_size for m in metas if m.world_size is not None), None)
    return TraceMeta(
        source=SOURCE,
        paths=tuple(p for m in metas for p in m.paths),
        clock="epoch" if clocks == {"epoch"} else "relative",
        ranks=tuple(r for m in metas for r in m.ranks),
        devices=tuple(d for m in metas for d in m.devices),
        world_size=world,
        versions=versions,
        flags=flags,
        warnings=tuple(warnings),
    )
