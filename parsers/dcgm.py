"""DCGM metrics dumps into the canonical ``counters`` table: the entry points.

One reader module per input (`parsers.dcgm_dmon`, `parsers.dcgm_prom`, `parsers.dcgm_promjson`,
`parsers.dcgm_csv`), what they share in `parsers.dcgm_common`; this module reads the file
(bounded, ``.gz`` allowed), tells the kinds apart and dispatches.

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

from pathlib import Path
from typing import BinaryIO, Final

from gpu_trace_analyzer.parsers.bounded import bounded_bytes
from gpu_trace_analyzer.parsers.dcgm_common import SOURCES, Rows, bundle
from gpu_trace_analyzer.parsers.dcgm_csv import parse_csv, ts_column
from gpu_trace_analyzer.parsers.dcgm_dmon import DMON_CMD, GPU_ENTITY, parse_dmon
from gpu_trace_analyzer.parsers.dcgm_prom import PROM_SAMPLE, parse_prom_text
from gpu_trace_analyzer.parsers.dcgm_promjson import parse_prom_json
from gpu_trace_analyzer.parsers.errors import (
    EmptyTraceError,
    UnreadableInputError,
    UnsupportedFormatError,
)
from gpu_trace_analyzer.parsers.schema import TraceTables

#: parsers.detect's names for the same kinds.
_DETECT_KINDS: Final = {
    "dcgm-dmon": "dmon",
    "dcgm-prometheus": "prom",
    "dcgm-promjson": "prom-json",
    "dcgm-csv": "csv",
}


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
    rows = Rows(source=SOURCES[kind])
    if kind == "dmon":
        parse_dmon(text, name, rows, interval_ms)
    elif kind == "prom":
        parse_prom_text(text, name, rows)
    elif kind == "prom-json":
        parse_prom_json(text, name, rows)
    else:
        parse_csv(text, name, rows)
    if not rows.metric:
        raise EmptyTraceError(f"no GPU samples of a known DCGM field in this {kind} input", name)
    return bundle(rows, name)


def sniff_kind(text: str, name: str | Path = "<text>") -> str:
    """Which DCGM input this text is, from its content (never from the file name alone)."""
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith(("{", "[")):
        return "prom-json"
    lines = [ln.strip() for ln in head.splitlines()[:400] if ln.strip()]
    if any(ln.startswith("#Entity") or DMON_CMD.match(ln) for ln in lines):
        return "dmon"
    if any(GPU_ENTITY.match(" ".join(ln.split()[:2])) for ln in lines):
        return "dmon"
    first = next((ln for ln in lines if not ln.startswith("#")), "")
    if "{" not in first and "," in first and ts_column(first.split(",")) is not None:
        return "csv"
    if any(ln.startswith(("# HELP", "# TYPE")) or PROM_SAMPLE.match(ln) for ln in lines):
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
    """The content of an open file, gunzipped when gzip, refused past `MAX_TEXT_BYTES`
    before more is held (`parsers.bounded`); a gzip stream cut short is an error here."""
    raw, cut = bounded_bytes(handle, path, MAX_TEXT_BYTES, lambda: _too_big(path))
    if cut:
        raise UnreadableInputError("corrupt gzip data: the stream is cut short", path)
    return raw


def _too_big(path: Path) -> UnreadableInputError:
    return UnreadableInputError(
        f"holds more than {MAX_TEXT_BYTES >> 20} MiB of text once decompressed; not a DCGM "
        "dump this tool reads (a decompression bomb?)",
        path,
    )
