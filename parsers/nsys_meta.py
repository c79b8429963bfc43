"""What an Nsight Systems export says about the run: clock origin, GPUs, host, versions, ranks.

Ranks. An export records processes and devices, not distributed ranks, so ranks are
inferred: one rank per distinct (process, device) pair that ran kernels (or, for a process
without kernels, memory operations), numbered in order of device then process id. That
matches torchrun's usual ``LOCAL_RANK == device`` (h100_2gpu_1s: pid 111 on GPU 0 is rank 0,
pid 112 on GPU 1 is rank 1) and stays one rank per GPU when one process drives several.
CPU-side rows (API calls, NVTX) take the lowest rank of their process; a process that called
CUDA but ran nothing on a GPU gets a rank of its own after the GPU ranks. Every ``RankInfo``
says ``rank_from_trace=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import polars as pl
from gpu_trace_analyzer.parsers.nsys_db import NsysDb, first_table, key_values
from gpu_trace_analyzer.parsers.schema import DeviceInfo

_I64 = pl.Int64()
_EXPORT_META: Final = ("META_DATA_EXPORT", "EXPORT_META_DATA")
_GPU_TABLE: Final = "TARGET_INFO_GPU"
_SYSTEM_ENV: Final = "TARGET_INFO_SYSTEM_ENV"

# TARGET_INFO_GPU column -> DeviceInfo field.
_GPU_FIELDS: Final[Mapping[str, str]] = {
    "totalMemory": "total_mem_bytes",
    "computeMajor": "compute_major",
    "computeMinor": "compute_minor",
    "smCount": "num_sms",
    "maxThreadsPerBlock": "max_threads_per_block",
    "maxRegistersPerSm": "regs_per_sm",
    "maxShmemPerSm": "shared_mem_per_sm_bytes",
    "threadsPerWarp": "warp_size",
    "memoryBandwidth": "mem_bandwidth_bytes_per_s",
    "clockRate": "sm_clock_hz",
}


def session_start_ns(db: NsysDb) -> int | None:
    """UTC epoch ns of the capture start: the export's timestamps count from it."""
    table = "TARGET_INFO_SESSION_START_TIME"
    if not db.has(table, "utcEpochNs"):
        return None
    rows = db.scalar_rows(f"SELECT utcEpochNs FROM {table} WHERE utcEpochNs IS NOT NULL LIMIT 1")
    return int(rows[0][0]) if rows else None


def system_env(db: NsysDb) -> dict[str, str]:
    """TARGET_INFO_SYSTEM_ENV as name -> value (hostname, driver versions)."""
    if not db.has(_SYSTEM_ENV, "name", "value"):
        return {}
    rows = db.scalar_rows(f"SELECT name, value FROM {_SYSTEM_ENV}")
    return {str(k): str(v) for k, v in rows if v is not None}


def versions(db: NsysDb, env: Mapping[str, str]) -> dict[str, str]:
    """Nsight Systems, export schema and driver versions."""
    table = first_table(db, _EXPORT_META)
    export = key_values(db, table) if table else {}
    wanted = {
        "nsys": export.get("EXPORT_PRODUCT_VERSION"),
        "nsys_export_schema": export.get("EXPORT_SCHEMA_VERSION"),
        "nvidia_driver": env.get("NvDriverVersion"),
        "cuda_driver": env.get("CudaDriverVersion"),
    }
    return {k: v for k, v in wanted.items() if v}


def gpus(db: NsysDb) -> dict[int, dict[str, Any]]:
    """TARGET_INFO_GPU rows by device id, with the columns this export has."""
    if not db.has(_GPU_TABLE, "id"):
        return {}
    wanted = ["id", "name", "uuid", *_GPU_FIELDS, "maxWarpsPerSm"]
    present = [c for c in wanted if db.has(_GPU_TABLE, c)]
    rows = db.scalar_rows(f"SELECT {', '.join(present)} FROM {_GPU_TABLE}")
    return {int(r[0]): dict(zip(present, r, strict=True)) for r in rows if r[0] is not None}


def sm_counts(db: NsysDb, gpu_rows: Mapping[int, Mapping[str, Any]]) -> dict[int, int]:
    """SMs per device: TARGET_INFO_GPU.smCount, else TARGET_INFO_CUDA_DEVICE's count."""
    counts: dict[int, int] = {}
    table = "TARGET_INFO_CUDA_DEVICE"
    if db.has(table, "cudaId", "numMultiprocessors"):
        rows = db.scalar_rows(f"SELECT cudaId, numMultiprocessors FROM {table}")
        counts = {int(d): int(n) for d, n in rows if d is not None and n}
    for device, row in gpu_rows.items():
        sms = _int_or_none(row.get("smCount"))
        if sms:
            counts[device] = sms
    return counts


def device_info(rank: int, device: int, gpu: Mapping[str, Any]) -> DeviceInfo:
    """A DeviceInfo from one TARGET_INFO_GPU row."""
    fields = {f: _int_or_none(gpu.get(c)) for c, f in _GPU_FIELDS.items()}
    warps, warp_size = _int_or_none(gpu.get("maxWarpsPerSm")), fields["warp_size"]
    threads = warps * warp_size if warps is not None and warp_size is not None else None
    return DeviceInfo(
        rank=rank,
        device=device,
        name=str(gpu.get("name") or f"GPU {device}"),
        max_threads_per_sm=threads,
        **fields,
    )


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def assign_ranks(kernels: pl.DataFrame, memops: pl.DataFrame, cpu_pids: pl.Series) -> pl.DataFrame:
    """The rank of each (pid, device) pair, and of CPU-only processes (device null)."""
    schema = pl.Schema({"pid": _I64, "device": _I64})
    kernel_pairs = kernels.select("pid", "device").unique()
    memop_pairs = memops.select("pid", "device").unique()
    extra = memop_pairs.join(kernel_pairs.select("pid").unique(), on="pid", how="anti")
    pairs = (
        pl.concat([kernel_pairs.cast(schema), extra.cast(schema)], how="vertical")
        .unique()
        .sort(["device", "pid"], nulls_last=True)
    )
    pids = cpu_pids.cast(_I64).drop_nulls().unique().sort()
    cpu_only = pids.filter(~pids.is_in(pairs["pid"].drop_nulls().implode()))
    cpu_rows = pl.DataFrame({"pid": cpu_only, "device": None}, schema=schema)
    return (
        pl.concat([pairs, cpu_rows], how="vertical")
        .with_row_index("rank")
        .with_columns(pl.col("rank").cast(pl.Int32()))
    )


def with_gpu_rank(frame: pl.DataFrame, ranks: pl.DataFrame) -> pl.DataFrame:
    """Add ``rank`` to GPU activity rows."""
    by_pair = ranks.filter(pl.col("device").is_not_null()).rename({"rank": "rank_pair"})
    by_pid = ranks.group_by("pid").agg(rank_pid=pl.col("rank").min())
    by_dev = ranks.group_by("device").agg(rank_dev=pl.col("rank").min()).drop_nulls("device")
    joined = (
        frame.join(by_pair, on=["pid", "device"], how="left", nulls_equal=False)
        .join(by_pid, on="pid", how="left")
        .join(by_dev, on="device", how="left")
    )
    rank = pl.coalesce("rank_pair", "rank_pid", "rank_dev", pl.lit(0, pl.Int32()))
    return joined.with_columns(rank=rank).drop("rank_pair", "rank_pid", "rank_dev")


def with_cpu_rank(frame: pl.DataFrame, ranks: pl.DataFrame) -> pl.DataFrame:
    """Add ``rank`` to CPU rows: the lowest rank of their process (0 when unknown)."""
    by_pid = ranks.group_by("pid").agg(rank=pl.col("rank").min())
    return frame.join(by_pid, on="pid", how="left").with_columns(
        pl.col("rank").fill_null(0).cast(pl.Int32())
    )
