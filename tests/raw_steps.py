"""Each step's own time recomputed from raw trace events in plain Python (an independent
check of `analyzer.metrics.steps`): the longer of the CPU step time net of time spent in
blocking calls while the GPU ran earlier steps' work, and the union of the GPU work the
step launched."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_BLOCKING = re.compile(r"Synchronize|Memcpy")


def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def own_steps(
    steps: Sequence[tuple[float, float, int]],
    runtime: Sequence[tuple[float, float, str, int | None]],
    gpu: Sequence[tuple[float, float, int | None]],
) -> list[dict[str, float]]:
    """``steps`` (start, end, number), ``runtime`` (start, end, name, correlation), ``gpu``
    (start, end, correlation): per step its number, cpu, busy, waited and own time."""
    launch = {c: s for s, _, _, c in runtime if c is not None}
    ordered = sorted(steps)

    def step_of(t: float) -> int | None:
        for start, end, number in ordered:
            if start <= t < end:
                return number
        return None

    charged = [(s, e, step_of(launch[c]) if c in launch else None) for s, e, c in gpu]
    out = []
    for start, end, number in ordered:
        own = _union((s, e) for s, e, n in charged if n == number)
        earlier = _union(
            (s, e) for s, e, n in charged if (n is None or n < number) and e > start and s < end
        )
        calls = _union(
            (max(s, start), min(e, end))
            for s, e, name, _ in runtime
            if _BLOCKING.search(name) and e > start and s < end
        )
        waited = _overlap(calls, earlier)
        busy = sum(e - s for s, e in own)
        cpu = end - start
        out.append(
            {
                "step": number,
                "start": start,
                "end": end,
                "cpu": cpu,
                "busy": busy,
                "waited": waited,
                "own": max(cpu - waited, busy),
            }
        )
    return out
