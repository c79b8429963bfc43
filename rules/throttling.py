"""throttling: clocks held down by power or thermal limits while the GPU is busy (DCGM).

DCGM field 112 (clock throttle reasons, "clocks event reasons" in DCGM 4) is a bitmask of why
the SM clock is below its maximum. Only busy samples count (an idle GPU drops its clocks by
design, bit 0x1). Reasons reported, as groups of bits:

- power: 0x4 SW power cap (the board's power limit), 0x80 HW power brake;
- thermal: 0x20 SW thermal slowdown, 0x40 HW thermal slowdown;
- hw_slowdown: 0x8 HW slowdown (the board's power brake or overheating).

Evidence gives each group's share of busy samples and the mean SM clock with and without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import counters
from gpu_trace_analyzer.rules.base import register

_GROUPS = ("power", "thermal", "hw_slowdown")
_RECOMMENDATIONS = {
    "power": (
        "The board hits its power limit while busy, so clocks drop. Check the enforced limit "
        "(`nvidia-smi -q -d POWER`: Power Limit vs Default/Max) and restore it if someone "
        "lowered it (`nvidia-smi -pl`); on a healthy board at its default limit this is the "
        "expected ceiling of dense math, so compare throughput per watt rather than clocks, "
        "and prefer lower-precision math (bf16/fp8) that does more work per joule."
    ),
    "thermal": (
        "The GPU slows down to cool off: check inlet temperature, fan or liquid-cooling "
        "health, airflow and blanking panels in the chassis (`nvidia-smi -q -d TEMPERATURE`, "
        "`dcgmi diag`); HW thermal slowdown means the hardware protection tripped and needs a "
        "look from the datacenter team."
    ),
    "hw_slowdown": (
        "Hardware slowdown is asserted (power brake from the power supply or an over-"
        "temperature signal): check PSU and board health with `nvidia-smi -q -d PERFORMANCE` "
        "and `dcgmi diag -r 3`, and report the node if it persists."
    ),
}


@dataclass(frozen=True, slots=True)
class ThrottlingConfig:
    """Thresholds of throttling."""

    warning_share_of_busy_pct: float = 5.0
    """Share of busy samples with a power or thermal reason set at which a warning is raised."""
    critical_share_of_busy_pct: float = 50.0
    """Share of busy samples at which the finding is critical."""
    min_busy_samples: int = 3
    """Busy samples a GPU needs before it is judged."""


@register
class Throttling:
    """Power or thermal throttle reasons set while the GPU is busy."""

    id: ClassVar[str] = "throttling"
    title: ClassVar[str] = "Clocks throttled by power or thermal limits while busy"
    description: ClassVar[str] = (
        "DCGM clock throttle reasons (field 112) over busy samples: share of time each of "
        "power (SW power cap, HW power brake), thermal (SW/HW thermal slowdown) and HW "
        "slowdown held the clocks down, with the SM clock with and without it."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"counters"})
    Config: ClassVar[type[ThrottlingConfig]] = ThrottlingConfig

    def check(self, ctx: AnalysisContext, cfg: ThrottlingConfig) -> Iterable[Finding]:
        """One finding over every GPU with a throttle group at or above the warning share."""
        shares = ctx.metric("counters.throttle", counters.throttle_of)
        hits = shares.filter(
            pl.col("reason").is_in(_GROUPS)
            & (pl.col("busy_samples") >= cfg.min_busy_samples)
            & (100.0 * pl.col("share_of_busy") >= cfg.warning_share_of_busy_pct)
        ).sort("share_of_busy", descending=True)
        if hits.height:
            summary = ctx.metric("counters.summary", counters.summary_of)
            yield _finding(hits, shares, summary, cfg)


def _finding(
    hits: pl.DataFrame, shares: pl.DataFrame, summary: pl.DataFrame, cfg: ThrottlingConfig
) -> Finding:
    """The finding for the most throttled GPU and reason, listing every hit."""
    worst = hits.row(0, named=True)
    host, gpu = worst["host"], int(worst["gpu"])
    reason = str(worst["reason"])
    share_pct = 100.0 * float(worst["share_of_busy"])
    mine = shares.filter(
        (pl.col("gpu") == gpu) & pl.col("host").eq_missing(host) & pl.col("reason").is_in(_GROUPS)
    )
    by_reason = {
        str(r["reason"]): 100.0 * float(r["share_of_busy"]) for r in mine.iter_rows(named=True)
    }
    clock_on, clock_off = (
        worst["sm_clock_mhz_throttled_mean"],
        worst["sm_clock_mhz_unthrottled_mean"],
    )
    stats = summary.filter((pl.col("gpu") == gpu) & pl.col("host").eq_missing(host))
    row = stats.row(0, named=True) if stats.height else {}
    severity = (
        Severity.CRITICAL if share_pct >= cfg.critical_share_of_busy_pct else Severity.WARNING
    )
    clock_text = (
        f"; SM clock {float(clock_on):.0f} MHz while throttled vs {float(clock_off):.0f} MHz "
        "otherwise"
        if clock_on is not None and clock_off is not None
        else ""
    )
    others = hits.select("host", "gpu").unique().height - 1
    also = f"; {others} more GPU(s) throttled" if others > 0 else ""
    detail = ", ".join(f"{name} {pct:.0f}%" for name, pct in sorted(by_reason.items()) if pct > 0)
    summary_text = (
        f"{counters.gpu_label(host, gpu)} had its clocks held down by {reason} limits in "
        f"{share_pct:.0f}% of {int(worst['busy_samples'])} busy samples ({detail}){clock_text}"
        f"{also}."
    )
    evidence: dict[str, float | int | str] = {
        "gpu": gpu,
        "dominant_reason": reason,
        "busy_samples": int(worst["busy_samples"]),
        "gpus_affected": others + 1,
    }
    if host:
        evidence["host"] = str(host)
    for name in _GROUPS:
        evidence[f"{name}_share_of_busy_pct"] = round(by_reason.get(name, 0.0), 2)
    if clock_on is not None:
        evidence["sm_clock_throttled_mhz"] = round(float(clock_on), 1)
    if clock_off is not None:
        evidence["sm_clock_unthrottled_mhz"] = round(float(clock_off), 1)
    for key, out in (("power_w_max", "power_max_w"), ("gpu_temp_c_mean", "gpu_temp_mean_c")):
        if row.get(key) is not None:
            evidence[out] = round(float(row[key]), 1)
    span = int(row.get("last_ts_ns") or 0) - int(row.get("first_ts_ns") or 0)
    return Finding(
        rule_id=Throttling.id,
        severity=severity,
        title=Throttling.title,
        summary=summary_text,
        evidence=evidence,
        recommendation=_RECOMMENDATIONS[reason],
        scope=Scope(
            device=gpu if others == 0 else None,
            start_ns=row.get("first_ts_ns"),
            end_ns=row.get("last_ts_ns"),
        ),
        impact_ns=int(span * float(worst["share_of_busy"])),
        table=_table(hits),
    )


def _table(hits: pl.DataFrame) -> EvidenceTable:
    """Every (GPU, reason) over the threshold with its share and clocks."""
    rows = [
        [
            counters.gpu_label(r["host"], int(r["gpu"])),
            str(r["reason"]),
            round(100.0 * float(r["share_of_busy"]), 1),
            f"{int(r['throttled_samples'])}/{int(r['busy_samples'])}",
            _r(r["sm_clock_mhz_throttled_mean"]),
            _r(r["sm_clock_mhz_unthrottled_mean"]),
        ]
        for r in hits.iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=(
            "GPU",
            "reason",
            "% of busy samples",
            "samples",
            "SM clock throttled MHz",
            "SM clock otherwise MHz",
        ),
        rows=rows,
    )


def _r(value: float | None) -> float | None:
    """A clock rounded to 1 MHz for the table."""
    return None if value is None else round(float(value))
