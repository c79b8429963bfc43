"""CPU-side records of an Nsight Systems export: CUDA API calls and NVTX ranges.

NVTX ranges become ``ops`` of kind ``nvtx``. PyTorch's ``emit_nvtx`` names them
``aten::mul, seq = 45328, op_id = 990726, sizes = [[2, 3], []]``: the name keeps only
``aten::mul`` (so ops aggregate by operator as in a Kineto trace), ``seq`` becomes
``sequence_number`` and ``sizes`` becomes ``input_dims``.

Nesting (``depth``, ``parent``) is computed per thread for push/pop ranges and marks, which
NVTX guarantees to be properly nested on their thread; start/end ranges may overlap anything
and cross threads, so they stay at depth 0 without a parent. The same sweep gives each CUDA API
call its innermost enclosing push/pop range, whose ``op_id`` becomes the call's
``external_id``: that is the link from a kernel (through the call's correlation id) to the
operator that launched it, as Kineto's ``External id`` is.

NVTX ranges named like iterations (``ProfilerStep#3``, ``step 3``, ``Step_3``,
``iteration 3``, ``train_step``) become ``steps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl
from gpu_trace_analyzer.parsers.nsys_db import PID_SQL, TID_SQL, NsysDb

RUNTIME_TABLE: Final = "CUPTI_ACTIVITY_KIND_RUNTIME"
DRIVER_TABLE: Final = "CUPTI_ACTIVITY_KIND_DRIVER"
NVTX_TABLE: Final = "NVTX_EVENTS"

_I64 = pl.Int64()
_STR = pl.String()

# ENUM_NSYS_EVENT_TYPE ids of NVTX records that are ranges or marks (2022.4 through 2026.2).
_MARK_TYPES: Final = (34, 65)  # NvtxMark, NvtxtMark
_PUSH_POP_TYPES: Final = (59, 70)  # NvtxPushPopRange, NvtxtPushPopRange
_START_END_TYPES: Final = (60, 71)  # NvtxStartEndRange, NvtxtStartEndRange
_EVENT_CLASS_DRIVER: Final = 1  # ENUM_NSYS_EVENT_CLASS: TRACE_PROCESS_EVENT_CUDA_DRIVER

#: Version suffix Nsight Systems appends to CUDA API names (``cudaLaunchKernel_v7000``).
API_VERSION_SUFFIX: Final = r"_v\d+$"

# emit_nvtx range text: name[, seq = N][, op_id = N][, sizes = [...]][, input_op_ids = ...]
_EMIT_NVTX: Final = (
    r"^(?s)(?P<op>.*?)(?:, seq = (?P<seq>-?\d+))?(?:, op_id = \d+)?"
    r"(?:, sizes = (?P<sizes>\[.*?\]))?(?:, input_op_ids = .*)?$"
)

# Step-like range names, in order of preference; a missing number means "number in order".
_STEP_PATTERNS: Final[Sequence[str]] = (
    r"(?i)^ProfilerStep#(?P<n>\d+)$",
    r"(?i)^(?:train(?:ing)?[ _-]?)?step[ _#:-]*(?P<n>\d+)$",
    r"(?i)^iter(?:ation)?[ _#:-]*(?P<n>\d+)$",
    r"(?i)^(?:train(?:ing)?[ _-]?step|training[ _-]?iteration|iteration|step)(?P<n>)$",
)

_FIRST: Final = -(2**63)  # neg_end of an end event: ends sort first at equal times
_AFTER_STARTS: Final = 2**62  # neg_end of an API call: inside ranges opened at the same ns


_API_SCHEMA: Final = {
    "start_ns": _I64,
    "dur_ns": _I64,
    "gtid": _I64,
    "pid": _I64,
    "tid": _I64,
    "correlation": _I64,
    "name_id": _I64,
    "event_class": _I64,
}


def read_runtime(db: NsysDb, strings: pl.DataFrame) -> pl.DataFrame:
    """CUDA runtime and driver API calls with version suffixes stripped from names."""
    frames = [
        _read_api_table(db, table, strings)
        for table in (RUNTIME_TABLE, DRIVER_TABLE)
        if table in db.tables
    ]
    if not frames:
        return pl.DataFrame(schema=_API_SCHEMA | {"name": _STR, "kind": _STR})
    return pl.concat(frames, how="vertical")


def _read_api_table(db: NsysDb, table: str, strings: pl.DataFrame) -> pl.DataFrame:
    items = [
        "start AS start_ns",
        "(end - start) AS dur_ns",
        db.col(table, "globalTid", "gtid"),
        db.col(table, "globalTid", "pid", PID_SQL),
        db.col(table, "globalTid", "tid", TID_SQL),
        db.col(table, "correlationId", "correlation"),
        db.col(table, "nameId", "name_id"),
        db.col(table, "eventClass", "event_class"),
    ]
    raw = db.frame(f"SELECT {', '.join(items)} FROM {table}", _API_SCHEMA)
    is_driver = (
        pl.lit(value=True)
        if table == DRIVER_TABLE
        else pl.col("event_class").fill_null(-1) == _EVENT_CLASS_DRIVER
    )
    names = strings.rename({"id": "name_id", "value": "full_name"})
    return (
        raw.join(names, on="name_id", how="left")
        .with_columns(
            name=pl.col("full_name").str.replace(API_VERSION_SUFFIX, ""),
            kind=pl.when(is_driver).then(pl.lit("driver")).otherwise(pl.lit("runtime")),
        )
        .drop("name_id", "full_name")
    )


_NVTX_SCHEMA: Final = {
    "start_ns": _I64,
    "end_ns": _I64,
    "event_type": _I64,
    "text": _STR,
    "text_id": _I64,
    "gtid": _I64,
    "pid": _I64,
    "tid": _I64,
}


def read_nvtx(db: NsysDb, strings: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """NVTX marks and ranges as ops (before ranks), plus the count of unclosed ranges.

    Columns: op_id (position in start order), gtid, pid, tid, name, start_ns, dur_ns,
    sequence_number, input_dims, depth, parent, nests (push/pop or mark).
    """
    if not db.has(NVTX_TABLE, "start", "eventType"):
        return _empty_nvtx(), 0
    kinds = ", ".join(str(t) for t in (*_MARK_TYPES, *_PUSH_POP_TYPES, *_START_END_TYPES))
    items = [
        "start AS start_ns",
        db.col(NVTX_TABLE, "end", "end_ns"),
        "eventType AS event_type",
        db.col(NVTX_TABLE, "text"),
        db.col(NVTX_TABLE, "textId", "text_id"),
        db.col(NVTX_TABLE, "globalTid", "gtid"),
        db.col(NVTX_TABLE, "globalTid", "pid", PID_SQL),
        db.col(NVTX_TABLE, "globalTid", "tid", TID_SQL),
    ]
    where = f"eventType IN ({kinds}) AND start IS NOT NULL"
    sql = f"SELECT {', '.join(items)} FROM {NVTX_TABLE} WHERE {where}"
    raw = db.frame(sql, _NVTX_SCHEMA)
    ranges = pl.col("event_type").is_in([*_PUSH_POP_TYPES, *_START_END_TYPES])
    unclosed = raw.filter(ranges & pl.col("end_ns").is_null()).height
    names = strings.rename({"id": "text_id", "value": "registered"})
    text = pl.coalesce("text", "registered").fill_null("")
    parsed = (
        raw.join(names, on="text_id", how="left")
        .select(
            "gtid",
            "pid",
            "tid",
            "start_ns",
            dur_ns=(pl.col("end_ns") - pl.col("start_ns")).fill_null(0).clip(lower_bound=0),
            nests=~pl.col("event_type").is_in(list(_START_END_TYPES)),
            emit=text.str.extract_groups(_EMIT_NVTX),
        )
        .with_columns(
            name=pl.col("emit").struct.field("op").cast(pl.Categorical()),
            sequence_number=pl.col("emit").struct.field("seq").cast(_I64),
            input_dims=pl.col("emit").struct.field("sizes"),
        )
        .drop("emit")
        .sort(["start_ns", "dur_ns"], descending=[False, True], maintain_order=True)
        .with_row_index("op_id")
        .with_columns(pl.col("op_id").cast(_I64))
    )
    del raw
    return _nest(parsed), unclosed


def _empty_nvtx() -> pl.DataFrame:
    schema = {
        "op_id": _I64,
        "gtid": _I64,
        "pid": _I64,
        "tid": _I64,
        "name": pl.Categorical(),
        "start_ns": _I64,
        "dur_ns": _I64,
        "sequence_number": _I64,
        "input_dims": _STR,
        "depth": pl.Int32(),
        "parent": _I64,
        "nests": pl.Boolean(),
    }
    return pl.DataFrame(schema=schema)


def _nest(ops: pl.DataFrame) -> pl.DataFrame:
    """Add depth and parent: nesting ops per thread, start/end ranges at depth 0."""
    nesting = ops.filter(pl.col("nests"))
    intervals = _intervals(nesting)
    queries = nesting.select(
        qid=pl.col("op_id"),
        thread=pl.col("gtid"),
        time=pl.col("start_ns"),
        neg_end=-(pl.col("start_ns") + pl.col("dur_ns")),
    )
    found = open_intervals(intervals, queries).rename({"qid": "op_id", "enclosing": "parent"})
    return (
        ops.join(found, on="op_id", how="left")
        .with_columns(pl.col("depth").fill_null(0).cast(pl.Int32()))
        .select(_empty_nvtx().columns)
    )


def _intervals(ops: pl.DataFrame) -> pl.DataFrame:
    """The ranges that can enclose others: nesting ops with a positive duration."""
    return ops.filter(pl.col("nests") & (pl.col("dur_ns") > 0)).select(
        thread=pl.col("gtid"),
        start_ns=pl.col("start_ns"),
        end_ns=pl.col("start_ns") + pl.col("dur_ns"),
        id=pl.col("op_id"),
    )


def open_intervals(intervals: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    """For each query instant, how many intervals of its thread are open and the innermost one.

    ``intervals``: thread, start_ns, end_ns, id (properly nested per thread).
    ``queries``: qid, thread, time, neg_end; at equal times, ends come first, then starts
    and queries ordered by (neg_end, id or qid), a query just before the interval whose id
    equals its qid. Returns qid, depth (open count) and enclosing (innermost open interval's id).

    Threads are swept one at a time, which bounds memory by the busiest thread.
    """
    by_thread = intervals.partition_by("thread", as_dict=True, include_key=False)
    empty = intervals.clear().drop("thread")
    parts = [
        _open_on_thread(by_thread.get(key, empty), asks)
        for key, asks in queries.partition_by("thread", as_dict=True, include_key=False).items()
    ]
    if not parts:
        return pl.DataFrame(schema={"qid": _I64, "depth": pl.Int32(), "enclosing": _I64})
    return pl.concat(parts, how="vertical")


def _open_on_thread(intervals: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    """One thread's sweep: one sort of start/end/query events and a running sum give the
    open count; for properly nested intervals the innermost open one is the last interval
    opened at depth - 1 before the query, found with an as-of join. No per-row Python."""
    event = pl.Schema(
        {"time": _I64, "neg_end": _I64, "ref": _I64, "sub": pl.Int8(), "delta": pl.Int8()}
    )
    starts = intervals.select(
        time="start_ns", neg_end=-pl.col("end_ns"), ref="id", sub=pl.lit(1), delta=pl.lit(1)
    )
    ends = intervals.select(
        time="end_ns", neg_end=pl.lit(_FIRST), ref=pl.lit(None), sub=pl.lit(0), delta=pl.lit(-1)
    )
    asks = queries.select("time", "neg_end", ref="qid", sub=pl.lit(0), delta=pl.lit(0))
    merged = pl.concat([f.cast(event) for f in (starts, ends, asks)], how="vertical")
    del starts, ends, asks
    events = (
        merged.sort(pl.struct("time", "neg_end", "ref", "sub"))
        .select(
            "delta",
            "ref",
            order=pl.int_range(pl.len(), dtype=_I64),
            open=pl.col("delta").cast(pl.Int32()).cum_sum(),
        )
        .filter(pl.col("delta") >= 0)
    )
    del merged
    opened = events.filter(pl.col("delta") == 1).select("order", id="ref", level=pl.col("open") - 1)
    asked = events.filter(pl.col("delta") == 0).select(
        "order", qid="ref", depth="open", level=pl.col("open") - 1
    )
    matched = asked.join_asof(
        opened, on="order", by="level", strategy="backward", check_sortedness=False
    )
    return matched.select("qid", "depth", enclosing="id")


def enclosing_ops(runtime: pl.DataFrame, ops: pl.DataFrame) -> pl.Series:
    """``op_id`` of the innermost push/pop range around each API call's start (or null)."""
    intervals = _intervals(ops)
    queries = runtime.with_row_index("qid").select(
        qid=pl.col("qid").cast(_I64),
        thread=pl.col("gtid"),
        time=pl.col("start_ns"),
        neg_end=pl.lit(_AFTER_STARTS, _I64),
    )
    found = open_intervals(intervals, queries)
    linked = queries.select("qid").join(found, on="qid", how="left")
    return linked["enclosing"].alias("external_id")


def find_steps(ops: pl.DataFrame) -> pl.DataFrame:
    """Step ranges per rank: the preferred step-like name family, outermost ranges only.

    ``ops`` needs rank, name, start_ns, dur_ns, depth. Returns rank, step, start_ns, end_ns.
    """
    out_schema = {"rank": pl.Int32(), "step": _I64, "start_ns": _I64, "end_ns": _I64}
    ranges = ops.filter(pl.col("dur_ns") > 0).with_columns(pl.col("name").cast(_STR))
    matches = [
        ranges.filter(pl.col("name").str.contains(pattern)).with_columns(
            family=pl.lit(family),
            number=pl.col("name").str.extract(pattern, 1).replace("", None).cast(_I64),
        )
        for family, pattern in enumerate(_STEP_PATTERNS)
    ]
    found = pl.concat(matches, how="vertical")
    if found.height == 0:
        return pl.DataFrame(schema=out_schema)
    preferred = found.filter(pl.col("family") == pl.col("family").min().over("rank"))
    best = preferred.filter(pl.col("depth") == pl.col("depth").min().over("rank")).sort(
        ["rank", "start_ns"]
    )
    in_order = pl.int_range(pl.len()).over("rank").cast(_I64)
    return best.select(
        pl.col("rank").cast(pl.Int32()),
        step=pl.coalesce("number", in_order),
        start_ns="start_ns",
        end_ns=pl.col("start_ns") + pl.col("dur_ns"),
    ).sort("start_ns", maintain_order=True)
