"""The canonical tables every parser produces, and the bundle that carries them.

Nothing downstream of a parser knows which file format a table came from: Kineto JSON,
Nsight Systems SQLite and DCGM dumps all become these tables. Times are int64 nanoseconds
on one clock per trace (absolute Unix epoch ns whenever the source carries absolute time,
see ``TraceMeta.clock``); every column name carries its unit.

Unit suffixes, here and in every frame, field and evidence key derived from these tables:
``_ns`` nanoseconds (int64); ``bytes`` / ``_bytes`` bytes; ``_share`` a fraction from 0 to
1 of a stated whole; ``_pct`` a percentage from 0 to 100 (``share_pct`` is a share written
as a percentage); ``_ratio`` a DCGM activity ratio, 0 to 1 as DCGM reports it; ``_tflops``
10^12 FLOP/s; ``_w``, ``_j``, ``_mhz`` watts, joules, megahertz; ``_mib`` mebibytes (DCGM's
framebuffer fields, kept in DCGM's unit). Byte counts are shown in decimal units (KB, MB,
GB: steps of 10^3), as bandwidths (GB/s) are: `analyzer.report.fmt.size` in prose and
`fmt.KB`/`fmt.MB`/`fmt.GB` for table columns, in the sections and the rules alike (no rule
writes GiB, MiB or KiB). Binary units appear only where a source's own unit is named (the
``_mib`` fields) or in messages about input limits.

``validate`` checks the invariants as a table leaves a parser (types, ``dur_ns >= 0``,
sorted by start), in the spirit of pyinstrument's ``Frame.self_check``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import polars as pl
import pyarrow as pa

_CAT = pl.Categorical()
_I32 = pl.Int32()
_I64 = pl.Int64()
_F64 = pl.Float64()
_STR = pl.String()

#: Column name -> polars dtype, per canonical table. Order is the column order.
SCHEMAS: Final[Mapping[str, Mapping[str, pl.DataType]]] = {
    # One row per GPU kernel.
    "kernels": {
        "rank": _I32,
        "device": _I32,
        "stream": _I64,
        "name": _CAT,
        "category": _CAT,  # gemm, attention, conv, elementwise, reduction, norm, comm, copy, other
        "start_ns": _I64,
        "dur_ns": _I64,
        "correlation": _I64,
        "external_id": _I64,
        "grid_x": _I32,
        "grid_y": _I32,
        "grid_z": _I32,
        "block_x": _I32,
        "block_y": _I32,
        "block_z": _I32,
        "registers_per_thread": _I32,
        "shared_mem_bytes": _I64,
        "blocks_per_sm": _F64,
        "warps_per_sm": _F64,
        "occupancy_pct": _F64,
    },
    # One row per memcpy / memset on the GPU timeline.
    "memops": {
        "rank": _I32,
        "device": _I32,
        "stream": _I64,
        "name": _CAT,
        "kind": _CAT,  # HtoD, DtoH, DtoD, PtoP, HtoH, memset, other
        "src_mem": _CAT,  # pageable, pinned, device, managed, unknown (null when not recorded)
        "dst_mem": _CAT,
        "bytes": _I64,
        "start_ns": _I64,
        "dur_ns": _I64,
        "correlation": _I64,
        "external_id": _I64,
    },
    # One row per CUDA/HIP runtime or driver API call on a CPU thread.
    "runtime": {
        "rank": _I32,
        "pid": _I64,
        "tid": _I64,
        "name": _CAT,
        "kind": _CAT,  # runtime, driver
        "start_ns": _I64,
        "dur_ns": _I64,
        "correlation": _I64,
        "external_id": _I64,
    },
    # One row per GPU-side synchronization record (Kineto cat cuda_sync, Nsight SYNCHRONIZATION).
    "syncs": {
        "rank": _I32,
        "device": _I32,
        "stream": _I64,
        "kind": _CAT,  # event_sync, stream_wait_event, stream_sync, context_sync, other
        "start_ns": _I64,
        "dur_ns": _I64,
        "correlation": _I64,
    },
    # One row per CPU op, user annotation, python function, or GPU user annotation.
    "ops": {
        "rank": _I32,
        "op_id": _I64,  # unique within the bundle
        "pid": _I64,
        "tid": _I64,
        "name": _CAT,
        "kind": _CAT,  # cpu_op, user_annotation, python_function, gpu_user_annotation, nvtx
        "start_ns": _I64,
        "dur_ns": _I64,
        "external_id": _I64,
        "sequence_number": _I64,
        "depth": _I32,  # nesting depth on its thread, 0 = outermost
        "parent": _I64,  # op_id of the enclosing op on the same thread (null at depth 0)
        "input_dims": _STR,  # JSON text of `Input Dims`, kept raw: decoded only for modeled ops
        "input_types": _STR,  # JSON text of `Input type`
        "concrete_inputs": _STR,  # JSON text of `Concrete Inputs`
    },
    # One row per collective (from record_param_comms or the NCCL/RCCL kernel's own args).
    "comms": {
        "rank": _I32,
        "collective": _CAT,  # allreduce, allgather, reduce_scatter, all_to_all, broadcast, ...
        "dtype": _CAT,
        "in_nelems": _I64,
        "out_nelems": _I64,
        "bytes": _I64,  # message size: max(in, out) elements x dtype size
        "group_size": _I32,
        "pg_name": _CAT,
        "seq": _I64,
        "start_ns": _I64,  # of the GPU kernel when linked, else of the CPU op
        "dur_ns": _I64,
        "correlation": _I64,  # the kernel's correlation id when linked
        "external_id": _I64,
    },
    # One row per profiled iteration (`ProfilerStep#N`, or an NVTX range named like a step).
    "steps": {
        "rank": _I32,
        "step": _I64,
        "start_ns": _I64,
        "end_ns": _I64,
    },
    # One row per `[memory]` allocator event (profile_memory=True).
    "memory": {
        "rank": _I32,
        "device": _I32,  # -1 for host memory
        "ts_ns": _I64,
        "bytes": _I64,  # signed: positive on allocation, negative on free
        "total_allocated_bytes": _I64,
        "total_reserved_bytes": _I64,
    },
    # One row per counter sample (DCGM, Nsight GPU metrics); the unit is in the metric name.
    "counters": {
        "source": _CAT,  # dcgm-dmon, dcgm-exporter, prometheus-json, csv, nsys
        "host": _CAT,
        "gpu": _I32,
        "gpu_uuid": _CAT,
        "model_name": _CAT,
        "metric": _CAT,  # e.g. sm_active_ratio, power_w, fb_used_mib
        "ts_ns": _I64,
        "value": _F64,
    },
}

TABLE_NAMES: Final[tuple[str, ...]] = tuple(SCHEMAS)

#: Tables whose rows must leave the parser sorted by this column.
_SORT_KEY: Final[Mapping[str, str]] = {
    "kernels": "start_ns",
    "memops": "start_ns",
    "runtime": "start_ns",
    "syncs": "start_ns",
    "ops": "start_ns",
    "comms": "start_ns",
    "steps": "start_ns",
    "memory": "ts_ns",
    "counters": "ts_ns",
}


def polars_schema(table: str) -> pl.Schema:
    """The polars schema of a canonical table."""
    return pl.Schema(dict(SCHEMAS[table]))


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of a canonical table (categoricals become dictionary arrays)."""
    return empty_table(table).to_arrow().schema


def empty_table(table: str) -> pl.DataFrame:
    """A zero-row frame with the table's exact schema."""
    return pl.DataFrame(schema=polars_schema(table))


def table_from_columns(table: str, columns: Mapping[str, Any]) -> pl.DataFrame:
    """Build a canonical table from column sequences; missing columns become nulls.

    Columns may be Python lists, numpy arrays, Arrow arrays or polars Series. Unknown
    column names are an error (a typo must not pass silently).
    """
    schema = SCHEMAS[table]
    unknown = set(columns) - set(schema)
    if unknown:
        raise KeyError(f"unknown columns for table {table!r}: {sorted(unknown)}")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns of {table!r} differ in length: {sorted(lengths)}")
    height = lengths.pop() if lengths else 0
    series = []
    for name, dtype in schema.items():
        if name in columns:
            values = columns[name]
            s = values if isinstance(values, pl.Series) else pl.Series(name, values, strict=False)
            series.append(s.alias(name).cast(dtype, strict=False))
        else:
            series.append(pl.Series(name, [None] * height, dtype=dtype))
    return pl.DataFrame(series)


def conform(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """Cast an existing frame to the canonical schema: add missing columns, order, types."""
    schema = SCHEMAS[table]
    unknown = set(df.columns) - set(schema)
    if unknown:
        raise KeyError(f"unknown columns for table {table!r}: {sorted(unknown)}")
    exprs = [
        pl.col(n).cast(t, strict=False) if n in df.columns else pl.lit(None, dtype=t).alias(n)
        for n, t in schema.items()
    ]
    return df.select(exprs)


class SchemaViolation(AssertionError):
    """A parser produced a table that breaks the canonical invariants (a bug, not bad input)."""


def validate(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """Check a canonical table's invariants and return it unchanged.

    Checks: exact column names and dtypes, no negative ``dur_ns``, ``end_ns >= start_ns``,
    non-null start times, rows sorted by their start column.
    """
    expected = polars_schema(table)
    if df.schema != expected:
        raise SchemaViolation(f"{table}: schema {dict(df.schema)} != {dict(expected)}")
    if df.height == 0:
        return df
    if "dur_ns" in df.columns and (df["dur_ns"] < 0).any():
        raise SchemaViolation(f"{table}: negative dur_ns")
    if table == "steps" and (df["end_ns"] < df["start_ns"]).any():
        raise SchemaViolation("steps: end_ns before start_ns")
    key = _SORT_KEY[table]
    if df[key].null_count():
        raise SchemaViolation(f"{table}: null {key}")
    if not df[key].is_sorted():
        raise SchemaViolation(f"{table}: not sorted by {key}")
    return df


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One GPU as the trace describes it (Kineto `deviceProperties`, Nsight TARGET_INFO_GPU)."""

    rank: int
    device: int
    name: str
    total_mem_bytes: int | None = None
    compute_major: int | None = None
    compute_minor: int | None = None
    num_sms: int | None = None
    max_threads_per_sm: int | None = None
    max_threads_per_block: int | None = None
    regs_per_sm: int | None = None
    shared_mem_per_sm_bytes: int | None = None
    warp_size: int | None = None
    mem_bandwidth_bytes_per_s: int | None = None
    sm_clock_hz: int | None = None


@dataclass(frozen=True, slots=True)
class RankInfo:
    """What one rank's file says about itself."""

    rank: int
    path: str
    world_size: int | None = None
    backend: str | None = None
    rank_from_trace: bool = True  # False when the rank was inferred (no distributedInfo)
    span_start_ns: int | None = None
    span_end_ns: int | None = None
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class TraceMeta:
    """Everything about a trace that is not a table row.

    ``clock`` says what the times are: ``"epoch"`` (absolute Unix ns, comparable across ranks
    and with DCGM samples) or ``"relative"`` (ns from an unknown origin, one per rank).
    ``warnings`` collects problems a parser survived (truncated file, inferred rank, ...);
    the report shows them.
    """

    source: str  # kineto, nsys, dcgm, parquet
    paths: tuple[str, ...]
    clock: str = "epoch"
    ranks: tuple[RankInfo, ...] = ()
    devices: tuple[DeviceInfo, ...] = ()
    world_size: int | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    flags: Mapping[str, str] = field(default_factory=dict)  # record_shapes, profile_memory, ...
    warnings: tuple[str, ...] = ()

    def with_warnings(self, *messages: str) -> TraceMeta:
        """A copy with more warnings appended."""
        return replace(self, warnings=(*self.warnings, *messages))


@dataclass(frozen=True, slots=True, weakref_slot=True)
class TraceTables:
    """A frozen bundle of the canonical polars tables plus `TraceMeta`.

    Every table is always present (possibly with zero rows) and validated.
    """

    meta: TraceMeta
    kernels: pl.DataFrame = field(default_factory=lambda: empty_table("kernels"))
    memops: pl.DataFrame = field(default_factory=lambda: empty_table("memops"))
    runtime: pl.DataFrame = field(default_factory=lambda: empty_table("runtime"))
    syncs: pl.DataFrame = field(default_factory=lambda: empty_table("syncs"))
    ops: pl.DataFrame = field(default_factory=lambda: empty_table("ops"))
    comms: pl.DataFrame = field(default_factory=lambda: empty_table("comms"))
    steps: pl.DataFrame = field(default_factory=lambda: empty_table("steps"))
    memory: pl.DataFrame = field(default_factory=lambda: empty_table("memory"))
    counters: pl.DataFrame = field(default_factory=lambda: empty_table("counters"))
    #: Frames derived from these tables, computed once: see `derived`. Not an init
    #: argument, so ``replace()`` starts a new bundle with an empty cache. Typed ``Any``
    #: because mypy checks ``replace(t, **frames)`` against every field, this one included.
    _derived: Any = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def derived(self) -> dict[tuple[object, ...], pl.DataFrame]:
        """Cache of frames derived from these tables (`analyzer.metrics.timeline.per_tables`
        fills it), keyed by function and arguments; it lives and dies with the bundle."""
        cache: dict[tuple[object, ...], pl.DataFrame] = self._derived
        return cache

    def table(self, name: str) -> pl.DataFrame:
        """A table by its canonical name."""
        if name not in SCHEMAS:
            raise KeyError(name)
        frame: pl.DataFrame = getattr(self, name)
        return frame

    def validate(self) -> TraceTables:
        """Check every table's invariants; return self for chaining."""
        for name in TABLE_NAMES:
            validate(name, self.table(name))
        return self

    def ranks(self) -> list[int]:
        """The ranks present in the meta data, sorted."""
        return sorted({r.rank for r in self.meta.ranks})


def concat_tables(parts: Sequence[TraceTables], meta: TraceMeta) -> TraceTables:
    """Merge per-rank bundles into one (rows re-sorted by start), under a merged meta."""
    merged: dict[str, pl.DataFrame] = {}
    for name in TABLE_NAMES:
        if name == "ops" and len(parts) > 1:
            merged[name] = _concat_ops(parts)  # op ids renumbered so they stay unique
            continue
        frames = [p.table(name) for p in parts if p.table(name).height]
        if not frames:
            merged[name] = empty_table(name)
            continue
        df = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
        merged[name] = df.sort(_SORT_KEY[name], maintain_order=True)
    return TraceTables(meta=meta, **merged)


def _concat_ops(parts: Sequence[TraceTables]) -> pl.DataFrame:
    """Concatenate ops with `op_id` (and `parent`, which refers to it) kept unique."""
    frames = []
    offset = 0
    for p in parts:
        ops = p.ops
        if ops.height:
            frames.append(ops.with_columns(pl.col("op_id") + offset, pl.col("parent") + offset))
            offset += int(ops["op_id"].max() or 0) + 1  # type: ignore[arg-type]
    if not frames:
        return empty_table("ops")
    return pl.concat(frames, how="vertical").sort("start_ns", maintain_order=True)
