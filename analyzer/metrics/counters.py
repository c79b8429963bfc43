"""DCGM counter summaries per GPU: activity statistics, energy, throttling, bound class.

Every function takes the canonical ``counters`` table (one row per sample, unit in the metric
name) and an optional time window ``[start_ns, end_ns]`` (inclusive), and returns a polars
DataFrame keyed by ``(host, gpu)`` (``host`` is null when the source names none, as with
``dcgmi dmon``).

Busy samples: a sample time is busy when GPU util is at least `BUSY_GPU_UTIL_MIN_PCT`; when
GPU util is absent, when SM active is at least `BUSY_SM_ACTIVE_MIN`; when both are absent,
when the throttle bitmask does not carry the idle bit (0x1).

Bound classes follow NVIDIA's DCGM user guide on profiling metrics (see FORMATS.md):
``compute-bound``, ``memory-bound``, ``under-utilized``, ``mixed``, or ``unknown`` when the
profiling fields (SM active) were not collected.

Combining with a profiler trace: `window_for_trace` gives the trace's absolute window and
`align` keeps the samples inside it; both refuse (returning None and a reason) unless the
trace and the DCGM samples carry absolute (epoch) time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl
from gpu_trace_analyzer.parsers.dcgm_fields import THROTTLE_REASONS
from gpu_trace_analyzer.parsers.schema import TraceMeta, TraceTables

# Thresholds of the bound classification. Source: NVIDIA DCGM user guide, "Profiling Metrics"
# (quoted in FORMATS.md): SM_ACTIVE >= 0.8 is necessary but not sufficient for effective use;
# SM_ACTIVE < 0.5 likely means ineffective use; DRAM_ACTIVE of about 0.8 is the practical peak.
SM_ACTIVE_EFFECTIVE_MIN: Final = 0.8
SM_ACTIVE_INEFFECTIVE_MAX: Final = 0.5
#: DRAM active at or above this is "high": 75% of the ~0.8 practical peak the guide gives.
DRAM_ACTIVE_HIGH_MIN: Final = 0.6
#: DRAM active below this is "low" for the under-utilized class (well under the high mark).
DRAM_ACTIVE_LOW_MAX: Final = 0.3
#: A pipe ratio of 1.0 is one instruction every other cycle (the guide); half of that is "high".
PIPE_ACTIVE_HIGH_MIN: Final = 0.5

#: A sample is busy at GPU util >= 1% (any kernel ran: field 203's meaning) ...
BUSY_GPU_UTIL_MIN_PCT: Final = 1.0
#: ... or, without GPU util, at SM active >= 0.01.
BUSY_SM_ACTIVE_MIN: Final = 0.01
IDLE_BIT: Final = 0x1

#: Metrics summarized with mean / p50 / p95 / max.
KEY_METRICS: Final[tuple[str, ...]] = (
    "sm_active_ratio",
    "sm_occupancy_ratio",
    "tensor_active_ratio",
    "fp64_active_ratio",
    "fp32_active_ratio",
    "fp16_active_ratio",
    "dram_active_ratio",
    "gpu_util_pct",
    "power_w",
    "fb_used_mib",
)
#: Metrics summarized with their mean only.
MEAN_METRICS: Final[tuple[str, ...]] = (
    "sm_clock_mhz",
    "mem_clock_mhz",
    "gpu_temp_c",
    "pcie_tx_bytes_per_s",
    "pcie_rx_bytes_per_s",
    "nvlink_tx_bytes_per_s",
    "nvlink_rx_bytes_per_s",
)
PIPES: Final[tuple[str, ...]] = (
    "tensor_active_ratio",
    "fp64_active_ratio",
    "fp32_active_ratio",
    "fp16_active_ratio",
)
STATS: Final[tuple[str, ...]] = ("mean", "p50", "p95", "max")

#: Throttle reason groups the rules speak of, by bitmask (DCGM field 112).
THROTTLE_GROUPS: Final[dict[str, int]] = {
    "power": 0x4 | 0x80,  # SW power cap, HW power brake
    "thermal": 0x20 | 0x40,  # SW / HW thermal slowdown
    "hw_slowdown": 0x8,  # HW slowdown (power or thermal, the board decides)
}

_KEY: Final = ["host", "gpu"]


# ---------------------------------------------------------------------------------------------
# Selection and reshaping


def select_window(
    counters: pl.DataFrame, start_ns: int | None = None, end_ns: int | None = None
) -> pl.DataFrame:
    """The samples with ``start_ns <= ts_ns <= end_ns`` (open ends when None), host as text."""
    df = counters.with_columns(pl.col("host").cast(pl.String), pl.col("metric").cast(pl.String))
    if start_ns is not None:
        df = df.filter(pl.col("ts_ns") >= start_ns)
    if end_ns is not None:
        df = df.filter(pl.col("ts_ns") <= end_ns)
    return df


def wide(
    counters: pl.DataFrame, start_ns: int | None = None, end_ns: int | None = None
) -> pl.DataFrame:
    """One row per (host, gpu, ts_ns), one column per metric (mean of duplicates)."""
    df = select_window(counters, start_ns, end_ns)
    if df.height == 0:
        return pl.DataFrame(schema={"host": pl.String, "gpu": pl.Int32, "ts_ns": pl.Int64})
    return df.pivot(
        on="metric", index=["host", "gpu", "ts_ns"], values="value", aggregate_function="mean"
    ).sort("host", "gpu", "ts_ns", nulls_last=True)


def busy_flags(w: pl.DataFrame) -> pl.DataFrame:
    """``wide`` plus a boolean ``busy`` column (see the module docstring)."""
    cols = set(w.columns)
    by_util = pl.col("gpu_util_pct") >= BUSY_GPU_UTIL_MIN_PCT if "gpu_util_pct" in cols else None
    by_sm = pl.col("sm_active_ratio") >= BUSY_SM_ACTIVE_MIN if "sm_active_ratio" in cols else None
    by_bits = (
        (pl.col("throttle_reasons_bitmask").cast(pl.Int64) & IDLE_BIT) == 0
        if "throttle_reasons_bitmask" in cols
        else None
    )
    expr: pl.Expr = pl.lit(None, dtype=pl.Boolean)
    for candidate in (by_bits, by_sm, by_util):  # later ones take precedence where not null
        if candidate is not None:
            expr = pl.coalesce(candidate, expr)
    return w.with_columns(expr.fill_null(False).alias("busy"))


# ---------------------------------------------------------------------------------------------
# Statistics


def gpu_stats(
    counters: pl.DataFrame, start_ns: int | None = None, end_ns: int | None = None
) -> pl.DataFrame:
    """Per (host, gpu, metric): n (non-null samples), mean, p50, p95, max."""
    df = select_window(counters, start_ns, end_ns).drop_nulls("value")
    return (
        df.group_by("host", "gpu", "metric")
        .agg(
            pl.col("value").count().alias("n"),
            pl.col("value").mean().alias("mean"),
            pl.col("value").quantile(0.5, "linear").alias("p50"),
            pl.col("value").quantile(0.95, "linear").alias("p95"),
            pl.col("value").max().alias("max"),
        )
        .sort("host", "gpu", "metric", nulls_last=True)
    )


def busy_means(
    counters: pl.DataFrame, start_ns: int | None = None, end_ns: int | None = None
) -> pl.DataFrame:
    """Per (host, gpu): busy sample count, busy share and means of the activity ratios and
    GPU util over busy samples only (what "while the GPU is in use" means in the rules)."""
    w = busy_flags(wide(counters, start_ns, end_ns))
    activity = [m for m in (*PIPES, "sm_active_ratio", "gr_engine_active_ratio",
                            "sm_occupancy_ratio", "dram_active_ratio", "gpu_util_pct")
                if m in w.columns]  # fmt: skip
    return (
        w.group_by(_KEY)
        .agg(
            pl.len().alias("sample_times"),
            pl.col("busy").sum().cast(pl.Int64).alias("busy_samples"),
            *[pl.col(m).filter(pl.col("busy")).mean().alias(f"{m}_busy_mean") for m in activity],
        )
        .with_columns((pl.col("busy_samples") / pl.col("sample_times")).alias("busy_share"))
        .sort(_KEY, nulls_last=True)
    )


def memory_use(
    counters: pl.DataFrame, start_ns: int | None = None, end_ns: int | None = None
) -> pl.DataFrame:
    """Per (host, gpu): fb_used_mib_max, fb_total_mib and fb_used_pct_max.

    Total memory is FB_TOTAL when sampled, else used + free + reserved at the same time
    (DCGM's FB_USED excludes the driver's reservation: on the real L4 and T4 scrapes in
    ../shared the three add up to the cards' 23,034 and 15,360 MiB).
    """
    w = wide(counters, start_ns, end_ns)
    if "fb_used_mib" not in w.columns:
        return pl.DataFrame(
            schema={"host": pl.String, "gpu": pl.Int32, "fb_used_mib_max": pl.Float64,
                    "fb_total_mib": pl.Float64, "fb_used_pct_max": pl.Float64}
        )  # fmt: skip
    parts = [pl.col(c).fill_null(0.0) for c in ("fb_used_mib", "fb_free_mib", "fb_reserved_mib")
             if c in w.columns]  # fmt: skip
    derived = pl.sum_horizontal(parts) if "fb_free_mib" in w.columns else pl.lit(None)
    total = pl.col("fb_total_mib") if "fb_total_mib" in w.columns else pl.lit(None)
    w = w.with_columns(pl.coalesce(total, derived).cast(pl.Float64).alias("_total"))
    return (
        w.filter(pl.col("fb_used_mib").is_not_null())
        .with_columns((100.0 * pl.col("fb_used_mib") / pl.col("_total")).alias("_pct"))
        .group_by(_KEY)
        .agg(
            pl.col("fb_used_mib").max().alias("fb_used_mib_max"),
            pl.col("_total").max().alias("fb_total_mib"),
            pl.col("_pct").max().alias("fb_used_pct_max"),
        )
        .sort(_KEY, nulls_last=True)
    )


# ---------------------------------------------------------------------------------------------
# Energy


def energy(
    counters: pl.DataFrame, start_ns: int | None = None, end_ns: int | None = None
) -> pl.DataFrame:
    """Per (host, gpu): energy_j over the window, energy_source and span_ns.

    From the energy counter (field 156, mJ since boot) when it has two samples or more: the
    sum of its positive increments (a driver reload resets it). Else the trapezoidal
    integral of power over time. ``energy_source`` says which ("counter", "power", "none").
    """
    df = select_window(counters, start_ns, end_ns).drop_nulls("value")
    keys = df.select(_KEY).unique()
    by_counter = _energy_from_counter(df)
    by_power = _energy_from_power(df)
    out = (
        keys.join(by_counter, on=_KEY, how="left", nulls_equal=True)
        .join(by_power, on=_KEY, how="left", nulls_equal=True)
        .with_columns(
            pl.coalesce("counter_j", "power_j").alias("energy_j"),
            pl.when(pl.col("counter_j").is_not_null())
            .then(pl.lit("counter"))
            .when(pl.col("power_j").is_not_null())
            .then(pl.lit("power"))
            .otherwise(pl.lit("none"))
            .alias("energy_source"),
            pl.coalesce("counter_span_ns", "power_span_ns").alias("span_ns"),
        )
    )
    return out.select(*_KEY, "energy_j", "energy_source", "span_ns").sort(_KEY, nulls_last=True)


def _energy_from_counter(df: pl.DataFrame) -> pl.DataFrame:
    """Energy (J) from the increments of the mJ counter, per GPU with >= 2 samples."""
    return (
        df.filter(pl.col("metric") == "energy_mj")
        .group_by(_KEY)
        .agg(
            (_by_time("value").diff().clip(lower_bound=0.0).sum() / 1000.0).alias("counter_j"),
            (pl.col("ts_ns").max() - pl.col("ts_ns").min()).alias("counter_span_ns"),
            pl.len().alias("_n"),
        )
        .filter(pl.col("_n") >= 2)
        .drop("_n")
    )


def _energy_from_power(df: pl.DataFrame) -> pl.DataFrame:
    """Energy (J) as the trapezoidal integral of power (W) over time, per GPU."""
    return (
        df.filter(pl.col("metric") == "power_w")
        .group_by(_KEY)
        .agg(
            (
                (
                    (_by_time("value") + _by_time("value").shift(1))
                    / 2.0
                    * _by_time("ts_ns").diff()
                ).sum()
                / 1e9
            ).alias("power_j"),
            (pl.col("ts_ns").max() - pl.col("ts_ns").min()).alias("power_span_ns"),
            pl.len().alias("_n"),
        )
        .filter(pl.col("_n") >= 2)
        .drop("_n")
    )


def _by_time(column: str) -> pl.Expr:
    """A column ordered by sample time (inside a group)."""
    return pl.col(column).sort_by("ts_ns")


def energy_per_step_j(energy_j: float, steps: int) -> float:
    """Energy of one step: window energy over the number of steps in the window."""
    if steps <= 0:
        raise ValueError("steps must be positive")
    return energy_j / steps


def energy_per_sample_j(energy_j: float, steps: int, samples_per_step: int) -> float:
    """Energy of one training/inference sample: per-step energy over samples per step."""
    if samples_per_step <= 0:
        raise ValueError("samples_per_step must be positive")
    return energy_per_step_j(energy_j, steps) / samples_per_step


def energy_from_power_j(mean_power_w: float, duration_ns: int) -> float:
    """Energy of a duration at a mean power (W x s)."""
    return mean_power_w * duration_ns / 1e9


# ---------------------------------------------------------------------------------------------
# Throttling


def throttle_shares(
    counters: pl.DataFrame, start_ns: int | None = None, end_ns: int | None = None
) -> pl.DataFrame:
    """Per (host, gpu, reason): how often a throttle reason was set while the GPU was busy.

    Reasons are the groups of `THROTTLE_GROUPS` plus every single bit of
    `parsers.dcgm_fields.THROTTLE_REASONS` that was set at least once. Columns: reason,
    bitmask, busy_samples, throttled_samples, share_of_busy, sm_clock_mhz_throttled_mean,
    sm_clock_mhz_unthrottled_mean. Empty when the bitmask was not collected.
    """
    w = busy_flags(wide(counters, start_ns, end_ns))
    if "throttle_reasons_bitmask" not in w.columns:
        return _empty_throttle()
    w = w.filter(pl.col("busy") & pl.col("throttle_reasons_bitmask").is_not_null()).with_columns(
        pl.col("throttle_reasons_bitmask").cast(pl.Int64).alias("_bits")
    )
    if "sm_clock_mhz" not in w.columns:
        w = w.with_columns(pl.lit(None, dtype=pl.Float64).alias("sm_clock_mhz"))
    seen = 0
    for bits in w["_bits"].drop_nulls().unique().to_list():
        seen |= int(bits)
    reasons = dict(THROTTLE_GROUPS)
    reasons.update({name: bit for bit, name in THROTTLE_REASONS.items() if seen & bit})
    frames = [_one_reason(w, name, mask) for name, mask in reasons.items()]
    return pl.concat(frames).sort("host", "gpu", "reason", nulls_last=True)


def _one_reason(w: pl.DataFrame, reason: str, mask: int) -> pl.DataFrame:
    """Busy and throttled sample counts of one reason (group) per GPU."""
    hit = (pl.col("_bits") & mask) != 0
    return (
        w.group_by(_KEY)
        .agg(
            pl.len().alias("busy_samples"),
            hit.sum().cast(pl.Int64).alias("throttled_samples"),
            pl.col("sm_clock_mhz").filter(hit).mean().alias("sm_clock_mhz_throttled_mean"),
            pl.col("sm_clock_mhz").filter(~hit).mean().alias("sm_clock_mhz_unthrottled_mean"),
        )
        .with_columns(
            pl.lit(reason).alias("reason"),
            pl.lit(mask, dtype=pl.Int64).alias("bitmask"),
            (pl.col("throttled_samples") / pl.col("busy_samples")).alias("share_of_busy"),
        )
        .select(
            *_KEY,
            "reason",
            "bitmask",
            "busy_samples",
            "throttled_samples",
            "share_of_busy",
            "sm_clock_mhz_throttled_mean",
            "sm_clock_mhz_unthrottled_mean",
        )
    )


def _empty_throttle() -> pl.DataFrame:
    """The zero-row result of `throttle_shares`."""
    return pl.DataFrame(
        schema={
            "host": pl.String,
            "gpu": pl.Int32,
            "reason": pl.String,
            "bitmask": pl.Int64,
            "busy_samples": pl.Int64,
            "throttled_samples": pl.Int64,
            "share_of_busy": pl.Float64,
            "sm_clock_mhz_throttled_mean": pl.Float64,
            "sm_clock_mhz_unthrottled_mean": pl.Float64,
        }
    )


# ---------------------------------------------------------------------------------------------
# Bound classification and the per-GPU summary


def classify_bound(
    sm_active: float | None,
    dram_active: float | None,
    pipes: Sequence[float | None] = (),
) -> str:
    """Bound class of a GPU from mean counter ratios (NVIDIA DCGM guide; see constants)."""
    if sm_active is None:
        return "unknown"
    top_pipe = max((p for p in pipes if p is not None), default=None)
    if (
        top_pipe is not None
        and sm_active >= SM_ACTIVE_EFFECTIVE_MIN
        and (top_pipe >= PIPE_ACTIVE_HIGH_MIN)
    ):
        return "compute-bound"
    if (
        dram_active is not None
        and dram_active >= DRAM_ACTIVE_HIGH_MIN
        and (top_pipe is None or top_pipe < PIPE_ACTIVE_HIGH_MIN)
    ):
        return "memory-bound"
    if sm_active < SM_ACTIVE_INEFFECTIVE_MAX and (
        dram_active is None or dram_active < DRAM_ACTIVE_LOW_MAX
    ):
        return "under-utilized"
    return "mixed"


def gpu_summary(
    counters: pl.DataFrame, start_ns: int | None = None, end_ns: int | None = None
) -> pl.DataFrame:
    """One row per (host, gpu): identity, sample counts, statistics, energy, memory, bound.

    Columns: host, gpu, model_name, gpu_uuid, sample_times, first_ts_ns, last_ts_ns,
    ``<metric>_<stat>`` for `KEY_METRICS` x `STATS` and ``<metric>_mean`` for
    `MEAN_METRICS` (null when not collected), busy_samples, busy_share, the ``*_busy_mean``
    activity means, fb_used_mib_max, fb_total_mib, fb_used_pct_max, energy_j, energy_source,
    span_ns, bound (from the busy-sample means: what the GPU does while in use; from all
    samples when none is busy).
    """
    df = select_window(counters, start_ns, end_ns)
    if df.height == 0:
        return pl.DataFrame(schema={"host": pl.String, "gpu": pl.Int32, "bound": pl.String})
    ident = df.group_by(_KEY).agg(
        pl.col("model_name").drop_nulls().first().cast(pl.String),
        pl.col("gpu_uuid").drop_nulls().first().cast(pl.String),
        pl.col("ts_ns").n_unique().alias("sample_times"),
        pl.col("ts_ns").min().alias("first_ts_ns"),
        pl.col("ts_ns").max().alias("last_ts_ns"),
    )
    out = ident.join(_stat_columns(counters, start_ns, end_ns), on=_KEY, how="left",
                     nulls_equal=True)  # fmt: skip
    for part in (busy_means(counters, start_ns, end_ns), memory_use(counters, start_ns, end_ns),
                 energy(counters, start_ns, end_ns)):  # fmt: skip
        out = out.join(part.drop("sample_times", strict=False), on=_KEY, how="left",
                       nulls_equal=True)  # fmt: skip
    bounds = [_bound_of(r) for r in out.iter_rows(named=True)]
    return out.with_columns(pl.Series("bound", bounds, dtype=pl.String)).sort(_KEY, nulls_last=True)


def _bound_of(row: dict[str, object]) -> str:
    """Bound class of one summary row: from busy-sample means, else from all-sample means."""

    def mean(metric: str) -> float | None:
        for key in (f"{metric}_busy_mean", f"{metric}_mean"):
            value = row.get(key)
            if isinstance(value, float):
                return value
        return None

    return classify_bound(
        mean("sm_active_ratio"), mean("dram_active_ratio"), [mean(p) for p in PIPES]
    )


def _stat_columns(counters: pl.DataFrame, start_ns: int | None, end_ns: int | None) -> pl.DataFrame:
    """``<metric>_<stat>`` columns per GPU (every expected column present, null if absent)."""
    stats = gpu_stats(counters, start_ns, end_ns)
    wanted = [(m, s) for m in KEY_METRICS for s in STATS] + [(m, "mean") for m in MEAN_METRICS]
    keys = stats.select(_KEY).unique()
    cols = []
    for metric, stat in wanted:
        part = stats.filter(pl.col("metric") == metric).select(
            *_KEY, pl.col(stat).alias(f"{metric}_{stat}")
        )
        cols.append(part)
    out = keys
    for part in cols:
        out = out.join(part, on=_KEY, how="left", nulls_equal=True)
    return out


def summary_of(tables: TraceTables) -> pl.DataFrame:
    """`gpu_summary` of a bundle's whole counters table (for ``ctx.metric``)."""
    return gpu_summary(tables.counters)


def throttle_of(tables: TraceTables) -> pl.DataFrame:
    """`throttle_shares` of a bundle's whole counters table (for ``ctx.metric``)."""
    return throttle_shares(tables.counters)


def gpu_label(host: str | None, gpu: int) -> str:
    """How reports name a GPU: ``GPU 3 on node-a`` (or ``GPU 3`` without a host)."""
    return f"GPU {gpu} on {host}" if host else f"GPU {gpu}"


# ---------------------------------------------------------------------------------------------
# Combining with a profiler trace


def counters_clock(meta: TraceMeta) -> str:
    """The clock of a bundle's counter samples: the DCGM dump's (``dcgm_clock`` flag, set
    when a dump is merged into a trace's bundle), else the bundle's own clock."""
    return meta.flags.get("dcgm_clock", meta.clock)


def clocks_comparable(meta: TraceMeta) -> bool:
    """Whether the counters and the trace's events share a time axis: counters recorded by
    the trace's own tool, or a merged DCGM dump when both sides carry absolute time."""
    if "dcgm_clock" not in meta.flags:
        return True
    return meta.flags["dcgm_clock"] == "epoch" and meta.clock == "epoch"


def window_for_trace(meta: TraceMeta) -> tuple[int, int] | None:
    """The trace's absolute window (first span start, last span end over ranks), or None
    when the trace is on a relative clock or carries no span."""
    if meta.clock != "epoch":
        return None
    starts = [r.span_start_ns for r in meta.ranks if r.span_start_ns is not None]
    ends = [r.span_end_ns for r in meta.ranks if r.span_end_ns is not None]
    if not starts or not ends:
        return None
    return min(starts), max(ends)


def align(
    counters: pl.DataFrame,
    start_ns: int | None,
    end_ns: int | None,
    *,
    counters_clock: str = "epoch",
    trace_clock: str = "epoch",
) -> tuple[pl.DataFrame | None, str]:
    """The samples within the profiled window, or None and the reason they cannot be matched.

    Both sides must carry absolute (epoch) time: ``counters_clock`` is the DCGM bundle's
    ``TraceMeta.clock``, ``trace_clock`` the profiler trace's.
    """
    if counters_clock != "epoch":
        return None, (
            "the DCGM samples carry no absolute time (dcgmi dmon prints none; scrapes without "
            "timestamps neither), so they cannot be matched to the profiled window"
        )
    if trace_clock != "epoch" or start_ns is None or end_ns is None:
        return None, "the trace carries no absolute time window to match DCGM samples against"
    inside = counters.filter(pl.col("ts_ns").is_between(start_ns, end_ns))
    if inside.height == 0:
        return None, (
            f"no DCGM sample falls within the profiled window "
            f"({(end_ns - start_ns) / 1e9:.3f} s); the dump covers other times"
        )
    return inside, ""
