"""GPU metrics sampling of an Nsight Systems export (``--gpu-metrics-devices``) as counters.

Samples live in ``GPU_METRICS`` (timestamp, typeId, metricId, value) and are named by
``TARGET_INFO_GPU_METRICS`` (typeId, metricId, metricName), joined on both ids since each
sampled GPU has its own typeId. The GPU is the low byte of typeId (as nsys2prv decodes it).
Metric names carry their unit in brackets and become unit-suffixed snake case:
``SM Active [Throughput %]`` -> ``sm_active_pct``, ``GPC Clock Frequency [MHz]`` ->
``gpc_clock_frequency_mhz``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import polars as pl
from gpu_trace_analyzer.parsers.nsys_db import NsysDb

SAMPLES_TABLE: Final = "GPU_METRICS"
NAMES_TABLE: Final = "TARGET_INFO_GPU_METRICS"

_UNIT_WORDS: Final[Mapping[str, str]] = {
    "throughput %": "pct",
    "%": "pct",
    "percent": "pct",
}
#: Nsight metrics that measure what a DCGM profiling field measures, as the DCGM field's
#: counter name (a ratio 0..1): the counter rules and the DCGM section then read Nsight
#: GPU metrics as they read DCGM. Nsight's own percent series is kept beside it.
DCGM_EQUIVALENTS: Final[Mapping[str, str]] = {
    "sm_active_pct": "sm_active_ratio",
    "tensor_active_pct": "tensor_active_ratio",
    "gr_active_pct": "gr_engine_active_ratio",
}
_NAME_AND_UNIT: Final = re.compile(r"^(?P<name>.*?)\s*(?:\[(?P<unit>[^\]]*)\])?\s*$")


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def metric_name(raw: str) -> str:
    """Unit-suffixed snake case of an Nsight GPU metric name."""
    match = _NAME_AND_UNIT.match(raw)
    name, unit = (match["name"], match["unit"]) if match else (raw, None)
    base = _slug(name.replace("%", " pct "))
    if not unit:
        return base
    suffix = _UNIT_WORDS.get(unit.strip().lower()) or _slug(unit.replace("%", " pct "))
    if not suffix or base.endswith(f"_{suffix}") or base == suffix:
        return base
    return f"{base}_{suffix}"


def read_gpu_metrics(
    db: NsysDb, host: str | None, gpus: Mapping[int, Mapping[str, Any]]
) -> pl.DataFrame:
    """Counter rows (before the clock shift): source, host, gpu, gpu_uuid, model_name, metric,
    ts_ns, value; empty when the capture sampled no GPU metrics."""
    needed = ("typeId", "metricId")
    if not (
        db.has(SAMPLES_TABLE, "timestamp", "value", *needed)
        and db.has(NAMES_TABLE, "metricName", *needed)
    ):
        return pl.DataFrame()
    sql = (
        f"SELECT s.timestamp AS ts_ns, (s.typeId & 255) AS gpu, n.metricName AS raw_metric, "
        f"s.value AS value FROM {SAMPLES_TABLE} AS s JOIN {NAMES_TABLE} AS n "
        f"ON n.typeId = s.typeId AND n.metricId = s.metricId WHERE s.timestamp IS NOT NULL"
    )
    schema = {"ts_ns": pl.Int64(), "gpu": pl.Int64(), "raw_metric": pl.String()}
    raw = db.frame(sql, {**schema, "value": pl.Float64()})
    names = {n: metric_name(n) for n in raw["raw_metric"].unique().drop_nulls().to_list()}
    uuids = {g: str(row["uuid"]) for g, row in gpus.items() if row.get("uuid")}
    models = {g: str(row["name"]) for g, row in gpus.items() if row.get("name")}
    named = raw.with_columns(
        source=pl.lit("nsys"),
        host=pl.lit(host, pl.String()),
        metric=pl.col("raw_metric").replace_strict(names, return_dtype=pl.String()),
        gpu_uuid=pl.col("gpu").replace_strict(uuids, default=None, return_dtype=pl.String()),
        model_name=pl.col("gpu").replace_strict(models, default=None, return_dtype=pl.String()),
    ).drop("raw_metric")
    equivalents = named.filter(pl.col("metric").is_in(list(DCGM_EQUIVALENTS))).with_columns(
        pl.col("metric").replace_strict(DCGM_EQUIVALENTS, return_dtype=pl.String()),
        pl.col("value") / 100.0,
    )
    return pl.concat([named, equivalents], how="vertical")
