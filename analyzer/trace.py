"""The model: `TraceTables` and `load()`, which picks a parser for each input path.

Several inputs combine into one bundle: a trace (Kineto or Nsight) plus DCGM metrics
gives the trace's tables with the DCGM samples in ``counters``; the report then aligns the
samples to the profiled window when both carry absolute time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from gpu_trace_analyzer.executor import ExecutorOptions
from gpu_trace_analyzer.parsers import detect, registry
from gpu_trace_analyzer.parsers.errors import BadConfigError, UnsupportedFormatError
from gpu_trace_analyzer.parsers.input_kind import check_input
from gpu_trace_analyzer.parsers.repair import repair
from gpu_trace_analyzer.parsers.schema import (
    DeviceInfo,
    RankInfo,
    TraceMeta,
    TraceTables,
    concat_tables,
)

__all__ = ["DeviceInfo", "RankInfo", "TraceMeta", "TraceTables", "load"]

Parser = Callable[[Path], TraceTables]


def _parser_for(kind: str) -> Parser:
    """The parse function for a sniffed input kind (imported lazily: startup stays fast)."""
    if kind == "kineto-dir":
        return registry.parser_for("kineto")
    if kind == "parquet-dir":
        from gpu_trace_analyzer import parquet

        return parquet.read
    return registry.parser_for(kind)


def _is_metrics(kind: str) -> bool:
    """Whether inputs of this kind add counter samples to a trace (DCGM) or are one."""
    return kind in _METRIC_KINDS


_METRIC_KINDS = frozenset(f.kind for f in registry.FORMATS if f.role == "metrics")
_KINETO_KINDS = ("kineto", "kineto-dir")


def _parse_kineto(path: Path, executor: ExecutorOptions) -> TraceTables:
    """A Kineto file (its chunks decoded by ``jobs`` processes, or one per CPU when it is
    large) or a per-rank directory (its ranks parsed by the executor, in parallel)."""
    from gpu_trace_analyzer.executor import parse_ranks
    from gpu_trace_analyzer.parsers import kineto

    return kineto.parse(
        path,
        workers=executor.jobs,
        parse_ranks=lambda files: parse_ranks(files, executor),
    )


def _expand(path: Path) -> list[tuple[str, Path]]:
    """Sniffed (kind, path) pairs for one argument; a mixed directory yields several."""
    check_input(path)  # FIFO, socket, device, pipe: refused before anything opens them
    kind = detect.sniff(path)
    if kind != "mixed":
        return [(kind, path)]
    pairs: list[tuple[str, Path]] = []
    for sub_kind, files in detect.classify_dir(path).items():
        if sub_kind == "kineto" and len(files) > 1:
            raise UnsupportedFormatError(
                "holds several Kineto traces and other files; put the per-rank traces in a "
                "directory of their own",
                path,
            )
        pairs.extend((sub_kind, f) for f in files)
    return pairs


def load(paths: Sequence[Path], executor: ExecutorOptions | None = None) -> TraceTables:
    """Parse every input and combine them into one validated bundle.

    At most one trace (Kineto file or per-rank directory, Nsight export, or Parquet
    directory) may be given; any number of DCGM inputs add counter samples to it.
    ``executor`` says where Kineto parsing runs (default: here, one process).
    """
    if not paths:
        raise BadConfigError("no input given")
    pairs = [pair for p in paths for pair in _expand(Path(p))]
    traces = [(k, p) for k, p in pairs if not _is_metrics(k)]
    metrics = [(k, p) for k, p in pairs if _is_metrics(k)]
    if len(traces) > 1:
        names = ", ".join(str(p) for _, p in traces)
        raise BadConfigError(
            f"several traces given ({names}); analyze one trace (or one directory of "
            "per-rank traces) at a time"
        )
    bundles = [
        repair(_parse_kineto(p, executor) if k in _KINETO_KINDS and executor else _parser_for(k)(p))
        for k, p in traces + metrics
    ]
    if len(bundles) == 1:
        return bundles[0].validate()
    combined = _combine(bundles)
    if traces and metrics:
        combined = _counters_in_window(combined)
    return combined.validate()


def _counters_in_window(tables: TraceTables) -> TraceTables:
    """Keep the DCGM samples taken during the profiled window, when both clocks allow it.

    When they cannot be matched (dmon text has no absolute time), every sample is kept and
    a warning says why the counter summaries cover the whole dump.
    """
    from gpu_trace_analyzer.metrics import counters

    window = counters.window_for_trace(tables.meta)
    start, end = window if window is not None else (None, None)
    inside, reason = counters.align(
        tables.counters,
        start,
        end,
        counters_clock=tables.meta.flags.get("dcgm_clock", "relative"),
        trace_clock=tables.meta.clock,
    )
    if inside is None:
        meta = tables.meta.with_warnings(
            f"DCGM samples not matched to the trace: {reason}; counter summaries cover the "
            "whole dump"
        )
        return replace(tables, meta=meta)
    return replace(tables, counters=inside)


def _combine(bundles: Sequence[TraceTables]) -> TraceTables:
    """One bundle from a trace and metric dumps: the trace's meta, every table merged."""
    head = bundles[0]
    meta = head.meta
    for other in bundles[1:]:
        meta = replace(
            meta,
            source=f"{meta.source}+{other.meta.source}"
            if other.meta.source not in meta.source.split("+")
            else meta.source,
            paths=(*meta.paths, *other.meta.paths),
            devices=meta.devices if head.kernels.height else (*meta.devices, *other.meta.devices),
            warnings=(*meta.warnings, *other.meta.warnings),
            flags={**meta.flags, f"{other.meta.source}_clock": other.meta.clock},
        )
    return concat_tables(bundles, meta)
