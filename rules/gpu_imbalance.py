"""gpu-imbalance: one GPU of a host works well below its peers (DCGM counters).

Per host with at least two GPUs, each GPU's mean SM active (DCGM 1002) is compared with the
median of the OTHER GPUs of the same host; when SM active was not collected for every GPU of
the host, GPU util (203) is compared instead. A GPU is flagged when it sits at least
``rel_gap_pct`` below its peers' median and the absolute gap is meaningful (0.1 of SM active,
or 10 points of GPU util). In synchronous data- or tensor-parallel work the other GPUs wait
for the slow one at every collective, so the whole node runs at its pace.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import counters
from gpu_trace_analyzer.rules.base import register

_RECOMMENDATION = (
    "Find what differs on the slow GPU: its share of the work (uneven data shards, sequence "
    "lengths or pipeline stages; MoE expert load), its input pipeline (a DataLoader worker "
    "per rank), its placement (CPU/NUMA affinity of its process, PCIe or NVLink topology in "
    "`nvidia-smi topo -m`), and its health (throttling, XID or ECC errors in `dcgmi diag`). "
    "Compare its profiler trace with a peer's."
)


@dataclass(frozen=True, slots=True)
class GpuImbalanceConfig:
    """Thresholds of gpu-imbalance."""

    rel_gap_pct: float = 20.0
    """How far below the median of its peers (in % of that median) a GPU must sit."""
    min_abs_gap_ratio: float = 0.1
    """Minimum absolute gap in mean SM active (0..1) for the SM-active comparison."""
    min_abs_gap_util_pct: float = 10.0
    """Minimum absolute gap in mean GPU util (percentage points) for the util comparison."""
    min_samples: int = 3
    """Samples each GPU needs (of the compared metric) before the host is judged."""


@dataclass(frozen=True, slots=True)
class _Laggard:
    host: str | None
    gpu: int
    metric: str
    value: float
    peer_median: float
    peers: int

    @property
    def gap_pct(self) -> float:
        """Gap below the peer median, in % of the median."""
        return 100.0 * (self.peer_median - self.value) / self.peer_median


@register
class GpuImbalance:
    """One GPU of a host well below its peers on SM active (or GPU util)."""

    id: ClassVar[str] = "gpu-imbalance"
    title: ClassVar[str] = "One GPU works well below its peers on the same host"
    description: ClassVar[str] = (
        "Per host, each GPU's mean DCGM SM active (GPU util when SM active is missing) against "
        "the median of the host's other GPUs: 20% and 0.1 (10 points) below flags the GPU "
        "the others wait for."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"counters"})
    Config: ClassVar[type[GpuImbalanceConfig]] = GpuImbalanceConfig

    def check(self, ctx: AnalysisContext, cfg: GpuImbalanceConfig) -> Iterable[Finding]:
        """One finding listing every lagging GPU, led by the largest gap."""
        summary = ctx.metric("counters.summary", counters.summary_of)
        stats = ctx.metric("counters.stats", lambda t: counters.gpu_stats(t.counters))
        laggards = [lag for host_rows in _hosts(summary) for lag in _lagging(host_rows, stats, cfg)]
        if laggards:
            laggards.sort(key=lambda lag: lag.gap_pct, reverse=True)
            yield _finding(laggards, summary)


def _hosts(summary: pl.DataFrame) -> list[pl.DataFrame]:
    """The summary split by host (null host is one host: a single dmon capture)."""
    if summary.height == 0:
        return []
    return [part for part in summary.partition_by("host", maintain_order=True) if part.height > 1]


def _lagging(
    host_rows: pl.DataFrame, stats: pl.DataFrame, cfg: GpuImbalanceConfig
) -> list[_Laggard]:
    """The GPUs of one host that sit well below their peers."""
    metric = _metric_for(host_rows, stats, cfg)
    if metric is None:
        return []
    values = {int(r["gpu"]): float(r[f"{metric}_mean"]) for r in host_rows.iter_rows(named=True)}
    min_gap = cfg.min_abs_gap_ratio if metric == "sm_active_ratio" else cfg.min_abs_gap_util_pct
    host = host_rows["host"][0]
    out = []
    for gpu, value in values.items():
        peers = [v for g, v in values.items() if g != gpu]
        median = statistics.median(peers)
        if median <= 0:
            continue
        gap = median - value
        if gap >= min_gap and 100.0 * gap / median >= cfg.rel_gap_pct:
            out.append(_Laggard(host, gpu, metric, value, median, len(peers)))
    return out


def _metric_for(
    host_rows: pl.DataFrame, stats: pl.DataFrame, cfg: GpuImbalanceConfig
) -> str | None:
    """SM active when every GPU of the host has enough samples of it, else GPU util."""
    host = host_rows["host"][0]
    gpus = set(host_rows["gpu"].to_list())
    for metric in ("sm_active_ratio", "gpu_util_pct"):
        enough = stats.filter(
            pl.col("host").eq_missing(host)
            & (pl.col("metric") == metric)
            & (pl.col("n") >= cfg.min_samples)
        )
        if set(enough["gpu"].to_list()) >= gpus:
            return metric
    return None


def _finding(laggards: list[_Laggard], summary: pl.DataFrame) -> Finding:
    """The finding for the largest gap, with a table of every lagging GPU."""
    top = laggards[0]
    label = "SM active" if top.metric == "sm_active_ratio" else "GPU util"
    fmt = "{:.2f}" if top.metric == "sm_active_ratio" else "{:.0f}%"
    others = f"; {len(laggards) - 1} more GPU(s) lag their peers" if len(laggards) > 1 else ""
    text = (
        f"{counters.gpu_label(top.host, top.gpu)} averages {label} {fmt.format(top.value)} "
        f"while the median of its {top.peers} peers is {fmt.format(top.peer_median)} "
        f"({top.gap_pct:.0f}% lower): the other GPUs wait for it at every synchronization"
        f"{others}."
    )
    row = summary.filter(pl.col("gpu") == top.gpu, pl.col("host").eq_missing(top.host))
    first = int(row["first_ts_ns"][0]) if row.height else None
    last = int(row["last_ts_ns"][0]) if row.height else None
    span = (last or 0) - (first or 0)
    evidence: dict[str, float | int | str] = {
        "gpu": top.gpu,
        "metric": top.metric,
        f"{top.metric}_gpu": round(top.value, 4),
        f"{top.metric}_peer_median": round(top.peer_median, 4),
        "gap_pct": round(top.gap_pct, 2),
        "peers": top.peers,
        "gpus_lagging": len(laggards),
    }
    if top.host:
        evidence["host"] = top.host
    return Finding(
        rule_id=GpuImbalance.id,
        severity=Severity.WARNING,
        title=GpuImbalance.title,
        summary=text,
        evidence=evidence,
        recommendation=_RECOMMENDATION,
        scope=Scope(device=top.gpu if len(laggards) == 1 else None, start_ns=first, end_ns=last),
        impact_ns=int(span * top.gap_pct / 100.0),
        table=EvidenceTable(
            columns=("GPU", "metric", "value", "peer median", "% below peers"),
            rows=[
                [
                    counters.gpu_label(lag.host, lag.gpu),
                    lag.metric,
                    round(lag.value, 3),
                    round(lag.peer_median, 3),
                    round(lag.gap_pct, 1),
                ]
                for lag in laggards
            ],
        ),
    )
