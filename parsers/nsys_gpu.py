"""GPU-side activity of an Nsight Systems export: kernels, memcpy/memset, synchronizations.

Each reader returns the rows with the export's own clock (``start_ns``), the launching
process id (``pid``, decoded from ``globalPid``) and canonical column names; ``parsers.nsys``
then adds the rank, the absolute clock and the link to the launching CPU op.

Enumerations (copy kind, memory kind, sync type) are decoded through the export's own
``ENUM_*`` tables when it has them, matched on the symbol name (``CUDA_MEMCPY_KIND_HTOD``),
so a renumbering in a future release cannot silently mislabel rows; the ids Nsight Systems
2022.4 through 2026.2 use are the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import polars as pl
from gpu_trace_analyzer.parsers.nsys_db import PID_SQL, NsysDb, enum_names

KERNEL_TABLE: Final = "CUPTI_ACTIVITY_KIND_KERNEL"
MEMCPY_TABLE: Final = "CUPTI_ACTIVITY_KIND_MEMCPY"
MEMSET_TABLE: Final = "CUPTI_ACTIVITY_KIND_MEMSET"
SYNC_TABLE: Final = "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION"

_I64 = pl.Int64()
_STR = pl.String()

# Copy kinds: export symbol suffix -> (canonical kind, precise label for display names).
_COPY_PREFIX: Final = "CUDA_MEMCPY_KIND_"
_COPY_DEFAULT: Final[Mapping[int, str]] = {
    0: "UNKNOWN", 1: "HTOD", 2: "DTOH", 3: "HTOA", 4: "ATOH", 5: "ATOA", 6: "ATOD",
    7: "DTOA", 8: "DTOD", 9: "HTOH", 10: "PTOP", 11: "UVM_HTOD", 12: "UVM_DTOH",
    13: "UVM_DTOD",
}  # fmt: skip
_COPY_KIND: Final[Mapping[str, tuple[str, str]]] = {
    "HTOD": ("HtoD", "HtoD"),
    "DTOH": ("DtoH", "DtoH"),
    "HTOA": ("HtoD", "HtoA"),
    "ATOH": ("DtoH", "AtoH"),
    "ATOA": ("DtoD", "AtoA"),
    "ATOD": ("DtoD", "AtoD"),
    "DTOA": ("DtoD", "DtoA"),
    "DTOD": ("DtoD", "DtoD"),
    "HTOH": ("HtoH", "HtoH"),
    "PTOP": ("PtoP", "PtoP"),
    "UVM_HTOD": ("HtoD", "Unified HtoD"),
    "UVM_DTOH": ("DtoH", "Unified DtoH"),
    "UVM_DTOD": ("DtoD", "Unified DtoD"),
}

# Memory kinds: export symbol suffix -> (canonical kind, label for display names).
_MEM_PREFIX: Final = "CUDA_MEMOPR_MEMORY_KIND_"
_MEM_DEFAULT: Final[Mapping[int, str]] = {
    0: "PAGEABLE", 1: "PINNED", 2: "DEVICE", 3: "ARRAY", 4: "MANAGED", 5: "DEVICE_STATIC",
    6: "MANAGED_STATIC", 7: "UNKNOWN",
}  # fmt: skip
_MEM_KIND: Final[Mapping[str, tuple[str, str]]] = {
    "PAGEABLE": ("pageable", "Pageable"),
    "PINNED": ("pinned", "Pinned"),
    "DEVICE": ("device", "Device"),
    "ARRAY": ("device", "Array"),
    "MANAGED": ("managed", "Managed"),
    "DEVICE_STATIC": ("device", "Device Static"),
    "MANAGED_STATIC": ("managed", "Managed Static"),
    "UNKNOWN": ("unknown", "Unknown"),
}

_SYNC_PREFIX: Final = "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_"
_SYNC_DEFAULT: Final[Mapping[int, str]] = {
    0: "UNKNOWN", 1: "EVENT_SYNCHRONIZE", 2: "STREAM_WAIT_EVENT", 3: "STREAM_SYNCHRONIZE",
    4: "CONTEXT_SYNCHRONIZE",
}  # fmt: skip
_SYNC_KIND: Final[Mapping[str, str]] = {
    "EVENT_SYNCHRONIZE": "event_sync",
    "STREAM_WAIT_EVENT": "stream_wait_event",
    "STREAM_SYNCHRONIZE": "stream_sync",
    "CONTEXT_SYNCHRONIZE": "context_sync",
}


def _enum_symbols(
    db: NsysDb, table: str, prefix: str, default: Mapping[int, str]
) -> dict[int, str]:
    """Enum id -> symbol without its prefix: the export's own table over the known ids."""
    found = {i: n.removeprefix(prefix) for i, n in enum_names(db, table).items()}
    return {**default, **found}


def _decode(
    column: str,
    symbols: Mapping[int, str],
    table: Mapping[str, tuple[str, str]],
    part: int,
    default: str,
) -> pl.Expr:
    """Map an enum id column to one part (0 canonical, 1 label) of its decoded value."""
    mapping = {i: table[s][part] for i, s in symbols.items() if s in table}
    return pl.col(column).replace_strict(mapping, default=default, return_dtype=_STR)


def _gpu_base(db: NsysDb, table: str) -> list[str]:
    """SELECT items every GPU activity table shares."""
    return [
        "start AS start_ns",
        "(end - start) AS dur_ns",
        db.col(table, "deviceId", "device"),
        db.col(table, "streamId", "stream"),
        db.col(table, "correlationId", "correlation"),
        db.col(table, "globalPid", "pid", PID_SQL),
    ]


_BASE_SCHEMA: Final[Mapping[str, pl.DataType]] = {
    "start_ns": _I64,
    "dur_ns": _I64,
    "device": _I64,
    "stream": _I64,
    "correlation": _I64,
    "pid": _I64,
}

_KERNEL_INTS: Final[Mapping[str, str]] = {
    "registers_per_thread": "registersPerThread",
    "grid_x": "gridX",
    "grid_y": "gridY",
    "grid_z": "gridZ",
    "block_x": "blockX",
    "block_y": "blockY",
    "block_z": "blockZ",
    "static_smem": "staticSharedMemory",
    "dynamic_smem": "dynamicSharedMemory",
    "demangled_id": "demangledName",
    "short_id": "shortName",
}


def read_kernels(db: NsysDb, strings: pl.DataFrame) -> pl.DataFrame:
    """Kernels with names resolved (demangled name, else the short name)."""
    items = [
        *_gpu_base(db, KERNEL_TABLE),
        *(db.col(KERNEL_TABLE, col, alias) for alias, col in _KERNEL_INTS.items()),
    ]
    schema = {**_BASE_SCHEMA, **dict.fromkeys(_KERNEL_INTS, _I64)}
    if KERNEL_TABLE not in db.tables:  # a CPU/NVTX-only capture: no kernels, same columns
        raw = pl.DataFrame(schema=schema)
    else:
        raw = db.frame(f"SELECT {', '.join(items)} FROM {KERNEL_TABLE}", schema)
    demangled = strings.rename({"id": "demangled_id", "value": "demangled"})
    short = strings.rename({"id": "short_id", "value": "short"})
    named = raw.join(demangled, on="demangled_id", how="left").join(
        short, on="short_id", how="left"
    )
    smem = pl.col("static_smem").fill_null(0) + pl.col("dynamic_smem").fill_null(0)
    return named.with_columns(
        name=pl.when(pl.col("demangled").str.len_bytes() > 0)
        .then(pl.col("demangled"))
        .otherwise(pl.col("short")),
        shared_mem_bytes=pl.when(pl.col("static_smem").is_null() & pl.col("dynamic_smem").is_null())
        .then(None)
        .otherwise(smem),
    ).drop("demangled", "short", "demangled_id", "short_id", "static_smem", "dynamic_smem")


def read_memcpy(db: NsysDb) -> pl.DataFrame:
    """Memory copies with kind, source/destination memory and a display name."""
    if MEMCPY_TABLE not in db.tables:
        return _empty_memops()
    items = [
        *_gpu_base(db, MEMCPY_TABLE),
        db.col(MEMCPY_TABLE, "bytes"),
        db.col(MEMCPY_TABLE, "copyKind", "copy_kind"),
        db.col(MEMCPY_TABLE, "srcKind", "src_kind"),
        db.col(MEMCPY_TABLE, "dstKind", "dst_kind"),
    ]
    schema = {**_BASE_SCHEMA, "bytes": _I64, "copy_kind": _I64, "src_kind": _I64, "dst_kind": _I64}
    raw = db.frame(f"SELECT {', '.join(items)} FROM {MEMCPY_TABLE}", schema)
    copy = _enum_symbols(db, "ENUM_CUDA_MEMCPY_OPER", _COPY_PREFIX, _COPY_DEFAULT)
    mem = _enum_symbols(db, "ENUM_CUDA_MEM_KIND", _MEM_PREFIX, _MEM_DEFAULT)
    label = (
        pl.lit("Memcpy ")
        + _decode("copy_kind", copy, _COPY_KIND, 1, "other")
        + pl.lit(" (")
        + _decode("src_kind", mem, _MEM_KIND, 1, "Unknown")
        + pl.lit(" -> ")
        + _decode("dst_kind", mem, _MEM_KIND, 1, "Unknown")
        + pl.lit(")")
    )
    return raw.with_columns(
        kind=_decode("copy_kind", copy, _COPY_KIND, 0, "other"),
        src_mem=_mem_or_null("src_kind", mem),
        dst_mem=_mem_or_null("dst_kind", mem),
        name=label,
    ).drop("copy_kind", "src_kind", "dst_kind")


def _mem_or_null(column: str, mem: Mapping[int, str]) -> pl.Expr:
    """Canonical memory kind; null when the export did not record one."""
    return (
        pl.when(pl.col(column).is_null())
        .then(None)
        .otherwise(_decode(column, mem, _MEM_KIND, 0, "unknown"))
    )


def read_memset(db: NsysDb) -> pl.DataFrame:
    """Memsets: kind ``memset``, destination memory from ``memKind``."""
    if MEMSET_TABLE not in db.tables:
        return _empty_memops()
    items = [
        *_gpu_base(db, MEMSET_TABLE),
        db.col(MEMSET_TABLE, "bytes"),
        db.col(MEMSET_TABLE, "memKind", "mem_kind"),
    ]
    schema = {**_BASE_SCHEMA, "bytes": _I64, "mem_kind": _I64}
    raw = db.frame(f"SELECT {', '.join(items)} FROM {MEMSET_TABLE}", schema)
    mem = _enum_symbols(db, "ENUM_CUDA_MEM_KIND", _MEM_PREFIX, _MEM_DEFAULT)
    label = pl.lit("Memset (") + _decode("mem_kind", mem, _MEM_KIND, 1, "Unknown") + pl.lit(")")
    return raw.with_columns(
        kind=pl.lit("memset", _STR),
        src_mem=pl.lit(None, _STR),
        dst_mem=_mem_or_null("mem_kind", mem),
        name=label,
    ).drop("mem_kind")


def _empty_memops() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            **_BASE_SCHEMA,
            "bytes": _I64,
            "kind": _STR,
            "src_mem": _STR,
            "dst_mem": _STR,
            "name": _STR,
        }
    )


def read_syncs(db: NsysDb) -> pl.DataFrame:
    """GPU-side synchronization records with their CUPTI sync type."""
    schema = {**_BASE_SCHEMA, "sync_type": _I64}
    if SYNC_TABLE not in db.tables:
        return pl.DataFrame(schema={**_BASE_SCHEMA, "kind": _STR})
    items = [*_gpu_base(db, SYNC_TABLE), db.col(SYNC_TABLE, "syncType", "sync_type")]
    raw = db.frame(f"SELECT {', '.join(items)} FROM {SYNC_TABLE}", schema)
    symbols = _enum_symbols(db, "ENUM_CUPTI_SYNC_TYPE", _SYNC_PREFIX, _SYNC_DEFAULT)
    mapping = {i: _SYNC_KIND[s] for i, s in symbols.items() if s in _SYNC_KIND}
    kind = pl.col("sync_type").replace_strict(mapping, default="other", return_dtype=_STR)
    return raw.with_columns(kind=kind).drop("sync_type")
