"""`analyzer.metrics.segments`: flattened segments agree with a point-by-point brute force."""

from __future__ import annotations

import polars as pl
from gpu_trace_analyzer.metrics import segments
from hypothesis import given, settings
from hypothesis import strategies as st

_INTERVALS = st.lists(st.tuples(st.integers(0, 60), st.integers(1, 30)), max_size=10)


def _brute(intervals: list[tuple[int, int]], keep: str) -> dict[int, int]:
    """Label per integer time: among the intervals covering it, in (start, longest first)
    order, the last (inner) or first (outer) one still open."""
    order = sorted(range(len(intervals)), key=lambda i: (intervals[i][0], -intervals[i][1]))
    out: dict[int, int] = {}
    for t in range(0, 100):
        open_ = [i for i in order if intervals[i][0] <= t < intervals[i][0] + intervals[i][1]]
        if open_:
            out[t] = open_[-1] if keep == "inner" else open_[0]
    return out


@settings(max_examples=200, deadline=None)
@given(intervals=_INTERVALS, keep=st.sampled_from(["inner", "outer"]))
def test_flatten_agrees_with_brute_force(intervals: list[tuple[int, int]], keep: str) -> None:
    starts = pl.Series([s for s, _ in intervals], dtype=pl.Int64)
    ends = pl.Series([s + d for s, d in intervals], dtype=pl.Int64)
    labels = pl.Series(list(range(len(intervals))), dtype=pl.Int64)
    s, e, lab = segments.flatten(starts, ends, labels, keep)  # type: ignore[arg-type]
    got: dict[int, int] = {}
    for a, b, label in zip(s.to_list(), e.to_list(), lab.to_list(), strict=True):
        for t in range(a, b):
            assert t not in got  # disjoint
            got[t] = label
    expected = _brute(intervals, keep)
    assert got.keys() == expected.keys()  # the union
    if keep == "outer" or all(  # properly nested intervals: the innermost is well defined
        not (a < c < a + d < c + f) for a, d in intervals for c, f in intervals
    ):
        assert got == expected


def test_overlap_and_lookup_by_hand() -> None:
    a = pl.Series([0, 10, 20], dtype=pl.Int64)
    b = pl.Series([5, 15, 30], dtype=pl.Int64)
    at = pl.Series([0, 3, 5, 12, 16, 25, 40], dtype=pl.Int64)
    assert segments.covered_before(a, b, at).to_list() == [0, 3, 5, 7, 10, 15, 20]
    overlap = segments.overlap_ns(a, b, pl.Series([3], dtype=pl.Int64), pl.Series([22]))
    assert overlap.to_list() == [9]  # 2 + 5 + 2
    hits = segments.lookup(a, b, pl.Series([-1, 0, 4, 5, 12, 15], dtype=pl.Int64))
    assert hits.to_list() == [-1, 0, 0, -1, 1, -1]
