"""Reading a Kineto file: bytes (plain or gzip), then the typed document, salvaging truncation.

A profiler that dies mid-write leaves a file whose JSON stops inside ``traceEvents``. Such a
trace is still worth reading: we cut it back to the last complete event, close the array and
the object, and report how many bytes were dropped. Every other problem becomes one
`AnalyzerError` line naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import msgspec
from gpu_trace_analyzer.parsers.bounded import bounded_bytes
from gpu_trace_analyzer.parsers.detect import describe
from gpu_trace_analyzer.parsers.errors import (
    EmptyTraceError,
    UnreadableInputError,
    UnsupportedFormatError,
)
from gpu_trace_analyzer.parsers.kineto_events import (
    DOCUMENT_DECODER,
    EVENT_DECODER,
    NO_RAW,
    Document,
    Event,
)

GZIP_MAGIC: Final = b"\x1f\x8b"
_TRACE_EVENTS_KEY: Final = re.compile(rb'"traceEvents"\s*:\s*\[')
_LEADING_SPACE: Final = re.compile(rb"[\xef\xbb\xbf\s]*")
#: How many cut points to try, from the end, before giving up on a truncated file.
_MAX_SALVAGE_ATTEMPTS: Final = 64
#: How many ``}`` to inspect, from the end, while looking for those cut points.
_MAX_BRACES_SCANNED: Final = 200_000


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A decoded document plus what was lost on the way."""

    document: Document
    events: list[Event]
    warnings: tuple[str, ...]


#: Most JSON text the whole-file fallback holds once decompressed: a document past it could
#: not be decoded in memory anyway, and a small ``.gz`` past it is a decompression bomb.
MAX_WHOLE_FILE_BYTES: int = 8 << 30


def read_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's JSON bytes (gunzipped when gzip, at most `MAX_WHOLE_FILE_BYTES`) and
    whether the gzip stream ended early."""
    try:
        with path.open("rb") as handle:
            data, gzip_cut = bounded_bytes(
                handle, path, MAX_WHOLE_FILE_BYTES, lambda: _too_big(path)
            )
    except OSError as exc:
        raise UnreadableInputError(f"cannot read: {exc.strerror or exc}", path) from exc
    if not data:
        raise UnreadableInputError(
            "gzip stream ends before any data" if gzip_cut else "empty file", path
        )
    return data, gzip_cut


def _too_big(path: Path) -> UnreadableInputError:
    return UnreadableInputError(
        f"holds more than {MAX_WHOLE_FILE_BYTES >> 20} MiB of JSON once decompressed "
        "(a decompression bomb?)",
        path,
    )


def read_document(path: Path) -> ReadResult:
    """Decode a Kineto file into its `Document` and event list, or raise an AnalyzerError."""
    data, gzip_cut = read_bytes(path)
    decoded = _decode_or_salvage(data, path)
    events, skipped = _events_of(decoded, data, path)
    warnings = read_warnings(
        path, gzip_cut, decoded.dropped_bytes, len(events), skipped, decoded.repaired
    )
    return ReadResult(document=decoded.document, events=events, warnings=tuple(warnings))


def read_warnings(
    path: Path,
    gzip_cut: bool,
    dropped_bytes: int | None,
    kept_events: int,
    skipped: int,
    repaired: int = 0,
) -> list[str]:
    """What reading lost, one line each; no events at all is an `EmptyTraceError`.

    ``dropped_bytes`` is None for a complete file; a truncated one says how much was cut
    back (0 when it ended right after an event, which still lost the closing brackets).
    """
    warnings: list[str] = []
    if gzip_cut:
        warnings.append(f"{path.name}: gzip stream ends early (file cut while being written)")
    if dropped_bytes is not None:
        warnings.append(
            f"{path.name}: trace is truncated (the profiler stopped mid-write); kept "
            f"{kept_events} complete events, dropped the last {dropped_bytes} bytes"
        )
    if skipped:
        warnings.append(f"{path.name}: skipped {skipped} malformed events")
    if repaired:
        warnings.append(
            f"{path.name}: not strict JSON (raw control characters, invalid UTF-8 or a BOM) "
            f"in {repaired} part(s); read as Chrome's trace viewer does, bad bytes replaced"
        )
    if not kept_events:
        raise EmptyTraceError("trace has no events (traceEvents is empty)", path)
    return warnings


@dataclass(frozen=True, slots=True)
class _Decoded:
    """A document; its events raw when some did not fit `Event`; bytes cut off the end."""

    document: Document
    raw_events: list[msgspec.Raw] | None = None
    dropped_bytes: int | None = None  # None: the file was complete
    repaired: int = 0  # 1 when bytes had to be replaced to decode
    skipped: int = 0  # malformed events skipped by `_salvage_middle`


class _Malformed(Exception):
    """The text is not strict JSON (the tolerant retry may still read it)."""


def _decode_or_salvage(data: bytes, path: Path) -> _Decoded:
    """Decode the document, leniently when events are odd, salvaging a truncated file;
    text that is not strict JSON is retried tolerantly (bad bytes replaced, then malformed
    events skipped one by one)."""
    start = _LEADING_SPACE.match(data)
    first = start.end() if start else 0
    if data[first : first + 1] != b"{":
        raise _not_a_trace(data[first : first + 4096], path)
    try:
        return _decode_strict(data, path)
    except _Malformed as exc:
        fixed = tolerant_bytes(data)
        if fixed is not data:
            try:
                return replace(_decode_strict(fixed, path), repaired=1)
            except _Malformed:
                pass
        salvaged = _salvage_middle(fixed)
        if salvaged is None:
            raise UnreadableInputError(str(exc), path) from exc
        return replace(salvaged, repaired=int(fixed is not data))


def _decode_strict(data: bytes, path: Path) -> _Decoded:
    """`_decode_or_salvage` without the tolerant retry (raises `_Malformed`)."""
    try:
        return _Decoded(DOCUMENT_DECODER.decode(data))
    except UnicodeDecodeError as exc:
        raise _Malformed(f"not UTF-8 text at byte {exc.start}") from exc
    except RecursionError as exc:
        raise _Malformed("JSON nested too deeply to be a trace") from exc
    except msgspec.ValidationError:
        return _loose(data, path)
    except msgspec.DecodeError as exc:
        if "truncated" not in str(exc):
            raise _Malformed(f"malformed JSON ({exc})") from exc
        salvaged = _salvage(data)
        if salvaged is None:
            raise UnreadableInputError(
                "trace is truncated before its first complete event", path
            ) from exc
        return salvaged


def _salvage_middle(data: bytes) -> _Decoded | None:
    """A complete file with malformed events: the keys around the event array decoded
    alone, the events one by one (malformed ones skipped and counted)."""
    key = _TRACE_EVENTS_KEY.search(data)
    if key is None:
        return None
    position = len(data)
    for _ in range(_MAX_SALVAGE_ATTEMPTS):
        position = data.rfind(b"]", key.end(), position)
        if position == -1:
            return None
        try:
            document = DOCUMENT_DECODER.decode(data[: key.end()] + data[position:])
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            continue
        found = salvage_events(data[key.end() : position])
        if found is None:
            return None
        events, skipped = found
        return _Decoded(msgspec.structs.replace(document, traceEvents=events), skipped=skipped)
    return None


def _not_a_trace(head: bytes, path: Path) -> UnsupportedFormatError:
    """The error for content whose top level is not a JSON object."""
    return UnsupportedFormatError(f"not a Kineto trace: {describe(head)}", path)


def _loose(data: bytes, path: Path) -> _Decoded:
    """Decode metadata typed and events raw, so that one odd event does not sink the file."""
    try:
        meta = METADATA_DECODER.decode(data)
        raw_events = _RAW_LIST_DECODER.decode(meta.traceEvents) if meta.traceEvents else None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UnsupportedFormatError(f"not a Kineto trace ({exc})", path) from exc
    fields = {f: getattr(meta, f) for f in MetadataDocument.__struct_fields__}
    fields["traceEvents"] = None
    if raw_events is None:
        return _Decoded(Document(**fields))
    return _Decoded(Document(**fields), raw_events=raw_events)


class MetadataDocument(msgspec.Struct):
    """`Document` with ``traceEvents`` left raw (used by the lenient path only)."""

    traceEvents: msgspec.Raw = NO_RAW
    schemaVersion: msgspec.Raw = NO_RAW
    deviceProperties: msgspec.Raw = NO_RAW
    computeProperties: msgspec.Raw = NO_RAW
    distributedInfo: msgspec.Raw = NO_RAW
    baseTimeNanoseconds: msgspec.Raw = NO_RAW
    displayTimeUnit: msgspec.Raw = NO_RAW
    cupti_version: msgspec.Raw = NO_RAW
    cuda_runtime_version: msgspec.Raw = NO_RAW
    cuda_driver_version: msgspec.Raw = NO_RAW
    roctracer_version: msgspec.Raw = NO_RAW
    hip_runtime_version: msgspec.Raw = NO_RAW
    hip_driver_version: msgspec.Raw = NO_RAW
    record_shapes: msgspec.Raw = NO_RAW
    profile_memory: msgspec.Raw = NO_RAW
    with_stack: msgspec.Raw = NO_RAW
    with_flops: msgspec.Raw = NO_RAW
    with_modules: msgspec.Raw = NO_RAW
    host_name: msgspec.Raw = NO_RAW
    hostname: msgspec.Raw = NO_RAW
    metadata: msgspec.Raw = NO_RAW


METADATA_DECODER: Final = msgspec.json.Decoder(MetadataDocument)
_RAW_LIST_DECODER: Final = msgspec.json.Decoder(list[msgspec.Raw])


def _events_of(decoded: _Decoded, data: bytes, path: Path) -> tuple[list[Event], int]:
    """The decoded events and how many malformed ones were skipped."""
    if decoded.document.traceEvents is not None:
        return decoded.document.traceEvents, decoded.skipped
    if decoded.raw_events is None:
        raise UnsupportedFormatError(
            f"not a Kineto trace (no traceEvents): {describe(data[:4096])}", path
        )
    decoded_events = [event_or_none(raw) for raw in decoded.raw_events]
    events = [e for e in decoded_events if e is not None]
    return events, len(decoded_events) - len(events)


def event_or_none(raw: msgspec.Raw) -> Event | None:
    """One event decoded, or None when it does not have an event's shape."""
    try:
        return EVENT_DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def _salvage(data: bytes) -> _Decoded | None:
    """Cut a truncated trace back to its last complete event; None when none is complete."""
    key = _TRACE_EVENTS_KEY.search(data)
    if key is None:
        return None
    for cut, closer in cut_points(data, key.end()):
        try:
            document = DOCUMENT_DECODER.decode(data[:cut] + closer)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            continue
        if not document.traceEvents:
            return None
        return _Decoded(document, dropped_bytes=len(data) - cut)
    return None


def cut_points(data: bytes, array_start: int) -> list[tuple[int, bytes]]:
    """Candidate (cut offset, closing bytes) pairs, most promising first.

    First the end of the events array when it closed before the cut (only trailing
    metadata lost), then each ``}`` followed by a comma or the end of data: the end of an
    event when it sits at the array's top level, which the decode attempt confirms.
    """
    points: list[tuple[int, bytes]] = []
    closed = data.rfind(b"]", array_start)
    if closed != -1 and data[closed + 1 : closed + 64].lstrip()[:1] == b",":
        points.append((closed + 1, b"}"))
    position = len(data)
    for _ in range(_MAX_BRACES_SCANNED):
        if len(points) >= _MAX_SALVAGE_ATTEMPTS:
            break
        position = data.rfind(b"}", array_start, position)
        if position == -1:
            break
        after = data[position + 1 : position + 64].lstrip()
        if after[:1] in (b",", b""):
            points.append((position + 1, b"]}"))
    return points


# --- tolerance: what Chrome's viewer and Perfetto load, we read too (error path only) ---

#: Raw control bytes (invalid inside JSON strings; PyTorch has written them in names) as
#: spaces: outside strings a space is whitespace, inside it is a harmless character, and
#: the byte count stays the same.
_CONTROL_TO_SPACE: Final = bytes.maketrans(bytes(range(32)), b" " * 32)
_BOM: Final = b"\xef\xbb\xbf"
#: Pieces merged with their successors while looking for an event a wrong split cut.
_MAX_MERGE: Final = 8


def tolerant_bytes(data: bytes) -> bytes:
    """``data`` with a leading BOM dropped, raw control bytes as spaces and invalid UTF-8
    replaced (U+FFFD); the same object when nothing needed changing."""
    fixed = data[3:] if data.startswith(_BOM) else data
    fixed = fixed.translate(_CONTROL_TO_SPACE)
    try:
        fixed.decode("utf-8")
    except UnicodeDecodeError:
        fixed = fixed.decode("utf-8", "replace").encode("utf-8")
    return data if fixed == data else fixed


def salvage_events(body: bytes, *, exact_ends: bool = True) -> tuple[list[Event], int] | None:
    """The events of an array's inner text (between ``[`` and ``]``) decoded one by one,
    malformed ones skipped: (events, skipped), or None when nothing decodes.

    The text is split at `candidates`-style boundaries; a piece that does not decode is
    joined to the following ones (a boundary guessed inside a string) before it is
    counted as malformed. ``exact_ends=False`` (a chunk whose cut is itself a guess)
    also requires the first and the last piece to decode, or returns None.
    """
    from gpu_trace_analyzer.parsers.kineto_chunks import (
        candidates,  # kineto_chunks imports this module
    )

    body = tolerant_bytes(body)
    cuts = sorted(candidates(body))
    starts = [0, *(nxt for _, nxt in cuts)]
    ends = [*(end for end, _ in cuts), len(body)]
    pieces = [body[a:b] for a, b in zip(starts, ends, strict=True)]
    events: list[Event] = []
    skipped = 0
    index = 0
    first_ok = last_ok = False
    while index < len(pieces):
        for width in range(1, _MAX_MERGE + 1):
            text = b",".join(pieces[index : index + width])
            event = _one_event(text)
            if event is not None:
                events.append(event)
                first_ok = first_ok or index == 0
                last_ok = index + width >= len(pieces)
                index += width
                break
            if index + width >= len(pieces):
                break
        else:
            event = None
        if event is None:
            skipped += 1
            index += 1
    if not events or (not exact_ends and not (first_ok and last_ok)):
        return None
    return events, skipped


def _one_event(text: bytes) -> Event | None:
    stripped = text.strip(b" \t\r\n,")
    if not stripped:
        return None
    try:
        return EVENT_DECODER.decode(stripped)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
