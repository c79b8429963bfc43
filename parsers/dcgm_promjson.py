"""Prometheus HTTP API JSON into counter rows.

``/api/v1/query`` vectors and ``/api/v1/query_range`` matrices, values as strings ("NaN",
"+Inf" allowed), times in unix seconds: an epoch clock. The series then go the way of the
exporter text's (`parsers.dcgm_prom.add_prom_series`).
"""

from __future__ import annotations

import math

import msgspec
from gpu_trace_analyzer.parsers.dcgm_common import Rows
from gpu_trace_analyzer.parsers.dcgm_prom import PromSeries, add_prom_series
from gpu_trace_analyzer.parsers.errors import UnsupportedFormatError


class _Series(msgspec.Struct):
    """One result of /api/v1/query (``value``) or /api/v1/query_range (``values``)."""

    metric: dict[str, str] = {}
    value: tuple[float, str] | None = None
    values: list[tuple[float, str]] = []


class _Data(msgspec.Struct):
    resultType: str  # Prometheus's spelling
    result: list[_Series] = []


class _Response(msgspec.Struct):
    status: str
    data: _Data | None = None
    error: str | None = None


def parse_prom_json(text: str, name: str, rows: Rows) -> None:
    """Parse a Prometheus HTTP API answer (vector or matrix)."""
    try:
        resp = msgspec.json.decode(text, type=_Response)
    except msgspec.DecodeError as exc:
        raise UnsupportedFormatError(f"not a Prometheus API answer: {exc}", name) from None
    if resp.status != "success" or resp.data is None:
        raise UnsupportedFormatError(
            f"Prometheus API status {resp.status!r}: {resp.error or 'no data'}", name
        )
    if resp.data.resultType not in ("vector", "matrix"):
        raise UnsupportedFormatError(
            f"Prometheus resultType {resp.data.resultType!r} holds no per-GPU series", name
        )
    series: list[PromSeries] = []
    unnamed = 0
    for result in resp.data.result:
        metric = result.metric.get("__name__")
        if metric is None:
            unnamed += 1
            continue
        points = [result.value] if result.value is not None else result.values
        series.append(
            PromSeries(
                metric,
                result.metric,
                [round(t * 1000) for t, _ in points],
                [_num(v) for _, v in points],
            )
        )
    if unnamed:
        rows.warnings.append(
            f"{unnamed} series without __name__ (an aggregated query) were skipped"
        )
    add_prom_series(series, rows)


def _num(text: str) -> float:
    """A Prometheus string value as a float (``NaN``, ``+Inf`` included)."""
    try:
        return float(text)
    except ValueError:
        return math.nan
