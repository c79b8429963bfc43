"""`idle-sms`: kernels launch fewer thread blocks than the GPU has SMs, leaving SMs idle.

Estimated SM efficiency is tb_plugin's: each kernel keeps ``min(blocks per SM, 1)`` of the
SMs busy (``blocks per SM`` is Kineto's grid blocks / SM count; without it, the grid's blocks
over the device's SM or CU count); kernels that overlap on other streams add up, capped at 1.
tb_plugin then averages over the whole steps span, idle time counting 0, which mixes in GPU
idle time (`gpu-idle`'s finding). This rule judges the average over the time at least one
compute kernel runs (*busy-time SM efficiency*) and reports tb_plugin's figure beside it.
Communication kernels (NCCL/RCCL, custom all-reduce) use few blocks by design and are left
out. Kernels of zero duration are ignored, as tb_plugin does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import polars as pl
from gpu_trace_analyzer import devices
from gpu_trace_analyzer.context import AnalysisContext, AnalysisOptions
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Severity
from gpu_trace_analyzer.metrics import timeline
from gpu_trace_analyzer.parsers.schema import TraceTables
from gpu_trace_analyzer.rules import _advice
from gpu_trace_analyzer.rules._common import window_scope
from gpu_trace_analyzer.rules.base import RuleConfig, register

_KEYS = ["rank", "device"]
_GRID = ["grid_x", "grid_y", "grid_z"]
_TOP_KERNELS = 8
_NAME_CHARS = 100
#: Float noise left by summing +x and -x in the sweep below.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class IdleSmsConfig(RuleConfig):
    """Thresholds of `idle-sms`."""

    warning_sm_efficiency_pct: float = 50.0
    """Busy-time estimated SM efficiency (%) under which the rule warns."""
    critical_sm_efficiency_pct: float = 25.0
    """Busy-time estimated SM efficiency (%) under which the finding is critical."""
    info_small_grid_time_pct: float = 50.0
    """Share of kernel time (%) in kernels with fewer blocks than SMs at which an
    informational finding is raised even when the efficiency is above the warning level."""


@register
class IdleSms:
    """Grids too small to fill the GPU: estimated SM efficiency while kernels run."""

    id: ClassVar[str] = "idle-sms"
    title: ClassVar[str] = "Kernels launch too few blocks to fill the SMs"
    description: ClassVar[str] = (
        "Estimated SM efficiency (tb_plugin: min(blocks per SM, 1) per kernel, overlapping "
        "kernels summed and capped at 1) averaged over the time compute kernels run, and the "
        "share of kernel time in grids smaller than the SM count; lists the kernels that leave "
        "the most SM time idle."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"kernels"})
    Config: ClassVar[type[IdleSmsConfig]] = IdleSmsConfig

    def check(self, ctx: AnalysisContext, cfg: IdleSmsConfig) -> Iterable[Finding]:
        """One finding over all devices when the busy-time efficiency or grid sizes call for it."""
        kernels = ctx.metric_with_options("idle_sms.kernels", kernel_efficiency)
        if kernels.height == 0:
            return []
        known = kernels.filter(pl.col("sm_eff").is_not_null())
        if known.height == 0:
            return []
        per_device = _per_device(sm_efficiency_segments(known), ctx)
        busy_ns = int(per_device["busy_ns"].sum())
        if busy_ns == 0:
            return []
        eff_ns = float(per_device["eff_ns"].sum())
        busy_eff_pct = 100.0 * eff_ns / busy_ns
        small_ns = int(known.filter(pl.col("sm_eff") < 1.0)["dur_ns"].sum())
        small_pct = 100.0 * small_ns / int(known["dur_ns"].sum())
        severity = _severity(busy_eff_pct, small_pct, cfg)
        if severity is None:
            return []
        worst = per_device.sort("busy_eff_pct", maintain_order=True).row(0, named=True)
        top = _top_kernels(known)
        ranks = per_device["rank"].unique().to_list()
        return [
            Finding(
                rule_id=self.id,
                severity=severity,
                title=self.title,
                summary=_summary(busy_eff_pct, small_pct, top),
                evidence={
                    "sm_efficiency_busy_pct": round(busy_eff_pct, 2),
                    "sm_efficiency_span_pct": round(
                        100.0 * eff_ns / int(per_device["span_ns"].sum()), 2
                    ),
                    "small_grid_time_pct": round(small_pct, 2),
                    "small_grid_time_ns": small_ns,
                    "kernel_busy_ns": busy_ns,
                    "idle_sm_time_ns": round(busy_ns - eff_ns),
                    "num_sms": int(kernels["num_sms"].max() or 0),  # type: ignore[arg-type]
                    "worst_rank": int(worst["rank"]),
                    "worst_device": int(worst["device"]),
                    "worst_sm_efficiency_busy_pct": round(float(worst["busy_eff_pct"]), 2),
                    "kernels_without_grid": int(kernels["sm_eff"].null_count()),
                },
                recommendation=_recommendation(top, ctx),
                scope=window_scope(ctx.tables, ranks),
                impact_ns=round(busy_ns - eff_ns),
                table=_table(top),
            )
        ]


def kernel_efficiency(t: TraceTables, options: AnalysisOptions) -> pl.DataFrame:
    """Compute kernels in the analysis window with ``num_sms`` and ``sm_eff`` = min(bps, 1);
    names and categories stay categorical.

    Columns: rank, device, name, category, start_ns, end_ns, dur_ns, blocks, num_sms,
    blocks_per_sm, sm_eff (null when neither ``blocks per SM`` nor a grid and SM count exist;
    the rule leaves such kernels out and counts them in ``kernels_without_grid``).
    Times are clipped to the rank's analysis window (the profiled steps).
    """
    kernels = (
        t.kernels.lazy()
        .filter((pl.col("category") != "comm") & (pl.col("dur_ns") > 0))
        .select(*_KEYS, "name", "category", "start_ns", "dur_ns", *_GRID, "blocks_per_sm")
        .collect()
    )
    if kernels.height == 0:
        return _empty_kernels()
    windows = timeline.analysis_windows(t, "steps").select(
        "rank", "window_start_ns", "window_end_ns"
    )
    sms = _sm_counts(t, options, kernels)
    blocks = pl.col("grid_x") * pl.col("grid_y") * pl.col("grid_z")
    clipped = timeline.with_windows(kernels, windows).with_columns(
        pl.max_horizontal("start_ns", "window_start_ns").alias("start_ns"),
        pl.min_horizontal(pl.col("start_ns") + pl.col("dur_ns"), "window_end_ns").alias("end_ns"),
    )
    clipped = timeline.attach(
        clipped.filter(pl.col("end_ns") > pl.col("start_ns")), sms, _KEYS, how="left"
    ).with_columns(blocks.cast(pl.Int64).alias("blocks"))
    bps = pl.coalesce(
        pl.col("blocks_per_sm"), pl.col("blocks").cast(pl.Float64) / pl.col("num_sms")
    )
    return clipped.select(
        *_KEYS,
        "name",
        "category",
        "start_ns",
        "end_ns",
        (pl.col("end_ns") - pl.col("start_ns")).alias("dur_ns"),
        "blocks",
        pl.coalesce(
            "num_sms",
            pl.when(pl.col("blocks_per_sm") > 0)
            .then((pl.col("blocks") / pl.col("blocks_per_sm")).round(0))
            .cast(pl.Int64),
        ).alias("num_sms"),
        bps.alias("blocks_per_sm"),
        pl.min_horizontal(bps, pl.lit(1.0)).alias("sm_eff"),
    )


def _empty_kernels() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "rank": pl.Int32(),
            "device": pl.Int32(),
            "name": pl.Categorical(),
            "category": pl.Categorical(),
            "start_ns": pl.Int64(),
            "end_ns": pl.Int64(),
            "dur_ns": pl.Int64(),
            "blocks": pl.Int64(),
            "num_sms": pl.Int64(),
            "blocks_per_sm": pl.Float64(),
            "sm_eff": pl.Float64(),
        }
    )


def _sm_counts(t: TraceTables, options: AnalysisOptions, kernels: pl.DataFrame) -> pl.DataFrame:
    """SM/CU count per (rank, device) that ran kernels: the trace's own, else the database's.

    A device the trace does not describe (kernels on device 2 while ``deviceProperties``
    lists only device 0, as with HIP_VISIBLE_DEVICES) takes the count its rank's described
    devices agree on, else the one every described device agrees on.
    """
    try:
        resolved = devices.resolve(t.meta, options)
    except Exception:  # a bad --device is reported by the report builder, not here
        resolved = {}
    described: dict[tuple[int, int], int] = {}
    for info in t.meta.devices:
        count = info.num_sms
        entry = resolved.get((info.rank, info.device))
        if not count and entry is not None and entry.spec is not None:
            count = entry.spec.sm_count or None
        if count:
            described[(info.rank, info.device)] = int(count)
    everywhere = set(described.values())
    rows: dict[tuple[int, int], int] = {}
    for rank, device in timeline.distinct_rows(kernels, ["rank", "device"]).iter_rows():
        if (rank, device) in described:
            rows[(rank, device)] = described[(rank, device)]
            continue
        on_rank = {c for (r, _), c in described.items() if r == rank}
        agreed = on_rank if on_rank else everywhere
        if len(agreed) == 1:
            rows[(rank, device)] = next(iter(agreed))
    return pl.DataFrame(
        {
            "rank": [k[0] for k in rows],
            "device": [k[1] for k in rows],
            "num_sms": list(rows.values()),
        },
        schema={"rank": pl.Int32(), "device": pl.Int32(), "num_sms": pl.Int64()},
    )


def sm_efficiency_segments(kernels: pl.DataFrame) -> pl.DataFrame:
    """Piecewise-constant SM efficiency per (rank, device) while compute kernels run.

    A sweep over kernel starts and ends: between consecutive boundaries the efficiency is
    the sum of the running kernels' ``sm_eff`` capped at 1. Returns rank, device, start_ns,
    end_ns, sm_eff for every stretch with at least one kernel running, by rank, device, time.
    The sweep runs one device at a time and groups boundaries that fall on the same time
    after sorting on it (starts before ends, each in table order): several times faster
    than hashing (rank, device, time), and each group's sum is added in that fixed order.
    """
    devices = kernels.select(*_KEYS, "start_ns", "end_ns", "sm_eff").partition_by(
        _KEYS, maintain_order=True
    )
    if not devices:
        return _device_segments(kernels)
    keys = pl.concat([part.select(_KEYS).head(1) for part in devices]).with_row_index()
    order = keys.sort(_KEYS)["index"]
    return pl.concat([_device_segments(devices[i]) for i in order])


def _device_segments(kernels: pl.DataFrame) -> pl.DataFrame:
    """`sm_efficiency_segments` of the kernels of one (rank, device)."""
    eff = pl.col("sm_eff").fill_null(0.0)
    starts = kernels.select(
        pl.col("start_ns").alias("t_ns"), eff.alias("d_eff"), pl.lit(1).alias("d_count")
    )
    ends = kernels.select(
        pl.col("end_ns").alias("t_ns"), (-eff).alias("d_eff"), pl.lit(-1).alias("d_count")
    )
    points = (
        pl.concat([starts, ends])
        .sort("t_ns", maintain_order=True)
        .group_by("t_ns", maintain_order=True)
        .agg(pl.col("d_eff").sum(), pl.col("d_count").sum())
        .with_columns(
            pl.col("d_eff").cum_sum().alias("level"),
            pl.col("d_count").cum_sum().alias("running"),
            pl.col("t_ns").shift(-1).alias("end_ns"),
        )
    )
    return points.filter((pl.col("running") > 0) & pl.col("end_ns").is_not_null()).select(
        *(pl.lit(kernels[key].first(), dtype=kernels[key].dtype).alias(key) for key in _KEYS),
        pl.col("t_ns").alias("start_ns"),
        "end_ns",
        pl.when(pl.col("level") < _EPSILON)
        .then(0.0)
        .otherwise(pl.col("level").clip(upper_bound=1.0))
        .alias("sm_eff"),
    )


def _per_device(segments: pl.DataFrame, ctx: AnalysisContext) -> pl.DataFrame:
    """Per (rank, device), in that order (sums over the rows, and the worst device among
    equals, must not depend on a hash order): busy time, efficiency-weighted time and the
    window's span."""
    windows = timeline.analysis_windows(ctx.tables, "steps").select(
        "rank", (pl.col("window_end_ns") - pl.col("window_start_ns")).alias("span_ns")
    )
    dt = pl.col("end_ns") - pl.col("start_ns")
    return (
        segments.group_by(_KEYS)
        .agg(dt.sum().alias("busy_ns"), (dt * pl.col("sm_eff")).sum().alias("eff_ns"))
        .sort(_KEYS)
        .join(windows, on="rank", how="left", maintain_order="left")
        .with_columns((100.0 * pl.col("eff_ns") / pl.col("busy_ns")).alias("busy_eff_pct"))
    )


def _severity(busy_eff_pct: float, small_pct: float, cfg: IdleSmsConfig) -> Severity | None:
    """Critical / warning by busy-time efficiency; info when small grids dominate anyway."""
    if busy_eff_pct < cfg.critical_sm_efficiency_pct:
        return Severity.CRITICAL
    if busy_eff_pct < cfg.warning_sm_efficiency_pct:
        return Severity.WARNING
    if small_pct >= cfg.info_small_grid_time_pct:
        return Severity.INFO
    return None


def _top_kernels(kernels: pl.DataFrame) -> pl.DataFrame:
    """Kernels (by name) that leave the most SM time idle: sum of dur x (1 - sm_eff)."""
    dur = pl.col("dur_ns")
    return (
        kernels.filter(pl.col("sm_eff") < 1.0)
        .group_by("name", "category")
        .agg(
            pl.len().alias("calls"),
            dur.sum().alias("time_ns"),
            (dur * (1.0 - pl.col("sm_eff"))).sum().alias("idle_sm_ns"),
            ((dur * pl.col("blocks")).sum() / dur.sum()).alias("blocks"),
            pl.col("num_sms").max(),
            ((dur * pl.col("sm_eff")).sum() / dur.sum()).alias("sm_eff"),
        )
        .with_columns(pl.col("name", "category").cast(pl.String))
        .sort(["idle_sm_ns", "name"], descending=[True, False])
        .head(_TOP_KERNELS)
    )


def _summary(busy_eff_pct: float, small_pct: float, top: pl.DataFrame) -> str:
    """One sentence: efficiency while busy, small-grid share, the worst kernel."""
    text = (
        f"While kernels run, an estimated {busy_eff_pct:.0f}% of the SMs are in use: "
        f"{small_pct:.0f}% of compute-kernel time is in grids with fewer blocks than SMs"
    )
    if top.height:
        first = top.row(0, named=True)
        sms = first["num_sms"]
        grid = f"{first['blocks']:.0f} blocks" + (f" on {sms} SMs" if sms else "")
        text += f", led by `{_short(first['name'])}` ({grid}, {first['time_ns'] / 1e6:.2f} ms)"
    return text + "."


def _recommendation(top: pl.DataFrame, ctx: AnalysisContext | None = None) -> str:
    """Fix by the kind of kernel that wastes the most SM time, in the workload's terms."""
    categories = set(top["category"].head(3).to_list()) if top.height else set()
    training = ctx is None or _advice.profile(ctx).is_training
    batch = (
        _advice.batch_advice(ctx)
        if ctx is not None
        else "raise the batch size (or micro-batch, or pack sequences)"
    )
    parts = []
    if categories & {"gemm", "conv", "attention"}:
        parts.append(
            f"For the small GEMMs/convolutions: {batch}, so each launch has enough output "
            "tiles; let the BLAS library pick split-K or stream-K kernels (torch.compile "
            "mode='max-autotune' tries them); batch independent small matmuls into one bmm or "
            "grouped GEMM."
        )
    if categories - {"gemm", "conv", "attention"}:
        fused = (
            "torch.compile, or foreach / fused optimizer implementations"
            if training
            else ("torch.compile")
        )
        parts.append(
            f"For the small elementwise/reduction kernels: fuse them ({fused}) so one launch "
            "covers many tensors, and run independent small work on separate streams so grids "
            "overlap."
        )
    if not parts:
        parts.append("Raise the work per launch, or fuse small kernels.")
    return " ".join(parts)


def _short(name: str) -> str:
    """A kernel name cut to a readable length (the head carries the distinguishing part)."""
    name = " ".join(name.split())
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


def _table(top: pl.DataFrame) -> EvidenceTable:
    """Kernels with the most idle SM time: grid vs SM count, calls, time."""
    rows: list[list[str | int | float | None]] = [
        [
            _short(r["name"]),
            r["category"],
            int(r["calls"]),
            round(r["time_ns"] / 1e6, 3),
            round(float(r["blocks"]), 1),
            int(r["num_sms"]) if r["num_sms"] is not None else None,
            round(100.0 * float(r["sm_eff"]), 1),
            round(r["idle_sm_ns"] / 1e6, 3),
        ]
        for r in top.iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=[
            "kernel",
            "category",
            "calls",
            "time (ms)",
            "grid blocks (time-weighted)",
            "SMs",
            "est. SM efficiency (%)",
            "idle SM time (ms)",
        ],
        rows=rows,
    )
