"""Reading a file whole, gunzipped when gzip, never holding more than a cap.

One helper for every parser that reads a whole file (DCGM dumps, Kineto's whole-file
fallback): a small ``.gz`` may inflate to terabytes (a decompression bomb), so the output is
grown block by block and refused past the cap before more is held.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final

from gpu_trace_analyzer.parsers.errors import UnreadableInputError

GZIP_MAGIC: Final = b"\x1f\x8b"
_READ_BLOCK: Final = 1 << 20


def bounded_bytes(
    handle: BinaryIO, path: Path, limit: int, too_big: Callable[[], Exception]
) -> tuple[bytes, bool]:
    """The content of an open file (every gzip member inflated when gzip) and whether the
    gzip stream ended early (the prefix is returned; the caller decides if that is an
    error). Raises ``too_big()`` once more than ``limit`` bytes would be held, and
    `UnreadableInputError` for corrupt gzip data."""
    out = bytearray()
    head = handle.read(_READ_BLOCK)
    if head[:2] != GZIP_MAGIC:
        while head:
            out += head
            if len(out) > limit:
                raise too_big()
            head = handle.read(_READ_BLOCK)
        return bytes(out), False
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = head
    try:
        while True:
            if not pending:
                pending = handle.read(_READ_BLOCK)
                if not pending:
                    return bytes(out), True
            out += inflater.decompress(pending, _READ_BLOCK)
            if len(out) > limit:
                raise too_big()
            pending = inflater.unconsumed_tail
            if inflater.eof:  # another gzip member may follow
                rest = inflater.unused_data or handle.read(_READ_BLOCK)
                if rest[:2] != GZIP_MAGIC:
                    break  # the last member (trailing bytes ignored, as gzip -d does)
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                pending = rest
    except zlib.error as exc:
        raise UnreadableInputError(f"corrupt gzip data ({exc})", path) from None
    return bytes(out), False
