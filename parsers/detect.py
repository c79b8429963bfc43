"""Which source family a path holds, from its first bytes, never from its extension alone.

The formats and their sniffers are listed in `parsers.registry`; this module reads heads
and walks directories. `sniff` returns one of `KINDS` for a file or a directory, or raises
`UnsupportedFormatError` with one line saying what the content looks like ("a Chakra
execution trace", "empty file", ...). Gzip files are sniffed on their decompressed head.
A directory is a multi-rank Kineto trace, a directory of Parquet tables, or ``"mixed"``
(for example a trace beside a DCGM scrape); `classify_dir` tells which file is which.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Final

from gpu_trace_analyzer.parsers import registry
from gpu_trace_analyzer.parsers.errors import UnreadableInputError, UnsupportedFormatError

#: What `sniff` returns: a readable format of `parsers.registry.FORMATS`, or a directory.
KINDS: Final[tuple[str, ...]] = (
    *(f.kind for f in registry.FORMATS if f.parser is not None),
    "kineto-dir",
    "parquet-dir",
    "mixed",
)
#: Kind given to files of a directory that match nothing (only in `classify_dir`).
UNKNOWN: Final = "unknown"
#: Kind of a single Parquet file inside a directory (only in `classify_dir`).
PARQUET: Final = "parquet"

HEAD_BYTES: Final = 64 * 1024
#: How far to look when a JSON object's first keys are unknown (a huge ``metadata`` first).
LONG_HEAD_BYTES: Final = 8 * 1024 * 1024
_GZIP_MAGIC: Final = b"\x1f\x8b"
_PARQUET_MAGIC: Final = b"PAR1"
_MEMORY_TIMELINE: Final = re.compile(rb"^\[\s*\[\s*-?\d+\s*,\s*-?\d+\s*,\s*-?\d+\s*,\s*-?\d+\s*\]")


def read_head(path: Path, size: int = HEAD_BYTES) -> tuple[bytes, bool]:
    """Up to ``size`` bytes of the content (decompressed when gzip) and whether it was."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(size)
    except OSError as exc:
        raise UnreadableInputError(f"cannot read: {exc.strerror or exc}", path) from exc
    if raw[:2] != _GZIP_MAGIC:
        return raw, False
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        return inflater.decompress(raw, size), True
    except zlib.error as exc:
        raise UnreadableInputError(f"corrupt gzip data ({exc})", path) from exc


def sniff(path: Path) -> str:
    """The source family of a file or directory (one of `KINDS`)."""
    path = Path(path)
    if path.is_dir():
        return _sniff_dir(path)
    if not path.exists():
        raise UnreadableInputError("no such file or directory", path)
    kind, head = _classify_file(path)
    if kind == PARQUET:
        raise UnsupportedFormatError(
            "a single Parquet file; pass the directory of Parquet tables", path
        )
    if kind is None:
        raise UnsupportedFormatError(f"unsupported content: {describe(head, path)}", path)
    return kind


def _classify_file(path: Path) -> tuple[str | None, bytes]:
    """The kind of one file and the head it was decided on; a JSON object whose first
    64 KiB name no known key is looked at further (up to 8 MiB)."""
    head, _ = read_head(path)
    kind = classify_head(head, path)
    if kind is None and len(head) == HEAD_BYTES and head.lstrip()[:1] == b"{":
        head, _ = read_head(path, LONG_HEAD_BYTES)
        kind = classify_head(head, path)
    return kind, head


def classify_head(head: bytes, path: Path) -> str | None:
    """The kind of content from its head (the first readable format of the registry that
    accepts it), or None when it is nothing we read."""
    if head.startswith(_PARQUET_MAGIC):
        return PARQUET
    fmt = registry.match(head, path)
    return fmt.kind if fmt is not None and fmt.parser is not None else None


def describe(head: bytes, path: Path | None = None) -> str:
    """What content looks like, in a few words, for error messages."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped:
        return "empty file" if not head else "only whitespace"
    if stripped[:2] == _GZIP_MAGIC:
        return "gzip data"
    if head.startswith(registry.SQLITE_MAGIC):
        return "an SQLite database"
    if head.startswith(_PARQUET_MAGIC):
        return "a Parquet file"
    fmt = registry.match(head, path or Path(""))
    if fmt is not None and fmt.unsupported:
        return fmt.unsupported
    if _MEMORY_TIMELINE.match(stripped):
        return "a PyTorch memory timeline (export_memory_timeline raw data)"
    if stripped[:1] == b"[":
        return "a JSON array"
    if stripped[:1] == b"{":
        return _describe_object(stripped)
    if registry.is_binary(head):
        return "binary data"
    first = registry.first_line(head.decode("utf-8", "replace")).strip()
    return f"text starting with {first[:60]!r}"


def _describe_object(head: bytes) -> str:
    """A JSON object: name its first keys."""
    keys = re.findall(rb'^\s*[{,]?\s*"([^"\\]{1,40})"\s*:', head[:4096], re.MULTILINE)
    names = ", ".join(k.decode("utf-8", "replace") for k in keys[:5])
    return f"a JSON object without traceEvents (keys: {names})" if names else "a JSON object"


def classify_dir(path: Path) -> dict[str, list[Path]]:
    """Files of a directory by kind (`UNKNOWN` for the rest), each list sorted by name."""
    groups: dict[str, list[Path]] = {}
    for child in sorted(Path(path).iterdir()):
        if not child.is_file() or child.name.startswith("."):
            continue
        try:
            kind = _classify_file(child)[0] or UNKNOWN
        except UnreadableInputError:
            kind = UNKNOWN
        groups.setdefault(kind, []).append(child)
    return groups


def _sniff_dir(path: Path) -> str:
    """``kineto-dir``, ``parquet-dir`` or ``mixed``."""
    kinds = {k for k in classify_dir(path) if k != UNKNOWN}
    if not kinds:
        raise UnsupportedFormatError("directory holds no trace or metrics file", path)
    if kinds == {"kineto"}:
        return "kineto-dir"
    if kinds == {PARQUET}:
        return "parquet-dir"
    return "mixed"
