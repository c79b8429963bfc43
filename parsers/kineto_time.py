"""Exact conversion of Kineto's microsecond timestamps to integer nanoseconds.

Kineto writes ``ts`` and ``dur`` as JSON numbers in microseconds: integers (2021), floats
with three decimals relative to ``baseTimeNanoseconds`` (current), or epoch microseconds
with three decimals (``1712195495505583.123``, PyTorch 2.2-2.3). The last do not fit a
float64 exactly (16 + 3 significant digits), so we never go through float: the raw JSON
text is split at the decimal point and both parts are read as integers, vectorized in
polars. Sub-nanosecond digits round half up; the rare spelling the fast path does not
cover (exponent, quoted number) goes through `decimal.Decimal`, which is exact too.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Final

import msgspec
import polars as pl

_PLAIN_DECIMAL: Final = r"^(-?)(\d{1,16})(?:\.(\d*))?$"
#: Largest integer-microsecond part whose nanoseconds still fit an int64.
_MAX_US: Final = (2**63 - 1) // 1000 - 1


def us_to_ns(raws: Sequence[msgspec.Raw], name: str) -> pl.Series:
    """Nanoseconds (Int64, null where absent or unreadable) from raw JSON microseconds."""
    text = pl.Series(name, [bytes(r) for r in raws], dtype=pl.Binary()).cast(
        pl.String(), strict=False
    )
    frame = pl.DataFrame([text]).select(
        pl.col(name).str.extract_groups(_PLAIN_DECIMAL).alias("parts"), pl.col(name)
    )
    parts = pl.col("parts")
    whole = parts.struct.field("2").cast(pl.Int64())
    fraction = parts.struct.field("3").fill_null("").str.pad_end(4, "0")
    magnitude = (
        whole * 1000
        + fraction.str.slice(0, 3).cast(pl.Int64())
        + (fraction.str.slice(3, 1).cast(pl.Int64()) >= 5).cast(pl.Int64())
    )
    signed = pl.when(parts.struct.field("1") == "-").then(-magnitude).otherwise(magnitude)
    ns = frame.select(
        pl.when(whole <= _MAX_US).then(signed).otherwise(None).alias(name)
    ).to_series()
    return _slow_path(ns, text)


def _slow_path(ns: pl.Series, text: pl.Series) -> pl.Series:
    """Fill the values the fast path could not read (exponents, quoted numbers)."""
    missed = (ns.is_null() & text.is_not_null() & (text != "") & (text != "null")).arg_true()
    if missed.len() == 0:
        return ns
    values = [decimal_to_ns(text[int(i)]) for i in missed]
    return ns.scatter(missed, pl.Series(values, dtype=pl.Int64(), strict=False))


def decimal_to_ns(text: str | None) -> int | None:
    """Microseconds written as text (any JSON number spelling) to nanoseconds, or None."""
    if text is None:
        return None
    try:
        value = Decimal(text.strip().strip('"'))
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    return int(value.scaleb(3).to_integral_value())


def raw_us(raw: msgspec.Raw) -> Decimal | None:
    """One raw microsecond value as an exact decimal (None when absent or not a number)."""
    if not raw:
        return None
    try:
        value = Decimal(bytes(raw).decode("utf-8", "replace").strip().strip('"'))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None
