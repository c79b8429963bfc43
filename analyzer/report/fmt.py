"""Number formatting at the edge: ns to ms/us/s, bytes to KB/MB/GB, shares to percent.

The only place where internal units (ns, bytes) become display units, for the sections and
for the rules alike. Byte amounts are shown in decimal units (``KB``/``MB``/``GB``: steps of
10^3, as bandwidths in GB/s are); the choice is written down in `parsers.schema`. Rules that
put sizes in table columns divide by `KB`, `MB` or `GB` from here and title the column so.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
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


# --- Kernel and op names ------------------------------------------------------------------

#: Longest name a table cell shows (`short_name`).
MAX_NAME_CHARS: Final = 90

#: Nsight's demangler spells what Kineto's writes ``{lambda(float)#1}`` and ``4``
#: as ``[lambda(float) (instance 1)]`` and ``(int)4``: one spelling for both.
_NSYS_LAMBDA = re.compile(r"\[lambda(\((?:[^()]|\([^()]*\))*\)) \(instance (\d+)\)\]")
_NSYS_CAST = re.compile(r"\((?:int|unsigned int|long|unsigned long)\)(\d+)")
_NAMESPACES = re.compile(
    r"\b(?:at::native::|at::detail::|at::cuda::|at::|c10::|std::|binary_internal::)"
)
_LAMBDA_SCOPE = re.compile(r"\((?:[^()]|\([^()]*\))*\)::\{lambda")
_OPERATOR_CALL = re.compile(r"::operator\(\)\(\) const")
_OUTER_LAMBDA = re.compile(r"\{lambda\(\)#\d+\}::")
#: The lambda a launcher template (``gpu_kernel_impl<F>``) wraps its functor in: the same
#: for every functor, so it tells nothing apart.
_LAUNCHER_LAMBDA = re.compile(r"(?<=>)::\{lambda\([^()]*\)#\d+\}")
#: Template arguments every PyTorch elementwise launch carries whatever it computes: the
#: argument array, offset calculators, load/store policies. Dropped so that the functor,
#: the argument that tells two ``elementwise_kernel<...>`` launches apart, comes first.
_NOISE_ARG = re.compile(
    r",\s*(?:array<char\*, \d+(?:ul)?>|Array<char\*, \d+>(?:::\w+)?|(?:Trivial)?OffsetCalculator"
    r"<[^<>]*>|char\*|(?:memory::)?(?:Load|Store)With(?:out)?Cast(?:<\d+>)?)(?=\s*[,>])"
)


def _without_parameters(name: str) -> str:
    """``name`` without its trailing function parameter list: the first ``(`` outside any
    template argument list (a mangled-looking name without one is returned as it is)."""
    depth = 0
    for i, ch in enumerate(name):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(depth - 1, 0)
        elif ch == "(" and depth == 0 and i > 0 and not name[i - 1].isspace():
            return name[:i]  # "Memcpy HtoD (Pageable -> Device)" is no parameter list
    return name


def clean_name(name: str) -> str:
    """A C++ kernel signature reduced to what tells it apart: no ``void``, no parameter list,
    no ``at::native::``/``c10::``/``std::`` qualifiers, lambdas named by their enclosing
    function and argument types, no boilerplate template arguments (argument arrays, offset
    calculators, load/store policies). Op names (``aten::mm``) pass unchanged."""
    s = " ".join(name.split())
    s = s.removeprefix("void ").replace("(anonymous namespace)::", "")
    s = _NSYS_LAMBDA.sub(r"{lambda\1#\2}", s).replace(
        "::operator ()() const", "::operator()() const"
    )
    s = _NSYS_CAST.sub(r"\1", s).replace("char *", "char*")
    s = _without_parameters(s)
    s = _LAMBDA_SCOPE.sub("::{lambda", s)
    s = _NAMESPACES.sub("", _LAUNCHER_LAMBDA.sub("", _OPERATOR_CALL.sub("", s)))
    while True:
        shorter = _NOISE_ARG.sub("", _OUTER_LAMBDA.sub("", s))
        if shorter == s:
            break
        s = shorter
    return s or " ".join(name.split())


def short_name(name: str, limit: int = MAX_NAME_CHARS) -> str:
    """`clean_name` cut to ``limit`` characters, an ellipsis in the middle where cut: the head
    carries the kernel and its first template arguments (the functor among them), the tail
    what generated names vary last (``triton_poi_fused_..._13``, the innermost functor)."""
    s = clean_name(name)
    if len(s) <= limit:
        return s
    head = max(limit * 2 // 3 - 1, 1)
    tail = max(limit - head - 1, 0)
    return s[:head] + "…" + (s[-tail:] if tail else "")


def short_names(names: Iterable[str], limit: int = MAX_NAME_CHARS) -> dict[str, str]:
    """`short_name` of each name, except where two would then read the same: those show
    their `clean_name` uncut, or the whole name if that still collides."""
    unique = list(dict.fromkeys(names))
    out = {n: short_name(n, limit) for n in unique}
    for fallback in (clean_name, lambda n: " ".join(n.split())):
        counts = Counter(out.values())
        out = {n: (s if counts[s] == 1 else fallback(n)) for n, s in out.items()}
    return out
