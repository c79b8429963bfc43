"""Collectives as one vocabulary, named from the op that launched them.

NCCL names its kernels after the transport it runs, not after the collective the program asked
for: TorchRec's all-to-all and even all-reduces run as ``ncclKernel_SendRecv_*``. The
collective is the launching op's: the ``c10d::*`` / ``nccl:*`` op (or ``record_param_comms``
with its ``Collective name``) on the CPU thread that made the kernel's runtime call. This module
renames each communication row of the ``comms`` table from that op (kernel correlation ->
runtime call -> enclosing ``nccl:*`` op, else ``c10d::*`` op), and fills its message bytes from
the op's tensor shapes when the trace recorded no size. Every rule and the workload profile
read collectives through `comms_by_launching_op` and `normalize_collective` (the one mapping,
in `parsers.collectives`: the Kineto parser normalizes while reading, and parsers never import
`analyzer`; rules import it from here, never from another rule).
"""

from __future__ import annotations

from typing import Final

import msgspec
import polars as pl
from gpu_trace_analyzer.parsers.collectives import normalize_collective
from gpu_trace_analyzer.parsers.kineto_link import DTYPE_BYTES
from gpu_trace_analyzer.parsers.schema import TraceTables

__all__ = [
    "comms_by_launching_op",
    "element_bytes",
    "launching_collectives",
    "normalize_collective",
    "op_tensor_bytes",
]

#: Launching ops that name a collective: ``nccl:all_to_all``, ``c10d::alltoall_base_``.
_NCCL_OP: Final = r"^nccl:"
_C10D_OP: Final = r"^c10d::"
#: PyTorch symmetric-memory collectives (vLLM's NVLink all-reduce on H100/B200):
#: ``symm_mem::multimem_all_reduce_`` launches ``multimem_all_reduce_kernel``.
_SYMM_OP: Final = r"^symm_mem::"
#: ``Input type`` spellings of one-byte and other types missing from the dtype table.
_EXTRA_DTYPE_BYTES: Final[dict[str, int]] = {
    "unsigned char": 1,
    "signed char": 1,
    "c10::half": 2,
    "c10::bfloat16": 2,
    "c10::float8_e4m3fn": 1,
    "c10::float8_e5m2": 1,
}


def element_bytes(type_name: str) -> int | None:
    """Bytes per element of a PyTorch ``Input type`` spelling (None when unknown)."""
    key = type_name.strip().lower()
    if key in _EXTRA_DTYPE_BYTES:
        return _EXTRA_DTYPE_BYTES[key]
    return DTYPE_BYTES.get(key.removeprefix("c10::"))


def op_tensor_bytes(input_dims: str | None, input_types: str | None) -> int | None:
    """The largest tensor argument of an op in bytes, from its recorded shapes and types."""
    if not input_dims or not input_types:
        return None
    try:
        dims = msgspec.json.decode(input_dims)
        types = msgspec.json.decode(input_types)
    except msgspec.DecodeError:
        return None
    if not isinstance(dims, list) or not isinstance(types, list):
        return None
    best: int | None = None
    for shape, kind in zip(dims, types, strict=False):
        if not isinstance(shape, list) or not shape or not isinstance(kind, str):
            continue
        size = element_bytes(kind)
        if size is None or not all(isinstance(d, int) and d >= 0 for d in shape):
            continue
        n = size
        for d in shape:
            n *= d
        best = n if best is None else max(best, n)
    return best


def launching_collectives(t: TraceTables) -> pl.DataFrame:
    """Per communication row with a kernel correlation: the collective its launching op names.

    Columns: rank, correlation, op_collective, op_name, op_bytes, op_group_size. The op is the
    innermost ``nccl:*`` op enclosing the kernel's runtime call on the calling thread, else the
    innermost ``c10d::*`` one, else the innermost ``symm_mem::*`` one (PyTorch's
    symmetric-memory all-reduce); bytes are the largest tensor among those ops' arguments; the
    group size of an all-gather/reduce-scatter is its output/input element ratio.
    """
    schema = {
        "rank": pl.Int32(),
        "correlation": pl.Int64(),
        "op_collective": pl.String(),
        "op_name": pl.String(),
        "op_bytes": pl.Int64(),
        "op_group_size": pl.Int32(),
    }
    wanted = t.comms.select("rank", "correlation").drop_nulls().unique()
    if wanted.height == 0 or t.ops.height == 0 or t.runtime.height == 0:
        return pl.DataFrame(schema=schema)
    calls = (
        t.runtime.select("rank", "tid", "correlation", "start_ns", "dur_ns")
        .join(wanted, on=["rank", "correlation"], how="inner")
        .with_columns((pl.col("start_ns") + pl.col("dur_ns")).alias("call_end"))
        .sort("start_ns")
    )
    if calls.height == 0:
        return pl.DataFrame(schema=schema)
    # ``nccl:*`` ranges are user annotations, ``c10d::*`` ops are CPU ops.
    ops = t.ops.filter(pl.col("kind").is_in(["cpu_op", "user_annotation"])).with_columns(
        pl.col("name").cast(pl.String).alias("op_name")
    )
    tags = (("n", _NCCL_OP), ("c", _C10D_OP), ("s", _SYMM_OP))
    found = [_enclosing(calls, ops, pattern, tag) for tag, pattern in tags]
    joined = calls.select("rank", "correlation")
    for frame in found:
        joined = joined.join(frame, on=["rank", "correlation"], how="left")
    rows = []
    for r in joined.iter_rows(named=True):
        name = r["n_name"] or r["c_name"] or r["s_name"]
        if not name:
            continue
        collective = normalize_collective(name)
        sizes = [
            op_tensor_bytes(r[f"{tag}_dims"], r[f"{tag}_types"])
            for tag in ("n", "c", "s")
            if r[f"{tag}_name"]
        ]
        known = [s for s in sizes if s]
        rows.append(
            {
                "rank": r["rank"],
                "correlation": r["correlation"],
                "op_collective": collective,
                "op_name": r["c_name"] or r["s_name"] or name,
                "op_bytes": max(known) if known else None,
                "op_group_size": _gather_group(collective, r["c_dims"] or r["s_dims"]),
            }
        )
    return pl.DataFrame(rows, schema=schema)


def _enclosing(calls: pl.DataFrame, ops: pl.DataFrame, pattern: str, tag: str) -> pl.DataFrame:
    """Per runtime call: the latest-starting op matching ``pattern`` on its thread that still
    encloses it (its name, shapes and types, columns prefixed with ``tag``)."""
    cand = (
        ops.filter(pl.col("op_name").str.contains(pattern))
        .select(
            "rank",
            "tid",
            pl.col("start_ns").alias("op_start"),
            (pl.col("start_ns") + pl.col("dur_ns")).alias("op_end"),
            pl.col("op_name").alias(f"{tag}_name"),
            pl.col("input_dims").alias(f"{tag}_dims"),
            pl.col("input_types").alias(f"{tag}_types"),
        )
        .sort("op_start")
    )
    hit = calls.join_asof(
        cand,
        left_on="start_ns",
        right_on="op_start",
        by=["rank", "tid"],
        check_sortedness=False,
    )
    inside = pl.col("op_end").is_not_null() & (pl.col("op_end") >= pl.col("call_end"))
    return hit.select(
        "rank",
        "correlation",
        *(
            pl.when(inside).then(pl.col(c)).otherwise(None).alias(c)
            for c in (f"{tag}_name", f"{tag}_dims", f"{tag}_types")
        ),
    ).unique(["rank", "correlation"], keep="first")


def _gather_group(collective: str, dims_text: str | None) -> int | None:
    """Group size of an all-gather / reduce-scatter from its output/input element ratio."""
    if collective not in ("allgather", "reduce_scatter") or not dims_text:
        return None
    try:
        dims = msgspec.json.decode(dims_text)
    except msgspec.DecodeError:
        return None
    counts = []
    for shape in dims[:2] if isinstance(dims, list) else []:
        if isinstance(shape, list) and shape and all(isinstance(d, int) for d in shape):
            n = 1
            for d in shape:
                n *= d
            counts.append(n)
    if len(counts) < 2 or min(counts) <= 0 or max(counts) % min(counts):
        return None
    ratio = max(counts) // min(counts)
    return ratio if ratio > 1 else None


def comms_by_launching_op(t: TraceTables) -> pl.DataFrame:
    """The comms table with each collective named from its launching op where one is linked
    (``ncclKernel_SendRecv`` launched by ``c10d::alltoall_base_`` is an all_to_all), bytes and
    group size filled from the op's shapes where the trace recorded none, and every name
    canonical (`normalize_collective`). Adds ``launch_op`` (the c10d/nccl op's name, or null)."""
    comms = t.comms.with_columns(pl.col("collective").cast(pl.String))
    linked = launching_collectives(t)
    if linked.height:
        comms = comms.join(linked, on=["rank", "correlation"], how="left", maintain_order="left")
    else:
        comms = comms.with_columns(
            pl.lit(None, pl.String).alias("op_collective"),
            pl.lit(None, pl.String).alias("op_name"),
            pl.lit(None, pl.Int64).alias("op_bytes"),
            pl.lit(None, pl.Int32).alias("op_group_size"),
        )
    distinct = comms["collective"].unique().drop_nulls().to_list()
    canonical = {c: normalize_collective(c) for c in distinct}
    world = t.meta.world_size
    return comms.with_columns(
        pl.coalesce(
            "op_collective",
            pl.col("collective").replace_strict(canonical, default=None, return_dtype=pl.String),
        ).alias("collective"),
        pl.coalesce(pl.col("bytes"), pl.col("op_bytes")).alias("bytes"),
        pl.coalesce(
            pl.col("group_size"),
            pl.col("op_group_size"),
            pl.lit(world if world and world > 1 else None, pl.Int32),
        ).alias("group_size"),
        pl.col("op_name").alias("launch_op"),
    ).drop("op_collective", "op_name", "op_bytes", "op_group_size")
