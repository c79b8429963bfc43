"""Scaling across GPU counts: `scale` several loaded runs of one job into a `ScalingReport`.

Nothing here parses or defines a metric anew: each run is one `analyzer.api.load`, and every
figure is read from that run's own metrics:

- step time: `analyzer.diff.per_step` (each step charged with its own work by
  `analyzer.metrics.steps`, the slowest rank per step), its median per run;
- speedup and parallel efficiency against the run with the fewest GPUs (N0 GPUs, median
  step time T0). Strong scaling (the same global work per step at every size):
  speedup = T0 / TN, ideal N / N0, efficiency = N0 x T0 / (N x TN). Weak scaling (the same
  work per GPU): throughput grows as N / TN, speedup = (N x T0) / (N0 x TN), ideal N / N0,
  efficiency = T0 / TN (the per-GPU throughput ratio);
- communication and exposed communication: the timeline breakdown
  (`analyzer.sections.overview.overall_shares`). A CPU-only trace has no GPU timeline: its
  communication is the union of the gloo collectives' CPU ranges (``gloo:*`` ops, which run
  on gloo's worker threads; ``c10d::*`` ops counted as calls) inside the rank's steps;
  exposure cannot be told from CPU ranges and is left out, said so;
- transfer and wait (GPU runs): each collective lasts only its transfer on the rank that
  arrived last (`transfer_per_step`); the rest of the communication is waiting for slower
  ranks, which the straggler and cold-start recommendations claim, so the "hide
  communication" gain is capped at the transfer;
- CPU ranks sharing one host (gloo): the effective all-reduce rate (the gloo ops' tensor
  bytes over the collective time); below `CPU_COMM_FLOOR_GBS` the collective time is
  waiting for descheduled peers, and dedicated cores come before any DDP advice;
- per rank: completed steps, step-time distribution (min, max, mean, population std, share of
  steps within `WITHIN_PCT` of the rank's mean), GPU compute per step, idle, collective wait
  and peak memory (`rules.stragglers.rank_table`, `rules.memory_headroom.peaks`), cold start
  (`rules.cold_start`'s first-step-against-median test with its configured thresholds, in
  step time and in the rank's own work, `own_work`);
- status per rank: ``failed`` when it completed fewer steps than the rank with the most (a
  rank the world size names but no file holds is noted, not judged: profilers often record
  a sample of the ranks), ``slow`` when its median step time
  or its GPU compute per step is at least the stragglers rule's ``warning_spread_pct`` (10%)
  above the run's median over ranks, else ``ok``. A failed rank is listed, never averaged
  away: the run's row counts it.

Every interpretation sentence is built here from the numbers it quotes; recommendations are
ranked by the step time they could give back (a failed rank first: no figure of that run is
trustworthy until it is explained).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import polars as pl
from gpu_trace_analyzer.api import Analysis
from gpu_trace_analyzer.diff import per_step
from gpu_trace_analyzer.errors import BadConfigError
from gpu_trace_analyzer.metrics.steps import step_metrics
from gpu_trace_analyzer.runs import run_name
from gpu_trace_analyzer.sections import overview

if TYPE_CHECKING:
    from gpu_trace_analyzer.rules.cold_start import ColdStartConfig

Mode = Literal["strong", "weak"]
Status = Literal["ok", "slow", "failed"]

#: A step is "within" the rank's distribution when it is this close to the rank's mean (%).
WITHIN_PCT: Final = 15.0
#: CPU ops that are gloo collectives executing (worker threads), and c10d calls.
GLOO_PATTERN: Final = r"^gloo:"
C10D_PATTERN: Final = r"^c10d::"
_STATUS_ORDER: Final = {"ok": 0, "slow": 1, "failed": 2}
#: Effective all-reduce rate (GB/s, bytes per rank / collective time) below which CPU ranks
#: sharing one host are not moving data: a memory copy over loopback runs at several GB/s,
#: so the collective time is waiting (descheduled peers), not transfer.
CPU_COMM_FLOOR_GBS: Final = 1.0


# -- loading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunInput:
    """One run: its label, inputs, analysis and GPU count (and where the count came from)."""

    label: str
    paths: tuple[str, ...]
    analysis: Analysis
    gpus: int
    gpus_source: str


def parse_gpus(items: Sequence[str]) -> dict[str, int]:
    """``--gpus RUN=N`` values as {RUN: N}; a malformed item is a `BadConfigError`."""
    out: dict[str, int] = {}
    for item in items:
        m = re.fullmatch(r"(.+)=(\d+)", item.strip())
        if m is None or int(m.group(2)) < 1:
            raise BadConfigError(f"--gpus {item!r}: expected RUN=N with N >= 1")
        out[m.group(1)] = int(m.group(2))
    return out


def _label(path: Path, taken: set[str]) -> str:
    """The run's short name (`analyzer.runs.run_name`), or its path when that name is taken."""
    name = run_name(path)
    return name if name not in taken else str(path)


def world_size(a: Analysis) -> tuple[int, str]:
    """The run's GPU count and its source: the trace's ``distributedInfo`` world size, else
    the number of rank files, else the ranks that ran kernels, else 1."""
    meta = a.meta
    if meta.world_size:
        return int(meta.world_size), "trace metadata (world size)"
    if len(meta.ranks) > 1:
        return len(meta.ranks), "number of rank files"
    ranks = a.kernels["rank"].n_unique() if a.kernels.height else 0
    if ranks > 1:
        return int(ranks), "ranks with GPU work"
    return 1, "single trace, no world size recorded"


def load_runs(
    paths: Sequence[Path],
    gpus: Mapping[str, int] | None = None,
    *,
    device: str | None = None,
    config: Path | None = None,
) -> list[RunInput]:
    """Load each path as one run (a file, a per-rank directory, a Parquet export).

    ``gpus`` maps a run's label or path (as given) to its GPU count, overriding the trace.
    Labels follow `analyzer.runs.run_name`, as `analyze sweep` names its runs.
    """
    from gpu_trace_analyzer.api import load

    gpus = dict(gpus or {})
    known = {str(p) for p in paths}
    taken: set[str] = set()
    runs = []
    for path in paths:
        label = _label(path, taken)
        taken.add(label)
        a = load(path, device=device, config=config)
        override = gpus.get(label, gpus.get(str(path)))
        if override is not None:
            n, source = override, "--gpus"
        else:
            n, source = world_size(a)
        runs.append(RunInput(label, tuple(a.meta.paths) or (str(path),), a, n, source))
    unknown = sorted(k for k in gpus if k not in taken and k not in known)
    if unknown:
        raise BadConfigError(
            f"--gpus names {', '.join(unknown)}, not a run given "
            f"(runs: {', '.join(r.label for r in runs)})"
        )
    return runs


# -- the report model ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency:
    """A rank's step-time distribution (ns): min, max, mean, population std, share within
    `WITHIN_PCT` of the mean."""

    steps: int
    min_ns: float
    max_ns: float
    mean_ns: float
    std_ns: float
    within_pct: float

    @property
    def cv_pct(self) -> float:
        """Coefficient of variation, %."""
        return 100.0 * self.std_ns / self.mean_ns if self.mean_ns else 0.0


@dataclass(frozen=True, slots=True)
class ColdStart:
    """A rank's first profiled step against the median of its other steps."""

    first_step: int
    first_ns: float
    median_ns: float
    ratio: float
    excess_ns: float


@dataclass(frozen=True, slots=True)
class RankRow:
    """One rank of one run: the symmetry table's row."""

    run: str
    gpus: int
    rank: int
    node: str
    steps: int
    step_median_ns: float | None
    compute_per_step_ns: float | None
    idle_pct: float | None
    comm_pct: float | None
    wait_per_step_ns: float | None
    memory_peak_bytes: float | None
    latency: Latency | None
    cold_start: ColdStart | None
    step_ns: tuple[int, ...]
    status: Status
    reasons: tuple[str, ...]

    @property
    def throughput_steps_per_s(self) -> float | None:
        """Steps per second at the rank's median step time."""
        return 1e9 / self.step_median_ns if self.step_median_ns else None


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One host of one run: its ranks pooled."""

    run: str
    gpus: int
    node: str
    ranks: tuple[int, ...]
    steps_min: int
    steps_max: int
    step_median_ns: float | None
    rank_cv_pct: float | None
    idle_pct: float | None
    memory_peak_bytes: float | None
    status: Status

    @property
    def throughput_steps_per_s(self) -> float | None:
        """Steps per second at the node's median step time."""
        return 1e9 / self.step_median_ns if self.step_median_ns else None


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run: GPU count, step time, speedup and efficiency, communication."""

    label: str
    paths: tuple[str, ...]
    gpus: int
    gpus_source: str
    has_gpu: bool
    steps: int
    step_median_ns: float
    speedup: float | None
    ideal_speedup: float
    efficiency_pct: float | None
    comm_pct: float | None
    exposed_comm_pct: float | None
    comm_per_step_ns: float | None
    exposed_comm_per_step_ns: float | None
    comm_source: str
    collectives_per_step: float | None
    transfer_per_step_ns: float | None
    wait_per_step_ns: float | None
    comm_bytes_per_step: float | None
    comm_gbs: float | None
    shared_cpu_host: str | None
    rank_cv_pct: float | None
    failed_ranks: tuple[int, ...]
    slow_ranks: tuple[int, ...]
    cold_ranks: tuple[int, ...]

    @property
    def throughput_steps_per_s(self) -> float | None:
        """Steps per second at the run's median step time."""
        return 1e9 / self.step_median_ns if self.step_median_ns else None


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Advice with the step time it could give back per step (None: a correctness issue
    that comes first)."""

    title: str
    gain_ns_per_step: float | None
    text: str
    first_because: str = "a correctness issue"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What the statuses and outliers use, stated in every output."""

    slow_pct: float
    within_pct: float
    cold_ratio: float
    cold_min_excess_ms: float
    cold_min_steps: int


@dataclass(frozen=True, slots=True)
class ScalingReport:
    """Everything the renderers show."""

    mode: Mode
    baseline: str
    runs: tuple[RunRow, ...]
    ranks: tuple[RankRow, ...]
    nodes: tuple[NodeRow, ...]
    thresholds: Thresholds
    scaling_text: tuple[str, ...]
    symmetry_text: tuple[str, ...]
    latency_text: tuple[str, ...]
    cold_text: tuple[str, ...]
    recommendations: tuple[Recommendation, ...]
    notes: tuple[str, ...] = field(default=())

    def run(self, label: str) -> RunRow:
        """The run labelled ``label``."""
        return next(r for r in self.runs if r.label == label)

    def ranks_of(self, label: str) -> tuple[RankRow, ...]:
        """The rank rows of one run."""
        return tuple(r for r in self.ranks if r.run == label)


# -- per rank -----------------------------------------------------------------------------


def latency(values: Sequence[int], within_pct: float = WITHIN_PCT) -> Latency | None:
    """The distribution of ``values`` (ns); None when empty."""
    if not values:
        return None
    mean = statistics.fmean(values)
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    within = sum(abs(v - mean) <= within_pct / 100.0 * mean for v in values)
    return Latency(
        len(values),
        float(min(values)),
        float(max(values)),
        mean,
        std,
        100.0 * within / len(values),
    )


def _cold_starts(a: Analysis) -> dict[int, ColdStart]:
    """Ranks whose first step passes `rules.cold_start`'s test (its configured ratio, excess
    and minimum steps) both in step time and in its own work (`own_work`)."""
    from gpu_trace_analyzer.rules.cold_start import _first_vs_median

    cfg = a.config.rule_config("cold-start")
    stats = step_metrics(a.context).with_columns(pl.col("step_ns").alias("dur_ns"))
    if stats.height == 0:
        return {}
    own = own_work(a)
    rows = _first_vs_median(stats, cfg.min_steps).filter(
        (pl.col("ratio") >= cfg.warning_ratio) & (pl.col("excess_ns") >= cfg.min_excess_ms * 1e6)
    )
    return {
        int(r["rank"]): ColdStart(
            int(r["first_step"]),
            float(r["first_ns"]),
            float(r["median_ns"]),
            float(r["ratio"]),
            float(r["excess_ns"]),
        )
        for r in rows.iter_rows(named=True)
        if _own_work_slower(own.get(int(r["rank"]), []), cfg)
    }


def _own_work_slower(own: Sequence[int], cfg: ColdStartConfig) -> bool:
    """`rules.cold_start`'s "own work" test: the first step's own work (``own``, per step in
    order) passes the rule's ratio and excess against the median of the other steps'. A long
    first step that is collective wait (the rank waiting for its peers) is not its cold start."""
    if len(own) < max(cfg.min_steps, 2):
        return False
    med = statistics.median(own[1:])
    return (
        med > 0 and own[0] >= cfg.warning_ratio * med and (own[0] - med >= cfg.min_excess_ms * 1e6)
    )


def own_work(a: Analysis) -> dict[int, list[int]]:
    """Per rank, each step's own work (ns, steps in order), net of collectives.

    GPU runs: the step time less the union of the rank's communication kernels inside the
    step (transfer and wait). CPU-only runs: gloo's collectives run on worker threads beside
    the main thread, and the main thread's waiting for them is not an op, so the step less
    the collective would still hold the wait; the own work is the union of the rank's
    non-collective CPU ops (``ProfilerStep#``, ``gloo:*`` and ``c10d::*`` left out) inside
    the step: its compute.
    """
    from gpu_trace_analyzer.metrics import segments

    steps = step_metrics(a.context).sort("rank", "start_ns")
    has_gpu = bool(a.kernels.height)
    if has_gpu:
        src = a.kernels.filter(pl.col("category").cast(pl.String) == "comm")
    else:
        src = a.ops.filter(
            ~pl.col("name")
            .cast(pl.String)
            .str.contains(f"{GLOO_PATTERN}|{C10D_PATTERN}|^ProfilerStep#")
        )
    src = src.select("rank", "start_ns", (pl.col("start_ns") + pl.col("dur_ns")).alias("end_ns"))
    out: dict[int, list[int]] = {}
    for rank, lo, hi, step_ns in steps.select("rank", "start_ns", "end_ns", "step_ns").iter_rows():
        mine = src.filter(
            (pl.col("rank") == rank) & (pl.col("start_ns") < hi) & (pl.col("end_ns") > lo)
        )
        covered = 0
        if mine.height:
            s, e = segments.merge(mine["start_ns"].clip(lo, hi), mine["end_ns"].clip(lo, hi))
            covered = int((e - s).sum())
        own = max(int(step_ns) - covered, 0) if has_gpu else covered
        out.setdefault(int(rank), []).append(own)
    return out


def _gloo_union(a: Analysis) -> pl.DataFrame:
    """Per rank (CPU-only traces): ``comm_ns``, the union of the gloo collectives' CPU
    ranges clipped to the rank's steps window, ``span_ns`` that window, ``calls`` the
    ``c10d::`` collective calls inside it."""
    from gpu_trace_analyzer.metrics import segments

    steps = step_metrics(a.context)
    ops = a.ops.with_columns(pl.col("name").cast(pl.String).alias("_name"))
    rows = []
    for (rank,), mine in steps.group_by(["rank"]):
        lo, hi = int(mine["start_ns"].min()), int(mine["end_ns"].max())  # type: ignore[arg-type]
        mine_ops = ops.filter(
            (pl.col("rank") == rank)
            & (pl.col("start_ns") < hi)
            & (pl.col("start_ns") + pl.col("dur_ns") > lo)
        )
        gloo = mine_ops.filter(pl.col("_name").str.contains(GLOO_PATTERN))
        calls = mine_ops.filter(pl.col("_name").str.contains(C10D_PATTERN)).height
        comm = 0
        if gloo.height:
            s, e = segments.merge(
                gloo["start_ns"].clip(lo, hi), (gloo["start_ns"] + gloo["dur_ns"]).clip(lo, hi)
            )
            comm = int((e - s).sum())
        rows.append((int(rank), comm, hi - lo, calls, gloo.height))
    return pl.DataFrame(
        rows,
        schema={
            "rank": pl.Int32,
            "comm_ns": pl.Int64,
            "span_ns": pl.Int64,
            "calls": pl.Int64,
            "gloo_ops": pl.Int64,
        },
        orient="row",
    )


def transfer_per_step(a: Analysis) -> float | None:
    """GPU runs: the transfer part of the collectives, ns per step and rank: each collective
    instance (matched across ranks as `rules.stragglers` matches them) lasts, on the rank that
    arrived last, only its transfer; every other rank's longer duration is waiting. Summed
    per rank over its instances, divided by the rank's own steps, mean over ranks (None
    without matched collectives)."""
    from gpu_trace_analyzer.rules.stragglers import _instances

    inst = _instances(a.context)
    steps = step_metrics(a.context).group_by("rank").agg(pl.len().alias("steps"))
    if inst.height == 0 or steps.height == 0:
        return None
    per = (
        inst.filter(pl.col("rank").n_unique().over("instance") > 1)
        .with_columns(pl.col("dur_ns").min().over("instance").alias("transfer_ns"))
        .group_by("rank")
        .agg(pl.col("transfer_ns").sum())
        .join(steps, on="rank", how="inner")
    )
    if per.height == 0:
        return None
    return float((per["transfer_ns"] / per["steps"]).mean())  # type: ignore[arg-type]


def gloo_bytes_per_step(a: Analysis) -> float | None:
    """CPU-only runs: bytes each rank all-reduces per step, from the ``gloo:*`` ops' recorded
    tensor (``Input Dims`` x ``Input type``), mean over ranks (None when unrecorded)."""
    from gpu_trace_analyzer.metrics.collectives import op_tensor_bytes

    steps = step_metrics(a.context)
    if steps.height == 0:
        return None
    lo, hi = steps["start_ns"].min(), steps["end_ns"].max()
    gloo = a.ops.filter(
        pl.col("name").cast(pl.String).str.contains(GLOO_PATTERN)
        & (pl.col("start_ns") >= lo)
        & (pl.col("start_ns") < hi)
    )
    per_rank: dict[int, int] = {}
    for rank, dims, types in gloo.select("rank", "input_dims", "input_types").iter_rows():
        n = op_tensor_bytes(dims, types)
        if n:
            per_rank[int(rank)] = per_rank.get(int(rank), 0) + n
    counts = dict(steps.group_by("rank").agg(pl.len()).iter_rows())
    values = [b / counts[r] for r, b in per_rank.items() if counts.get(r)]
    return statistics.fmean(values) if values else None


def _shared_cpu_host(a: Analysis, has_gpu: bool) -> str | None:
    """The host name when every rank of a CPU-only multi-rank run sits on the same host."""
    hosts = {r.hostname for r in a.meta.ranks}
    if has_gpu or len(a.meta.ranks) < 2 or len(hosts) != 1:
        return None
    host = next(iter(hosts))
    return host or None


def _hosts(a: Analysis) -> dict[int, str]:
    return {r.rank: r.hostname or "unknown host" for r in a.meta.ranks}


def _gpu_rank_table(a: Analysis) -> pl.DataFrame:
    """`rules.stragglers.rank_table` with per-rank comm and exposed shares from the
    breakdown (empty without GPU work)."""
    from gpu_trace_analyzer.rules.stragglers import rank_table

    b = overview.breakdown(a.context)
    if b.height == 0:
        return pl.DataFrame()
    comm = b.group_by("rank").agg(
        pl.col("comm_ns").sum(), pl.col("exposed_comm_ns").sum(), pl.col("span_ns").sum()
    )
    return rank_table(a.context).join(comm, on="rank", how="left", suffix="_sum")


def _memory(a: Analysis) -> dict[int, float]:
    from gpu_trace_analyzer.rules.memory_headroom import peaks

    rows = peaks(a.context)
    if rows.height == 0:
        return {}
    per = rows.filter(pl.col("rank").is_not_null()).group_by("rank").agg(pl.col("used_bytes").max())
    return {int(r): float(v) for r, v in per.iter_rows()}


def _median_of(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _rank_rows(run: RunInput, th: Thresholds) -> list[RankRow]:
    a = run.analysis
    steps = step_metrics(a.context).sort("rank", "start_ns")
    by_rank: dict[int, list[int]] = {}
    for rank, ns in steps.select("rank", "step_ns").iter_rows():
        by_rank.setdefault(int(rank), []).append(int(ns))
    hosts = _hosts(a)
    ranks = sorted(set(by_rank) | set(hosts))
    gpu = _gpu_rank_table(a)
    gpu_rows = {int(r["rank"]): r for r in gpu.iter_rows(named=True)} if gpu.height else {}
    gloo = _gloo_union(a) if not gpu_rows else pl.DataFrame()
    gloo_rows = {int(r["rank"]): r for r in gloo.iter_rows(named=True)} if gloo.height else {}
    memory = _memory(a)
    cold = _cold_starts(a)
    most = max((len(v) for v in by_rank.values()), default=0)
    medians = {r: float(statistics.median(v)) for r, v in by_rank.items() if v}
    compute = {
        r: float(g["compute_ns"]) / max(len(by_rank.get(r, [])), 1)
        for r, g in gpu_rows.items()
        if g["compute_ns"] is not None and by_rank.get(r)
    }
    step_ref = _median_of(list(medians.values()))
    compute_ref = _median_of(list(compute.values()))
    limit = 1.0 + th.slow_pct / 100.0
    out = []
    for r in ranks:
        values = by_rank.get(r, [])
        n = len(values)
        reasons: list[str] = []
        status: Status = "ok"
        if n < most:
            status = "failed"
            reasons.append(f"completed {n} of {most} steps")
        elif len(medians) > 1 and step_ref and medians[r] >= limit * step_ref:
            status = "slow"
            reasons.append(
                f"median step {medians[r] / 1e6:.3f} ms, "
                f"{100.0 * (medians[r] / step_ref - 1):+.1f}% against the ranks' median "
                f"{step_ref / 1e6:.3f} ms"
            )
        if (
            status == "ok"
            and len(compute) > 1
            and compute_ref
            and r in compute
            and compute[r] >= limit * compute_ref
        ):
            status = "slow"
            reasons.append(
                f"GPU compute {compute[r] / 1e6:.3f} ms per step, "
                f"{100.0 * (compute[r] / compute_ref - 1):+.1f}% against the ranks' median "
                f"{compute_ref / 1e6:.3f} ms"
            )
        g, c = gpu_rows.get(r), gloo_rows.get(r)
        comm_pct = None
        if g is not None and g.get("span_ns_sum"):
            comm_pct = 100.0 * float(g["comm_ns"] or 0) / float(g["span_ns_sum"])
        elif c is not None and c["span_ns"]:
            comm_pct = 100.0 * float(c["comm_ns"]) / float(c["span_ns"])
        idle = None
        if g is not None and g.get("span_ns_sum"):
            idle = 100.0 * float(g["idle_ns"] or 0) / float(g["span_ns_sum"])
        out.append(
            RankRow(
                run=run.label,
                gpus=run.gpus,
                rank=r,
                node=hosts.get(r, "unknown host"),
                steps=n,
                step_median_ns=medians.get(r),
                compute_per_step_ns=compute.get(r),
                idle_pct=idle,
                comm_pct=comm_pct,
                wait_per_step_ns=(float(g["wait_ns"]) / n if g is not None and n else None),
                memory_peak_bytes=memory.get(r),
                latency=latency(values, th.within_pct),
                cold_start=cold.get(r),
                step_ns=tuple(values),
                status=status,
                reasons=tuple(reasons),
            )
        )
    return out


def _node_rows(rows: Sequence[RankRow]) -> list[NodeRow]:
    out = []
    for node in sorted({r.node for r in rows}):
        mine = [r for r in rows if r.node == node]
        values = [v for r in mine for v in r.step_ns]
        medians = [r.step_median_ns for r in mine if r.step_median_ns is not None]
        idle = [r.idle_pct for r in mine if r.idle_pct is not None]
        mem = [r.memory_peak_bytes for r in mine if r.memory_peak_bytes is not None]
        worst = max((r.status for r in mine), key=lambda s: _STATUS_ORDER[s])
        out.append(
            NodeRow(
                run=mine[0].run,
                gpus=mine[0].gpus,
                node=node,
                ranks=tuple(r.rank for r in mine),
                steps_min=min(r.steps for r in mine),
                steps_max=max(r.steps for r in mine),
                step_median_ns=float(statistics.median(values)) if values else None,
                rank_cv_pct=_cv(medians),
                idle_pct=statistics.fmean(idle) if idle else None,
                memory_peak_bytes=max(mem) if mem else None,
                status=worst,
            )
        )
    return out


def _cv(values: Sequence[float]) -> float | None:
    """Population coefficient of variation, % (None for fewer than two values)."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return 100.0 * statistics.pstdev(values) / mean if mean else None


# -- per run ------------------------------------------------------------------------------


def _run_row(run: RunInput, ranks: Sequence[RankRow], base: tuple[int, float] | None,
             mode: Mode) -> RunRow:  # fmt: skip
    a = run.analysis
    steps = per_step(a)
    med = float(statistics.median(steps["step_ns"].to_list())) if steps.height else 0.0
    has_gpu = bool(a.kernels.height or a.memops.height)
    n_steps = max(steps.height, 1)
    n_ranks = max(len([r for r in ranks if r.steps]), 1)
    comm_pct = exposed_pct = comm_step = exposed_step = calls = None
    transfer = wait = nbytes = gbs = None
    if has_gpu:
        b = overview.breakdown(a.context)
        if b.height:
            shares = overview.overall_shares(b)
            comm_pct, exposed_pct = shares["comm_pct"], shares["exposed_comm_pct"]
            comm_step = float(b["comm_ns"].sum()) / n_ranks / n_steps
            exposed_step = float(b["exposed_comm_ns"].sum()) / n_ranks / n_steps
        source = "GPU communication kernels (timeline breakdown)"
        if a.comms.height:
            calls = a.comms.height / n_ranks / n_steps
        transfer = transfer_per_step(a)
        if transfer is not None and comm_step is not None:
            transfer = min(transfer, comm_step)
            wait = comm_step - transfer
    else:
        g = _gloo_union(a)
        if g.height and int(g["gloo_ops"].sum()):
            span = float(g["span_ns"].sum())
            comm_pct = 100.0 * float(g["comm_ns"].sum()) / span if span else None
            comm_step = float(g["comm_ns"].sum()) / n_ranks / n_steps
            calls = float(g["calls"].sum()) / n_ranks / n_steps
            source = "gloo collectives on CPU threads (gloo:* ops; exposure not measurable)"
            nbytes = gloo_bytes_per_step(a)
            if nbytes and comm_step:
                gbs = nbytes / comm_step
        else:
            source = "none recorded"
    n0, t0 = base if base is not None else (run.gpus, med)
    ideal = run.gpus / n0
    speedup = eff = None
    if med > 0 and t0 > 0:
        speedup = t0 / med if mode == "strong" else (run.gpus * t0) / (n0 * med)
        eff = 100.0 * speedup / ideal
    medians = [r.step_median_ns for r in ranks if r.step_median_ns is not None]
    return RunRow(
        label=run.label,
        paths=run.paths,
        gpus=run.gpus,
        gpus_source=run.gpus_source,
        has_gpu=has_gpu,
        steps=steps.height if step_metrics(a.context).height else 0,
        step_median_ns=med,
        speedup=speedup,
        ideal_speedup=ideal,
        efficiency_pct=eff,
        comm_pct=comm_pct,
        exposed_comm_pct=exposed_pct,
        comm_per_step_ns=comm_step,
        exposed_comm_per_step_ns=exposed_step,
        comm_source=source,
        collectives_per_step=calls,
        transfer_per_step_ns=transfer,
        wait_per_step_ns=wait,
        comm_bytes_per_step=nbytes,
        comm_gbs=gbs,
        shared_cpu_host=_shared_cpu_host(a, has_gpu),
        rank_cv_pct=_cv(medians),
        failed_ranks=tuple(r.rank for r in ranks if r.status == "failed"),
        slow_ranks=tuple(r.rank for r in ranks if r.status == "slow"),
        cold_ranks=tuple(r.rank for r in ranks if r.cold_start is not None),
    )


def ideal_step_ns(run: RunRow, base: RunRow, mode: Mode) -> float:
    """The step time ideal scaling from ``base`` would give ``run``."""
    if mode == "weak":
        return base.step_median_ns
    return base.step_median_ns * base.gpus / run.gpus


# -- interpretation -----------------------------------------------------------------------


def _ms(ns: float | None) -> str:
    return "n/a" if ns is None else f"{ns / 1e6:.3f} ms"


def _ranks_text(ranks: Sequence[int]) -> str:
    return ", ".join(str(r) for r in ranks)


def unit_word(runs: Sequence[RunRow]) -> str:
    """What the counts count: ``GPUs``, or ``ranks`` when no run recorded GPU activity."""
    return "GPUs" if any(r.has_gpu for r in runs) else "ranks"


def _scaling_text(runs: Sequence[RunRow], mode: Mode) -> list[str]:
    base, top = runs[0], runs[-1]
    units = unit_word(runs)
    out = []
    if top.speedup is not None and top.efficiency_pct is not None:
        ideal_ns = ideal_step_ns(top, base, mode)
        out.append(
            f"{mode.capitalize()} scaling from {base.gpus} to {top.gpus} {units}: the median step "
            f"went from {_ms(base.step_median_ns)} to {_ms(top.step_median_ns)} (ideal "
            f"{_ms(ideal_ns)}), a speedup of {top.speedup:.2f}x against an ideal "
            f"{top.ideal_speedup:.2f}x: parallel efficiency {top.efficiency_pct:.1f}%."
        )
        worst = min(
            (r for r in runs[1:] if r.efficiency_pct is not None),
            key=lambda r: r.efficiency_pct or 0.0,
            default=None,
        )
        if worst is not None and worst is not top:
            out.append(
                f"The lowest efficiency is at {worst.gpus} {units} ({worst.efficiency_pct:.1f}%), "
                f"not at the largest run ({top.efficiency_pct:.1f}% at {top.gpus} {units})."
            )
    out.extend(_cpu_host_text(runs))
    if base.comm_pct is not None and top.comm_pct is not None:
        text = (
            f"Communication takes {base.comm_pct:.1f}% of the window at {base.gpus} "
            f"{units.removesuffix('s') if base.gpus == 1 else units} "
            f"and {top.comm_pct:.1f}% at {top.gpus}"
        )
        if base.exposed_comm_pct is not None and top.exposed_comm_pct is not None:
            text += (
                f"; exposed (not overlapped by compute) {base.exposed_comm_pct:.1f}% and "
                f"{top.exposed_comm_pct:.1f}%"
            )
        out.append(text + ".")
        lost = top.step_median_ns - ideal_step_ns(top, base, mode)
        exposed = top.exposed_comm_per_step_ns
        if exposed is None and not top.has_gpu:
            exposed = top.comm_per_step_ns
        if lost > 0 and exposed and top.has_gpu and exposed <= lost:
            out.append(
                f"At {top.gpus} {units} the step is {_ms(lost)} slower than ideal; exposed "
                f"communication is {_ms(exposed)} per step and rank, "
                f"{100.0 * exposed / lost:.0f}% of that loss."
            )
        elif lost > 0 and exposed and top.has_gpu:
            out.append(
                f"At {top.gpus} {units} the step is {_ms(lost)} slower than ideal; exposed "
                f"communication is {_ms(exposed)} per step and rank, more than that loss: it "
                "includes the time ranks wait inside the collectives for slower ranks."
            )
        if top.transfer_per_step_ns is not None and top.wait_per_step_ns is not None:
            out.append(
                f"Of the {_ms(top.comm_per_step_ns)} of communication per step and rank at "
                f"{top.gpus} {units}, {_ms(top.transfer_per_step_ns)} is transfer (each "
                "collective's duration on the rank that arrived last) and "
                f"{_ms(top.wait_per_step_ns)} is waiting inside the collectives for slower "
                "ranks."
            )
        elif lost > 0 and exposed and _oversubscribed(top):
            out.append(
                f"At {top.gpus} {units} the step is {_ms(lost)} slower than ideal; the gloo "
                f"collectives take {_ms(exposed)} per step and rank, but at "
                f"{top.comm_gbs or 0.0:.2f} GB/s that time is waiting for descheduled peers "
                "on a shared host, not transfer."
            )
        elif lost > 0 and exposed:
            out.append(
                f"At {top.gpus} {units} the step is {_ms(lost)} slower than ideal; the gloo "
                f"collectives take {_ms(exposed)} per step and rank (as much as "
                f"{100.0 * exposed / lost:.0f}% of that loss; CPU ranges cannot tell how much "
                "of it overlapped the backward)."
            )
    if not any(r.has_gpu for r in runs):
        out.append(
            "These traces hold no GPU activity (CPU-only, e.g. the gloo backend): step times "
            "are CPU step times and communication is the gloo collectives' CPU time; no GPU "
            "figure is shown because none was recorded."
        )
    return out


def _oversubscribed(run: RunRow) -> bool:
    """CPU ranks on one host whose all-reduce moves data far below memory-copy speed."""
    return (
        run.shared_cpu_host is not None
        and run.comm_gbs is not None
        and run.comm_gbs < CPU_COMM_FLOOR_GBS
    )


def _cpu_host_text(runs: Sequence[RunRow]) -> list[str]:
    """CPU ranks sharing a host: the rate their all-reduce reaches, and what it means."""
    shared = [r for r in runs if r.shared_cpu_host is not None]
    if not shared:
        return []
    rates = "; ".join(
        f"{r.gpus} rank{'s' if r.gpus > 1 else ''}: {r.comm_bytes_per_step / 1e6:.2f} MB "
        f"per step and rank in {_ms(r.comm_per_step_ns)}, {r.comm_gbs:.2f} GB/s"
        for r in runs
        if r.comm_bytes_per_step and r.comm_gbs is not None
    )
    out = [
        f"All ranks of {', '.join(r.label for r in shared)} run on the CPU of one host "
        f"({shared[0].shared_cpu_host}): the ranks and their gloo threads compete for the "
        "host's cores, and the collective time includes waiting for peers the OS has "
        "descheduled. Check that the host has at least (ranks x threads per rank) cores "
        "(torch.get_num_threads() plus gloo's threads): the trace cannot count the cores."
    ]
    if rates:
        out.append(
            f"Effective all-reduce rate (the gloo ops' tensor bytes over the collective time): "
            f"{rates}."
        )
    slow = [r for r in shared if _oversubscribed(r)]
    if slow:
        out.append(
            f"At {' and '.join(str(r.gpus) for r in slow)} ranks that is below "
            f"{CPU_COMM_FLOOR_GBS:g} GB/s, far below a memory copy over loopback (several "
            "GB/s): the collective time is not data movement, so it is not attributed to "
            "communication; measure on dedicated cores before tuning DDP."
        )
    return out


def _symmetry_text(runs: Sequence[RunRow], ranks: Sequence[RankRow], th: Thresholds) -> list[str]:
    out = []
    for run in runs:
        mine = [r for r in ranks if r.run == run.label and r.step_median_ns is not None]
        if len(mine) > 1 and run.rank_cv_pct is not None:
            lo = min(mine, key=lambda r: r.step_median_ns or 0.0)
            hi = max(mine, key=lambda r: r.step_median_ns or 0.0)
            if lo.step_median_ns == hi.step_median_ns:
                out.append(
                    f"{run.label} ({run.gpus} {unit_word(runs)}): every rank has the same median "
                    f"step time, {_ms(lo.step_median_ns)} (CV 0.0%)."
                )
            else:
                out.append(
                    f"{run.label} ({run.gpus} {unit_word(runs)}): median step times vary between "
                    f"ranks by a coefficient of variation of {run.rank_cv_pct:.1f}% (rank "
                    f"{lo.rank} {_ms(lo.step_median_ns)}, rank {hi.rank} "
                    f"{_ms(hi.step_median_ns)})."
                )
        for r in ranks:
            if r.run != run.label or r.status == "ok":
                continue
            if r.status == "failed":
                out.append(
                    f"{run.label}: rank {r.rank} FAILED: it {r.reasons[0]}; the run's step time "
                    "is taken over the steps the other ranks completed, and this rank is "
                    "counted as failed, not averaged in."
                )
            else:
                out.append(
                    f"{run.label}: rank {r.rank} is slow: {'; '.join(r.reasons)} (threshold "
                    f"+{th.slow_pct:.0f}%)."
                )
    return out


def _latency_text(runs: Sequence[RunRow], ranks: Sequence[RankRow], th: Thresholds) -> list[str]:
    out = []
    for run in runs:
        mine = [r for r in ranks if r.run == run.label and r.latency is not None]
        if not mine:
            continue
        worst = min(mine, key=lambda r: (r.latency.within_pct if r.latency else 100.0, -r.rank))
        lat = worst.latency
        assert lat is not None
        if lat.within_pct >= 100.0:
            top = max(mine, key=lambda r: (r.latency.cv_pct if r.latency else 0.0, -r.rank))
            cv = top.latency.cv_pct if top.latency else 0.0
            out.append(
                f"{run.label}: every rank has all its steps within {th.within_pct:.0f}% of its "
                f"mean (largest CV {cv:.1f}%, rank {top.rank})."
            )
            continue
        out.append(
            f"{run.label}: rank {worst.rank} has the least regular steps: "
            f"{lat.within_pct:.0f}% of its {lat.steps} steps within {th.within_pct:.0f}% of its "
            f"mean {_ms(lat.mean_ns)} (min {_ms(lat.min_ns)}, max {_ms(lat.max_ns)}, std "
            f"{_ms(lat.std_ns)}, CV {lat.cv_pct:.1f}%)."
        )
    return out


def _cold_text(ranks: Sequence[RankRow], th: Thresholds) -> list[str]:
    out = []
    for r in ranks:
        c = r.cold_start
        if c is None:
            continue
        out.append(
            f"{r.run}: rank {r.rank}'s first profiled step (step {c.first_step}) took "
            f"{_ms(c.first_ns)}, {c.ratio:.2f}x the median of its other steps "
            f"({_ms(c.median_ns)}), {_ms(c.excess_ns)} extra: a cold start (threshold "
            f"{th.cold_ratio:g}x and {th.cold_min_excess_ms:g} ms)."
        )
    if not out:
        out.append(
            f"No rank's first profiled step is {th.cold_ratio:g}x its other steps' median and "
            f"{th.cold_min_excess_ms:g} ms above it."
        )
    return out


def _recommendations(runs: Sequence[RunRow], ranks: Sequence[RankRow], mode: Mode
                     ) -> list[Recommendation]:  # fmt: skip
    units = unit_word(runs)
    out: list[Recommendation] = [
        Recommendation(
            f"Explain the failure of rank {r.rank} at {r.gpus} {units}",
            None,
            f"Rank {r.rank} of {r.run} {r.reasons[0]}: find out why it stopped (its log, an "
            "OOM, a lost host) before trusting this run's scaling figures.",
        )
        for r in ranks
        if r.status == "failed"
    ]
    top, base = runs[-1], runs[0]
    exposed = top.exposed_comm_per_step_ns if top.has_gpu else top.comm_per_step_ns
    slow = [r for r in runs if _oversubscribed(r)]
    if slow:
        out.append(
            Recommendation(
                f"Run the {top.gpus} ranks on dedicated cores before tuning communication",
                None,
                "The ranks share one host's CPU ("
                + "; ".join(f"{r.comm_gbs:.2f} GB/s all-reduce at {r.gpus} ranks" for r in slow)
                + f", below {CPU_COMM_FLOOR_GBS:g} GB/s): give each rank its own cores "
                "(cores >= ranks x threads; torch.set_num_threads, taskset or numactl) or "
                "one host per rank, and measure again: until then the collective time is "
                "waiting for descheduled peers, and DDP settings (bucket_cap_mb, no_sync) "
                "would not change it.",
                "the communication figures measure an oversubscribed host",
            )
        )
        exposed = None
    transfer = top.transfer_per_step_ns
    if exposed and transfer is not None:
        exposed = min(exposed, transfer)
    if exposed and len(runs) > 1:
        what = "exposed communication" if top.has_gpu else "gloo collective time"
        out.append(
            Recommendation(
                f"Hide communication at {top.gpus} {units}",
                exposed,
                f"{what.capitalize()} is "
                f"{_ms(top.exposed_comm_per_step_ns if top.has_gpu else top.comm_per_step_ns)} "
                f"per step and rank at {top.gpus} {units} "
                f"(comm {top.comm_pct or 0.0:.1f}% of the window against "
                f"{base.comm_pct or 0.0:.1f}% at {base.gpus})"
                + (
                    f"; only its transfer, {_ms(transfer)}, can be hidden: the other "
                    f"{_ms(top.wait_per_step_ns)} is waiting for slower ranks (the straggler "
                    "and warm-up recommendations)"
                    if transfer is not None and top.wait_per_step_ns
                    else ""
                )
                + ": overlap it with the backward "
                "(DDP bucket_cap_mb so the first buckets start earlier, "
                "gradient_as_bucket_view=True), all-reduce less often (no_sync() over "
                "gradient-accumulation steps)"
                + (
                    f", or give each of the {top.gpus} {units} more work per step (weak "
                    "scaling) so the same "
                    "communication is a smaller share."
                    if mode == "strong"
                    else "."
                ),
            )
        )
    for r in ranks:
        if r.status != "slow":
            continue
        same = [
            x.compute_per_step_ns
            for x in ranks
            if x.run == r.run and x.compute_per_step_ns is not None and x.status == "ok"
        ]
        if r.compute_per_step_ns is not None and same:
            gain = r.compute_per_step_ns - statistics.median(same)
        elif r.step_median_ns is not None:
            peers = [
                x.step_median_ns
                for x in ranks
                if x.run == r.run and x.step_median_ns is not None and x.status == "ok"
            ]
            gain = r.step_median_ns - statistics.median(peers) if peers else 0.0
        else:
            gain = 0.0
        out.append(
            Recommendation(
                f"Fix the straggler rank {r.rank} at {r.gpus} {units}",
                max(gain, 0.0),
                f"Rank {r.rank} of {r.run}: {'; '.join(r.reasons)}. In synchronous data "
                "parallelism every rank waits for it in each collective: check its GPU "
                "(clocks, thermal or power throttling, a shared device), its input pipeline "
                "and its data shard size.",
            )
        )
    for r in ranks:
        c = r.cold_start
        if c is None:
            continue
        out.append(
            Recommendation(
                f"Leave the warm-up of rank {r.rank} at {r.gpus} {units} out of the measurement",
                c.excess_ns / max(r.steps, 1),
                f"Rank {r.rank} of {r.run}: the first step costs {_ms(c.excess_ns)} extra "
                f"({c.ratio:.2f}x), {_ms(c.excess_ns / max(r.steps, 1))} per profiled step on "
                "average: profile with torch.profiler.schedule(wait=1, warmup=2, active=N) so "
                "scaling is judged on steady-state steps.",
            )
        )
    return sorted(out, key=lambda x: (x.gain_ns_per_step is not None, -(x.gain_ns_per_step or 0)))


# -- the report ---------------------------------------------------------------------------


def _unrecorded(run: RunInput) -> str | None:
    """A note when the trace's world size names ranks no file holds: profilers often record
    a sample of the ranks, so those ranks are not judged (neither ok nor failed)."""
    recorded = sorted({r.rank for r in run.analysis.meta.ranks})
    if not run.gpus_source.startswith("trace metadata") or len(recorded) >= run.gpus:
        return None
    shown = ", ".join(str(r) for r in recorded[:8]) + (", ..." if len(recorded) > 8 else "")
    return (
        f"{run.label}: the trace's world size is {run.gpus} but {len(recorded)} rank file(s) "
        f"were given (ranks {shown}); the {run.gpus - len(recorded)} ranks not recorded are not "
        "judged, and the run's step time is that of the recorded ranks"
    )


def thresholds(a: Analysis) -> Thresholds:
    """The thresholds in force: the stragglers and cold-start rules' configured values."""
    slow = a.config.rule_config("stragglers").warning_spread_pct
    cold = a.config.rule_config("cold-start")
    return Thresholds(
        float(slow),
        WITHIN_PCT,
        float(cold.warning_ratio),
        float(cold.min_excess_ms),
        int(cold.min_steps),
    )


def scale(runs: Sequence[RunInput], mode: Mode = "strong") -> ScalingReport:
    """The scaling report over ``runs`` (at least two, distinct GPU counts)."""
    if len(runs) < 2:
        raise BadConfigError("analyze scaling needs at least two runs (one per GPU count)")
    ordered = sorted(runs, key=lambda r: r.gpus)
    counts = [r.gpus for r in ordered]
    dup = sorted({n for n in counts if counts.count(n) > 1})
    if dup:
        same = [r.label for r in ordered if r.gpus in dup]
        raise BadConfigError(
            f"two runs at {dup[0]} GPUs ({', '.join(same)}): give each GPU count once, "
            "or set the count with --gpus RUN=N"
        )
    th = thresholds(ordered[0].analysis)
    rank_rows: list[RankRow] = []
    node_rows: list[NodeRow] = []
    run_rows: list[RunRow] = []
    base: tuple[int, float] | None = None
    for run in ordered:
        rows = _rank_rows(run, th)
        rank_rows.extend(rows)
        node_rows.extend(_node_rows(rows))
        row = _run_row(run, rows, base, mode)
        if base is None:
            base = (row.gpus, row.step_median_ns)
        run_rows.append(row)
    notes = [n for run in ordered if (n := _unrecorded(run)) is not None]
    if run_rows[0].step_median_ns <= 0:
        notes.append(
            f"the smallest run ({run_rows[0].label}) has no step time: no speedup is computed"
        )
    notes.extend(
        f"{r.label} has no ProfilerStep annotations: its whole analysis window counts as one step"
        for r in run_rows
        if not r.steps
    )
    return ScalingReport(
        mode=mode,
        baseline=run_rows[0].label,
        runs=tuple(run_rows),
        ranks=tuple(rank_rows),
        nodes=tuple(node_rows),
        thresholds=th,
        scaling_text=tuple(_scaling_text(run_rows, mode)),
        symmetry_text=tuple(_symmetry_text(run_rows, rank_rows, th)),
        latency_text=tuple(_latency_text(run_rows, rank_rows, th)),
        cold_text=tuple(_cold_text(rank_rows, th)),
        recommendations=tuple(_recommendations(run_rows, rank_rows, mode)),
        notes=tuple(notes),
    )
