"""Number formatting at the edge: ns to ms/us/s, bytes to KB/MB/GB, shares to percent.

The only place where internal units (ns, bytes) become display units, for the sections and
for the rules alike. Byte amounts are shown in decimal units (``KB``/``MB``/``GB``: steps of
10^3, as bandwidths in GB/s are); the choice is written down in `parsers.schema`. Rules that
put sizes in table columns divide by `KB`, `MB` or `GB` from here and title the column so.
"""

from __future__ import annotations

import math
from typing import Final

#: Bytes per display unit (decimal).
KB: Final = 1_000
MB: Final = 1_000_000
GB: Final = 1_000_000_000


def duration(ns: float | int | None) -> str:
    """A duration in the most readable unit: ``"482.1 ms"``, ``"3.14 us"``, ``"2.41 s"``."""
    if ns is None or (isinstance(ns, float) and math.isnan(ns)):
        return "n/a"
    value = float(ns)
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"{value / 1e9:.2f} s"
    if magnitude >= 1e6:
        return f"{value / 1e6:.1f} ms"
    if magnitude >= 1e3:
        return f"{value / 1e3:.1f} us"
    return f"{value:.0f} ns"


def ms(ns: float | int | None, digits: int = 1) -> str:
    """A duration in milliseconds, without the unit (for columns titled ``ms``)."""
    if ns is None:
        return "n/a"
    return f"{float(ns) / 1e6:.{digits}f}"


def pct(value: float | None, digits: int = 1) -> str:
    """A percentage already scaled to 0..100: ``"38.2%"``."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}%"


def size(num_bytes: float | int | None) -> str:
    """Bytes in decimal units: ``"1.5 MB"``."""
    if num_bytes is None:
        return "n/a"
    value = float(num_bytes)
    for unit, scale in (("GB", GB), ("MB", MB), ("KB", KB)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def count(n: int | None) -> str:
    """An integer with thousands separators."""
    return "n/a" if n is None else f"{n:,}"
