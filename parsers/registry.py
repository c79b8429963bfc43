"""The input registry: every file format we recognize, how to sniff it, what parses it.

`detect` walks `FORMATS` in order and takes the first whose ``sniff(head, path)`` says yes
(``head``: the first 64 KiB, decompressed when gzip; the order matters where formats
overlap, e.g. a rocprof CSV also has a "gpu" column like a DCGM CSV). A format either names
its parser (``"module:function"``, a function of one `Path` returning `TraceTables`,
imported only when used) or says in ``unsupported`` why it is recognized but not read, so
that the user gets that sentence instead of "unsupported content".

Adding a format: a parser module with its tests, and one `InputFormat` here.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from gpu_trace_analyzer.parsers.errors import UnsupportedFormatError
from gpu_trace_analyzer.parsers.schema import TraceTables

Parser = Callable[[Path], TraceTables]
Sniffer = Callable[[bytes, Path], bool]

SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_NSYS_REP_SUFFIXES: Final = (".nsys-rep", ".qdrep")
_BOM_AND_SPACE: Final = b"\xef\xbb\xbf \t\r\n"

#: Keys only a Kineto document has, with the type of value Kineto writes for them.
KINETO_KEYS: Final = re.compile(
    rb'"traceEvents"\s*:\s*\[|"(deviceProperties|computeProperties)"\s*:\s*\['
    rb'|"distributedInfo"\s*:\s*\{|"baseTimeNanoseconds"\s*:\s*\d'
)
_CHROME_EVENT: Final = re.compile(rb'\{\s*"ph"\s*:\s*"[A-Za-z]"\s*,')
_PROM_API: Final = re.compile(rb'"resultType"\s*:')
_PROM_STATUS: Final = re.compile(rb'"status"\s*:')
CHAKRA_ET: Final = re.compile(rb'"schema"\s*:.*"nodes"\s*:', re.DOTALL)
DMON_LISTING: Final = re.compile(r"Long Name\s+Short Name\s+Field ID")
_DMON_HEADER: Final = re.compile(r"^#Entity\b", re.MULTILINE)
_PROM_LINE: Final = re.compile(r"^DCGM_FI_\w+(\{[^}\n]*\})?\s+\S+", re.MULTILINE)
_CSV_DCGM_HEADER: Final = re.compile(
    r"^[^\n]*,[^\n]*\b(DCGM_FI_\w+|gpu|GPU|Entity|entity)\b[^\n]*$", re.MULTILINE
)
#: Columns of rocprof's kernel traces: v1 ``results.csv`` ("KernelName", "gpu-id",
#: "BeginNs"), v2/v3 ``kernel_trace.csv`` ("Kernel_Name", "Agent_Id", "Start_Timestamp").
_ROCPROF_COLUMNS: Final = re.compile(
    r'(?i)(^|,)"?(gpu-id|queue-id|kernelname|kernel_name|beginns|endns|agent_id|'
    r'start_timestamp|dispatch_id)"?(,|$)'
)


@dataclass(frozen=True, slots=True)
class InputFormat:
    """One recognized file format."""

    kind: str  # the name `detect.sniff` returns, e.g. "dcgm-csv"
    sniff: Sniffer
    parser: str | None = None  # "module:function"; None when recognized but not read
    role: Literal["trace", "metrics"] = "trace"  # metrics (DCGM) add to one trace
    unsupported: str = ""  # why it is not read, for the error line (when parser is None)


def json_object(head: bytes) -> bytes | None:
    """The head without leading BOM/space when it is a JSON object, else None."""
    stripped = head.lstrip(_BOM_AND_SPACE)
    return stripped if stripped[:1] == b"{" else None


def is_binary(head: bytes) -> bool:
    """Whether the head holds bytes that text formats never do."""
    sample = head[:1024]
    if b"\x00" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(sample) - 4  # a cut multi-byte character at the end is fine
    return False


def text_of(head: bytes) -> str | None:
    """The head as text when it is neither JSON nor binary (what text formats sniff)."""
    if head.lstrip(_BOM_AND_SPACE)[:1] in (b"{", b"[") or is_binary(head):
        return None
    return head.decode("utf-8", "replace")


def first_line(text: str) -> str:
    """The first line that is not blank."""
    return next((line for line in text.splitlines() if line.strip()), "")


def _chakra(head: bytes, path: Path) -> bool:
    obj = json_object(head)
    return obj is not None and bool(CHAKRA_ET.search(obj[:4096])) and not KINETO_KEYS.search(obj)


def _kineto(head: bytes, path: Path) -> bool:
    obj = json_object(head)
    return obj is not None and bool(KINETO_KEYS.search(obj) or _CHROME_EVENT.search(obj))


def _promjson(head: bytes, path: Path) -> bool:
    obj = json_object(head)
    return obj is not None and bool(_PROM_API.search(obj) and _PROM_STATUS.search(obj))


def _nsys_rep(head: bytes, path: Path) -> bool:
    obj = head.lstrip(_BOM_AND_SPACE)[:1] in (b"{", b"[")
    return not obj and is_binary(head) and path.name.lower().endswith(_NSYS_REP_SUFFIXES)


def _text_matches(pattern: re.Pattern[str], whole: bool = True) -> Sniffer:
    def sniff(head: bytes, path: Path) -> bool:
        text = text_of(head)
        if text is None:
            return False
        return bool(pattern.search(text if whole else first_line(text)))

    return sniff


#: In sniffing order: the first match decides.
FORMATS: Final[tuple[InputFormat, ...]] = (
    InputFormat(
        "nsys-sqlite",
        lambda h, p: h.startswith(SQLITE_MAGIC),
        "gpu_trace_analyzer.parsers.nsys:parse",
    ),
    InputFormat(
        "chakra-et",
        _chakra,
        unsupported="a Chakra execution trace (ExecutionTraceObserver), not a Kineto trace",
    ),
    InputFormat("kineto", _kineto, "gpu_trace_analyzer.parsers.kineto:parse"),
    InputFormat("dcgm-promjson", _promjson, "gpu_trace_analyzer.parsers.dcgm:parse", "metrics"),
    InputFormat("nsys-rep", _nsys_rep, "gpu_trace_analyzer.parsers.nsys:parse"),
    InputFormat(
        "dcgm-listing",
        _text_matches(DMON_LISTING),
        unsupported="a dcgmi dmon field listing (dcgmi dmon -l), not samples",
    ),
    InputFormat(
        "dcgm-dmon", _text_matches(_DMON_HEADER), "gpu_trace_analyzer.parsers.dcgm:parse", "metrics"
    ),
    InputFormat(
        "dcgm-prometheus",
        _text_matches(_PROM_LINE),
        "gpu_trace_analyzer.parsers.dcgm:parse",
        "metrics",
    ),
    InputFormat(
        "rocprof-csv",
        _text_matches(_ROCPROF_COLUMNS, whole=False),
        unsupported="a rocprof kernel trace (CSV), which analyze does not read; profile the "
        "ROCm run with torch.profiler and pass its Kineto trace",
    ),
    InputFormat(
        "dcgm-csv",
        _text_matches(_CSV_DCGM_HEADER, whole=False),
        "gpu_trace_analyzer.parsers.dcgm:parse",
        "metrics",
    ),
)

_BY_KIND: Final = {f.kind: f for f in FORMATS}


def match(head: bytes, path: Path) -> InputFormat | None:
    """The first format whose sniffer accepts ``head``, or None."""
    return next((f for f in FORMATS if f.sniff(head, path)), None)


def by_kind(kind: str) -> InputFormat:
    """The format named ``kind`` (KeyError when there is none)."""
    return _BY_KIND[kind]


def parser_for(kind: str) -> Parser:
    """The parse function of a readable format, imported now."""
    fmt = _BY_KIND.get(kind)
    if fmt is None or fmt.parser is None:
        raise UnsupportedFormatError(f"no parser for input kind {kind!r}")
    module, _, name = fmt.parser.partition(":")
    parse: Parser = getattr(importlib.import_module(module), name)
    return parse
