"""Nsight Systems parser: an ``nsys export --type sqlite`` file becomes the canonical tables.

``parse(path)`` reads kernels, memcpy/memset, synchronizations, CUDA API calls, NVTX ranges
(as ops, and as steps when named like iterations) and GPU metrics samples from any export
schema from 3.0.0 (Nsight Systems 2022.4) to 3.28 (2026): it asks the file which tables and
columns it has before reading (see ``nsys_db``). The input is opened read-only and immutable.

Times: the export counts ns from the capture start; adding
``TARGET_INFO_SESSION_START_TIME.utcEpochNs`` makes them Unix epoch ns (``clock="epoch"``),
comparable with DCGM samples and other ranks. Without that table the clock is ``relative``.

Links: a GPU row joins its launching API call on (process, correlation id), a LEFT JOIN
since captures that start mid-run hold kernels whose launch was not recorded (1,810 of
3,442 in h100_2gpu_1s); the call's ``external_id`` is the NVTX range around it, so a kernel
carries the ``external_id`` of the operator that launched it. Ranks: see ``nsys_meta``.

A ``.nsys-rep`` report is converted with ``nsys export`` into a temporary directory when the
``nsys`` command is on PATH; otherwise the error says how to export it by hand.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import polars as pl
from gpu_trace_analyzer.parsers.categories import categorize
from gpu_trace_analyzer.parsers.errors import (
    EmptyTraceError,
    UnreadableInputError,
    UnsupportedFormatError,
)
from gpu_trace_analyzer.parsers.nsys_counters import read_gpu_metrics
from gpu_trace_analyzer.parsers.nsys_cpu import enclosing_ops, find_steps, read_nvtx, read_runtime
from gpu_trace_analyzer.parsers.nsys_db import NsysDb, open_db, string_ids
from gpu_trace_analyzer.parsers.nsys_gpu import read_kernels, read_memcpy, read_memset, read_syncs
from gpu_trace_analyzer.parsers.nsys_meta import (
    assign_ranks,
    device_info,
    gpus,
    session_start_ns,
    sm_counts,
    system_env,
    versions,
    with_cpu_rank,
    with_gpu_rank,
)
from gpu_trace_analyzer.parsers.schema import (
    SCHEMAS,
    RankInfo,
    TraceMeta,
    TraceTables,
    conform,
    validate,
)

SOURCE: Final = "nsys"
REPORT_SUFFIXES: Final = (".nsys-rep", ".qdrep")
_EXPORT_TIMEOUT_S: Final = 600
_EVENT_TABLES: Final = ("StringIds", "NVTX_EVENTS")


def parse(path: Path) -> TraceTables:
    """Parse an Nsight Systems SQLite export (or a ``.nsys-rep``, when ``nsys`` is on PATH)."""
    path = Path(path)
    if path.suffix.lower() in REPORT_SUFFIXES:
        return _parse_report(path)
    return parse_sqlite(path)


def _parse_report(path: Path) -> TraceTables:
    """Export a report to SQLite in a temporary directory and parse that."""
    if not path.is_file():
        raise UnreadableInputError("no such file", path)
    nsys = shutil.which("nsys")
    if nsys is None:
        raise UnsupportedFormatError(
            f"is an Nsight Systems report; export it with `nsys export --type sqlite {path}` "
            "and analyze the .sqlite",
            path,
        )
    with tempfile.TemporaryDirectory(prefix="analyze-nsys-") as tmp:
        out = Path(tmp) / "export.sqlite"
        command = [nsys, "export", "--type", "sqlite", "--output", str(out), str(path)]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=_EXPORT_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UnreadableInputError(f"`nsys export` could not run ({exc})", path) from exc
        if done.returncode != 0 or not out.is_file():
            lines = (done.stderr or done.stdout or "").strip().splitlines()
            reason = lines[-1] if lines else f"exit code {done.returncode}"
            raise UnreadableInputError(f"`nsys export` failed: {reason}", path)
        return parse_sqlite(out, shown=path)


def parse_sqlite(path: Path, shown: Path | None = None) -> TraceTables:
    """Parse an export; ``shown`` is the path named in errors and meta (default ``path``)."""
    db = open_db(path, shown)
    try:
        _require_nsys(db)
        tables = _build(db)
        if db.notes:
            tables = replace(tables, meta=tables.meta.with_warnings(*db.notes))
        return tables
    finally:
        db.close()


def _require_nsys(db: NsysDb) -> None:
    cupti = any(t.startswith("CUPTI_ACTIVITY_KIND_") for t in db.tables)
    if not cupti and not any(t in db.tables for t in _EVENT_TABLES):
        raise UnsupportedFormatError(
            "SQLite database but not an Nsight Systems export "
            "(no StringIds, CUPTI_ACTIVITY_KIND_* or NVTX_EVENTS table)",
            db.path,
        )


@dataclass(frozen=True, slots=True)
class _Rows:
    """The export's rows before ranks and links, on the export's own clock."""

    kernels: pl.DataFrame
    memops: pl.DataFrame
    syncs: pl.DataFrame
    runtime: pl.DataFrame
    nvtx: pl.DataFrame
    unclosed: int  # NVTX ranges never closed
    dropped: int  # rows without a usable start or duration (a damaged file)


def _read_rows(db: NsysDb) -> _Rows:
    """Read every event table; drop (and count) rows whose times are unusable."""
    strings = string_ids(db)
    nvtx, unclosed = read_nvtx(db, strings)
    frames = {
        "kernels": read_kernels(db, strings),
        "memops": pl.concat([read_memcpy(db), read_memset(db)], how="diagonal_relaxed"),
        "syncs": read_syncs(db),
        "runtime": read_runtime(db, strings),
        "nvtx": nvtx,
    }
    timed = pl.col("start_ns").is_not_null() & (pl.col("dur_ns") >= 0)
    kept = {name: frame.filter(timed) for name, frame in frames.items()}
    dropped = sum(frames[n].height - kept[n].height for n in frames)
    return _Rows(**kept, unclosed=unclosed, dropped=dropped)


def _build(db: NsysDb) -> TraceTables:
    """Read every table, link and rank the rows, and assemble the bundle."""
    rows = _read_rows(db)
    env = system_env(db)
    gpu_rows = gpus(db)
    start = session_start_ns(db)
    counters = read_gpu_metrics(db, env.get("Hostname"), gpu_rows)
    events = (rows.kernels, rows.memops, rows.runtime, rows.nvtx)
    if not any(f.height for f in (*events, counters)):
        raise EmptyTraceError(
            "Nsight Systems export holds no kernel, memory, CUDA API, NVTX or GPU metrics event",
            db.path,
        )
    cpu_pids = pl.concat([rows.runtime["pid"], rows.nvtx["pid"]])
    ranks = assign_ranks(rows.kernels, rows.memops, cpu_pids)
    sms = sm_counts(db, gpu_rows)
    tables, unlaunched = _ranked_tables(rows, ranks, gpu_rows, sms, start or 0)
    if counters.height:
        tables["counters"] = _finish("counters", counters, start or 0, time_columns=("ts_ns",))
    notes = _warnings(tables, gpu_rows, sms, start, rows, unlaunched)
    meta = _meta(db, tables, ranks, gpu_rows, env, start, notes)
    return TraceTables(meta=meta, **tables).validate()


def _ranked_tables(
    rows: _Rows,
    ranks: pl.DataFrame,
    gpu_rows: dict[int, dict[str, Any]],
    sms: dict[int, int],
    shift: int,
) -> tuple[dict[str, pl.DataFrame], int]:
    """The canonical event tables, and how many kernels have no launching call."""
    runtime = with_cpu_rank(rows.runtime, ranks).with_columns(
        external_id=enclosing_ops(rows.runtime, rows.nvtx)
    )
    launches = _launch_links(runtime)
    kernels = _add_kernel_columns(with_gpu_rank(rows.kernels, ranks), sms, gpu_rows)
    unlaunched = kernels.join(launches, on=["pid", "correlation"], how="anti").height
    memops = with_gpu_rank(rows.memops, ranks)
    ops = with_cpu_rank(rows.nvtx, ranks).with_columns(kind=pl.lit("nvtx"), external_id="op_id")
    tables = {
        "kernels": _finish("kernels", _linked(kernels, launches), shift),
        "memops": _finish("memops", _linked(memops, launches), shift),
        "syncs": _finish("syncs", with_gpu_rank(rows.syncs, ranks), shift),
        "runtime": _finish("runtime", runtime, shift),
        "ops": _finish("ops", ops, shift),
        "steps": _finish("steps", find_steps(ops), shift, time_columns=("start_ns", "end_ns")),
    }
    return tables, unlaunched


def _launch_links(runtime: pl.DataFrame) -> pl.DataFrame:
    """(pid, correlation) -> external_id of the API call, one row per key."""
    return (
        runtime.filter(pl.col("correlation").is_not_null())
        .select("pid", "correlation", launch_external_id="external_id")
        .unique(subset=["pid", "correlation"], keep="first", maintain_order=True)
    )


def _linked(frame: pl.DataFrame, launches: pl.DataFrame) -> pl.DataFrame:
    """GPU rows with the external id of their launching call (LEFT JOIN on pid, correlation)."""
    joined = frame.join(launches, on=["pid", "correlation"], how="left")
    return joined.rename({"launch_external_id": "external_id"})


def _add_kernel_columns(
    kernels: pl.DataFrame, sms: dict[int, int], gpu_rows: dict[int, dict[str, Any]]
) -> pl.DataFrame:
    """Category, and blocks/warps per SM where the device's SM count is known (as Kineto:
    blocks per SM = grid size / SMs, warps per SM = that x threads per block / warp size)."""
    warp = {d: row.get("threadsPerWarp") or 32 for d, row in gpu_rows.items()}
    grid = pl.col("grid_x") * pl.col("grid_y") * pl.col("grid_z")
    block = pl.col("block_x") * pl.col("block_y") * pl.col("block_z")
    num_sms = pl.col("device").replace_strict(sms, default=None, return_dtype=pl.Float64())
    warp_size = pl.col("device").replace_strict(warp, default=32, return_dtype=pl.Float64())
    blocks_per_sm = grid.cast(pl.Float64()) / num_sms
    return kernels.with_columns(
        category=categorize(kernels["name"]),
        blocks_per_sm=blocks_per_sm,
        warps_per_sm=blocks_per_sm * block.cast(pl.Float64()) / warp_size,
    )


def _finish(
    table: str,
    frame: pl.DataFrame,
    shift: int,
    time_columns: tuple[str, ...] = ("start_ns",),
) -> pl.DataFrame:
    """Shift to the epoch clock, keep the canonical columns, sort by start, validate."""
    keep = [c for c in frame.columns if c in SCHEMAS[table]]
    shifted = frame.select(keep).with_columns(pl.col(c) + shift for c in time_columns)
    ordered = conform(table, shifted).sort(time_columns[0], maintain_order=True)
    return validate(table, ordered)


def _meta(
    db: NsysDb,
    tables: dict[str, pl.DataFrame],
    ranks: pl.DataFrame,
    gpu_rows: dict[int, dict[str, Any]],
    env: dict[str, str],
    start: int | None,
    notes: list[str],
) -> TraceMeta:
    """Ranks with their spans, devices, versions and the warnings of this parse."""
    spans = _rank_spans(tables)
    host = env.get("Hostname")
    rank_infos: list[RankInfo] = []
    devices = []
    for rank, device in ranks.select("rank", "device").iter_rows():
        lo, hi = spans.get(rank, (None, None))
        rank_infos.append(
            RankInfo(
                rank=rank,
                path=str(db.path),
                world_size=ranks.height,
                rank_from_trace=False,
                span_start_ns=lo,
                span_end_ns=hi,
                hostname=host,
            )
        )
        if device is not None and device in gpu_rows:
            devices.append(device_info(rank, device, gpu_rows[device]))
    return TraceMeta(
        source=SOURCE,
        paths=(str(db.path),),
        clock="epoch" if start is not None else "relative",
        ranks=tuple(rank_infos),
        devices=tuple(devices),
        world_size=ranks.height,
        versions=versions(db, env),
        warnings=tuple(notes),
    )


def _rank_spans(tables: dict[str, pl.DataFrame]) -> dict[int, tuple[int, int]]:
    """First start and last end per rank over every timed table."""
    parts = [
        tables[name].select("rank", lo=pl.col("start_ns"), hi=pl.col("start_ns") + pl.col("dur_ns"))
        for name in ("kernels", "memops", "syncs", "runtime", "ops")
        if tables[name].height
    ]
    if not parts:
        return {}
    spans = pl.concat(parts).group_by("rank").agg(pl.col("lo").min(), pl.col("hi").max())
    return {int(r): (int(lo), int(hi)) for r, lo, hi in spans.iter_rows()}


def _warnings(
    tables: dict[str, pl.DataFrame],
    gpu_rows: dict[int, dict[str, Any]],
    sms: dict[int, int],
    start: int | None,
    rows: _Rows,
    unlaunched: int,
) -> list[str]:
    """What this parse could not recover, for the report's warnings."""
    notes = []
    if start is None:
        notes.append("no TARGET_INFO_SESSION_START_TIME: times are relative to the capture start")
    if tables["kernels"].height and not gpu_rows:
        unknown = "" if sms else " (blocks/warps per SM not computed)"
        notes.append(f"no TARGET_INFO_GPU table: GPU names and specifications are unknown{unknown}")
    if unlaunched:
        notes.append(
            f"{unlaunched} of {tables['kernels'].height} kernels have no launching CUDA API "
            "call in the capture"
        )
    if rows.unclosed:
        notes.append(f"{rows.unclosed} NVTX ranges were never closed: kept with zero duration")
    if rows.dropped:
        notes.append(f"{rows.dropped} rows without a valid start or end time were dropped")
    return notes
