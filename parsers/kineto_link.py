"""Finishing a Kineto trace's tables: what needs every event of a rank at once.

The per-kind frames from `kineto_build` are concatenated here, then: events without a time
or with a negative duration are dropped (counted in a warning); kernels get a category;
copies get their kind and memory types from their names; ops get ids and their nesting on
each thread; steps come from ``ProfilerStep#N`` annotations; collectives are assembled from
NCCL kernels, ``record_param_comms`` ops and ``collective_comm`` events. Every table leaves
conformed to the canonical schema, sorted by start.
"""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field
from typing import Final

import polars as pl
from gpu_trace_analyzer.parsers.categories import categorize
from gpu_trace_analyzer.parsers.schema import TABLE_NAMES, conform, empty_table

_STEP_NAME: Final = r"^ProfilerStep#(\d+)$"
_MEMCPY_NAME: Final = r"^Memcpy\s+(\w+)"
_MEM_PAIR: Final = r"\((\w+)\s*->\s*(\w+)\)"
_MEMSET_TARGET: Final = r"^Memset\s*\((\w+)\)"
_COPY_KINDS: Final = ("HtoD", "DtoH", "DtoD", "PtoP", "HtoH")
_MEM_KIND: Final[dict[str, str]] = {
    "pageable": "pageable",
    "pinned": "pinned",
    "device": "device",
    "managed": "managed",
}
#: Bytes per element of the dtype names PyTorch writes in collective args.
DTYPE_BYTES: Final[dict[str, int]] = {
    "float": 4,
    "float32": 4,
    "double": 8,
    "float64": 8,
    "half": 2,
    "float16": 2,
    "bfloat16": 2,
    "byte": 1,
    "uint8": 1,
    "char": 1,
    "int8": 1,
    "short": 2,
    "int16": 2,
    "int": 4,
    "int32": 4,
    "long": 8,
    "int64": 8,
    "bool": 1,
    "complexhalf": 4,
    "complexfloat": 8,
    "complexdouble": 16,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "float8_e4m3fnuz": 1,
    "float8_e5m2fnuz": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
}
_COLLECTIVE: Final[dict[str, str]] = {
    "allreduce": "allreduce",
    "allgather": "allgather",
    "reducescatter": "reduce_scatter",
    "alltoall": "all_to_all",
    "alltoallv": "all_to_all",
    "broadcast": "broadcast",
    "reduce": "reduce",
    "gather": "gather",
    "scatter": "scatter",
    "send": "send",
    "recv": "recv",
    "sendrecv": "sendrecv",
    "barrier": "barrier",
    "wait": "wait",
}
#: Variant suffixes of PyTorch's collective names (``all_gather_into_tensor_coalesced``).
_COLLECTIVE_SUFFIXES: Final = ("_coalesced", "_tensor", "_into", "_base")
_NCCL_KERNEL_OP: Final = re.compile(r"(?:nccl|rccl)(?:Dev)?Kernel_([A-Za-z]+)", re.IGNORECASE)
_COMM_COLUMNS: Final = (
    "_c_collective",
    "_c_dtype",
    "_c_in_nelems",
    "_c_out_nelems",
    "_c_group_size",
    "_c_pg_name",
    "_c_seq",
)


@dataclass(slots=True)
class Finished:
    """Canonical tables of one rank plus the warnings finishing produced."""

    tables: dict[str, pl.DataFrame]
    warnings: list[str] = field(default_factory=list)


def finish(
    frames: dict[str, list[pl.DataFrame]], rank: int, label: str, offset_ns: int = 0
) -> Finished:
    """Concatenate, clean, link and conform one rank's frames into canonical tables.

    Times move by ``offset_ns`` onto the trace's clock. ``frames`` is emptied as it is
    consumed, and every intermediate is dropped as soon as the next one exists: for a
    large trace, two copies of a table at once is the memory peak of the whole parse.
    """
    out = Finished(tables={})
    merged: dict[str, pl.DataFrame] = {}
    for name in list(frames):
        frame = _drop_bad_times(_concat(frames.pop(name)), name, label, out.warnings)
        merged[name] = _shifted(frame, name, offset_ns)
    kernels = _kernels(merged.pop("kernels", None))
    ops = _ops(merged.pop("ops", None))
    runtime = merged.pop("runtime", None)
    tables: dict[str, pl.DataFrame | None] = {
        "memops": _memops(merged.pop("memops", None), runtime),
        "comms": _comms(kernels, ops, merged.pop("collectives", None)),
        "steps": _steps(ops),
        "kernels": kernels,
        "runtime": runtime,
        "syncs": merged.pop("syncs", None),
        "ops": ops,
        "memory": merged.pop("memory", None),
    }
    del kernels, ops, runtime
    for name in TABLE_NAMES:
        out.tables[name] = _canonical(name, tables.pop(name, None), rank)
    return out


def _shifted(frame: pl.DataFrame, table: str, offset_ns: int) -> pl.DataFrame:
    """Times moved onto the trace's clock (frames are built relative to the file)."""
    if offset_ns == 0:
        return frame
    column = "ts_ns" if table == "memory" else "start_ns"
    return frame.with_columns(pl.col(column) + offset_ns)


def _concat(parts: list[pl.DataFrame]) -> pl.DataFrame:
    return parts[0] if len(parts) == 1 else pl.concat(parts, how="diagonal_relaxed")


def _drop_bad_times(
    frame: pl.DataFrame, table: str, label: str, warnings: list[str]
) -> pl.DataFrame:
    """Drop rows with no start, or with a missing or negative duration, and say so."""
    start = "ts_ns" if table == "memory" else "start_ns"
    keep = pl.col(start).is_not_null()
    if "dur_ns" in frame.columns:
        keep = keep & pl.col("dur_ns").is_not_null() & (pl.col("dur_ns") >= 0)
    dropped = frame.height - frame.select(keep.sum()).item()
    if not dropped:
        return frame
    warnings.append(
        f"{label}: dropped {dropped} {table} events without a valid timestamp or duration"
    )
    return frame.filter(keep)


def _canonical(name: str, frame: pl.DataFrame | None, rank: int) -> pl.DataFrame:
    """Private columns dropped, rank set, cast to the canonical schema."""
    if frame is None or frame.height == 0:
        return empty_table(name)
    public = frame.drop([c for c in frame.columns if c.startswith("_")])
    key = "ts_ns" if name == "memory" else "start_ns"
    if not public[key].is_sorted():
        public = public.sort(key, maintain_order=True)
    return conform(name, public.with_columns(pl.lit(rank).alias("rank")))


def _kernels(frame: pl.DataFrame | None) -> pl.DataFrame | None:
    """Kernels sorted by start with their category."""
    if frame is None:
        return None
    frame = frame.with_columns(categorize(frame["name"]))
    return frame.sort("start_ns", maintain_order=True)


def _memops(frame: pl.DataFrame | None, runtime: pl.DataFrame | None) -> pl.DataFrame | None:
    """Copy kind and memory types from the name (unless the builder set them: MTIA DMA);
    ROCm sizes from the launching call."""
    if frame is None:
        return None
    for column in ("kind", "src_mem", "dst_mem"):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(column))
    name = pl.col("name")
    copy_kind = name.str.extract(_MEMCPY_NAME, 1)
    memset = pl.col("_memset")
    frame = frame.with_columns(
        pl.coalesce(
            "kind",
            pl.when(memset)
            .then(pl.lit("memset"))
            .when(copy_kind.is_in(_COPY_KINDS))
            .then(copy_kind)
            .otherwise(pl.lit("other")),
        ).alias("kind"),
        pl.coalesce(
            "src_mem",
            pl.when(memset)
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(_mem_kind(name.str.extract(_MEM_PAIR, 1))),
        ).alias("src_mem"),
        pl.coalesce(
            "dst_mem",
            pl.when(memset)
            .then(_mem_kind(name.str.extract(_MEMSET_TARGET, 1)))
            .otherwise(_mem_kind(name.str.extract(_MEM_PAIR, 2))),
        ).alias("dst_mem"),
    )
    frame = _fill_copy_bytes(frame, runtime)
    return frame.sort("start_ns", maintain_order=True)


def _mem_kind(word: pl.Expr) -> pl.Expr:
    """Kineto's memory words to ours; ``Host`` (pinned or pageable, unknown) -> unknown."""
    lowered = word.str.to_lowercase()
    return (
        pl.when(word.is_null())
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(lowered.replace_strict(_MEM_KIND, default="unknown", return_dtype=pl.String))
    )


def _fill_copy_bytes(frame: pl.DataFrame, runtime: pl.DataFrame | None) -> pl.DataFrame:
    """ROCm copies carry no ``bytes``; their launching hipMemcpy call carries ``size``."""
    if runtime is None or frame["bytes"].null_count() == 0:
        return frame
    sizes = (
        runtime.select("correlation", "_copy_bytes")
        .drop_nulls()
        .unique("correlation", keep="first")
        .rename({"_copy_bytes": "_launch_bytes"})
    )
    joined = frame.join(sizes, on="correlation", how="left", maintain_order="left")
    return joined.with_columns(pl.coalesce("bytes", "_launch_bytes").alias("bytes")).drop(
        "_launch_bytes"
    )


def _ops(frame: pl.DataFrame | None) -> pl.DataFrame | None:
    """Ops sorted (enclosing before enclosed), numbered, with parent and depth per thread."""
    if frame is None:
        return None
    frame = frame.sort(
        ["start_ns", "dur_ns"], descending=[False, True], maintain_order=True
    ).with_row_index("op_id")
    parent, depth = _nesting(frame)
    return frame.with_columns(pl.col("op_id").cast(pl.Int64), parent, depth)


def _nesting(ops: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """Parent row and depth of each op, from time containment on its (pid, tid).

    Ops arrive sorted by start, longer first on ties, so an enclosing op is always seen
    before the ops it encloses. An op is inside the innermost open op whose end is after
    its start (a stack walk per thread; partial overlaps, which real traces have, follow
    the stack). The walk reads the columns through memory views of their Arrow buffers
    and writes into typed arrays: a million ops cost no Python objects beyond the stacks.
    """
    columns = ops.select(
        _thread_code().alias("thread"),
        pl.col("start_ns"),
        (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"),
    )
    threads, starts, ends = (_int64_view(columns[name]) for name in columns.columns)
    count = ops.height
    parents = array("q", [-1]) * count
    depths = array("i", [0]) * count
    stacks: dict[int, tuple[list[int], list[int]]] = {}
    for index in range(count):
        thread = threads[index]
        start = starts[index]
        open_ends, open_rows = stacks.get(thread) or stacks.setdefault(thread, ([], []))
        while open_ends and open_ends[-1] <= start:
            open_ends.pop()
            open_rows.pop()
        if open_rows:
            parents[index] = open_rows[-1]
            depths[index] = len(open_rows)
        open_ends.append(ends[index])
        open_rows.append(index)
    parent = pl.Series("parent", parents, dtype=pl.Int64)
    return parent.set(parent < 0, None), pl.Series("depth", depths, dtype=pl.Int32)


def _thread_code() -> pl.Expr:
    """One small non-null integer per (pid, tid) pair, nulls included as their own value."""
    pid = pl.col("pid").rank("dense").fill_null(0).cast(pl.Int64)
    tid = pl.col("tid").rank("dense").fill_null(0).cast(pl.Int64)
    return (pid * (pl.len().cast(pl.Int64) + 1) + tid).rank("dense").cast(pl.Int64)


def _int64_view(column: pl.Series) -> memoryview:
    """A non-null Int64 column's values, without converting them to Python objects."""
    values = column.rechunk().to_arrow()
    buffer = memoryview(values.buffers()[1]).cast("q")
    return buffer[values.offset : values.offset + len(values)]


def _steps(ops: pl.DataFrame | None) -> pl.DataFrame | None:
    """One row per ``ProfilerStep#N`` on the CPU (annotations or 2021 operators)."""
    if ops is None:
        return None
    steps = ops.filter(
        pl.col("kind").is_in(["cpu_op", "user_annotation"])
        & pl.col("name").str.contains(_STEP_NAME)
    )
    return steps.select(
        pl.col("name").str.extract(_STEP_NAME, 1).cast(pl.Int64).alias("step"),
        "start_ns",
        (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"),
    ).sort("start_ns", maintain_order=True)


def normalize_collective(name: str | None) -> str | None:
    """PyTorch's and NCCL's spellings of a collective to one word (``_allgather_base``,
    ``all_gather_into_tensor_coalesced`` and ``AllGather`` are all ``allgather``)."""
    if name is None:
        return None
    word = name.strip().lower().lstrip("_")
    previous = None
    while word != previous:
        previous = word
        for suffix in _COLLECTIVE_SUFFIXES:
            word = word.removesuffix(suffix)
    return _COLLECTIVE.get(word.replace("_", ""), word)


def collective_from_kernel(name: str) -> str | None:
    """The collective an NCCL / RCCL kernel implements, from its name."""
    if "multimem_all_reduce" in name:
        return "allreduce"
    match = _NCCL_KERNEL_OP.search(name)
    return normalize_collective(match.group(1)) if match else None


def _comms(
    kernels: pl.DataFrame | None, ops: pl.DataFrame | None, events: pl.DataFrame | None
) -> pl.DataFrame | None:
    """Collectives from communication kernels, then CPU-only ``record_param_comms``."""
    recorded = _recorded_comms(ops)
    parts: list[pl.DataFrame] = []
    linked: pl.Series | None = None
    if kernels is not None:
        comm_kernels = kernels.filter(pl.col("category") == "comm")
        if comm_kernels.height:
            parts.append(_kernel_comms(comm_kernels, recorded))
            linked = comm_kernels["external_id"].drop_nulls()
    if recorded is not None:
        cpu_only = (
            recorded
            if linked is None
            else recorded.filter(
                ~pl.col("external_id").is_in(linked.implode()) | pl.col("external_id").is_null()
            )
        )
        parts.append(_op_comms(cpu_only))
    if events is not None:
        parts.append(_op_comms(events))
    parts = [p for p in parts if p.height]
    if not parts:
        return None
    frame = pl.concat(parts, how="diagonal_relaxed")
    return _finish_comms(frame).sort("start_ns", maintain_order=True)


def _recorded_comms(ops: pl.DataFrame | None) -> pl.DataFrame | None:
    """``record_param_comms`` ops that carry a collective name."""
    if ops is None:
        return None
    recorded = ops.filter(pl.col("_c_collective").is_not_null())
    return recorded if recorded.height else None


def _kernel_comms(comm_kernels: pl.DataFrame, recorded: pl.DataFrame | None) -> pl.DataFrame:
    """One row per communication kernel; missing args taken from its launching op."""
    rows = comm_kernels.select(
        "start_ns", "dur_ns", "correlation", "external_id", "name", *_COMM_COLUMNS
    )
    if recorded is not None:
        by_op = (
            recorded.select("external_id", *_COMM_COLUMNS)
            .drop_nulls("external_id")
            .unique("external_id", keep="first")
            .rename({c: f"{c}_op" for c in _COMM_COLUMNS})
        )
        rows = rows.join(by_op, on="external_id", how="left", maintain_order="left")
        rows = rows.with_columns(
            pl.when(pl.col("_c_collective").is_null())
            .then(pl.col(f"{c}_op"))
            .otherwise(pl.col(c))
            .alias(c)
            for c in _COMM_COLUMNS
        ).drop([f"{c}_op" for c in _COMM_COLUMNS])
    names = rows["name"].unique().drop_nulls().to_list()
    from_name = pl.col("name").replace_strict(
        {n: collective_from_kernel(n) for n in names}, default=None, return_dtype=pl.String
    )
    return rows.with_columns(
        pl.coalesce(pl.col("_c_collective"), from_name).alias("_c_collective")
    ).drop("name")


def _op_comms(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows timed by the CPU op (or ``collective_comm`` event) itself, no kernel link."""
    return frame.select("start_ns", "dur_ns", "external_id", *_COMM_COLUMNS)


def _finish_comms(frame: pl.DataFrame) -> pl.DataFrame:
    """Canonical comm columns: normalized collective and message bytes."""
    collectives = frame["_c_collective"].unique().drop_nulls().to_list()
    dtypes = frame["_c_dtype"].unique().drop_nulls().to_list()
    element_bytes = {d: DTYPE_BYTES.get(d.lower().removeprefix("c10::")) for d in dtypes}
    nelems = pl.max_horizontal("_c_in_nelems", "_c_out_nelems")
    return frame.select(
        pl.col("_c_collective")
        .replace_strict(
            {c: normalize_collective(c) for c in collectives}, default=None, return_dtype=pl.String
        )
        .alias("collective"),
        pl.col("_c_dtype").alias("dtype"),
        pl.col("_c_in_nelems").alias("in_nelems"),
        pl.col("_c_out_nelems").alias("out_nelems"),
        (
            nelems
            * pl.col("_c_dtype").replace_strict(element_bytes, default=None, return_dtype=pl.Int64)
        ).alias("bytes"),
        pl.col("_c_group_size").alias("group_size"),
        pl.col("_c_pg_name").alias("pg_name"),
        pl.col("_c_seq").alias("seq"),
        "start_ns",
        "dur_ns",
        pl.col("correlation")
        if "correlation" in frame.columns
        else pl.lit(None, pl.Int64).alias("correlation"),
        "external_id",
    )
