"""The innermost *user* Python frame running at a time, from ``python_function`` events.

Traces recorded with ``with_stack=True`` hold one ``python_function`` event per Python call
(``file.py(line): function``). What a performance engineer wants named is the innermost
frame that is not PyTorch's or the standard library's own plumbing (``torch/...``,
``threading.py``, ``<built-in ...>``, ``nn.Module: ...``): for host-side preprocessing that
is e.g. ``scipy/ndimage/_interpolation.py(739): zoom`` under a Hugging Face image processor.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics import segments
from gpu_trace_analyzer.metrics.segments import Segments

#: Frames that are plumbing, not the user's code: builtins, torch itself, module wrappers.
_PLUMBING = r"^(<built-in|<string>|<frozen |torch/|nn\.Module: |functools\.py|contextlib\.py)"


def is_user_frame(name: str) -> bool:
    """Whether a ``python_function`` name is a user (or third-party library) frame: not a
    builtin, not torch, not the standard library."""
    import re

    if re.match(_PLUMBING, name):
        return False
    head = re.split(r"[/.(]", name, maxsplit=1)[0]
    return head not in sys.stdlib_module_names


@dataclass(frozen=True, slots=True)
class FrameSegments:
    """Per thread, disjoint segments each labelled with the innermost user frame."""

    threads: dict[tuple[int, int, int], Segments]
    names: list[str]

    def frame_at(self, rank: int, pid: int, tid: int, at: pl.Series) -> list[str | None]:
        """The innermost user frame on a thread at each time (None where none runs)."""
        seg = self.threads.get((rank, pid, tid))
        if seg is None:
            return [None] * len(at)
        idx = segments.lookup(seg[0], seg[1], at)
        labels = seg[2].to_list()
        return [self.names[labels[i]] if i >= 0 else None for i in idx.to_list()]

    def on_rank(self, rank: int) -> list[Segments]:
        """The segments of every thread of a rank."""
        return [v for k, v in self.threads.items() if k[0] == rank]


def has_stacks(ctx: AnalysisContext) -> bool:
    """Whether the trace holds ``python_function`` events (recorded with ``with_stack``)."""
    return ctx.metric(
        "pystacks.has_stacks",
        lambda t: bool(t.ops.height and (t.ops.get_column("kind") == "python_function").any()),
    )


def user_frames(ctx: AnalysisContext) -> FrameSegments:
    """The innermost user frame segments of every thread, computed once per analysis."""
    return ctx.metric("pystacks.user_frames", lambda _t: _user_frames(ctx))


def _user_frames(ctx: AnalysisContext) -> FrameSegments:
    py = ctx.tables.ops.filter(pl.col("kind") == "python_function").select(
        "rank", "pid", "tid", pl.col("name").cast(pl.String), "start_ns", "dur_ns"
    )
    if py.height == 0:
        return FrameSegments({}, [])
    names = py.get_column("name").unique().sort()
    user = names.filter(names.map_elements(is_user_frame, return_dtype=pl.Boolean))
    kept = py.filter(pl.col("name").is_in(user.implode()))
    label_of = {n: i for i, n in enumerate(user.to_list())}
    threads: dict[tuple[int, int, int], Segments] = {}
    for (rank, pid, tid), frame in kept.group_by(["rank", "pid", "tid"]):
        start = frame.get_column("start_ns")
        end = start + frame.get_column("dur_ns")
        labels = frame.get_column("name").replace_strict(label_of, return_dtype=pl.Int64)
        key = (int(rank), int(pid), int(tid))
        threads[key] = segments.flatten(start, end, labels, "inner")
    return FrameSegments(threads, user.to_list())
