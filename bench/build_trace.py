"""Deterministic large Kineto traces built from one real trace, for the benchmark.

``single``: one file holding ``copies`` back-to-back copies of the source's events, each copy's
timestamps shifted by the source's span (so copies never overlap), its ids (``External id``,
``correlation``, flow ``id``, ``Sequence number``) moved into a range of their own, and its
``ProfilerStep#N`` annotations renumbered after the previous copy's. The result is one valid
trace of ``copies`` x the source's events and steps; metadata events (``ph: M``) appear once.

``ranks``: a directory of ``world_size`` per-rank files, each one copy of the source with its
own ``distributedInfo.rank`` (ranks run at the same time, so no shift).

Both are written as plain JSON (msgspec encodes, ``msgspec.json.format(indent=0)`` spaces the
separators like ``json.dumps``), one line per copy's event array, streamed copy by copy.
"""

from __future__ import annotations

import gzip
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

import msgspec

REPO: Final = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE: Final = (
    REPO.parent / "shared" / "traces" / "hta" / "df_index_resolver" / "df_index_resolver.json.gz"
)
_STEP: Final = re.compile(r"^ProfilerStep#(\d+)$")
#: Args holding ids that link events of one copy; each copy gets its own range of them.
_ID_ARGS: Final = ("External id", "external id", "correlation")
_SEQUENCE_ARG: Final = "Sequence number"

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Source:
    """The source trace's document and what copying it needs to know."""

    header: dict[str, Any]
    events: list[Event]
    span_us: int
    id_stride: int
    sequence_stride: int
    first_step: int
    step_count: int


def _stride(maximum: int) -> int:
    """The power of ten above ``maximum``: copies' ids stay readable and never collide."""
    return int(10 ** max(1, math.ceil(math.log10(maximum + 1))))


def _read_json(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    document = msgspec.json.decode(data)
    if not isinstance(document, dict) or not isinstance(document.get("traceEvents"), list):
        raise ValueError(f"{path}: not a Kineto trace (no traceEvents list)")
    return document


def load_source(path: Path) -> Source:
    """Read the source trace and measure its span, id ranges and steps."""
    document = _read_json(path)
    events: list[Event] = document.pop("traceEvents")
    timed = [e for e in events if isinstance(e.get("ts"), int | float) and e.get("ph") != "M"]
    start = min(e["ts"] for e in timed)
    end = max(e["ts"] + (e.get("dur") or 0) for e in timed)
    ids = [0]
    sequences = [0]
    steps = []
    for event in events:
        args = event.get("args") or {}
        ids.extend(v for k in _ID_ARGS if isinstance(v := args.get(k), int))
        if isinstance(event.get("id"), int):
            ids.append(event["id"])
        if isinstance(seq := args.get(_SEQUENCE_ARG), int):
            sequences.append(seq)
        if event.get("ph") == "X" and (match := _STEP.match(str(event.get("name", "")))):
            steps.append(int(match.group(1)))
    return Source(
        header=document,
        events=events,
        span_us=math.ceil(end - start) + 1,
        id_stride=_stride(max(ids)),
        sequence_stride=_stride(max(sequences)),
        first_step=min(steps, default=0),
        step_count=(max(steps) - min(steps) + 1) if steps else 0,
    )


def copy_event(event: Event, copy: int, source: Source) -> Event:
    """One event as it appears in copy number ``copy`` (0 is the source itself)."""
    if copy == 0:
        return event
    moved = dict(event)
    if isinstance(moved.get("ts"), int | float):
        moved["ts"] = moved["ts"] + copy * source.span_us
    if isinstance(moved.get("id"), int):
        moved["id"] = moved["id"] + copy * source.id_stride
    args = moved.get("args")
    if isinstance(args, dict):
        moved["args"] = _copy_args(args, copy, source)
    if moved.get("ph") == "X" and (match := _STEP.match(str(moved.get("name", "")))):
        moved["name"] = f"ProfilerStep#{int(match.group(1)) + copy * source.step_count}"
    return moved


def _copy_args(args: dict[str, Any], copy: int, source: Source) -> dict[str, Any]:
    moved = dict(args)
    for key in _ID_ARGS:
        value = moved.get(key)
        if isinstance(value, int) and value > 0:
            moved[key] = value + copy * source.id_stride
    seq = moved.get(_SEQUENCE_ARG)
    if isinstance(seq, int) and seq >= 0:
        moved[_SEQUENCE_ARG] = seq + copy * source.sequence_stride
    return moved


def _events_line(events: list[Event]) -> str:
    """Events as one line of JSON array elements (no brackets), json.dumps-style spacing."""
    text = msgspec.json.format(msgspec.json.encode(events), indent=0).decode()
    return text[1:-1]


def _write_document(out: TextIO, header: dict[str, Any], lines: Iterator[str]) -> None:
    """``{header..., "traceEvents": [line,\\nline,...]}``, streaming the lines."""
    head = msgspec.json.format(msgspec.json.encode(header), indent=0).decode()
    out.write(head[:-1] + (", " if header else "") + '"traceEvents": [\n')
    first = True
    for line in lines:
        if not line:
            continue
        out.write(line if first else ",\n" + line)
        first = False
    out.write("\n]}\n")


def _copies(source: Source, copies: int) -> Iterator[str]:
    for copy in range(copies):
        yield _events_line(
            [copy_event(e, copy, source) for e in source.events if copy == 0 or e.get("ph") != "M"]
        )


def build_single(source: Source, copies: int, out: Path) -> Path:
    """One trace file of ``copies`` consecutive copies of the source."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        _write_document(handle, source.header, _copies(source, copies))
    return out


def build_ranks(source: Source, world_size: int, out_dir: Path) -> list[Path]:
    """``world_size`` per-rank files (``rank-<r>.json``), each one copy of the source."""
    out_dir.mkdir(parents=True, exist_ok=True)
    line = _events_line(source.events)
    paths = []
    for rank in range(world_size):
        header = dict(source.header)
        info = dict(header.get("distributedInfo") or {})
        info.update(rank=rank, world_size=world_size)
        header["distributedInfo"] = info
        path = out_dir / f"rank-{rank}.json"
        with path.open("w", encoding="utf-8") as handle:
            _write_document(handle, header, iter([line]))
        paths.append(path)
    return paths


def main() -> None:
    """``python bench/build_trace.py single|ranks OUT [--copies N] [--ranks N] [--source S]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Build a benchmark trace from a real one.")
    parser.add_argument("mode", choices=("single", "ranks"))
    parser.add_argument("out", type=Path, help="trace file (single) or directory (ranks)")
    parser.add_argument("--copies", type=int, default=11)
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args()
    source = load_source(args.source)
    if args.mode == "single":
        build_single(source, args.copies, args.out)
    else:
        build_ranks(source, args.ranks, args.out)


if __name__ == "__main__":
    main()
