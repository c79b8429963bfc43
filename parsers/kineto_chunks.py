"""Streaming a Kineto file's ``traceEvents`` as chunks of whole events.

Why: a 500 MB trace decoded at once is the whole text plus every event as a Python object
(about 6x the file in memory). Here the file is read (and gunzipped) block by block; the
event array is cut into chunks of a few MB at event boundaries; each chunk is decoded and
turned into column frames (`kineto_build`) before the next one is read, so at most one
chunk's events exist as Python objects at a time. Chunks are independent, so a process pool
can decode them in parallel (`kineto_assemble`).

Finding a boundary without parsing: the last ``}``, ``,``, ``{``, ``"`` (whitespace between)
in the buffer. Such a candidate can, rarely, sit inside a string or a nested object; then
the chunk does not decode (its text ends inside a string or with unbalanced braces, which a
JSON parser always rejects), and the next candidate back is tried. What precedes
``"traceEvents": [`` (the header) and what follows the array (the tail:
``baseTimeNanoseconds``, ``traceName``, sometimes ``deviceProperties`` or
``distributedInfo``) are decoded as documents of their own.

A truncated file (the profiler died mid-write) keeps its complete events, exactly as the
whole-file reader (`kineto_read`) would. Whatever this reader cannot handle on its own
(no ``traceEvents`` array near the top, malformed JSON, corrupt gzip) raises `NeedWholeFile`,
and the caller reads the file whole, which gives the one-line error or lenient result.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

import msgspec
from gpu_trace_analyzer.parsers.errors import UnreadableInputError
from gpu_trace_analyzer.parsers.kineto_events import (
    DOCUMENT_DECODER,
    AnyEvent,
    Document,
    Event,
    NumericEvent,
)
from gpu_trace_analyzer.parsers.kineto_read import (
    GZIP_MAGIC,
    METADATA_DECODER,
    MetadataDocument,
    cut_points,
    event_or_none,
    salvage_events,
    tolerant_bytes,
)

#: Target size of one chunk of event text. Big enough that per-chunk overheads vanish,
#: small enough that one chunk's Python objects stay a few tens of MB.
CHUNK_BYTES: Final = 8 << 20
#: Bytes read (or gunzipped) per block.
BLOCK_BYTES: Final = 1 << 20
#: The header (everything before the event array) must end within this many bytes (a huge
#: ``metadata`` first is still streamed; past this, the file is not a trace we read).
MAX_HEADER_BYTES: int = 1 << 30
#: Most bytes one event (with the whitespace around it) may span: the streaming buffer
#: never holds more than this beyond a chunk, whatever padding a crafted file holds.
MAX_EVENT_BYTES: int = 256 << 20
#: Boundary candidates tried per chunk before giving the file to the whole-file reader.
MAX_ATTEMPTS: Final = 64

_TRACE_EVENTS_KEY: Final = re.compile(rb'"traceEvents"\s*:\s*\[')
_WHITESPACE: Final = b" \t\r\n"
_EVENTS_DECODER: Final = msgspec.json.Decoder(list[Event])
_NUMERIC_EVENTS_DECODER: Final = msgspec.json.Decoder(list[NumericEvent])
_RAW_LIST_DECODER: Final = msgspec.json.Decoder(list[msgspec.Raw])
_TAIL_PREFIX: Final = b'{"traceEvents": ['
_COMMA: Final = ord(",")
_OPEN: Final = ord("{")
_QUOTE: Final = ord('"')


def _skip_space(buffer: bytes | bytearray, index: int) -> int:
    """The first index at or after ``index`` that is not JSON whitespace."""
    size = len(buffer)
    while index < size and buffer[index] in _WHITESPACE:
        index += 1
    return index


class NeedWholeFile(Exception):
    """This file needs the whole-file reader (odd layout, malformed or corrupt data)."""


class SplitError(Exception):
    """A chunk's text is not a sequence of whole events (a boundary candidate was wrong)."""


def decode_events(
    payload: bytes, *, exact: bool = False, tolerant: bool = True
) -> tuple[list[AnyEvent], int, int]:
    """Events of a chunk (``[`` + events + ``]``), how many malformed ones were skipped,
    and 1 when bytes had to be replaced (else 0).

    Times are decoded as numbers (`NumericEvent`) unless ``exact`` or some event's times
    are not plain numbers; then as raw text (`Event`). Events of an unexpected shape are
    skipped one by one, as the whole-file reader does. Text that is not strict JSON is
    retried (error path only) with raw control characters and invalid UTF-8 replaced, then
    event by event (malformed events skipped) when the chunk's first and last events
    decode; otherwise (a wrong cut) it raises `SplitError`.
    """
    try:
        events, skipped = _decode_strict(payload, exact)
        return events, skipped, 0
    except SplitError:
        if not tolerant:
            raise
        fixed = tolerant_bytes(payload)
        if fixed is not payload:
            try:
                events, skipped = _decode_strict(fixed, exact)
                return events, skipped, 1
            except SplitError:
                pass
        found = salvage_events(fixed[1:-1], exact_ends=False)
        if found is None:
            raise
        return list(found[0]), found[1], int(fixed is not payload)


def _decode_strict(payload: bytes, exact: bool) -> tuple[list[AnyEvent], int]:
    """`decode_events` on strict JSON only."""
    if not exact:
        try:
            numeric: list[AnyEvent] = list(_NUMERIC_EVENTS_DECODER.decode(payload))
        except msgspec.ValidationError:
            pass
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise SplitError(str(exc)) from exc
        else:
            return numeric, 0
    try:
        return list(_EVENTS_DECODER.decode(payload)), 0
    except msgspec.ValidationError:
        pass
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SplitError(str(exc)) from exc
    try:
        raws = _RAW_LIST_DECODER.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SplitError(str(exc)) from exc
    decoded = [event_or_none(raw) for raw in raws]
    events: list[AnyEvent] = [e for e in decoded if e is not None]
    return events, len(decoded) - len(events)


@dataclass(slots=True)
class StreamFacts:
    """What the stream learned besides the events; complete once the chunks are consumed."""

    header: Document = field(default_factory=Document)
    tail: Document = field(default_factory=Document)
    tail_events: list[AnyEvent] = field(default_factory=list)
    tail_skipped: int = 0
    repaired: int = 0  # parts of the file read only after bad bytes were replaced
    gzip_cut: bool = False
    dropped_bytes: int | None = None  # None: the file was complete

    def document(self) -> Document:
        """Header and tail keys in one document (a key in both: the tail's, as in JSON)."""
        fields = {}
        for name in Document.__struct_fields__:
            if name != "traceEvents":
                fields[name] = getattr(self.tail, name) or getattr(self.header, name)
        return Document(**fields)


def _is_gzip(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(2) == GZIP_MAGIC
    except OSError as exc:
        raise NeedWholeFile(str(exc)) from exc


#: Bytes read around a planned cut of a plain file to find an event boundary.
_CUT_WINDOW: Final = 64 << 10


def _cut_near(handle: BinaryIO, target: int, size: int) -> tuple[int, int] | None:
    """The last boundary in a window starting at ``target``, widened until one is found;
    None when the window reaches the end of the file (the rest is the tail)."""
    window = _CUT_WINDOW
    while target + window < size:
        handle.seek(target)
        found = next(candidates(handle.read(window)), None)
        if found is not None:
            return target + found[0], target + found[1]
        if window > MAX_EVENT_BYTES:
            raise _event_too_big(target)
        window *= 2
    return None


def _event_too_big(offset: int) -> UnreadableInputError:
    """The error for an event (or padding) longer than the streaming buffer may hold."""
    return UnreadableInputError(
        f"no event boundary within {MAX_EVENT_BYTES >> 20} MiB after byte {offset} (an event "
        "that large, or padding): not a trace this tool reads in bounded memory"
    )


def _blocks(path: Path, facts: StreamFacts, block_bytes: int) -> Generator[bytes, None, None]:
    """The file's bytes block by block, gunzipped when gzip; a cut gzip stream ends early."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise NeedWholeFile(str(exc)) from exc
    with handle:
        head = handle.read(block_bytes)
        if head[:2] != GZIP_MAGIC:
            while head:
                yield head
                head = handle.read(block_bytes)
            return
        yield from _gunzip_blocks(handle.read, head, facts, block_bytes)


def _gunzip_blocks(
    read: Callable[[int], bytes], head: bytes, facts: StreamFacts, block_bytes: int
) -> Iterator[bytes]:
    """Decompressed blocks of a gzip stream, member after member (``cat a.gz b.gz``);
    trailing bytes that are not gzip go to the whole-file reader (its one-line error)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    compressed = head
    produced = 0
    while True:
        try:
            out = inflater.decompress(compressed, block_bytes)
        except zlib.error as exc:
            raise NeedWholeFile(f"corrupt gzip data ({exc})") from exc
        if out:
            produced += len(out)
            yield out
        compressed = inflater.unconsumed_tail
        if inflater.eof:
            rest = inflater.unused_data or read(block_bytes)
            if not rest:
                return
            if rest[:2] != GZIP_MAGIC:
                raise NeedWholeFile("trailing data after the gzip stream")
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            compressed = rest
            continue
        if compressed or len(out) == block_bytes:
            continue
        compressed = read(block_bytes)
        if not compressed:
            if not produced:
                raise NeedWholeFile("gzip stream ends before any data")
            facts.gzip_cut = True
            return


def candidates(buffer: bytes | bytearray) -> Iterator[tuple[int, int]]:
    """(end of an event, start of the next) pairs in ``buffer``, last first.

    A candidate is ``}`` , ``,`` , ``{`` , ``"`` with only whitespace between: the end of
    an object followed by an object that starts with a key. Inside a string this needs the
    string to end in ``}, {`` (C++ kernel names hold ``}, `` often, never followed by a
    key), so wrong guesses are rare; a decode catches them.
    """
    size = len(buffer)
    position = size
    while True:
        position = buffer.rfind(b"}", 0, position)
        if position < 0:
            return
        comma = _skip_space(buffer, position + 1)
        if comma >= size or buffer[comma] != _COMMA:
            continue
        brace = _skip_space(buffer, comma + 1)
        if brace >= size or buffer[brace] != _OPEN:
            continue
        quote = _skip_space(buffer, brace + 1)
        if quote < size and buffer[quote] == _QUOTE:
            yield position + 1, comma + 1


@dataclass(frozen=True, slots=True)
class Span:
    """A chunk of events as a byte range of a plain (not gzip) file, read by whoever
    decodes it: a worker process reads its own chunks, nothing is piped to it."""

    path: str
    start: int
    end: int

    def payload(self) -> bytes:
        """``[`` + the events in the range + ``]``."""
        with open(self.path, "rb") as handle:
            handle.seek(self.start)
            return b"[" + handle.read(self.end - self.start) + b"]"


@dataclass(slots=True)
class Piece:
    """One chunk of events: ``payload`` is ``[`` + whole events + ``]``."""

    payload: bytes
    end_offset: int  # offset in the JSON text just after the chunk's last event


class EventStream:
    """Header, then chunks of whole events, then tail, of one Kineto file.

    Iterate `pieces` (the chunks' text; a serial caller passes ``accept``, which decodes
    each and so validates its cut) or, for a plain file, `spans` (byte ranges that whoever
    decodes them reads itself; a wrong cut shows when it is decoded, and the caller then
    reads the file again through `pieces`); then call `finish_tail`.
    """

    def __init__(self, path: Path, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.path = path
        self.chunk_bytes = chunk_bytes
        self.facts = StreamFacts()
        self._block_bytes = min(BLOCK_BYTES, chunk_bytes)
        self._gzip = _is_gzip(path)
        self._blocks = _blocks(path, self.facts, self._block_bytes)
        self._buffer = bytearray()
        self._offset = 0  # offset of _buffer[0] in the JSON text
        self._eof = False
        self.last_end: int | None = None  # end offset of the last event handed out
        self._read_header()

    def _fill(self, size: int) -> None:
        """Read blocks until the buffer holds ``size`` bytes or the file ends."""
        while len(self._buffer) < size and not self._eof:
            block = next(self._blocks, None)
            if block is None:
                self._eof = True
            else:
                self._buffer += block

    def _read_header(self) -> None:
        """Decode everything before the event array; position the buffer inside it."""
        searched = 0
        match = None
        while match is None:
            self._fill(len(self._buffer) + self._block_bytes)
            match = _TRACE_EVENTS_KEY.search(self._buffer, max(0, searched - 64))
            searched = len(self._buffer)
            if match is None and self._eof:
                raise NeedWholeFile("no traceEvents array near the top")
            if match is None and searched > MAX_HEADER_BYTES:
                raise UnreadableInputError(
                    f"no traceEvents array in the first {MAX_HEADER_BYTES >> 20} MiB"
                )
        head = bytes(self._buffer[: match.start()])
        if head.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM, as some editors save
            head = head[3:]
            self.facts.repaired += 1
        if head.lstrip(_WHITESPACE)[:1] != b"{":
            raise NeedWholeFile("top level is not an object")
        try:
            self.facts.header = DOCUMENT_DECODER.decode(head + b'"traceEvents": []}')
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise NeedWholeFile(f"unreadable header ({exc})") from exc
        del self._buffer[: match.end()]
        self._offset = match.end()

    def _take(self, piece: Piece, start_next: int) -> Piece:
        """Drop a handed-out chunk (and the comma after it) from the buffer."""
        del self._buffer[:start_next]
        self._offset += start_next
        self.last_end = piece.end_offset
        return piece

    def pieces(self, accept: Callable[[Piece], bool] | None = None) -> Iterator[Piece]:
        """Chunks of whole events; ``accept`` (when given) validates each candidate cut."""
        target = self.chunk_bytes
        while True:
            self._fill(target)
            if self._eof:
                return
            piece = self._cut(accept)
            if piece is None:
                if len(self._buffer) > self.chunk_bytes + MAX_EVENT_BYTES:
                    raise _event_too_big(self._offset)
                target = len(self._buffer) + self.chunk_bytes  # one huge event: read on
                continue
            target = self.chunk_bytes
            yield piece

    @property
    def plain(self) -> bool:
        """Whether the file is plain JSON (its byte offsets are offsets in the text)."""
        return not self._gzip

    def spans(self) -> Iterator[Span]:
        """Chunks of a plain file as byte ranges, found by reading a small window at each
        cut, not the chunks themselves; afterwards the buffer holds the tail."""
        self._blocks.close()
        size = self.path.stat().st_size
        start = self._offset
        with self.path.open("rb") as handle:
            while (cut := _cut_near(handle, start + self.chunk_bytes, size)) is not None:
                end, start_next = cut
                yield Span(str(self.path), start, end)
                self.last_end = end
                start = start_next
            handle.seek(start)
            self._buffer = bytearray(handle.read())
        self._offset = start
        self._eof = True

    def _cut(self, accept: Callable[[Piece], bool] | None) -> Piece | None:
        """The chunk ending at the last boundary that ``accept`` takes; None: read more."""
        for attempt, (end, start_next) in enumerate(candidates(self._buffer)):
            if attempt >= MAX_ATTEMPTS:
                break
            piece = Piece(b"[" + bytes(self._buffer[:end]) + b"]", self._offset + end)
            if accept is None or accept(piece):
                return self._take(piece, start_next)
        else:
            return None
        raise NeedWholeFile("no event boundary decodes (malformed JSON)")

    def finish_tail(self) -> None:
        """Decode the rest: the last events and the keys after the array (or salvage)."""
        rest = bytes(self._buffer)
        self._buffer = bytearray()
        document = _TAIL_PREFIX + rest
        try:
            tail = DOCUMENT_DECODER.decode(document)
        except msgspec.ValidationError:
            self._loose_tail(document)
            return
        except (UnicodeDecodeError, RecursionError) as exc:
            self._tolerant_tail(document, exc)
            return
        except msgspec.DecodeError as exc:
            if "truncated" not in str(exc):
                self._tolerant_tail(document, exc)
                return
            self._salvage_tail(document)
            return
        self.facts.tail = tail
        self.facts.tail_events = list(tail.traceEvents or [])

    def _tolerant_tail(self, document: bytes, exc: Exception) -> None:
        """The tail is not strict JSON: retry with bad bytes replaced, else the whole-file
        reader (which skips malformed events one by one)."""
        fixed = tolerant_bytes(document)
        if fixed is document:
            raise NeedWholeFile(str(exc)) from exc
        try:
            tail = DOCUMENT_DECODER.decode(fixed)
        except msgspec.ValidationError:
            self._loose_tail(fixed)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as again:
            raise NeedWholeFile(str(again)) from again
        else:
            self.facts.tail = tail
            self.facts.tail_events = list(tail.traceEvents or [])
        self.facts.repaired += 1

    def _loose_tail(self, document: bytes) -> None:
        """Tail with an odd event: keys raw, events one by one (malformed ones skipped)."""
        try:
            meta = METADATA_DECODER.decode(document)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise NeedWholeFile(str(exc)) from exc
        try:
            events, skipped, repaired = decode_events(bytes(meta.traceEvents) or b"[]")
        except SplitError as exc:
            raise NeedWholeFile(str(exc)) from exc
        self.facts.repaired += repaired
        self.facts.tail = _document_of(meta)
        self.facts.tail_events = events
        self.facts.tail_skipped = skipped

    def _salvage_tail(self, document: bytes) -> None:
        """A truncated file: keep the complete events, as `kineto_read` does for a whole one."""
        total = self._offset + len(document) - len(_TAIL_PREFIX)
        for cut, closer in cut_points(document, len(_TAIL_PREFIX)):
            try:
                tail = DOCUMENT_DECODER.decode(document[:cut] + closer)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                continue
            if not tail.traceEvents and self.last_end is None:
                break
            self.facts.tail = tail
            self.facts.tail_events = list(tail.traceEvents or [])
            self.facts.dropped_bytes = len(document) - cut
            return
        if self.last_end is None:
            raise NeedWholeFile("truncated before its first complete event")
        self.facts.dropped_bytes = total - self.last_end


def _document_of(meta: MetadataDocument) -> Document:
    """A `Document` (events left out) from the lenient metadata shape."""
    fields = {f: getattr(meta, f) for f in Document.__struct_fields__ if f != "traceEvents"}
    return Document(traceEvents=None, **fields)
