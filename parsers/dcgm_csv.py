"""DCGM samples as CSV into counter rows.

A timestamp column, then either wide (one column per field, named by DCGM name, dmon short name
or our metric name) or long (``metric``/``field`` and ``value`` columns).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import polars as pl
from gpu_trace_analyzer.parsers.dcgm_common import (
    HOST_LABELS,
    MODEL_LABELS,
    UUID_LABELS,
    Rows,
    clean,
)
from gpu_trace_analyzer.parsers.dcgm_fields import (
    BY_ID,
    BY_METRIC,
    BY_PROM_NAME,
    BY_SHORT,
    DcgmField,
)
from gpu_trace_analyzer.parsers.errors import UnreadableInputError, UnsupportedFormatError

_TS_COLUMNS: Final = ("timestamp", "time", "ts", "datetime", "date")


def parse_csv(text: str, name: str, rows: Rows) -> None:
    """A CSV export with a timestamp column, long or wide."""
    try:
        df = pl.read_csv(text.encode(), infer_schema_length=10_000, null_values=["N/A", ""])
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise UnreadableInputError(f"unreadable CSV: {exc}", name) from None
    ts_col = ts_column(df.columns)
    if ts_col is None:
        raise UnsupportedFormatError("CSV without a timestamp column", name)
    ns = _csv_times(df[ts_col], rows, name)
    if ns.null_count():  # rows whose time is no time: dropped, counted, said
        bad = ns.null_count()
        df = df.filter(ns.is_not_null())
        ns = ns.drop_nulls()
        rows.warnings.append(
            f"{bad} CSV row(s) with a timestamp that is not a time were dropped ({df.height} kept)"
        )
    ts = [int(v) for v in ns.to_list()]
    gpu_col = _pick(df.columns, ("gpu", "gpu_id", "gpu_index", "entity", "entityid"))
    if gpu_col is None:
        raise UnsupportedFormatError("CSV without a gpu column", name)
    gpus = [_csv_gpu(v) for v in df[gpu_col].cast(pl.String).to_list()]
    hosts = _str_col(df, _pick(df.columns, tuple(h.lower() for h in HOST_LABELS)))
    models = _str_col(df, _pick(df.columns, tuple(m.lower() for m in MODEL_LABELS)))
    uuids = _str_col(df, _pick(df.columns, tuple(u.lower() for u in UUID_LABELS)))
    metric_col = _pick(df.columns, ("metric", "field", "field_name", "__name__", "field_id"))
    if metric_col is not None and "value" in {c.lower() for c in df.columns}:
        value_col = _pick(df.columns, ("value",)) or "value"
        series = [(df[metric_col].cast(pl.String).to_list(), df[value_col])]
    else:
        series = [([c] * df.height, df[c]) for c in df.columns if _csv_field(c) is not None]
    skipped = 0
    for names, values in series:
        numbers = values.cast(pl.Float64, strict=False).to_list()
        for i, (col, v) in enumerate(zip(names, numbers, strict=True)):
            dcgm = _csv_field(str(col))
            if dcgm is None or gpus[i] is None:
                skipped += 1
                continue
            gpu = gpus[i]
            assert gpu is not None
            rows.add(hosts[i], gpu, dcgm, ts[i], None if v is None else clean(v), uuids[i],
                     models[i])  # fmt: skip
    if skipped:
        rows.warnings.append(f"{skipped} CSV value(s) of unknown fields or GPUs were skipped")


def ts_column(columns: Sequence[str]) -> str | None:
    """The timestamp column among ``columns``, by name."""
    return _pick([c.strip() for c in columns], _TS_COLUMNS) or next(
        (c for c in columns if c.strip().lower().endswith("timestamp")), None
    )


def _pick(columns: Sequence[str], wanted: Sequence[str]) -> str | None:
    """The first column whose lower-cased name is in ``wanted`` (in ``wanted``'s order)."""
    lowered = {c.strip().lower(): c for c in columns}
    return next((lowered[w] for w in wanted if w in lowered), None)


def _str_col(df: pl.DataFrame, col: str | None) -> list[str | None]:
    """A column as strings, or nulls when absent."""
    if col is None:
        return [None] * df.height
    return df[col].cast(pl.String).to_list()


def _csv_gpu(value: str | None) -> int | None:
    """GPU index from ``0`` or ``GPU 0``."""
    if value is None:
        return None
    m = re.fullmatch(r"(?:GPU\s*)?(\d+)", value.strip())
    return int(m.group(1)) if m else None


def _csv_field(column: str) -> DcgmField | None:
    """A CSV column or metric cell by DCGM name, dmon short name, our metric name or id."""
    key = column.strip()
    if key.isdigit():
        return BY_ID.get(int(key))
    return BY_PROM_NAME.get(key) or BY_SHORT.get(key) or BY_METRIC.get(key)


def _csv_times(col: pl.Series, rows: Rows, name: str) -> pl.Series:
    """Timestamps as Int64 ns: ISO strings, or unix s/ms/us/ns by magnitude; small numbers
    relative. Null where a value is no time (the caller drops those rows).

    A column where no value is a time (or beyond int64 nanoseconds) is a one-line error."""
    try:
        ns = _csv_ns(col, rows)
    except (pl.exceptions.PolarsError, OverflowError, ValueError) as exc:
        raise UnreadableInputError(
            f"CSV timestamps are not times in a known format ({str(exc).splitlines()[0]})", name
        ) from exc
    if ns.len() and ns.null_count() == ns.len():
        raise UnreadableInputError(f"none of the {ns.len()} CSV timestamp(s) is a time", name)
    return ns


def _csv_ns(col: pl.Series, rows: Rows) -> pl.Series:
    """`_csv_times` without its checks: the times as an Int64 nanosecond series."""
    if col.dtype == pl.String:
        parsed = col.str.to_datetime(time_unit="ns", strict=False)
        if parsed.dtype.time_zone is None:  # type: ignore[attr-defined]
            parsed = parsed.dt.replace_time_zone("UTC")
            rows.warnings.append("CSV timestamps without a time zone were read as UTC")
        ns = parsed.dt.epoch("ns")
        rows.clock = "epoch"
    else:
        seconds = col.cast(pl.Float64)
        top = float(seconds.abs().max() or 0.0)  # type: ignore[arg-type]
        scale = 1e9 if top < 1e11 else 1e6 if top < 1e14 else 1e3 if top < 1e17 else 1.0
        ns = (seconds * scale).round().cast(pl.Int64)
        rows.clock = "epoch" if top >= 1e9 else "relative"
    return ns
