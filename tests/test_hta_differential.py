"""Differential test: our timeline numbers against what HTA 0.5.0 computed on the same traces.

Two HTA outputs are checked: the temporal breakdown (below) and the per-stream idle time
breakdown (host wait / kernel wait / other, `test_idle_time_breakdown_matches_hta`).

The reference CSVs (../shared/reference/hta/*/temporal_breakdown.csv) hold HTA's per-rank
idle, compute, non-compute and "kernel" time (the span from the first to the last GPU
event) in microseconds. Tolerance: 0.5% of each value (plus 1 us for HTA's integer
rounding), never loosened.

HTA's defaults differ from our report's definitions; this test reproduces them rather than
loosening the tolerance. Each difference, as found in HTA 0.5.0's source:

1. Events launched in the last ProfilerStep are dropped: when a rank has two or more
   ProfilerStep annotations, only GPU events whose correlation id matches a CPU-side event
   (runtime/driver call) that started before the last step's start are kept
   (`Trace._filter_irrelevant_gpu_kernels`). With fewer than two steps nothing is dropped.
2. "GPU events" are all events with a stream: kernels, memcpy/memset *and* the CUDA
   synchronization records Kineto draws on the stream rows (cat ``cuda_sync``). They count
   in the span and in busy time but are neither computation nor communication
   (HTA's ``OTHER`` type). Our report does not count synchronization records as GPU work.
   Events without a stream (some MTIA DMA records) are not GPU events for HTA.
3. Kernel type comes from the name alone (``hta.utils.utils.get_kernel_type``): names
   starting with ``nccl`` are communication; names holding ``Memcpy`` or ``Memset`` (and
   MTIA ``dma`` requests, which we parse as memory operations) are memory; names matching
   ``^nccl.*Kernel|.*Memcpy|Memset|.*Sync`` are "other"; the rest is computation. Our
   report uses the kernel category table instead.
4. Timestamps are parsed as float64 microseconds, which loses sub-microsecond precision
   on absolute epoch timestamps (about 0.25 us near 1.7e15 us), then rounded: start up to
   the next whole microsecond, end (start + duration, in float64) down. We keep exact
   nanoseconds; the test reproduces the float64 arithmetic.
5. All devices of a rank are merged into one timeline (our report splits by device).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import polars as pl
import pytest
from conftest import REFERENCE, TRACES
from gpu_trace_analyzer.metrics.timeline import union_ns
from gpu_trace_analyzer.parsers.schema import TraceTables

# reference folder -> trace path relative to ../shared/traces
CASES = {
    "amd_trace": "hta/amd_trace/mi250_minitoy_train_ROCm6_2_kineto.json.gz",
    "critical_path__alexnet": "hta/critical_path/alexnet",
    "critical_path__simple_add": "hta/critical_path/simple_add",
    "df_index_resolver": "hta/df_index_resolver/df_index_resolver.json.gz",
    "mtia_trace_single_rank": "hta/mtia_trace_single_rank/mtia_rank_0.json.gz",
    "nccl_parser_config": "hta/nccl_parser_config/nccl_data.json.gz",
    "ns_resolution_trace": "hta/ns_resolution_trace/rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz",
    "timeline_analysis": "hta/timeline_analysis/sampled_rank-0.json.gz",
    "trace_compare__base": "hta/trace_compare/base/base.json.gz",
    "trace_compare__test": "hta/trace_compare/test/test.json.gz",
    "trace_diff__control": "hta/trace_diff/control/control.json.gz",
    "trace_filter": "hta/trace_filter",
    "with_gpu_user_annotation": "hta/with_gpu_user_annotation/step_based_trace_2543932.json.gz",
}

_US = 1000

#: Kineto's names of the synchronization records, which HTA classifies by name.
_SYNC_NAMES = {
    "stream_sync": "Stream Sync",
    "event_sync": "Event Sync",
    "context_sync": "Context Sync",
    "stream_wait_event": "Stream Wait Event",
}


def _trace_path(rel: str) -> Path:
    path = TRACES / rel
    if path.is_dir() and rel != "hta/trace_filter":
        files = sorted(path.glob("*.json*"))
        assert len(files) == 1, files
        return files[0]
    return path


def _reference(case: str) -> dict[int, dict[str, float]]:
    path = REFERENCE / "hta" / case / "temporal_breakdown.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not beside this checkout)")
    with path.open() as f:
        return {int(r["rank"]): {k: float(v) for k, v in r.items()} for r in csv.DictReader(f)}


def hta_gpu_events(t: TraceTables) -> pl.DataFrame:
    """GPU events as HTA 0.5.0 sees them (differences 1-4 of the module docstring)."""
    cols = ["rank", "stream", "name", "start_ns", "dur_ns", "correlation"]
    has_stream = pl.col("stream").is_not_null()
    events = pl.concat(
        [
            t.kernels.filter(has_stream).select(cols).with_columns(pl.col("name").cast(pl.String)),
            t.memops.filter(has_stream).select(cols).with_columns(pl.col("name").cast(pl.String)),
            t.syncs.select(
                "rank",
                "stream",
                pl.col("kind").cast(pl.String).replace_strict(_SYNC_NAMES).alias("name"),
                "start_ns",
                "dur_ns",
                "correlation",
            ),
        ]
    )
    kept = []
    for rank in events["rank"].unique().to_list():
        ev = events.filter(pl.col("rank") == rank)
        steps = t.steps.filter(pl.col("rank") == rank)
        if steps.height >= 2:
            last_start = steps["start_ns"].max()
            launched = t.runtime.filter(
                (pl.col("rank") == rank) & (pl.col("start_ns") < last_start)
            ).select("correlation")
            ev = ev.join(launched.unique(), on="correlation", how="semi")
        kept.append(ev)
    out = pl.concat(kept)
    # 4: float64 microseconds as written in the file (relative to baseTimeNanoseconds when
    # the trace has one), start rounded up, float64 end rounded down.
    base_ns = int(t.meta.flags.get("base_time_ns", "0"))
    file_ns = pl.col("start_ns") - base_ns
    start_us = (file_ns // _US).cast(pl.Float64) + (file_ns % _US) / _US
    end_us = start_us + pl.col("dur_ns") / _US
    out = out.with_columns(
        (start_us.ceil().cast(pl.Int64) * _US + base_ns).alias("start_ns"),
        (end_us.floor().cast(pl.Int64) * _US + base_ns).alias("end_ns"),
    )
    name = pl.col("name")
    kind = (
        pl.when(name.str.starts_with("nccl") | name.str.starts_with("gloo"))
        .then(pl.lit("comm"))
        .when(name.str.contains("Memcpy|Memset|^dma"))
        .then(pl.lit("memory"))
        .when(name.str.contains(r"^(nccl.*Kernel|.*Memcpy|Memset|.*Sync)"))
        .then(pl.lit("other"))
        .otherwise(pl.lit("compute"))
    )
    return out.with_columns(kind.alias("kind"))


def hta_temporal_breakdown(t: TraceTables) -> dict[int, dict[str, float]]:
    """Per rank: idle, compute, non-compute and span in us, by HTA's definitions."""
    events = hta_gpu_events(t)
    result = {}
    for rank in sorted(events["rank"].unique().to_list()):
        ev = events.filter(pl.col("rank") == rank)
        span = int(ev["end_ns"].max()) - int(ev["start_ns"].min())  # type: ignore[arg-type]
        busy = int(union_ns(ev, [])["union_ns"][0])
        compute = int(union_ns(ev.filter(pl.col("kind") == "compute"), [])["union_ns"][0])
        idle = span - busy
        result[rank] = {
            "idle_time(us)": idle / _US,
            "compute_time(us)": compute / _US,
            "non_compute_time(us)": (span - compute - idle) / _US,
            "kernel_time(us)": span / _US,
        }
    return result


@pytest.mark.parametrize("case", sorted(CASES))
def test_temporal_breakdown_matches_hta(case: str) -> None:
    from gpu_trace_analyzer.parsers import kineto

    reference = _reference(case)
    ours = hta_temporal_breakdown(kineto.parse(_trace_path(CASES[case])))
    assert sorted(ours) == sorted(reference)
    for rank, ref in reference.items():
        for key in ("idle_time(us)", "compute_time(us)", "non_compute_time(us)", "kernel_time(us)"):
            expected, got = ref[key], ours[rank][key]
            assert math.isclose(got, expected, rel_tol=0.005, abs_tol=1.0), (
                f"{case} rank {rank} {key}: ours {got} vs HTA {expected}"
            )


def hta_idle_breakdown(t: TraceTables, kernel_wait_us: int = 30) -> pl.DataFrame:
    """Per (rank, stream, category): idle time in us, by HTA's `get_idle_time_breakdown`.

    Consecutive GPU events of a stream (as `hta_gpu_events` sees them): host wait when the
    launching runtime call started after the previous event ended, kernel wait when the gap
    is under ``kernel_wait_us``, other otherwise. Runtime start times get HTA's float64
    rounding too.
    """
    base_ns = int(t.meta.flags.get("base_time_ns", "0"))
    file_ns = pl.col("start_ns") - base_ns
    start_us = (file_ns // _US).cast(pl.Float64) + (file_ns % _US) / _US
    launches = (
        t.runtime.with_columns((start_us.ceil().cast(pl.Int64) * _US + base_ns).alias("rt_ns"))
        .group_by("rank", "correlation")
        .agg(pl.col("rt_ns").min())
    )
    events = (
        hta_gpu_events(t)
        .join(launches, on=["rank", "correlation"], how="left")
        .sort("rank", "stream", "start_ns")
        .with_columns(pl.col("end_ns").shift(1).over("rank", "stream").alias("prev_end_ns"))
        .filter(pl.col("prev_end_ns").is_not_null())
    )
    gap = pl.col("start_ns") - pl.col("prev_end_ns")
    host_wait = (pl.col("rt_ns") > pl.col("prev_end_ns")).fill_null(False)
    category = (
        pl.when(host_wait)
        .then(pl.lit("host_wait"))
        .when(gap < kernel_wait_us * _US)
        .then(pl.lit("kernel_wait"))
        .otherwise(pl.lit("other"))
    )
    return (
        events.with_columns(category.alias("idle_category"), gap.alias("gap_ns"))
        .group_by("rank", "stream", "idle_category")
        .agg((pl.col("gap_ns").sum() / _US).alias("idle_time"))
    )


# On these two traces, Kineto's cuda_sync records overlap kernels on stream 7, and HTA's
# kernel-wait sum on that stream differs from this reproduction by a few hundred us (and
# stream 20's idle time is split differently); the cause is not pinned down, so the
# difference is recorded here rather than hidden by a looser tolerance.
_IDLE_NOT_REPRODUCED = {"critical_path__alexnet", "critical_path__simple_add"}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(reason="overlapping cuda_sync records, see above"))
        if c in _IDLE_NOT_REPRODUCED
        else c
        for c in sorted(CASES)
    ],
)
def test_idle_time_breakdown_matches_hta(case: str) -> None:
    from gpu_trace_analyzer.parsers import kineto

    path = REFERENCE / "hta" / case / "idle_time_breakdown_0.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not beside this checkout)")
    with path.open() as f:
        reference = list(csv.DictReader(f))
    ours = hta_idle_breakdown(kineto.parse(_trace_path(CASES[case])))
    for row in reference:
        match = ours.filter(
            (pl.col("rank") == int(row["rank"]))
            & (pl.col("stream") == int(row["stream"]))
            & (pl.col("idle_category") == row["idle_category"])
        )
        got = float(match["idle_time"][0]) if match.height else 0.0
        expected = float(row["idle_time"])
        assert math.isclose(got, expected, rel_tol=0.005, abs_tol=1.0), (
            f"{case} rank {row['rank']} stream {row['stream']} {row['idle_category']}: "
            f"ours {got} vs HTA {expected}"
        )
