"""DCGM metrics dumps into the canonical ``counters`` table.

Four inputs, one output:

- ``dcgmi dmon`` text (``kind="dmon"``): a ``#Entity`` header of short names, an ``ID`` unit
  line, rows ``GPU n`` (also ``GPU-I n``, ``GPU-CI n``, link and switch entities, which are
  counted and left out: the analysis is per GPU), ``N/A`` for missing values, the header
  repeated every few rows. dmon prints no timestamps: the k-th row of an entity is placed at
  k x the sample interval (``-d`` when the capture shows the command line, else dcgmi's default
  1000 ms) on a relative clock, and a warning says so. A pasted capture may hold several runs
  (each starting with its ``dcgmi dmon`` command line, or with a header of other columns): they
  are laid end to end. A run without a header takes its columns from the command's ``-e``.
- dcgm-exporter Prometheus text (``kind="prom"``): prometheus_client's text parser reads each
  distinct series (name and labels) once; lines it rejects (a pasted ``curl`` command,
  garbage) are dropped and counted in a warning. Legacy 1.x names (``dcgm_gpu_utilization``,
  model from ``dcgm_gpu_info{gpu_type=...}``) are read too. Samples without a timestamp (the
  normal ``/metrics`` scrape) are placed at ts 0 on a relative clock; a series that repeats
  (scrapes concatenated) gets one slot per scrape, 30 s apart (dcgm-exporter's default
  collect interval), with a warning.
- Prometheus HTTP API JSON (``kind="prom-json"``): ``/api/v1/query`` vectors and
  ``/api/v1/query_range`` matrices, values as strings ("NaN", "+Inf" allowed), times in unix
  seconds: an epoch clock.
- CSV (``kind="csv"``) with a timestamp column, wide (one column per field, named by DCGM name,
  dmon short name or our metric name) or long (``metric``/``field`` and ``value`` columns).

Missing values (``N/A``, NaN, infinities, DCGM's blank sentinels: int64 0x7ffffffffffffff0 and
up, double 140737488355328.0) become null, never zero. Field names map to our metric names
through `parsers.dcgm_fields`, the one mapping table.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

import msgspec
import polars as pl
from gpu_trace_analyzer.parsers.dcgm_fields import (
    AMBIGUOUS_RATIO_ALIASES,
    BY_ID,
    BY_METRIC,
    BY_PROM_NAME,
    BY_SHORT,
    DcgmField,
)
from gpu_trace_analyzer.parsers.errors import (
    EmptyTraceError,
    UnreadableInputError,
    UnsupportedFormatError,
)
from gpu_trace_analyzer.parsers.schema import (
    DeviceInfo,
    RankInfo,
    TraceMeta,
    TraceTables,
    table_from_columns,
)
from prometheus_client.parser import text_string_to_metric_families

#: dcgmi dmon's default sample interval (``-d``), ms.
DMON_DEFAULT_INTERVAL_MS: Final = 1000
#: dcgm-exporter's default collect interval (``-c``), ms: spacing of repeated scrapes.
EXPORTER_DEFAULT_INTERVAL_MS: Final = 30_000
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

#: parsers.detect's names for the same kinds.
_DETECT_KINDS: Final = {
    "dcgm-dmon": "dmon",
    "dcgm-prometheus": "prom",
    "dcgm-promjson": "prom-json",
    "dcgm-csv": "csv",
}
_NS_PER_MS: Final = 1_000_000
_HOST_LABELS: Final = ("Hostname", "hostname", "node", "instance")
_MODEL_LABELS: Final = ("modelName", "model_name", "gpu_type")
_UUID_LABELS: Final = ("UUID", "uuid", "gpu_uuid")
_TS_COLUMNS: Final = ("timestamp", "time", "ts", "datetime", "date")
_DMON_CMD = re.compile(r"^(?:[>$%]\s*)?(?:sudo\s+)?dcgmi\s+dmon\b(?P<args>.*)$")
_GPU_ENTITY = re.compile(r"^GPU (\d+)$")
_OTHER_ENTITY = re.compile(r"^(?:GPU-I|GPU-CI|GPU \d+ LINK|LINK|Link|Switch|NvSwitch|CPU|Core)\b")
_PROM_SAMPLE = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*(\{.*\})?\s+\S+")


@dataclass(slots=True)
class _Rows:
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


# ---------------------------------------------------------------------------------------------
# Entry points


def parse(path: Path, interval_ms: int | None = None) -> TraceTables:
    """Parse a DCGM dump (dmon text, exporter text, Prometheus JSON or CSV; ``.gz`` allowed).

    ``interval_ms`` overrides the dmon sample interval when the capture does not show ``-d``.
    """
    text = _read_text(path)
    return parse_text(text, sniff_kind(text, path), str(path), interval_ms)


def parse_text(text: str, kind: str, name: str, interval_ms: int | None = None) -> TraceTables:
    """Parse DCGM output held in a string.

    ``kind`` is dmon, prom, prom-json, csv or auto (parsers.detect's dcgm-* names work too);
    ``name`` names the input in messages and in the meta data.
    """
    kind = _DETECT_KINDS.get(kind, kind)
    if kind == "auto":
        kind = sniff_kind(text, name)
    if kind not in SOURCES:
        raise UnsupportedFormatError(f"unknown DCGM input kind {kind!r}", name)
    if not text.strip():
        raise EmptyTraceError("the DCGM capture is empty", name)
    rows = _Rows(source=SOURCES[kind])
    if kind == "dmon":
        _parse_dmon(text, name, rows, interval_ms)
    elif kind == "prom":
        _parse_prom_text(text, name, rows)
    elif kind == "prom-json":
        _parse_prom_json(text, name, rows)
    else:
        _parse_csv(text, name, rows)
    if not rows.metric:
        raise EmptyTraceError(f"no GPU samples of a known DCGM field in this {kind} input", name)
    return _bundle(rows, name)


def sniff_kind(text: str, name: str | Path = "<text>") -> str:
    """Which DCGM input this text is, from its content (never from the file name alone)."""
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith(("{", "[")):
        return "prom-json"
    lines = [ln.strip() for ln in head.splitlines()[:400] if ln.strip()]
    if any(ln.startswith("#Entity") or _DMON_CMD.match(ln) for ln in lines):
        return "dmon"
    if any(_GPU_ENTITY.match(" ".join(ln.split()[:2])) for ln in lines):
        return "dmon"
    first = next((ln for ln in lines if not ln.startswith("#")), "")
    if "{" not in first and "," in first and _ts_column(first.split(",")) is not None:
        return "csv"
    if any(ln.startswith(("# HELP", "# TYPE")) or _PROM_SAMPLE.match(ln) for ln in lines):
        return "prom"
    raise UnsupportedFormatError(
        "not a DCGM dump (dcgmi dmon text, dcgm-exporter metrics, Prometheus JSON or CSV)", name
    )


#: Most text a DCGM dump may decompress or read to (a 1 MB crafted .gz once reached 12 GB).
MAX_TEXT_BYTES: int = 1 << 30
_READ_BLOCK: Final = 1 << 20


def _read_text(path: Path) -> str:
    """The file's text (gunzipped when needed, streamed, every gzip member, at most
    `MAX_TEXT_BYTES`); unreadable, empty or oversized files raise."""
    try:
        with path.open("rb") as handle:
            raw = _bounded_bytes(handle, path)
    except OSError as exc:
        raise UnreadableInputError(f"cannot read: {exc.strerror or exc}", path) from None
    if not raw.strip():
        raise UnreadableInputError("the file is empty", path)
    return raw.decode("utf-8", errors="replace")


def _bounded_bytes(handle: BinaryIO, path: Path) -> bytes:
    """The content of an open file, gunzipped block by block when gzip, refused past
    `MAX_TEXT_BYTES` before more is held."""
    out = bytearray()
    head = handle.read(_READ_BLOCK)
    if head[:2] != b"\x1f\x8b":
        while head:
            out += head
            if len(out) > MAX_TEXT_BYTES:
                raise _too_big(path)
            head = handle.read(_READ_BLOCK)
        return bytes(out)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = head
    try:
        while True:
            if not pending:
                pending = handle.read(_READ_BLOCK)
                if not pending:
                    raise UnreadableInputError("corrupt gzip data: the stream is cut short", path)
            out += inflater.decompress(pending, _READ_BLOCK)
            if len(out) > MAX_TEXT_BYTES:
                raise _too_big(path)
            pending = inflater.unconsumed_tail
            if inflater.eof:  # another gzip member may follow
                rest = inflater.unused_data or handle.read(_READ_BLOCK)
                if rest[:2] != b"\x1f\x8b":
                    break  # the last member (trailing bytes ignored, as gzip -d does)
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                pending = rest
    except zlib.error as exc:
        raise UnreadableInputError(f"corrupt gzip data: {exc}", path) from None
    return bytes(out)


def _too_big(path: Path) -> UnreadableInputError:
    return UnreadableInputError(
        f"holds more than {MAX_TEXT_BYTES >> 20} MiB of text once decompressed; not a DCGM "
        "dump this tool reads (a decompression bomb?)",
        path,
    )


# ---------------------------------------------------------------------------------------------
# dcgmi dmon


@dataclass(slots=True)
class _DmonRun:
    """One dmon invocation: its columns, interval, and how many rows each entity printed."""

    columns: tuple[str, ...] = ()
    field_ids: tuple[int, ...] = ()
    interval_ms: int | None = None
    counts: Counter[str] = field(default_factory=Counter)

    def slots(self) -> int:
        """Sample slots this run used (the most rows any entity printed)."""
        return max(self.counts.values(), default=0)


@dataclass(slots=True)
class _DmonState:
    """Running state over a dmon capture."""

    run: _DmonRun = field(default_factory=_DmonRun)
    offset_ns: int = 0
    runs: int = 0
    dropped: list[str] = field(default_factory=list)
    other_entities: Counter[str] = field(default_factory=Counter)
    bad_cells: int = 0
    unmapped: set[str] = field(default_factory=set)
    intervals_ms: set[int] = field(default_factory=set)
    defaulted_interval: bool = False


def _parse_dmon(text: str, name: str, rows: _Rows, interval_ms: int | None) -> None:
    """Read every dmon run in the text into ``rows``."""
    st = _DmonState()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("```"):
            continue
        cmd = _DMON_CMD.match(line)
        if cmd:
            _dmon_new_run(st, _DmonRun(*_dmon_options(cmd.group("args"))))
        elif line.startswith("#Entity"):
            _dmon_header(st, tuple(line.split()[1:]))
        elif line.startswith("#") or line.split()[0] == "ID":
            continue  # unit line, or a comment pasted with the capture
        else:
            _dmon_row(st, line, rows, interval_ms)
    st.runs += 1 if st.run.counts else 0
    _dmon_warnings(st, rows)
    rows.flags["dmon_runs"] = str(st.runs)


def _dmon_options(args: str) -> tuple[tuple[str, ...], tuple[int, ...], int | None]:
    """Columns (from ``-e``), field ids and ``-d`` interval of a dmon command line."""
    ids = re.search(r"(?:^|\s)(?:-e|--field-id)\s+([\d,]+)", args)
    interval = re.search(r"(?:^|\s)(?:-d|--delay)\s+(\d+)", args)
    field_ids = tuple(int(x) for x in re.findall(r"\d+", ids.group(1))) if ids else ()
    columns = tuple(BY_ID[i].short if i in BY_ID else f"#{i}" for i in field_ids)
    return columns, field_ids, int(interval.group(1)) if interval else None


def _dmon_new_run(st: _DmonState, run: _DmonRun) -> None:
    """Close the current run (advancing the clock past it) and start ``run``."""
    if st.run.counts:
        st.offset_ns += (
            st.run.slots() * (st.run.interval_ms or DMON_DEFAULT_INTERVAL_MS) * (_NS_PER_MS)
        )
        st.runs += 1
    st.run = run


def _dmon_header(st: _DmonState, columns: tuple[str, ...]) -> None:
    """A ``#Entity`` header: a repeat of the current one, or the start of another run."""
    if columns == st.run.columns:
        return
    if st.run.counts:
        _dmon_new_run(st, _DmonRun(interval_ms=st.run.interval_ms))
    st.run.columns = columns


def _dmon_row(st: _DmonState, line: str, rows: _Rows, interval_ms: int | None) -> None:
    """One entity row: values of the current columns at this entity's next sample slot."""
    tokens = line.split()
    ncols = len(st.run.columns)
    if ncols == 0 or len(tokens) <= ncols:
        st.dropped.append(line)
        return
    entity = " ".join(tokens[:-ncols])
    gpu_match = _GPU_ENTITY.match(entity)
    if gpu_match is None:
        if _OTHER_ENTITY.match(entity):
            st.other_entities[entity.split()[0]] += 1
        else:
            st.dropped.append(line)
        return
    run = st.run
    interval = run.interval_ms or interval_ms
    if interval is None:
        interval, st.defaulted_interval = DMON_DEFAULT_INTERVAL_MS, True
    st.intervals_ms.add(interval)
    ts_ns = st.offset_ns + run.counts[entity] * interval * _NS_PER_MS
    run.counts[entity] += 1
    gpu = int(gpu_match.group(1))
    for column, cell in zip(run.columns, tokens[-ncols:], strict=True):
        dcgm = BY_SHORT.get(column)
        if dcgm is None:
            st.unmapped.add(column)
            continue
        value = _dmon_value(cell)
        if value is None and cell != "N/A":
            st.bad_cells += 1
        rows.add(None, gpu, dcgm, ts_ns, value)


def _dmon_value(cell: str) -> float | None:
    """A dmon cell as a number; ``N/A`` and anything unparsable are null."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return _clean(value)


def _dmon_warnings(st: _DmonState, rows: _Rows) -> None:
    """Tell the reader what the dmon parse assumed or left out."""
    if st.intervals_ms:
        spacing = " / ".join(str(i) for i in sorted(st.intervals_ms))
        origin = "dcgmi's default -d" if st.defaulted_interval else "-d"
        rows.warnings.append(
            f"dmon prints no timestamps: samples are placed {spacing} ms apart ({origin}) "
            "on a relative clock"
        )
        rows.flags["interval_ms"] = spacing
    if st.runs > 1:
        rows.warnings.append(f"{st.runs} dmon runs were laid end to end on one relative clock")
    if st.dropped:
        rows.warnings.append(
            f"{len(st.dropped)} dmon line(s) not understood were skipped "
            f"(first: {st.dropped[0][:60]!r})"
        )
    if st.other_entities:
        kinds = ", ".join(sorted(st.other_entities))
        rows.warnings.append(
            f"{sum(st.other_entities.values())} row(s) of non-GPU entities ({kinds}) left out: "
            "the analysis is per GPU"
        )
    if st.bad_cells:
        rows.warnings.append(f"{st.bad_cells} dmon cell(s) were not numbers and read as null")
    if st.unmapped:
        rows.warnings.append(f"dmon columns not analyzed: {', '.join(sorted(st.unmapped))}")


# ---------------------------------------------------------------------------------------------
# Prometheus text (dcgm-exporter /metrics)


@dataclass(slots=True)
class _PromSeries:
    """One series (metric name and label set) and its points in input order."""

    name: str
    labels: dict[str, str]
    ts_ms: list[int | None] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


_SeriesId = tuple[str, frozenset[tuple[str, str]]]


def _parse_prom_text(text: str, name: str, rows: _Rows) -> None:
    """Parse exporter text, dropping (and counting) lines the Prometheus parser rejects."""
    series, dropped = _prom_series(text.splitlines())
    if dropped:
        rows.warnings.append(
            f"{len(dropped)} line(s) that are not Prometheus text were skipped "
            f"(first: {dropped[0][:60]!r})"
        )
    _add_prom_series(series, rows)


def _prom_series(lines: Iterable[str]) -> tuple[list[_PromSeries], list[str]]:
    """Group sample lines into series; lines the parser rejects are returned as dropped.

    prometheus_client's parser reads each distinct series key (``name{labels}``: the
    grammar's hard part, with quoting and escapes) once; the value and timestamp tokens of
    every line are a float and an integer of milliseconds. Scrapes repeat their series, so
    this is what keeps a long capture fast.
    """
    identity: dict[str, _SeriesId | None] = {}
    series: dict[_SeriesId, _PromSeries] = {}
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
            series[sid] = _PromSeries(sid[0], dict(sid[1]))
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


def _add_prom_series(series: Sequence[_PromSeries], rows: _Rows) -> None:
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
        gpu = _gpu_index(s.labels)
        if gpu is None:
            no_gpu += len(s.values)
            continue
        _note_labels(s.labels, rows)
        if use_ts:
            ts = [int(t or 0) * _NS_PER_MS for t in s.ts_ms]
        else:
            step = EXPORTER_DEFAULT_INTERVAL_MS * _NS_PER_MS
            ts = [k * step for k in range(len(s.values))]
        scrapes = max(scrapes, len(s.values))
        values = [_clean(v) for v in s.values]
        if s.name in AMBIGUOUS_RATIO_ALIASES and any(v is not None for v in values):
            rows.flags.setdefault("ambiguous_alias", s.name)
        model = _first_label(s.labels, _MODEL_LABELS) or models.get(gpu)
        host = _first_label(s.labels, _HOST_LABELS)
        uuid = _first_label(s.labels, _UUID_LABELS)
        rows.extend(host, gpu, dcgm, ts, values, uuid, model)
    _prom_warnings(rows, unused, no_gpu, use_ts, scrapes)


def _note_labels(labels: dict[str, str], rows: _Rows) -> None:
    """Record the pod and driver version labels in the meta flags."""
    if labels.get("pod"):
        rows.pods.add(labels["pod"])
    if "DCGM_FI_DRIVER_VERSION" in labels:
        rows.flags["driver_version"] = labels["DCGM_FI_DRIVER_VERSION"]


def _prom_warnings(rows: _Rows, unused: set[str], no_gpu: int, use_ts: bool, scrapes: int) -> None:
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


def _legacy_models(series: Sequence[_PromSeries]) -> dict[int, str]:
    """Model names from the 1.x exporter's ``dcgm_gpu_info{gpu_type=...}`` series."""
    models: dict[int, str] = {}
    for s in series:
        if s.name == "dcgm_gpu_info":
            gpu = _gpu_index(s.labels)
            if gpu is not None and s.labels.get("gpu_type"):
                models[gpu] = s.labels["gpu_type"]
    return models


def _gpu_index(labels: dict[str, str]) -> int | None:
    """The GPU index from ``gpu="0"`` or ``device="nvidia0"``."""
    gpu = labels.get("gpu", "")
    if gpu.isdigit():
        return int(gpu)
    device = re.fullmatch(r"nvidia(\d+)", labels.get("device", ""))
    return int(device.group(1)) if device else None


def _first_label(labels: dict[str, str], names: Sequence[str]) -> str | None:
    """The first non-empty label among ``names``."""
    return next((labels[n] for n in names if labels.get(n)), None)


def _clean(value: float) -> float | None:
    """Null for NaN, infinities and DCGM's blank sentinels; the value otherwise."""
    if not math.isfinite(value) or value >= INT64_BLANK_MIN or value == FP64_BLANK:
        return None
    return value


# ---------------------------------------------------------------------------------------------
# Prometheus HTTP API JSON


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


def _parse_prom_json(text: str, name: str, rows: _Rows) -> None:
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
    series: list[_PromSeries] = []
    unnamed = 0
    for result in resp.data.result:
        metric = result.metric.get("__name__")
        if metric is None:
            unnamed += 1
            continue
        points = [result.value] if result.value is not None else result.values
        series.append(
            _PromSeries(
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
    _add_prom_series(series, rows)


def _num(text: str) -> float:
    """A Prometheus string value as a float (``NaN``, ``+Inf`` included)."""
    try:
        return float(text)
    except ValueError:
        return math.nan


# ---------------------------------------------------------------------------------------------
# CSV


def _parse_csv(text: str, name: str, rows: _Rows) -> None:
    """A CSV export with a timestamp column, long or wide."""
    try:
        df = pl.read_csv(text.encode(), infer_schema_length=10_000, null_values=["N/A", ""])
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise UnreadableInputError(f"unreadable CSV: {exc}", name) from None
    ts_col = _ts_column(df.columns)
    if ts_col is None:
        raise UnsupportedFormatError("CSV without a timestamp column", name)
    ts = _csv_times(df[ts_col], rows, name)
    gpu_col = _pick(df.columns, ("gpu", "gpu_id", "gpu_index", "entity", "entityid"))
    if gpu_col is None:
        raise UnsupportedFormatError("CSV without a gpu column", name)
    gpus = [_csv_gpu(v) for v in df[gpu_col].cast(pl.String).to_list()]
    hosts = _str_col(df, _pick(df.columns, tuple(h.lower() for h in _HOST_LABELS)))
    models = _str_col(df, _pick(df.columns, tuple(m.lower() for m in _MODEL_LABELS)))
    uuids = _str_col(df, _pick(df.columns, tuple(u.lower() for u in _UUID_LABELS)))
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
            rows.add(hosts[i], gpu, dcgm, ts[i], None if v is None else _clean(v), uuids[i],
                     models[i])  # fmt: skip
    if skipped:
        rows.warnings.append(f"{skipped} CSV value(s) of unknown fields or GPUs were skipped")


def _ts_column(columns: Sequence[str]) -> str | None:
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


def _csv_times(col: pl.Series, rows: _Rows, name: str) -> list[int]:
    """Timestamps as ns: ISO strings, or unix s/ms/us/ns by magnitude; small numbers relative.

    Times that are no time at all (or beyond int64 nanoseconds) are a one-line error."""
    try:
        ns = _csv_ns(col, rows)
    except (pl.exceptions.PolarsError, OverflowError, ValueError) as exc:
        raise UnreadableInputError(
            f"CSV timestamps are not times in a known format ({str(exc).splitlines()[0]})", name
        ) from exc
    if ns.null_count():
        raise UnreadableInputError(f"{ns.null_count()} CSV timestamp(s) are not times", name)
    return [int(v) for v in ns.to_list()]


def _csv_ns(col: pl.Series, rows: _Rows) -> pl.Series:
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


# ---------------------------------------------------------------------------------------------
# Bundle


def _bundle(rows: _Rows, name: str) -> TraceTables:
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


def _rescale_ambiguous(df: pl.DataFrame, rows: _Rows) -> pl.DataFrame:
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
