"""The DCGM counters section: a per-GPU table and, with enough samples, a time-series chart.

The table gives, per GPU, what the counters say about how it was used: SM, tensor and DRAM
activity, GPU util, power and energy, peak memory, and the bound class from
`analyzer.metrics.counters.classify_bound`. The chart (``dcgm_counters.svg`` in ``out_dir``,
the report's charts directory beside the report file, linked as
``<out_dir name>/dcgm_counters.svg``) shows each key metric over time, one line per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics import counters
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.model import Block, Cell, Chart, Code, Paragraph, Section, Table

#: Charted metrics and their facet labels (unit included).
CHART_METRICS: Final[dict[str, str]] = {
    "sm_active_ratio": "SM active (0-1)",
    "tensor_active_ratio": "tensor pipe active (0-1)",
    "dram_active_ratio": "DRAM active (0-1)",
    "gpu_util_pct": "GPU util (%)",
    "power_w": "power (W)",
    "fb_used_mib": "memory used (MiB)",
    "pcie_tx_bytes_per_s": "PCIe TX (GB/s)",
    "pcie_rx_bytes_per_s": "PCIe RX (GB/s)",
    "nvlink_tx_bytes_per_s": "NVLink TX (GB/s)",
    "nvlink_rx_bytes_per_s": "NVLink RX (GB/s)",
}
#: Display scale of charted metrics (bytes/s shown as GB/s).
_CHART_SCALE: Final[dict[str, float]] = {
    m: 1e-9 for m in CHART_METRICS if m.endswith("_bytes_per_s")
}
#: A chart needs more sample times than this on some GPU.
MIN_CHART_SAMPLES: Final = 5
#: At most this many points per GPU and metric (longer series are averaged in time buckets).
MAX_POINTS_PER_SERIES: Final = 400
CHART_STEM: Final = "dcgm_counters"


@dataclass(frozen=True, slots=True)
class _Column:
    """One column of the per-GPU table: title, summary column, digits (None: text)."""

    title: str
    key: str
    digits: int | None = 2
    scale: float = 1.0
    always: bool = False  # shown even when no GPU has a value


_TABLE: Final[tuple[_Column, ...]] = (
    _Column("host", "host", None),
    _Column("GPU", "gpu", 0, always=True),
    _Column("model", "model_name", None),
    _Column("samples", "sample_times", 0, always=True),
    _Column("SM active mean", "sm_active_ratio_mean"),
    _Column("SM active p95", "sm_active_ratio_p95"),
    _Column("tensor active", "tensor_active_ratio_mean"),
    _Column("DRAM active", "dram_active_ratio_mean"),
    _Column("GPU util %", "gpu_util_pct_mean", 0),
    _Column("power W mean", "power_w_mean", 0),
    _Column("power W max", "power_w_max", 0),
    _Column("energy J", "energy_j", 0),
    _Column("memory used MiB max", "fb_used_mib_max", 0),
    _Column("memory used %", "fb_used_pct_max", 1),
    _Column("PCIe TX GB/s", "pcie_tx_bytes_per_s_mean", 2, 1e-9),
    _Column("PCIe RX GB/s", "pcie_rx_bytes_per_s_mean", 2, 1e-9),
    _Column("NVLink TX GB/s", "nvlink_tx_bytes_per_s_mean", 2, 1e-9),
    _Column("NVLink RX GB/s", "nvlink_rx_bytes_per_s_mean", 2, 1e-9),
    _Column("bound", "bound", None, always=True),
)
#: Columns whose absence the section points out (what to add to the DCGM collection).
_WANTED: Final[dict[str, str]] = {
    "sm_active_ratio_mean": "SM active (1002)",
    "tensor_active_ratio_mean": "tensor active (1004)",
    "dram_active_ratio_mean": "DRAM active (1005)",
    "gpu_util_pct_mean": "GPU util (203)",
    "power_w_mean": "power (155)",
    "fb_used_mib_max": "FB used (252)",
}


def build(ctx: AnalysisContext, charts: bool) -> Section | None:
    """The "GPU counters (DCGM)" section, or None without counter samples; with ``charts``,
    the time-series `Chart` when some GPU has enough samples."""
    if ctx.tables.counters.height == 0:
        return None
    summary = ctx.metric("counters.summary", counters.summary_of)
    blocks: list[Block] = [_intro(ctx, summary), _table(summary)]
    missing = _missing(summary)
    if missing is not None:
        blocks.append(missing)
    if charts and _int(summary["sample_times"].max()) > MIN_CHART_SAMPLES:
        chart = _chart(ctx)
        if chart is not None:
            blocks.append(chart)
    blocks.append(_legend())
    return Section(title="GPU counters (DCGM)", blocks=blocks, key="counters")


def _intro(ctx: AnalysisContext, summary: pl.DataFrame) -> Paragraph:
    """Where the samples come from and what span they cover."""
    c = ctx.tables.counters
    sources = ", ".join(sorted({str(s) for s in c["source"].unique().to_list() if s}))
    span_ns = _int(c["ts_ns"].max()) - _int(c["ts_ns"].min())
    clock = (
        "an absolute clock"
        if counters.counters_clock(ctx.tables.meta) == "epoch"
        else "a relative clock (the source carries no absolute time)"
    )
    most = _int(summary["sample_times"].max())
    extent = (
        "one sample per GPU (a single scrape: a snapshot, not a trend)"
        if most == 1
        else f"up to {fmt.count(most)} sample times per GPU over {fmt.duration(span_ns)}"
    )
    return Paragraph.of(
        f"{summary.height} GPU(s), {extent}, from ",
        Code(sources),
        f", on {clock}. Activity ratios are means over all samples; the bound class uses the "
        "samples where the GPU was in use.",
    )


def _int(value: object) -> int:
    """An aggregate (max/min of an integer column) as int; 0 when null."""
    return int(value) if isinstance(value, (int, float)) else 0


def _present(summary: pl.DataFrame, key: str) -> bool:
    """Whether some GPU has a value in summary column ``key``."""
    return key in summary.columns and summary[key].null_count() < summary.height


def _cell(row: dict[str, object], col: _Column) -> Cell:
    """One table cell, formatted; "n/a" when the GPU has no value."""
    value = row.get(col.key)
    if col.digits is None:
        return str(value) if value else "n/a"
    if not isinstance(value, (int, float)):
        return "n/a"
    if col.key == "gpu":
        return int(value)
    if col.key == "sample_times":
        return fmt.count(int(value))
    if col.key == "fb_used_pct_max":
        return fmt.pct(float(value))
    return f"{float(value) * col.scale:.{col.digits}f}"


def _table(summary: pl.DataFrame) -> Table:
    """One row per GPU; columns no GPU has a value for are left out."""
    cols = [c for c in _TABLE if c.always or _present(summary, c.key)]
    rows = [[_cell(r, c) for c in cols] for r in summary.iter_rows(named=True)]
    numeric = [c.digits is not None for c in cols]
    return Table([c.title for c in cols], rows, numeric=numeric)


def _missing(summary: pl.DataFrame) -> Paragraph | None:
    """Which key fields the dump did not collect, and how to add them."""
    absent = [label for key, label in _WANTED.items() if not _present(summary, key)]
    if not absent:
        return None
    return Paragraph.from_prose(
        f"Not collected: {', '.join(absent)}. Add these DCGM field ids to the collection "
        "(`dcgmi dmon -e ...`, or the dcgm-exporter counters CSV) for a full picture; the "
        "profiling fields (1001-1016) show how busy the SMs, tensor cores and memory were, "
        "which GPU util alone cannot."
    )


def chart_points(counter_table: pl.DataFrame) -> pl.DataFrame:
    """Tidy points for the chart: time_s, metric (label), gpu (label), value, downsampled."""
    df = counters.select_window(counter_table).filter(
        pl.col("metric").is_in(list(CHART_METRICS)) & pl.col("value").is_not_null()
    )
    if df.height == 0:
        return pl.DataFrame(
            schema={
                "time_s": pl.Float64,
                "metric": pl.String,
                "gpu": pl.String,
                "value": pl.Float64,
            }
        )
    t0 = _int(df["ts_ns"].min())
    span = max(_int(df["ts_ns"].max()) - t0, 1)
    bucket_ns = max(span // MAX_POINTS_PER_SERIES, 1)
    gpu = (
        pl.when(pl.col("host").is_not_null())
        .then(pl.col("host") + pl.lit(":") + pl.col("gpu").cast(pl.String))
        .otherwise(pl.lit("GPU ") + pl.col("gpu").cast(pl.String))
    )
    return (
        df.with_columns(
            ((pl.col("ts_ns") - t0) // bucket_ns).alias("_bucket"),
            gpu.alias("gpu_label"),
        )
        .group_by("metric", "gpu_label", "_bucket")
        .agg(pl.col("ts_ns").mean().alias("_ts"), pl.col("value").mean())
        .select(
            ((pl.col("_ts") - t0) / 1e9).alias("time_s"),
            pl.col("metric").replace_strict(CHART_METRICS, return_dtype=pl.String),
            pl.col("gpu_label").alias("gpu"),
            pl.col("value")
            * pl.col("metric").replace_strict(_CHART_SCALE, default=1.0, return_dtype=pl.Float64),
        )
        .sort(
            pl.col("metric").replace_strict(
                {label: i for i, label in enumerate(CHART_METRICS.values())}, return_dtype=pl.Int32
            ),
            "gpu",
            "time_s",
        )
    )


def _chart(ctx: AnalysisContext) -> Chart | None:
    """The time-series chart (``dcgm_counters.svg`` when drawn), None without points."""
    points = chart_points(ctx.tables.counters)
    if points.height == 0:
        return None
    from gpu_trace_analyzer.report.counters_chart import counters_chart  # altair: slow import

    spec = counters_chart(points, "DCGM counters per GPU").to_dict()
    return Chart(spec, "DCGM counters over time, per GPU", CHART_STEM)


def _legend() -> Paragraph:
    """How to read the bound column."""
    return Paragraph.of(
        "Bound, after NVIDIA's DCGM guide: compute-bound = SM active >= "
        f"{counters.SM_ACTIVE_EFFECTIVE_MIN} with a tensor or FP pipe >= "
        f"{counters.PIPE_ACTIVE_HIGH_MIN}; memory-bound = DRAM active >= "
        f"{counters.DRAM_ACTIVE_HIGH_MIN} with every pipe below that; under-utilized = SM active "
        f"< {counters.SM_ACTIVE_INEFFECTIVE_MAX} and DRAM active < {counters.DRAM_ACTIVE_LOW_MAX}; "
        "mixed otherwise; unknown without profiling fields. GPU util only says a kernel was "
        "running, not how much of the GPU it used."
    )
