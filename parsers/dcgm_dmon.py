"""``dcgmi dmon`` text into counter rows.

A ``#Entity`` header of short names, an ``ID`` unit line, rows ``GPU n`` (also ``GPU-I n``,
``GPU-CI n``, link and switch entities, which are counted and left out: the analysis is per
GPU), ``N/A`` for missing values, the header repeated every few rows. dmon prints no
timestamps: the k-th row of an entity is placed at k x the sample interval (``-d`` when the
capture shows the command line, else dcgmi's default 1000 ms) on a relative clock, and a
warning says so. A pasted capture may hold several runs (each starting with its ``dcgmi dmon``
command line, or with a header of other columns): they are laid end to end. A run without a
header takes its columns from the command's ``-e``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from gpu_trace_analyzer.parsers.dcgm_common import NS_PER_MS, Rows, clean
from gpu_trace_analyzer.parsers.dcgm_fields import (
    BY_ID,
    BY_SHORT,
)

#: dcgmi dmon's default sample interval (``-d``), ms.
DMON_DEFAULT_INTERVAL_MS: Final = 1000


DMON_CMD = re.compile(r"^(?:[>$%]\s*)?(?:sudo\s+)?dcgmi\s+dmon\b(?P<args>.*)$")


GPU_ENTITY = re.compile(r"^GPU (\d+)$")


_OTHER_ENTITY = re.compile(r"^(?:GPU-I|GPU-CI|GPU \d+ LINK|LINK|Link|Switch|NvSwitch|CPU|Core)\b")


@dataclass(slots=True)
class _DmonRun:
    """One dmon invocation: its columns, interval, and how many rows each entity printed."""

    columns: tuple[str, ...] = ()
    field_ids: tuple[int, ...] = ()
    interval_ms: int | None = None
    counts: Counter[str] = field(default_factory=Counter)

    def slots(self) -> int:
        """Sample slots this run used (the most rows any entity printed)."""
        return max(self.counts.values(), default=0)


@dataclass(slots=True)
class _DmonState:
    """Running state over a dmon capture."""

    run: _DmonRun = field(default_factory=_DmonRun)
    offset_ns: int = 0
    runs: int = 0
    dropped: list[str] = field(default_factory=list)
    other_entities: Counter[str] = field(default_factory=Counter)
    bad_cells: int = 0
    unmapped: set[str] = field(default_factory=set)
    intervals_ms: set[int] = field(default_factory=set)
    defaulted_interval: bool = False


def parse_dmon(text: str, name: str, rows: Rows, interval_ms: int | None) -> None:
    """Read every dmon run in the text into ``rows``."""
    st = _DmonState()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("```"):
            continue
        cmd = DMON_CMD.match(line)
        if cmd:
            _dmon_new_run(st, _DmonRun(*_dmon_options(cmd.group("args"))))
        elif line.startswith("#Entity"):
            _dmon_header(st, tuple(line.split()[1:]))
        elif line.startswith("#") or line.split()[0] == "ID":
            continue  # unit line, or a comment pasted with the capture
        else:
            _dmon_row(st, line, rows, interval_ms)
    st.runs += 1 if st.run.counts else 0
    _dmon_warnings(st, rows)
    rows.flags["dmon_runs"] = str(st.runs)


def _dmon_options(args: str) -> tuple[tuple[str, ...], tuple[int, ...], int | None]:
    """Columns (from ``-e``), field ids and ``-d`` interval of a dmon command line."""
    ids = re.search(r"(?:^|\s)(?:-e|--field-id)\s+([\d,]+)", args)
    interval = re.search(r"(?:^|\s)(?:-d|--delay)\s+(\d+)", args)
    field_ids = tuple(int(x) for x in re.findall(r"\d+", ids.group(1))) if ids else ()
    columns = tuple(BY_ID[i].short if i in BY_ID else f"#{i}" for i in field_ids)
    return columns, field_ids, int(interval.group(1)) if interval else None


def _dmon_new_run(st: _DmonState, run: _DmonRun) -> None:
    """Close the current run (advancing the clock past it) and start ``run``."""
    if st.run.counts:
        st.offset_ns += (
            st.run.slots() * (st.run.interval_ms or DMON_DEFAULT_INTERVAL_MS) * (NS_PER_MS)
        )
        st.runs += 1
    st.run = run


def _dmon_header(st: _DmonState, columns: tuple[str, ...]) -> None:
    """A ``#Entity`` header: a repeat of the current one, or the start of another run."""
    if columns == st.run.columns:
        return
    if st.run.counts:
        _dmon_new_run(st, _DmonRun(interval_ms=st.run.interval_ms))
    st.run.columns = columns


def _dmon_row(st: _DmonState, line: str, rows: Rows, interval_ms: int | None) -> None:
    """One entity row: values of the current columns at this entity's next sample slot."""
    tokens = line.split()
    ncols = len(st.run.columns)
    if ncols == 0 or len(tokens) <= ncols:
        st.dropped.append(line)
        return
    entity = " ".join(tokens[:-ncols])
    gpu_match = GPU_ENTITY.match(entity)
    if gpu_match is None:
        if _OTHER_ENTITY.match(entity):
            st.other_entities[entity.split()[0]] += 1
        else:
            st.dropped.append(line)
        return
    run = st.run
    interval = run.interval_ms or interval_ms
    if interval is None:
        interval, st.defaulted_interval = DMON_DEFAULT_INTERVAL_MS, True
    st.intervals_ms.add(interval)
    ts_ns = st.offset_ns + run.counts[entity] * interval * NS_PER_MS
    run.counts[entity] += 1
    gpu = int(gpu_match.group(1))
    for column, cell in zip(run.columns, tokens[-ncols:], strict=True):
        dcgm = BY_SHORT.get(column)
        if dcgm is None:
            st.unmapped.add(column)
            continue
        value = _dmon_value(cell)
        if value is None and cell != "N/A":
            st.bad_cells += 1
        rows.add(None, gpu, dcgm, ts_ns, value)


def _dmon_value(cell: str) -> float | None:
    """A dmon cell as a number; ``N/A`` and anything unparsable are null."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return clean(value)


def _dmon_warnings(st: _DmonState, rows: Rows) -> None:
    """Tell the reader what the dmon parse assumed or left out."""
    if st.intervals_ms:
        spacing = " / ".join(str(i) for i in sorted(st.intervals_ms))
        origin = "dcgmi's default -d" if st.defaulted_interval else "-d"
        rows.warnings.append(
            f"dmon prints no timestamps: samples are placed {spacing} ms apart ({origin}) "
            "on a relative clock"
        )
        rows.flags["interval_ms"] = spacing
    if st.runs > 1:
        rows.warnings.append(f"{st.runs} dmon runs were laid end to end on one relative clock")
    if st.dropped:
        rows.warnings.append(
            f"{len(st.dropped)} dmon line(s) not understood were skipped "
            f"(first: {st.dropped[0][:60]!r})"
        )
    if st.other_entities:
        kinds = ", ".join(sorted(st.other_entities))
        rows.warnings.append(
            f"{sum(st.other_entities.values())} row(s) of non-GPU entities ({kinds}) left out: "
            "the analysis is per GPU"
        )
    if st.bad_cells:
        rows.warnings.append(f"{st.bad_cells} dmon cell(s) were not numbers and read as null")
    if st.unmapped:
        rows.warnings.append(f"dmon columns not analyzed: {', '.join(sorted(st.unmapped))}")
