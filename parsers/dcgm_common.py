"""What the four DCGM readers share: the sample rows they fill, DCGM's blank sentinels, the
label names, and the bundling of the rows into the canonical ``counters`` table.

Missing values (``N/A``, NaN, infinities, DCGM's blank sentinels: int64 0x7ffffffffffffff0 and
up, double 140737488355328.0) become null, never zero (`clean`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import polars as pl
from gpu_trace_analyzer.parsers.dcgm_fields import (
    DcgmField,
)
from gpu_trace_analyzer.parsers.schema import (
    DeviceInfo,
    RankInfo,
    TraceMeta,
    TraceTables,
    table_from_columns,
)

#: Blank sentinels: DCGM_INT64_BLANK (0x7ffffffffffffff0) and up; DCGM_FP64_BLANK (2^47).
INT64_BLANK_MIN: Final = float(0x7FFFFFFFFFFFFFF0)


FP64_BLANK: Final = 140737488355328.0


#: Kinds accepted by `parse_text`, and the ``source`` column each one writes.
SOURCES: Final = {
    "dmon": "dcgm-dmon",
    "prom": "dcgm-exporter",
    "prom-json": "prometheus-json",
    "csv": "csv",
}


NS_PER_MS: Final = 1_000_000


HOST_LABELS: Final = ("Hostname", "hostname", "node", "instance")


MODEL_LABELS: Final = ("modelName", "model_name", "gpu_type")


UUID_LABELS: Final = ("UUID", "uuid", "gpu_uuid")


@dataclass(slots=True)
class Rows:
    """Counter samples as columns, plus what the parse learned on the way."""

    source: str
    host: list[str | None] = field(default_factory=list)
    gpu: list[int] = field(default_factory=list)
    uuid: list[str | None] = field(default_factory=list)
    model: list[str | None] = field(default_factory=list)
    metric: list[str] = field(default_factory=list)
    ts_ns: list[int] = field(default_factory=list)
    value: list[float | None] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    flags: dict[str, str] = field(default_factory=dict)
    pods: set[str] = field(default_factory=set)
    clock: str = "relative"

    def extend(
        self,
        host: str | None,
        gpu: int,
        dcgm: DcgmField,
        ts_ns: Sequence[int],
        values: Sequence[float | None],
        uuid: str | None = None,
        model: str | None = None,
    ) -> None:
        """Append one series' samples, converted to the metric's unit."""
        n = len(values)
        self.host.extend([host] * n)
        self.gpu.extend([gpu] * n)
        self.uuid.extend([uuid] * n)
        self.model.extend([model] * n)
        self.metric.extend([dcgm.metric] * n)
        self.ts_ns.extend(ts_ns)
        scale = dcgm.scale
        self.value.extend([None if v is None else v * scale for v in values])

    def add(
        self,
        host: str | None,
        gpu: int,
        dcgm: DcgmField,
        ts_ns: int,
        value: float | None,
        uuid: str | None = None,
        model: str | None = None,
    ) -> None:
        """Append one sample, converted to the metric's unit."""
        self.host.append(host)
        self.gpu.append(gpu)
        self.uuid.append(uuid)
        self.model.append(model)
        self.metric.append(dcgm.metric)
        self.ts_ns.append(ts_ns)
        self.value.append(None if value is None else value * dcgm.scale)


def gpu_index(labels: dict[str, str]) -> int | None:
    """The GPU index from ``gpu="0"`` or ``device="nvidia0"``."""
    gpu = labels.get("gpu", "")
    if gpu.isdigit():
        return int(gpu)
    device = re.fullmatch(r"nvidia(\d+)", labels.get("device", ""))
    return int(device.group(1)) if device else None


def first_label(labels: dict[str, str], names: Sequence[str]) -> str | None:
    """The first non-empty label among ``names``."""
    return next((labels[n] for n in names if labels.get(n)), None)


def clean(value: float) -> float | None:
    """Null for NaN, infinities and DCGM's blank sentinels; the value otherwise."""
    if not math.isfinite(value) or value >= INT64_BLANK_MIN or value == FP64_BLANK:
        return None
    return value


def bundle(rows: Rows, name: str) -> TraceTables:
    """The counters table, sorted and validated, with hosts, GPUs and models in the meta."""
    df = table_from_columns(
        "counters",
        {
            "source": [rows.source] * len(rows.metric),
            "host": rows.host,
            "gpu": rows.gpu,
            "gpu_uuid": rows.uuid,
            "model_name": rows.model,
            "metric": rows.metric,
            "ts_ns": rows.ts_ns,
            "value": rows.value,
        },
    )
    df = _rescale_ambiguous(df, rows).sort("ts_ns", maintain_order=True)
    hosts = [h for h in dict.fromkeys(rows.host) if h is not None]
    rank_of = {h: i for i, h in enumerate(hosts)}
    ranks = tuple(RankInfo(rank=i, path=name, hostname=h) for h, i in rank_of.items()) or (
        RankInfo(rank=0, path=name),
    )
    devices = _devices(df, rank_of)
    flags = dict(rows.flags)
    if hosts:
        flags["hostnames"] = ", ".join(hosts)
    if rows.pods:
        flags["pods"] = ", ".join(sorted(rows.pods))
    meta = TraceMeta(
        source="dcgm",
        paths=(name,),
        clock=rows.clock,
        ranks=ranks,
        devices=devices,
        flags=flags,
        warnings=tuple(rows.warnings),
    )
    return TraceTables(meta=meta, counters=df).validate()


def _rescale_ambiguous(df: pl.DataFrame, rows: Rows) -> pl.DataFrame:
    """Scale a GPU-util series read under an ambiguous ratio alias to % when it is 0..1."""
    alias = rows.flags.pop("ambiguous_alias", None)
    if alias is None:
        return df
    util = df.filter(pl.col("metric") == "gpu_util_pct")
    if util.height and float(util["value"].max() or 0.0) <= 1.0:  # type: ignore[arg-type]
        rows.warnings.append(f"{alias} values are 0..1: read as a ratio and scaled to percent")
        return df.with_columns(
            pl.when(pl.col("metric") == "gpu_util_pct")
            .then(pl.col("value") * 100.0)
            .otherwise(pl.col("value"))
            .alias("value")
        )
    return df


def _devices(df: pl.DataFrame, rank_of: dict[str, int]) -> tuple[DeviceInfo, ...]:
    """One DeviceInfo per (host, GPU) whose model name is known; total memory from FB_TOTAL."""
    named = df.filter(pl.col("model_name").is_not_null())
    if named.height == 0:
        return ()
    totals = (
        df.filter(pl.col("metric") == "fb_total_mib")
        .group_by("host", "gpu")
        .agg(pl.col("value").max().alias("fb_total_mib"))
    )
    per_gpu = (
        named.group_by("host", "gpu", maintain_order=True)
        .agg(pl.col("model_name").first().cast(pl.String))
        .join(totals, on=["host", "gpu"], how="left", nulls_equal=True)
        .sort("host", "gpu", nulls_last=True)
    )
    out = []
    for row in per_gpu.iter_rows(named=True):
        total = row["fb_total_mib"]
        out.append(
            DeviceInfo(
                rank=rank_of.get(row["host"], 0),
                device=int(row["gpu"]),
                name=str(row["model_name"]),
                total_mem_bytes=None if total is None else int(total) * 1024 * 1024,
            )
        )
    return tuple(out)
