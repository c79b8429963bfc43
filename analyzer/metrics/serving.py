"""Serving phases of LLM engines: prefill (SGLang "extend") and decode, with batch sizes.

The engines name their phases in what the trace records: SGLang annotates each scheduler step
(``step[DECODE bs=32]``, ``step[EXTEND bs=4]``) and its attention backends run
``forward_decode`` / ``forward_extend``; graph capture runs, annotated ``capture_32_DECODE``
(SGLang) or ``capture_8192_PIECEWISE`` (vLLM), are a phase of their own ("graph capture").
A kernel belongs to the phase window, on the same CPU thread, that holds the runtime call
that launched it (for graph replays, the ``cudaGraphLaunch``/``hipGraphLaunch`` call): the
phase is that of the CPU work that issued it, even when the GPU runs it later.

Per phase: windows, batch sizes (``bs=N``; for decode, one token per sequence, so tokens per
batch), GPU time (sum of kernel durations), busy share (union of those kernels over the
windows' wall time from first window start to last kernel end) and the top families.
"""

from __future__ import annotations

import re
from typing import Final

import polars as pl
from gpu_trace_analyzer.metrics.intervals import union_ns
from gpu_trace_analyzer.metrics.op_families import kernel_families
from gpu_trace_analyzer.parsers.categories import FAMILIES
from gpu_trace_analyzer.parsers.schema import TraceTables

#: Annotation / frame names that open a phase window: (phase, regex).
_PHASES: Final[tuple[tuple[str, str], ...]] = (
    # Graph capture runs (``capture_32_DECODE``, ``capture_8192_PIECEWISE``) are dummy batches,
    # not served requests: their own phase, whatever mode they capture.
    ("graph capture", r"^capture_\d+_"),
    ("decode", r"\bDECODE\b|(^|[^a-z])forward_decode\b"),
    ("prefill", r"\b(PREFILL|EXTEND)\b|(^|[^a-z])forward_(extend|prefill)\b"),
    ("mixed", r"\bMIXED\b"),
)
_BATCH: Final = re.compile(r"bs=(\d+)|capture_(\d+)_")

PHASE_COLUMNS: Final = (
    "phase",
    "windows",
    "batch_sizes",
    "gpu_ns",
    "share_pct",
    "busy_pct",
    "top_families",
)


#: Columns of the phase windows: one row per outermost engine step range on a thread.
_WINDOW_SCHEMA: Final[dict[str, pl.DataType]] = {
    "rank": pl.Int32(),
    "tid": pl.Int64(),
    "phase": pl.String(),
    "start_ns": pl.Int64(),
    "end_ns": pl.Int64(),
    "batch_size": pl.Int64(),
}


def phase_windows(t: TraceTables) -> pl.DataFrame:
    """Outermost phase windows per (rank, tid): phase, start_ns, end_ns, batch size."""
    ops = t.ops.filter(pl.col("kind").is_in(["user_annotation", "python_function"])).select(
        "rank", "tid", pl.col("name").cast(pl.String), "start_ns", "dur_ns"
    )
    rows: list[dict[str, object]] = []
    names = ops["name"].unique().to_list() if ops.height else []
    phase_of: dict[str, str] = {}
    for name in names:
        for phase, pattern in _PHASES:
            if re.search(pattern, name):
                phase_of[name] = phase
                break
    if not phase_of:
        return pl.DataFrame(schema=_WINDOW_SCHEMA)
    hits = ops.filter(pl.col("name").is_in(list(phase_of))).sort("start_ns")
    last_end: dict[tuple[int, int], int] = {}
    for r in hits.iter_rows(named=True):
        key = (int(r["rank"]), int(r["tid"]))
        end = int(r["start_ns"]) + int(r["dur_ns"] or 0)
        if int(r["start_ns"]) < last_end.get(key, -1):
            continue  # nested inside an earlier window of the same thread: outermost wins
        last_end[key] = end
        m = _BATCH.search(r["name"])
        batch = int(m.group(1) or m.group(2)) if m else None
        rows.append(
            {
                "rank": key[0],
                "tid": key[1],
                "phase": phase_of[r["name"]],
                "start_ns": int(r["start_ns"]),
                "end_ns": end,
                "batch_size": batch,
            }
        )
    return pl.DataFrame(
        rows,
        schema=_WINDOW_SCHEMA,
    )


def phase_breakdown(t: TraceTables, top: int = 3) -> pl.DataFrame:
    """One row per phase (columns `PHASE_COLUMNS`); empty when no phase is named."""
    windows = phase_windows(t)
    empty = pl.DataFrame(
        schema={
            "phase": pl.String(),
            "windows": pl.UInt32(),
            "batch_sizes": pl.String(),
            "gpu_ns": pl.Int64(),
            "share_pct": pl.Float64(),
            "busy_pct": pl.Float64(),
            "top_families": pl.String(),
        }
    )
    if windows.height == 0 or t.kernels.height == 0:
        return empty
    calls = t.runtime.select(
        "rank", "correlation", pl.col("tid").alias("launch_tid"), pl.col("start_ns").alias("ts")
    ).unique(["rank", "correlation"], keep="first")
    k = (
        t.kernels.select("rank", "correlation", "start_ns", "dur_ns")
        .with_columns(kernel_families(t))
        .join(calls, on=["rank", "correlation"], how="left")
        .drop_nulls(["ts"])
        .sort("ts")
    )
    w = windows.rename({"start_ns": "w_start", "end_ns": "w_end"}).sort("w_start")
    tagged = k.join_asof(
        w,
        left_on="ts",
        right_on="w_start",
        by_left=["rank", "launch_tid"],
        by_right=["rank", "tid"],
        check_sortedness=False,
    ).filter(pl.col("w_end").is_not_null() & (pl.col("ts") <= pl.col("w_end")))
    if tagged.height == 0:
        return empty
    total = int(t.kernels["dur_ns"].sum() or 0)
    rows = []
    for (phase,), g in tagged.group_by(["phase"], maintain_order=True):
        pw = windows.filter(pl.col("phase") == phase)
        sizes = sorted({int(b) for b in pw["batch_size"].drop_nulls().to_list()})
        fam = (
            g.group_by("family")
            .agg(pl.col("dur_ns").sum())
            .sort(["dur_ns", "family"], descending=[True, False])
        )
        gpu_ns = int(g["dur_ns"].sum() or 0)
        tops = ", ".join(
            f"{FAMILIES.get(f, f)} {100.0 * d / gpu_ns:.0f}%"
            for f, d in fam.head(top).iter_rows()
            if gpu_ns
        )
        ends = pl.concat([pw["end_ns"], g["start_ns"] + g["dur_ns"]])
        span_start = int(pw["start_ns"].min())  # type: ignore[arg-type]
        span_end = int(ends.max())  # type: ignore[arg-type]
        busy = int(
            union_ns(
                g.select(
                    pl.col("start_ns"), (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns")
                ),
                [],
            )["union_ns"][0]
        )
        rows.append(
            {
                "phase": str(phase),
                "windows": pw.height,
                "batch_sizes": ", ".join(str(s) for s in sizes),
                "gpu_ns": gpu_ns,
                "share_pct": 100.0 * gpu_ns / total if total else 0.0,
                "busy_pct": 100.0 * busy / max(span_end - span_start, 1),
                "top_families": tops,
            }
        )
    return pl.DataFrame(rows, schema=empty.schema).sort("gpu_ns", descending=True)
