"""A plain-Python idle ledger (an independent check of `analyzer.metrics.idle_ledger`):
every idle nanosecond goes to the first cause, in the given order, whose intervals cover
it; short interior gaps are launch overhead at their place in the order."""

from __future__ import annotations

from collections.abc import Sequence

Interval = tuple[int, int]


def merge(intervals: Sequence[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def gaps(busy: Sequence[Interval], lo: int, hi: int) -> list[tuple[int, int, bool]]:
    """Idle gaps of [lo, hi) around the busy intervals: (start, end, interior)."""
    merged = merge([(max(s, lo), min(e, hi)) for s, e in busy if e > lo and s < hi])
    out = []
    cursor = lo
    for s, e in merged:
        if s > cursor:
            out.append((cursor, s, cursor != lo))
        cursor = max(cursor, e)
    if hi > cursor:
        out.append((cursor, hi, False))
    return out


def ledger(
    idle: Sequence[tuple[int, int, bool]],
    causes: Sequence[tuple[str, Sequence[Interval]]],
    launch_gap_ns: int = 30_000,
) -> dict[str, int]:
    """``causes`` in precedence order; the name ``launch_overhead`` (with no intervals)
    stands for interior gaps shorter than ``launch_gap_ns``. Returns ns per cause, the rest
    as ``other``."""
    out: dict[str, int] = {}
    for gs, ge, interior in idle:
        remaining = [(gs, ge)]
        for name, intervals in causes:
            if name == "launch_overhead":
                hit = [(gs, ge)] if interior and ge - gs < launch_gap_ns else []
            else:
                hit = merge(list(intervals))
            taken: list[Interval] = []
            left: list[Interval] = []
            for rs, re_ in remaining:
                cursor = rs
                for hs, he in hit:
                    s, e = max(rs, hs), min(re_, he)
                    if e <= s:
                        continue
                    if s > cursor:
                        left.append((cursor, s))
                    taken.append((s, e))
                    cursor = e
                if cursor < re_:
                    left.append((cursor, re_))
            out[name] = out.get(name, 0) + sum(e - s for s, e in taken)
            remaining = left
        out["other"] = out.get("other", 0) + sum(e - s for s, e in remaining)
    return {k: v for k, v in out.items() if v}
