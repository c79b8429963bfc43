"""Measurement (b): a bare msgspec typed decode of a Kineto trace, the floor to compare with.

Reads the whole file and decodes ``traceEvents`` into typed Structs (the fields every event
has, ``args`` left raw), nothing else: no tables, no analysis. Run as its own process:
``python bench/decode_floor.py TRACE``; prints the event count.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import msgspec


class Event(msgspec.Struct):
    """One trace event: the common fields typed, args left as raw JSON."""

    ph: str = ""
    cat: str | None = None
    name: str | None = None
    pid: int | str | None = None
    tid: int | str | None = None
    ts: int | float | None = None
    dur: int | float | None = None
    id: int | str | None = None
    args: msgspec.Raw = msgspec.Raw()


class Document(msgspec.Struct):
    """The trace document; only the events are decoded."""

    traceEvents: list[Event] = []


def decode(path: Path) -> int:
    """Decode the file and return its event count."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    document = msgspec.json.decode(data, type=Document)
    return len(document.traceEvents)


def main() -> None:
    """Decode each file named on the command line (a directory: every file in it)."""
    total = 0
    for arg in sys.argv[1:]:
        path = Path(arg)
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        total += sum(decode(f) for f in files)
    sys.stdout.write(f"{total} events\n")


if __name__ == "__main__":
    main()
