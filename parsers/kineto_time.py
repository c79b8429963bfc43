"""Exact conversion of Kineto's microsecond timestamps to integer nanoseconds.

Kineto writes ``ts`` and ``dur`` as JSON numbers in microseconds: integers (2021), floats
with three decimals relative to ``baseTimeNanoseconds`` (current), or epoch microseconds
with three decimals (``1712195495505583.123``, PyTorch 2.2-2.3). The last do not fit a
float64 exactly (16 + 3 significant digits).

Two ways, both exact. `numeric_us_to_ns` takes the numbers msgspec decoded: integers are
exact; floats are used only when they are small (under 2**32 us, about 71 minutes: the
float error of ``x * 1000`` stays below a millionth of a nanosecond) and every ``x * 1000``
is within 0.001 of an integer (at most three decimals), so rounding gives the exact value;
anything else raises `NeedExactTimes` and the caller converts the raw text instead.
`us_to_ns` takes the raw JSON text: joined into one string, split into a polars column and
cast to a 128-bit decimal (9 fractional digits), vectorized. Sub-nanosecond digits round
half up (away from zero); a spelling polars does not read (a quoted number) goes through
`decimal.Decimal`.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final

import msgspec
import polars as pl

#: Microseconds as exact decimals: up to 29 integer and 9 fractional digits.
_US_DECIMAL: Final = pl.Decimal(38, 9)
#: No larger magnitude in microseconds has nanoseconds that fit an int64.
_MAX_ABS_US: Final = 10**16
#: Joins raw values into one text; JSON text never holds a raw NUL.
_SEPARATOR: Final = "\x00"


#: Floats under this magnitude (us) have ``x * 1000`` within 1e-6 ns of the exact product.
_FLOAT_EXACT_US: Final = 2.0**32
#: How far ``x * 1000`` may sit from an integer for ``x`` to have at most three decimals.
_SUB_NS_TOLERANCE: Final = 1e-3
#: Largest integer microseconds whose nanoseconds fit an int64.
_MAX_INT_US: Final = (2**63 - 1) // 1000


class NeedExactTimes(Exception):
    """Decoded floats cannot be converted exactly; convert the raw text instead."""


def numeric_us_to_ns(values: Sequence[int | float | None], name: str) -> pl.Series:
    """Nanoseconds (Int64) from microseconds decoded as JSON numbers, or `NeedExactTimes`."""
    try:
        us = pl.Series(name, values, dtype=pl.Int64(), strict=True)
    except TypeError:
        return _float_us_to_ns(pl.Series(name, values, dtype=pl.Float64(), strict=False))
    out_of_range = (us > _MAX_INT_US) | (us < -_MAX_INT_US)
    return us.set(out_of_range, None) * 1000


def _float_us_to_ns(us: pl.Series) -> pl.Series:
    """Exact nanoseconds from small floats with at most three decimals (else raise)."""
    x = pl.col(us.name)
    scaled = x.abs() * 1000.0
    frame = pl.DataFrame([us])
    exact = frame.select(
        ((x.abs() < _FLOAT_EXACT_US) & ((scaled - scaled.round(0)).abs() <= _SUB_NS_TOLERANCE))
        .fill_null(True)
        .all()
    ).item()
    if not exact:
        raise NeedExactTimes(us.name)
    magnitude = (scaled + 0.5).floor().cast(pl.Int64())
    return frame.select(
        pl.when(x < 0).then(-magnitude).otherwise(magnitude).alias(us.name)
    ).to_series()


def us_to_ns(raws: Sequence[msgspec.Raw], name: str) -> pl.Series:
    """Nanoseconds (Int64, null where absent or unreadable) from raw JSON microseconds."""
    text = raw_text_column(raws, name)
    us = pl.col(name).cast(_US_DECIMAL, strict=False)
    magnitude = (us.abs() * pl.lit(1000, dtype=pl.Decimal(38, 0)) + pl.lit(Decimal("0.5"))).cast(
        pl.Int64(), strict=False
    )
    ns = (
        pl.DataFrame([text])
        .select(
            pl.when(us.abs() > _MAX_ABS_US)
            .then(None)
            .when(us < 0)
            .then(-magnitude)
            .otherwise(magnitude)
            .alias(name)
        )
        .to_series()
    )
    return _slow_path(ns, text)


def raw_text_column(raws: Sequence[msgspec.Raw], name: str) -> pl.Series:
    """Raw JSON values as a String column ("" where absent, null where not UTF-8)."""
    if not raws:
        return pl.Series(name, [], dtype=pl.String())
    joined = b"\x00".join(raws)
    try:
        text = joined.decode("utf-8")
    except UnicodeDecodeError:
        return _text_one_by_one(raws, name)
    column = pl.Series(name, [text]).str.split(_SEPARATOR).explode()
    if column.len() != len(raws):
        return _text_one_by_one(raws, name)
    return column


def _text_one_by_one(raws: Sequence[msgspec.Raw], name: str) -> pl.Series:
    """The same column built value by value (invalid UTF-8 becomes null)."""
    return pl.Series(name, [bytes(r) for r in raws], dtype=pl.Binary()).cast(
        pl.String(), strict=False
    )


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
    return int(value.scaleb(3).to_integral_value(rounding=ROUND_HALF_UP))


def raw_us(raw: msgspec.Raw) -> Decimal | None:
    """One raw microsecond value as an exact decimal (None when absent or not a number)."""
    if not raw:
        return None
    try:
        value = Decimal(bytes(raw).decode("utf-8", "replace").strip().strip('"'))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None
