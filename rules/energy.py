"""energy: energy per step and per sample over the profiled steps (DCGM counters).

The window is the profiled steps (first step start to last step end, over every rank). Each
GPU's energy in the window comes from its energy counter (DCGM 156, mJ) when two samples fall
inside, else from integrating power (155), else from the mean power of the samples inside
times the window (a short window between 1 s samples). Energy per step is the energy of all
GPUs over the number of profiled steps; per sample divides that by
``--samples-per-step`` (the global batch) when given.

It needs counters on the same time axis as the trace (`counters.clocks_comparable`: a DCGM
dump merged into a trace's bundle must carry absolute time, as the trace must); with no
sample inside the steps' window it stays silent.
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

_RECOMMENDATION = (
    "Track energy per step (or per sample) across changes, next to step time: it falls with "
    "higher utilization, since idle and stalled GPUs still draw power. For memory- or "
    "host-bound work, a lower power limit (`nvidia-smi -pl`) or locked clocks often cost "
    "little speed and save energy; measure both before adopting it."
)


@dataclass(frozen=True, slots=True)
class EnergyConfig:
    """Settings of energy."""

    min_power_samples: int = 1
    """Power samples inside the steps' window needed for the mean-power fallback."""


@register
class Energy:
    """Energy per profiled step (and per sample with --samples-per-step)."""

    id: ClassVar[str] = "energy"
    title: ClassVar[str] = "Energy per step"
    description: ClassVar[str] = (
        "Energy of every GPU over the profiled steps, from the DCGM energy counter (or power "
        "over time), per step and, with --samples-per-step, per sample. Information only."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"counters", "steps"})
    Config: ClassVar[type[EnergyConfig]] = EnergyConfig

    def check(self, ctx: AnalysisContext, cfg: EnergyConfig) -> Iterable[Finding]:
        """One info finding when energy over the steps' window can be measured."""
        if not counters.clocks_comparable(ctx.tables.meta):
            return
        steps = ctx.tables.steps
        start, end = int(steps["start_ns"].min()), int(steps["end_ns"].max())  # type: ignore[arg-type]
        n_steps = steps["step"].n_unique()
        per_gpu = window_energy(ctx.tables.counters, start, end, cfg)
        if per_gpu.height == 0 or n_steps == 0:
            return
        yield _finding(per_gpu, n_steps, start, end, ctx.options.samples_per_step)


def window_energy(
    counter_table: pl.DataFrame, start_ns: int, end_ns: int, cfg: EnergyConfig
) -> pl.DataFrame:
    """Per GPU: energy_j over [start_ns, end_ns] and how it was measured (energy_source)."""
    measured = counters.energy(counter_table, start_ns, end_ns).drop_nulls("energy_j")
    power = (
        counters.select_window(counter_table, start_ns, end_ns)
        .filter((pl.col("metric") == "power_w") & pl.col("value").is_not_null())
        .group_by("host", "gpu")
        .agg(pl.col("value").mean().alias("power_w_mean"), pl.len().alias("n"))
        .filter(pl.col("n") >= cfg.min_power_samples)
    )
    fallback = power.join(
        measured.select("host", "gpu"), on=["host", "gpu"], how="anti", nulls_equal=True
    ).select(
        "host",
        "gpu",
        (pl.col("power_w_mean") * (end_ns - start_ns) / 1e9).alias("energy_j"),
        pl.lit("mean power x window").alias("energy_source"),
    )
    return pl.concat(
        [measured.select("host", "gpu", "energy_j", "energy_source"), fallback], how="vertical"
    ).sort("host", "gpu", nulls_last=True)


def _finding(
    per_gpu: pl.DataFrame, n_steps: int, start: int, end: int, samples_per_step: int | None
) -> Finding:
    """Info: energy of all GPUs over the steps, per step, per sample."""
    total_j = float(per_gpu["energy_j"].sum())
    per_step = counters.energy_per_step_j(total_j, n_steps)
    gpus = per_gpu.height
    sample_text = ""
    evidence: dict[str, float | int | str] = {
        "energy_j": round(total_j, 3),
        "steps": n_steps,
        "gpus": gpus,
        "window_ns": end - start,
        "energy_per_step_j": round(per_step, 4),
        "energy_per_step_per_gpu_j": round(per_step / gpus, 4),
        "mean_power_w": round(total_j / ((end - start) / 1e9), 2) if end > start else 0.0,
        "energy_sources": ", ".join(sorted(set(per_gpu["energy_source"].to_list()))),
    }
    if samples_per_step:
        per_sample = counters.energy_per_sample_j(total_j, n_steps, samples_per_step)
        evidence["samples_per_step"] = samples_per_step
        evidence["energy_per_sample_j"] = round(per_sample, 6)
        sample_text = f", {per_sample:.3g} J per sample ({samples_per_step} samples per step)"
    summary = (
        f"The {gpus} GPU(s) used {total_j / 1000:.3g} kJ over the {n_steps} profiled steps "
        f"({(end - start) / 1e9:.3g} s): {per_step:.4g} J per step{sample_text}."
    )
    return Finding(
        rule_id=Energy.id,
        severity=Severity.INFO,
        title=Energy.title,
        summary=summary,
        evidence=evidence,
        recommendation=_RECOMMENDATION,
        scope=Scope(start_ns=start, end_ns=end),
        table=EvidenceTable(
            columns=("GPU", "energy J", "J per step", "measured from"),
            rows=[
                [
                    counters.gpu_label(r["host"], int(r["gpu"])),
                    round(float(r["energy_j"]), 2),
                    round(float(r["energy_j"]) / n_steps, 3),
                    str(r["energy_source"]),
                ]
                for r in per_gpu.iter_rows(named=True)
            ],
        ),
    )
