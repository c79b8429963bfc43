"""Compare two runs: `compare` two `Analysis` objects into a `RunDiff`.

Nothing here parses or defines a metric: each side is one `analyzer.api.load` and every
figure is read from that side's own metrics (step accounting, timeline breakdown, idle
ledger, op families, roofline op groups, findings). What this module adds is the pairing:

- per-step samples: each profiled step's ``step_ns``, ``cpu_dur_ns`` and ``gpu_busy_ns``
  (`analyzer.metrics.steps`: a step charged with its own GPU work), the slowest rank per
  step. A trace without step annotations is one sample: its analysis window;
- noise: a seeded percentile bootstrap of the difference of medians (`bootstrap_change`),
  never a fixed threshold; with one sample on a side no noise estimate exists, and the
  verdict says so;
- op groups matched by (op name, input shapes, dtype), which is what makes a comparison
  across devices work; kernel names matched only when both sides run the same device
  family (kernel names change with the architecture and the library version);
- findings matched by rule id, rank and stream (device indices are where the scheduler put
  the job, not a property of the run).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import polars as pl
from gpu_trace_analyzer.api import Analysis
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.metrics import idle_ledger
from gpu_trace_analyzer.metrics.op_families import op_families
from gpu_trace_analyzer.metrics.roofline import roofline
from gpu_trace_analyzer.metrics.steps import step_metrics
from gpu_trace_analyzer.metrics.workload import workload_profile
from gpu_trace_analyzer.parsers.categories import FAMILIES
from gpu_trace_analyzer.sections import overview

#: Resamples of the bootstrap and its seed: the same inputs always give the same interval.
BOOTSTRAP_RESAMPLES: Final = 2000
BOOTSTRAP_SEED: Final = 13
CONFIDENCE: Final = 0.95
#: Method named in every output.
NOISE_METHOD: Final = (
    f"percentile bootstrap of the difference of median per-step times "
    f"({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED})"
)
#: Fewest samples (steps) a side needs for a bootstrap interval: with fewer, the
#: percentile bootstrap of a median only re-reads the range of a handful of values.
MIN_SAMPLES_FOR_INTERVAL: Final = 5
#: An op group or kernel whose GPU time per step moved by less than this share of the base
#: step time (and less than 1 us) is not listed as changed.
CHANGED_FLOOR_SHARE: Final = 0.001
CHANGED_FLOOR_NS: Final = 1_000

Verdict = Literal["faster", "slower", "unchanged"]
Better = Literal["lower", "higher"]


@dataclass(frozen=True, slots=True)
class Change:
    """Candidate minus base of a median, with its bootstrap interval (None: no estimate)."""

    base: float
    candidate: float
    delta: float
    delta_pct: float | None
    ci_low_pct: float | None = None
    ci_high_pct: float | None = None
    n_base: int = 0
    n_candidate: int = 0
    separated: bool | None = None
    """Too few samples for an interval: whether the two sides' sample ranges do not overlap
    (every candidate sample above, or below, every base sample); None otherwise."""

    @property
    def too_few_samples(self) -> bool:
        """No interval because a side has 2..`MIN_SAMPLES_FOR_INTERVAL`-1 samples (one
        sample on a side is the separate "no noise estimate is possible" case)."""
        return (
            not self.has_noise_estimate
            and min(self.n_base, self.n_candidate) >= 2
            and min(self.n_base, self.n_candidate) < MIN_SAMPLES_FOR_INTERVAL
        )

    @property
    def has_noise_estimate(self) -> bool:
        """Whether an interval exists (both sides have at least two samples)."""
        return self.ci_low_pct is not None and self.ci_high_pct is not None

    @property
    def outside_noise(self) -> bool:
        """True when the interval excludes zero; with too few samples for one (2 to
        `MIN_SAMPLES_FOR_INTERVAL` - 1 a side), when the sides' ranges do not overlap; with one
        sample on a side, when the point estimate is not exactly zero (nothing shows it is
        noise)."""
        if self.ci_low_pct is not None and self.ci_high_pct is not None:
            return self.ci_low_pct > 0 or self.ci_high_pct < 0
        if self.separated is not None:
            return self.separated
        return self.delta != 0


@dataclass(frozen=True, slots=True)
class Metric:
    """One headline row: raw values in ``unit`` (``ns``, ``pct``, ``tflops``, ``bytes``,
    ``j``)."""

    key: str
    label: str
    unit: str
    base: float | None
    candidate: float | None
    better: Better = "lower"
    change: Change | None = None  # for per-step metrics: the bootstrap

    @property
    def delta(self) -> float | None:
        """Candidate minus base (None when a side lacks the figure)."""
        if self.base is None or self.candidate is None:
            return None
        return self.candidate - self.base

    @property
    def delta_pct(self) -> float | None:
        """Relative change, % of base (None for a zero or missing base)."""
        d = self.delta
        if d is None or not self.base:
            return None
        return 100.0 * d / self.base

    def worse_by_pct(self) -> float | None:
        """How much worse the candidate is, % of base (negative: better); for shares, the
        change in percentage points."""
        d = self.delta_pct if self.unit != "pct" else self.delta
        if d is None:
            return None
        return d if self.better == "lower" else -d


@dataclass(frozen=True, slots=True)
class GroupDelta:
    """An op group or kernel on either side: calls and GPU time per step."""

    name: str
    shapes: str | None
    dtype: str | None
    base_calls_per_step: float
    candidate_calls_per_step: float
    base_ns_per_step: float
    candidate_ns_per_step: float

    @property
    def delta_ns(self) -> float:
        """GPU time per step, candidate minus base."""
        return self.candidate_ns_per_step - self.base_ns_per_step

    @property
    def side(self) -> str:
        """``both``, ``base`` or ``candidate``: where the group ran."""
        if self.base_calls_per_step and self.candidate_calls_per_step:
            return "both"
        return "base" if self.base_calls_per_step else "candidate"


@dataclass(frozen=True, slots=True)
class FindingChange:
    """A finding that appeared, disappeared or changed severity."""

    rule_id: str
    rank: int | None
    stream: int | None
    kind: Literal["appeared", "disappeared", "severity"]
    base: Finding | None
    candidate: Finding | None


@dataclass(frozen=True, slots=True)
class SideInfo:
    """What identifies one run: inputs, devices, world size, steps, versions, workload."""

    paths: tuple[str, ...]
    devices: tuple[str, ...]
    device_family: tuple[str, ...]
    world_size: int
    steps: int
    has_steps: bool
    versions: Mapping[str, str]
    mode: str
    step_ns: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RunDiff:
    """Everything the renderers show: verdict, headline metrics, explanation, findings."""

    base: SideInfo
    candidate: SideInfo
    verdict: Verdict
    step: Change
    metrics: tuple[Metric, ...]
    op_groups: tuple[GroupDelta, ...]
    kernels: tuple[GroupDelta, ...]
    kernels_matched: bool
    findings: tuple[FindingChange, ...]
    findings_unchanged: int
    notes: tuple[str, ...] = field(default=())

    def metric(self, key: str) -> Metric | None:
        """The headline metric named ``key`` (None when absent)."""
        return next((m for m in self.metrics if m.key == key), None)

    @property
    def changed_ops(self) -> tuple[GroupDelta, ...]:
        """Op groups whose GPU time per step moved by more than the floor."""
        return tuple(g for g in self.op_groups if abs(g.delta_ns) >= self._floor_ns)

    @property
    def changed_kernels(self) -> tuple[GroupDelta, ...]:
        """Kernels whose GPU time per step moved by more than the floor."""
        return tuple(g for g in self.kernels if abs(g.delta_ns) >= self._floor_ns)

    @property
    def _floor_ns(self) -> float:
        return max(CHANGED_FLOOR_NS, CHANGED_FLOOR_SHARE * self.step.base)


# -- noise ---------------------------------------------------------------------------------


def bootstrap_change(base: Sequence[float], candidate: Sequence[float]) -> Change:
    """The change of the median from ``base`` to ``candidate`` samples, with a seeded
    percentile-bootstrap interval of the difference of medians as % of the base median
    (no interval when a side has fewer than `MIN_SAMPLES_FOR_INTERVAL` samples: with 2 or
    more a side the change is outside the noise only when the sides' ranges do not
    overlap, with one sample it is the point estimate alone)."""
    b_med = float(statistics.median(base))
    c_med = float(statistics.median(candidate))
    delta = c_med - b_med
    pct = 100.0 * delta / b_med if b_med else None
    nb, nc = len(base), len(candidate)
    if min(nb, nc) < MIN_SAMPLES_FOR_INTERVAL or not b_med:
        separated = (
            min(candidate) > max(base) or max(candidate) < min(base) if min(nb, nc) >= 2 else None
        )
        return Change(b_med, c_med, delta, pct, n_base=nb, n_candidate=nc, separated=separated)
    rng = random.Random(BOOTSTRAP_SEED)
    diffs = sorted(
        statistics.median(rng.choices(candidate, k=nc)) - statistics.median(rng.choices(base, k=nb))
        for _ in range(BOOTSTRAP_RESAMPLES)
    )
    tail = (1.0 - CONFIDENCE) / 2.0
    low = diffs[int(tail * (BOOTSTRAP_RESAMPLES - 1))]
    high = diffs[int((1.0 - tail) * (BOOTSTRAP_RESAMPLES - 1))]
    return Change(b_med, c_med, delta, pct, 100.0 * low / b_med, 100.0 * high / b_med, nb, nc)


def verdict_of(change: Change) -> Verdict:
    """faster / slower when the change is outside the noise, else unchanged."""
    if not change.outside_noise:
        return "unchanged"
    return "slower" if change.delta > 0 else "faster"


# -- one side ------------------------------------------------------------------------------


def per_step(a: Analysis) -> pl.DataFrame:
    """Per profiled step: step_ns, cpu_dur_ns, gpu_busy_ns of its slowest rank. Without
    step annotations, one row: the analysis window's span (every rank and device)."""
    steps = step_metrics(a.context)
    if steps.height:
        return (
            steps.group_by("step")
            .agg(pl.col("step_ns").max(), pl.col("cpu_dur_ns").max(), pl.col("gpu_busy_ns").max())
            .sort("step")
        )
    b = overview.breakdown(a.context)
    span = int(b.select(pl.col("span_ns").max()).item() or 0) if b.height else 0
    busy = int(b.select(pl.col("busy_ns").max()).item() or 0) if b.height else 0
    return pl.DataFrame(
        {"step": [0], "step_ns": [span], "cpu_dur_ns": [span], "gpu_busy_ns": [busy]},
        schema={
            "step": pl.Int64,
            "step_ns": pl.Int64,
            "cpu_dur_ns": pl.Int64,
            "gpu_busy_ns": pl.Int64,
        },
    )


def divisor(a: Analysis, steps: pl.DataFrame) -> int:
    """What GPU totals are divided by to be "per step": profiled steps times the ranks that
    ran GPU work (a per-rank step, so runs of different world sizes compare)."""
    ranks = a.kernels["rank"].n_unique() if a.kernels.height else 1
    return max(steps.height, 1) * max(ranks, 1)


def _device_family(a: Analysis) -> tuple[str, ...]:
    """The architectures of the devices that ran kernels: vendor and compute capability
    (``nvidia sm_90``, ``amd gfx9.4``; H100 SXM and PCIe are one family, their kernels share
    names), else the database key, else the trace's own name. Two runs share a family when
    these are equal."""
    keys = set()
    for r in roofline(a.context).devices.values():
        spec = r.spec
        if spec is None:
            keys.add(r.trace_name or "unknown device")
        elif spec.compute_capability:
            prefix = "sm_" if spec.vendor == "nvidia" else "gfx"
            arch = (
                spec.compute_capability.replace(".", "")
                if prefix == "sm_"
                else (spec.compute_capability)
            )
            keys.add(f"{spec.vendor} {prefix}{arch}")
        else:
            keys.add(spec.key)
    return tuple(sorted(keys))


def side_info(a: Analysis, steps: pl.DataFrame) -> SideInfo:
    """The identity of one run (see `SideInfo`)."""
    meta = a.meta
    ranks = {r.rank for r in meta.ranks} | set(a.kernels["rank"].unique().to_list())
    world = meta.world_size or max(len(ranks), 1)
    return SideInfo(
        paths=tuple(meta.paths),
        devices=tuple(sorted({d.name for d in meta.devices})),
        device_family=_device_family(a),
        world_size=int(world),
        steps=steps.height,
        has_steps=step_metrics(a.context).height > 0,
        versions=dict(meta.versions),
        mode=str(workload_profile(a.tables).mode),
        step_ns=tuple(int(v) for v in steps["step_ns"]),
    )


def _shares(a: Analysis) -> dict[str, float | None]:
    b = overview.breakdown(a.context)
    if b.height == 0:
        return {}
    return {k: float(v) for k, v in overview.overall_shares(b).items()}


def _ledger_pct(a: Analysis) -> tuple[dict[str, float], dict[str, float]]:
    """Idle per ledger cause as % of the window (all ranks and devices), without the
    one-time first-step part (`idle_ledger.cold_start_split`), and that part per cause."""
    b = overview.breakdown(a.context)
    span = float(b["span_ns"].sum()) if b.height else 0.0
    rows = idle_ledger.by_cause(a.context)
    if span <= 0 or rows.height == 0:
        return {}, {}
    sums = rows.group_by("cause").agg(pl.col("idle_ns").sum())
    cold = {
        str(c): float(ns)
        for c, ns in idle_ledger.cold_start_split(a.context)
        .group_by("cause")
        .agg(pl.col("cold_ns").sum())
        .iter_rows()
    }
    steady = {
        str(c): 100.0 * (float(ns) - cold.get(str(c), 0.0)) / span for c, ns in sums.iter_rows()
    }
    return steady, {c: 100.0 * ns / span for c, ns in cold.items() if ns > 0}


def _family_ns(a: Analysis, n_steps: int) -> dict[str, float]:
    table = op_families(a.context).table
    return {str(f): float(ns) / n_steps for f, ns in table.select("family", "gpu_ns").iter_rows()}


def _op_groups(a: Analysis, n_steps: int) -> pl.DataFrame:
    """Roofline op groups summed over devices, per (op_name, shapes, dtype), per step."""
    ops = roofline(a.context).ops
    keys = ["name", "shapes", "dtype"]
    if ops.height == 0:
        return pl.DataFrame(
            schema={
                "name": pl.String,
                "shapes": pl.String,
                "dtype": pl.String,
                "calls": pl.Float64,
                "ns": pl.Float64,
            }
        )
    return (
        ops.select(
            pl.col("op_name").cast(pl.String).alias("name"),
            pl.col("shapes").cast(pl.String),
            pl.col("dtype").cast(pl.String),
            "calls",
            "gpu_time_ns",
        )
        .group_by(keys)
        .agg(
            (pl.col("calls").sum() / n_steps).cast(pl.Float64).alias("calls"),
            (pl.col("gpu_time_ns").sum() / n_steps).cast(pl.Float64).alias("ns"),
        )
    )


def _kernels(a: Analysis, n_steps: int) -> pl.DataFrame:
    k = roofline(a.context).kernels
    if k.height == 0:
        return pl.DataFrame(schema={"name": pl.String, "calls": pl.Float64, "ns": pl.Float64})
    return (
        k.group_by("name")
        .agg(
            (pl.len() / n_steps).cast(pl.Float64).alias("calls"),
            (pl.col("dur_ns").sum() / n_steps).cast(pl.Float64).alias("ns"),
        )
        .with_columns(pl.col("name").cast(pl.String))
    )


def _pair(base: pl.DataFrame, cand: pl.DataFrame, keys: list[str]) -> tuple[GroupDelta, ...]:
    """Full outer join on ``keys``; ranked by the size of the GPU-time change per step."""
    joined = base.join(cand, on=keys, how="full", coalesce=True, suffix="_c", nulls_equal=True)
    joined = joined.with_columns(pl.col("calls", "ns", "calls_c", "ns_c").fill_null(0.0))
    joined = joined.with_columns((pl.col("ns_c") - pl.col("ns")).abs().alias("_abs")).sort(
        ["_abs", "ns", "name"], descending=[True, True, False], nulls_last=True
    )
    return tuple(
        GroupDelta(
            name=str(row["name"]),
            shapes=row.get("shapes"),
            dtype=row.get("dtype"),
            base_calls_per_step=float(row["calls"]),
            candidate_calls_per_step=float(row["calls_c"]),
            base_ns_per_step=float(row["ns"]),
            candidate_ns_per_step=float(row["ns_c"]),
        )
        for row in joined.iter_rows(named=True)
    )


# -- the comparison ------------------------------------------------------------------------


def _metrics(base: Analysis, cand: Analysis, sb: pl.DataFrame, sc: pl.DataFrame) -> list[Metric]:
    out: list[Metric] = []
    for key, col, label in (
        ("step_time_ns", "step_ns", "step time (median; own CPU time or own GPU work, longer)"),
        ("cpu_step_time_ns", "cpu_dur_ns", "CPU step time (median)"),
        ("gpu_step_time_ns", "gpu_busy_ns", "GPU busy time of the step's own work (median)"),
    ):
        ch = bootstrap_change(sb[col].to_list(), sc[col].to_list())
        out.append(Metric(key, label, "ns", ch.base, ch.candidate, "lower", ch))
    shb, shc = _shares(base), _shares(cand)
    for name, label, better in (
        ("busy", "GPU busy", "higher"),
        ("compute", "compute share", "higher"),
        ("comm", "communication share", "lower"),
        ("memory", "memory-op share", "lower"),
        ("idle", "GPU idle", "lower"),
        ("exposed_comm", "exposed communication", "lower"),
    ):
        k = f"{name}_pct"
        out.append(Metric(k, label, "pct", shb.get(k), shc.get(k), better))  # type: ignore[arg-type]
    (lb, cold_b), (lc, cold_c) = _ledger_pct(base), _ledger_pct(cand)
    for cause in idle_ledger.CAUSES:
        if cause not in lb and cause not in lc:
            continue
        cold = cause in cold_b or cause in cold_c
        out.append(
            Metric(
                f"idle_{cause}_pct",
                f"idle: {idle_ledger.CAUSE_LABELS[cause]}"
                + (" (steady state: one-time first-step part on the next row)" if cold else ""),
                "pct",
                lb.get(cause, 0.0),
                lc.get(cause, 0.0),
            )
        )
        if cold:
            # One-time calls of the first profiled step (cold start): not a steady-state
            # change, so a separate row that the gates can name but the cause row excludes.
            out.append(
                Metric(
                    f"idle_{cause}_cold_start_pct",
                    f"idle: {idle_ledger.CAUSE_SHORT[cause]}, one-time first-step cost "
                    "(cold start)",
                    "pct",
                    cold_b.get(cause, 0.0),
                    cold_c.get(cause, 0.0),
                )
            )
    rb, rc = roofline(base.context).summary, roofline(cand.context).summary
    if rb.achieved_tensor_tflops is not None or rc.achieved_tensor_tflops is not None:
        out.append(
            Metric(
                "achieved_tensor_tflops",
                "achieved tensor TFLOP/s (modeled ops)",
                "tflops",
                rb.achieved_tensor_tflops,
                rc.achieved_tensor_tflops,
                "higher",
            )
        )
        out.append(
            Metric(
                "tensor_pct_of_peak",
                "% of the tensor roof",
                "pct",
                rb.tensor_pct_of_peak,
                rc.tensor_pct_of_peak,
                "higher",
            )
        )
    if base.kernels.height or cand.kernels.height:
        out.append(
            Metric(
                "compute_bound_kernel_pct",
                "kernel time compute-bound",
                "pct",
                100.0 * rb.compute_bound_share,
                100.0 * rc.compute_bound_share,
                "higher",
            )
        )
        out.append(
            Metric(
                "memory_bound_kernel_pct",
                "kernel time memory-bound",
                "pct",
                100.0 * rb.memory_bound_share,
                100.0 * rc.memory_bound_share,
            )
        )
    out.extend(_memory_energy(base, cand))
    fb, fc = _family_ns(base, divisor(base, sb)), _family_ns(cand, divisor(cand, sc))
    out.extend(
        Metric(
            f"family_{fam}_ns",
            f"GPU time per step: {FAMILIES.get(fam, fam)}",
            "ns",
            fb.get(fam, 0.0),
            fc.get(fam, 0.0),
        )
        for fam in sorted(set(fb) | set(fc), key=lambda f: -max(fb.get(f, 0.0), fc.get(f, 0.0)))
    )
    return out


def _peak_memory(a: Analysis) -> float | None:
    """The largest per-device peak memory use (bytes) the memory-headroom rule reads (the
    trace's allocator events, or DCGM framebuffer samples); None when neither exists."""
    from gpu_trace_analyzer.rules.memory_headroom import peaks

    rows = peaks(a.context)
    return float(rows["used_bytes"].max()) if rows.height else None  # type: ignore[arg-type]


def _energy_per_step(a: Analysis) -> float | None:
    """Energy per step (J) as the energy rule measured it from DCGM counters, else None."""
    for f in a.findings:
        value = f.evidence.get("energy_per_step_j") if f.rule_id == "energy" else None
        if isinstance(value, int | float):
            return float(value)
    return None


def _memory_energy(base: Analysis, cand: Analysis) -> list[Metric]:
    out = []
    mb, mc = _peak_memory(base), _peak_memory(cand)
    if mb is not None or mc is not None:
        out.append(Metric("peak_memory_bytes", "peak memory (largest device)", "bytes", mb, mc))
    eb, ec = _energy_per_step(base), _energy_per_step(cand)
    if eb is not None or ec is not None:
        out.append(Metric("energy_per_step_j", "energy per step (DCGM)", "j", eb, ec))
    return out


def _finding_key(f: Finding) -> tuple[str, int | None, int | None]:
    return (f.rule_id, f.scope.rank, f.scope.stream)


def _findings(base: Analysis, cand: Analysis) -> tuple[list[FindingChange], int]:
    """Findings matched by (rule id, rank, stream): appeared, disappeared, severity changed."""
    b = {_finding_key(f): f for f in reversed(base.findings)}  # the worst wins on a tie
    c = {_finding_key(f): f for f in reversed(cand.findings)}
    out: list[FindingChange] = []
    same = 0
    for key in sorted(set(b) | set(c), key=lambda k: (k[0], k[1] or -1, k[2] or -1)):
        fb, fc = b.get(key), c.get(key)
        if fb is None:
            out.append(FindingChange(*key, "appeared", None, fc))
        elif fc is None:
            out.append(FindingChange(*key, "disappeared", fb, None))
        elif fb.severity != fc.severity:
            out.append(FindingChange(*key, "severity", fb, fc))
        else:
            same += 1
    order = {"appeared": 0, "severity": 1, "disappeared": 2}
    out.sort(key=lambda x: order[x.kind])
    return out, same


def _main_shapes(groups: pl.DataFrame, names: Sequence[str]) -> dict[str, set[str]]:
    return {
        n: set(groups.filter(pl.col("name") == n)["shapes"].drop_nulls().to_list()) for n in names
    }


def _notes(b: SideInfo, c: SideInfo, gb: pl.DataFrame, gc: pl.DataFrame) -> list[str]:
    """What differs between the runs beyond the change under review."""
    notes: list[str] = []
    if b.devices != c.devices:
        notes.append(
            f"devices differ: {', '.join(b.devices) or 'none recorded'} -> "
            f"{', '.join(c.devices) or 'none recorded'}"
        )
    if b.world_size != c.world_size:
        notes.append(f"world size differs: {b.world_size} -> {c.world_size}")
    if b.steps != c.steps or b.has_steps != c.has_steps:
        what = "steps profiled differ"
        notes.append(
            f"{what}: {b.steps if b.has_steps else 'no step annotations'} -> "
            f"{c.steps if c.has_steps else 'no step annotations'}"
        )
    for key in sorted(set(b.versions) | set(c.versions)):
        vb, vc = b.versions.get(key), c.versions.get(key)
        if vb != vc and key != "kineto_schema_version":
            notes.append(f"{key} differs: {vb or 'absent'} -> {vc or 'absent'}")
    if b.mode != c.mode:
        notes.append(f"workload profile differs: {b.mode} -> {c.mode}")
    top = gb.filter(pl.col("shapes").is_not_null()).sort("ns", descending=True)
    names = list(dict.fromkeys(top["name"].to_list()))[:3]
    sb, sc = _main_shapes(gb, names), _main_shapes(gc, names)
    notes.extend(
        f"input shapes of {n} differ (batch or sequence length changed?)"
        for n in names
        if sc[n] and sb[n] != sc[n]
    )
    return notes


def compare(base: Analysis, candidate: Analysis) -> RunDiff:
    """The comparison of two loaded runs (see the module doc)."""
    sb, sc = per_step(base), per_step(candidate)
    ib, ic = side_info(base, sb), side_info(candidate, sc)
    nb, nc = divisor(base, sb), divisor(candidate, sc)
    metrics = _metrics(base, candidate, sb, sc)
    step = metrics[0].change
    assert step is not None
    gb, gc = _op_groups(base, nb), _op_groups(candidate, nc)
    same_family = bool(ib.device_family) and ib.device_family == ic.device_family
    kernels = _pair(_kernels(base, nb), _kernels(candidate, nc), ["name"]) if same_family else ()
    findings, same = _findings(base, candidate)
    notes = _notes(ib, ic, gb, gc)
    if not same_family and (ib.device_family or ic.device_family):
        notes.append(
            "kernel names are not matched: the runs use different device families "
            f"({', '.join(ib.device_family) or 'none'} vs "
            f"{', '.join(ic.device_family) or 'none'}); "
            "op groups are matched by name, shapes and dtype"
        )
    return RunDiff(
        base=ib,
        candidate=ic,
        verdict=verdict_of(step),
        step=step,
        metrics=tuple(metrics),
        op_groups=_pair(gb, gc, ["name", "shapes", "dtype"]),
        kernels=kernels,
        kernels_matched=same_family,
        findings=tuple(findings),
        findings_unchanged=same,
        notes=tuple(notes),
    )


def regression(diff: RunDiff, key: str, threshold_pct: float) -> bool:
    """Whether metric ``key`` got worse by more than ``threshold_pct`` (% of base, or
    percentage points for shares) and the change is outside the noise (per-step metrics:
    the bootstrap interval excludes zero; others have no noise estimate)."""
    m = diff.metric(key)
    if m is None:
        return False
    worse = m.worse_by_pct()
    if worse is None or worse <= threshold_pct:
        return False
    return m.change is None or m.change.outside_noise


def new_findings_at(diff: RunDiff, level: Severity) -> list[Finding]:
    """Findings that appeared, or became more severe, at ``level`` or worse."""
    out = []
    for fc in diff.findings:
        f = fc.candidate
        if f is None or f.severity < level:
            continue
        if fc.kind == "appeared" or (fc.base is not None and fc.base.severity < f.severity):
            out.append(f)
    return out
