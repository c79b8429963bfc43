"""Last line of defence between any parser and the rest: rows no consumer can use are
dropped and counted, names that are missing are named, shapes that overflow are cleared.

Why here and not in each parser: every source (Kineto, Nsight, DCGM, Parquet read back) can
carry a kernel without a name, a row whose time did not survive (TEXT in an integer column,
a value beyond int64), a negative duration, or an ``Input Dims`` whose product overflows
int64; left in, they reach a section or a metric as a crash (exit 70) instead of a report.
On clean input every check is a vectorized null count or comparison that finds nothing,
and the tables are returned as they are.
"""

from __future__ import annotations

import json
import re
from typing import Final

import polars as pl
from gpu_trace_analyzer.parsers.schema import TABLE_NAMES, TraceTables

UNNAMED: Final = "(unnamed)"
#: An innermost list (one shape) with 19 or more digits: only such a shape's element count
#: can reach 2**62 (a product of numbers with d1, d2, ... digits is below 10**(d1+d2+...)).
_LONG_SHAPE: Final = r"\[(?:[^\[\]0-9]*[0-9]){19}"
_INT: Final = re.compile(r"-?\d+")
_LIMIT: Final = 2**62


def repair(tables: TraceTables) -> TraceTables:
    """``tables`` with unusable rows dropped (counted in a warning), null names filled."""
    notes: list[str] = []
    frames: dict[str, pl.DataFrame] = {}
    for name in TABLE_NAMES:
        frame = tables.table(name)
        fixed = _repair_table(name, frame, notes)
        if fixed is not frame:
            frames[name] = fixed
    if not frames and not notes:
        return tables
    fields = {name: frames.get(name, tables.table(name)) for name in TABLE_NAMES}
    meta = tables.meta.with_warnings(*notes) if notes else tables.meta
    return TraceTables(meta=meta, **fields)


def _repair_table(table: str, df: pl.DataFrame, notes: list[str]) -> pl.DataFrame:
    """One table repaired; what was done is appended to ``notes``."""
    if df.height == 0:
        return df
    out = df
    key = "ts_ns" if "ts_ns" in df.columns else "start_ns"
    bad = pl.col(key).is_null()
    if "dur_ns" in df.columns:
        bad = bad | (pl.col("dur_ns") < 0)
    if table == "steps" and "end_ns" in df.columns:
        bad = bad | (pl.col("end_ns") < pl.col("start_ns"))
    dropped = int(out.select(bad.sum()).item() or 0) if key in df.columns else 0
    if dropped:
        out = out.filter(~bad.fill_null(True))
        notes.append(f"{table}: dropped {dropped} rows without a usable time or duration")
    if "name" in out.columns and out["name"].null_count():
        nameless = out["name"].null_count()
        dtype = out.schema["name"]
        out = out.with_columns(pl.col("name").cast(pl.String()).fill_null(UNNAMED).cast(dtype))
        notes.append(f"{table}: {nameless} rows without a name, shown as {UNNAMED}")
    if key in out.columns and not out[key].is_sorted():
        out = out.sort(key, maintain_order=True)
    if table == "ops" and "input_dims" in out.columns:
        out = _clear_overflowing_dims(out, notes)
    return out


def _clear_overflowing_dims(ops: pl.DataFrame, notes: list[str]) -> pl.DataFrame:
    """``Input Dims`` whose shape's element count exceeds int64 (or that do not parse)
    cleared: a FLOP or byte count from them would overflow."""
    suspect = ops["input_dims"].str.contains(_LONG_SHAPE).fill_null(False)
    if not suspect.any():
        return ops
    texts = ops["input_dims"].to_list()
    cleared = 0
    for index in suspect.arg_true().to_list():
        if _overflows(texts[index]):
            texts[index] = None
            cleared += 1
    if not cleared:
        return ops
    notes.append(f"ops: {cleared} Input Dims too large for a real tensor were ignored")
    return ops.with_columns(pl.Series("input_dims", texts, dtype=pl.String()))


def _overflows(text: str) -> bool:
    """Whether any shape in an ``Input Dims`` JSON text has too many elements."""
    try:
        shapes = json.loads(text)
    except (ValueError, RecursionError):
        return True
    stack = [shapes]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            if item and all(isinstance(x, int) for x in item):
                product = 1
                for dim in item:
                    product *= abs(dim)
                    if product > _LIMIT:
                        return True
            else:
                stack.extend(item)
        elif isinstance(item, int) and abs(item) > _LIMIT:
            return True
    return False
