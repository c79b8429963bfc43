"""The canonical tables as a directory of Parquet files, and back.

``analyze export TRACE --parquet DIR`` writes one ``<table>.parquet`` per canonical table
plus ``meta.json`` (the `TraceMeta`); ``analyze DIR`` reads them back far faster than
reparsing the trace, and any Parquet reader (DuckDB, pandas, Spark) can query the files.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
from gpu_trace_analyzer.parsers.errors import UnreadableInputError
from gpu_trace_analyzer.parsers.schema import (
    TABLE_NAMES,
    DeviceInfo,
    RankInfo,
    TraceMeta,
    TraceTables,
    conform,
)

META_FILE = "meta.json"
FORMAT_VERSION = 1


def write(tables: TraceTables, out_dir: Path) -> list[Path]:
    """Write every table and the meta data into ``out_dir`` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TABLE_NAMES:
        path = out_dir / f"{name}.parquet"
        tables.table(name).write_parquet(path, compression="zstd", statistics=True)
        written.append(path)
    meta_path = out_dir / META_FILE
    meta_path.write_bytes(msgspec.json.encode(_meta_to_dict(tables.meta)))
    written.append(meta_path)
    return written


def read(in_dir: Path) -> TraceTables:
    """Read a directory written by `write` back into a validated bundle."""
    meta_path = in_dir / META_FILE
    if not meta_path.is_file():
        raise UnreadableInputError(f"no {META_FILE}: not written by `analyze export`", in_dir)
    try:
        meta = _meta_from_dict(msgspec.json.decode(meta_path.read_bytes()))
    except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
        raise UnreadableInputError(f"{META_FILE} is damaged ({exc})", in_dir) from exc
    frames: dict[str, pl.DataFrame] = {}
    for name in TABLE_NAMES:
        path = in_dir / f"{name}.parquet"
        if not path.is_file():
            raise UnreadableInputError(f"missing {path.name}", in_dir)
        try:
            frames[name] = conform(name, pl.read_parquet(path))
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UnreadableInputError(f"{path.name} is damaged ({exc})", in_dir) from exc
    return TraceTables(meta=meta, **frames).validate()


def _meta_to_dict(meta: TraceMeta) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "source": meta.source,
        "paths": list(meta.paths),
        "clock": meta.clock,
        "ranks": [asdict(r) for r in meta.ranks],
        "devices": [asdict(d) for d in meta.devices],
        "world_size": meta.world_size,
        "versions": dict(meta.versions),
        "flags": dict(meta.flags),
        "warnings": list(meta.warnings),
    }


def _meta_from_dict(d: dict[str, Any]) -> TraceMeta:
    return TraceMeta(
        source=str(d["source"]),
        paths=tuple(d["paths"]),
        clock=str(d["clock"]),
        ranks=tuple(RankInfo(**r) for r in d["ranks"]),
        devices=tuple(DeviceInfo(**x) for x in d["devices"]),
        world_size=d["world_size"],
        versions=dict(d["versions"]),
        flags=dict(d["flags"]),
        warnings=tuple(d["warnings"]),
    )
