"""dcgm-exporter Prometheus text into counter rows.

prometheus_client's text parser reads each distinct series (name and labels) once; lines it
rejects (a pasted ``curl`` command, garbage) are dropped and counted in a warning. Legacy 1.x
names (``dcgm_gpu_utilization``, model from ``dcgm_gpu_info{gpu_type=...}``) are read too.
Samples without a timestamp (the normal ``/metrics`` scrape) are placed at ts 0 on a relative
clock; a series that repeats (scrapes concatenated) gets one slot per scrape, 30 s apart
(dcgm-exporter's default collect interval), with a warning. `add_prom_series` is shared with
the Prometheus JSON reader (`parsers.dcgm_promjson`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from gpu_trace_analyzer.parsers.dcgm_common import (
    HOST_LABELS,
    MODEL_LABELS,
    NS_PER_MS,
    UUID_LABELS,
    Rows,
    clean,
    first_label,
    gpu_index,
)
from gpu_trace_analyzer.parsers.dcgm_fields import (
    AMBIGUOUS_RATIO_ALIASES,
    BY_PROM_NAME,
)
from prometheus_client.parser import text_string_to_metric_families

#: dcgm-exporter's default collect interval (``-c``), ms: spacing of repeated scrapes.
EXPORTER_DEFAULT_INTERVAL_MS: Final = 30_000


PROM_SAMPLE = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*(\{.*\})?\s+\S+")


@dataclass(slots=True)
class PromSeries:
    """One series (metric name and label set) and its points in input order."""

    name: str
    labels: dict[str, str]
    ts_ms: list[int | None] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


_SeriesId = tuple[str, frozenset[tuple[str, str]]]


def parse_prom_text(text: str, name: str, rows: Rows) -> None:
    """Parse exporter text, dropping (and counting) lines the Prometheus parser rejects."""
    series, dropped = _prom_series(text.splitlines())
    if dropped:
        rows.warnings.append(
            f"{len(dropped)} line(s) that are not Prometheus text were skipped "
            f"(first: {dropped[0][:60]!r})"
        )
    add_prom_series(series, rows)


def _prom_series(lines: Iterable[str]) -> tuple[list[PromSeries], list[str]]:
    """Group sample lines into series; lines the parser rejects are returned as dropped.

    prometheus_client's parser reads each distinct series key (``name{labels}``: the
    grammar's hard part, with quoting and escapes) once; the value and timestamp tokens of
    every line are a float and an integer of milliseconds. Scrapes repeat their series, so
    this is what keeps a long capture fast.
    """
    identity: dict[str, _SeriesId | None] = {}
    series: dict[_SeriesId, PromSeries] = {}
    dropped: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        split = _split_sample(line)
        key = split[0] if split else ""
        if split and key not in identity:
            identity[key] = _series_id(key)
        sid = identity.get(key) if split else None
        if split is None or sid is None:
            dropped.append(line)
            continue
        if sid not in series:
            series[sid] = PromSeries(sid[0], dict(sid[1]))
        entry = series[sid]
        entry.values.append(float(split[1]))
        entry.ts_ms.append(None if split[2] is None else int(split[2]))
    return list(series.values()), dropped


def _split_sample(line: str) -> tuple[str, str, str | None] | None:
    """``(series key, value, timestamp or None)`` of a sample line, or None.

    The value and timestamp are the last whitespace-separated tokens; a label value may hold
    spaces, so a token only counts as the value when it is a number.
    """
    parts = line.rsplit(None, 2)
    if len(parts) == 3 and _is_float(parts[1]) and re.fullmatch(r"-?\d+", parts[2]):
        return parts[0], parts[1], parts[2]
    parts = line.rsplit(None, 1)
    if len(parts) == 2 and _is_float(parts[1]):
        return parts[0], parts[1], None
    return None


def _is_float(token: str) -> bool:
    """Whether a token is a Prometheus sample value (a float, NaN or +-Inf)."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def _series_id(key: str) -> _SeriesId | None:
    """Name and labels of a series key, parsed by prometheus_client, or None if rejected."""
    try:
        families = list(text_string_to_metric_families(key + " 0\n"))
    except Exception:  # the third-party parser raises several types on bad text
        return None
    samples = [s for family in families for s in family.samples]
    if len(samples) != 1:
        return None
    return samples[0].name, frozenset(samples[0].labels.items())


def add_prom_series(series: Sequence[PromSeries], rows: Rows) -> None:
    """Map exporter series to counter rows (shared by text and JSON input)."""
    models = _legacy_models(series)
    points = sum(len(s.values) for s in series)
    stamped = sum(1 for s in series for t in s.ts_ms if t is not None)
    use_ts = stamped > 0 and stamped == points
    if stamped and not use_ts:
        rows.warnings.append(
            "some samples carry timestamps and some do not: all placed by scrape order "
            "on a relative clock"
        )
    rows.clock = "epoch" if use_ts else "relative"
    unused: set[str] = set()
    no_gpu = 0
    scrapes = 0
    for s in series:
        dcgm = BY_PROM_NAME.get(s.name)
        if dcgm is None:
            if s.name.lower().startswith("dcgm_") and s.name != "dcgm_gpu_info":
                unused.add(s.name)
            continue
        gpu = gpu_index(s.labels)
        if gpu is None:
            no_gpu += len(s.values)
            continue
        _note_labels(s.labels, rows)
        if use_ts:
            ts = [int(t or 0) * NS_PER_MS for t in s.ts_ms]
        else:
            step = EXPORTER_DEFAULT_INTERVAL_MS * NS_PER_MS
            ts = [k * step for k in range(len(s.values))]
        scrapes = max(scrapes, len(s.values))
        values = [clean(v) for v in s.values]
        if s.name in AMBIGUOUS_RATIO_ALIASES and any(v is not None for v in values):
            rows.flags.setdefault("ambiguous_alias", s.name)
        model = first_label(s.labels, MODEL_LABELS) or models.get(gpu)
        host = first_label(s.labels, HOST_LABELS)
        uuid = first_label(s.labels, UUID_LABELS)
        rows.extend(host, gpu, dcgm, ts, values, uuid, model)
    _prom_warnings(rows, unused, no_gpu, use_ts, scrapes)


def _note_labels(labels: dict[str, str], rows: Rows) -> None:
    """Record the pod and driver version labels in the meta flags."""
    if labels.get("pod"):
        rows.pods.add(labels["pod"])
    if "DCGM_FI_DRIVER_VERSION" in labels:
        rows.flags["driver_version"] = labels["DCGM_FI_DRIVER_VERSION"]


def _prom_warnings(rows: Rows, unused: set[str], no_gpu: int, use_ts: bool, scrapes: int) -> None:
    """Tell the reader what the exporter parse assumed or left out."""
    if not use_ts and rows.metric:
        if scrapes > 1:
            rows.warnings.append(
                f"{scrapes} scrapes without timestamps: placed "
                f"{EXPORTER_DEFAULT_INTERVAL_MS // 1000} s apart (dcgm-exporter's default "
                "collect interval) on a relative clock"
            )
        else:
            rows.warnings.append(
                "exporter samples carry no timestamp: one sample per series at ts 0 "
                "on a relative clock"
            )
    if unused:
        shown = ", ".join(sorted(unused)[:5]) + (", ..." if len(unused) > 5 else "")
        rows.warnings.append(f"{len(unused)} DCGM metric(s) not analyzed: {shown}")
    if no_gpu:
        rows.warnings.append(f"{no_gpu} sample(s) without a gpu or device label were skipped")


def _legacy_models(series: Sequence[PromSeries]) -> dict[int, str]:
    """Model names from the 1.x exporter's ``dcgm_gpu_info{gpu_type=...}`` series."""
    models: dict[int, str] = {}
    for s in series:
        if s.name == "dcgm_gpu_info":
            gpu = gpu_index(s.labels)
            if gpu is not None and s.labels.get("gpu_type"):
                models[gpu] = s.labels["gpu_type"]
    return models
