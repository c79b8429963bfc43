"""A sweep: several configurations of one workload (batch size, sequence length, device)
compared as a performance engineer does by hand.

Each configuration is one run (`analyzer.runs.Run`) summarized by `analyzer.runs.summarize`.
This module adds what only the set shows:

- series: the configurations that differ only in the swept label (``batch`` by default),
  one per value of the other labels (``seq=16``, ``seq=64``, a device);
- per series: throughput against ideal linear scaling from the smallest configuration
  (``ideal = throughput(x0) * x / x0``, efficiency = measured / ideal), growth per doubling
  between neighbours (``(t1 / t0) ** (1 / log2(x1 / x0)) - 1``), the point of diminishing
  returns (the first configuration from which every further doubling adds less than the
  threshold), latency growth against throughput gain, utilization gain in points and x-fold;
- the best configuration per goal (lowest latency, under a budget when given; highest
  throughput; lowest energy per sample; highest utilization);
- the ceiling at the largest configuration: its memory-bound share and FLOP/byte, kernel time
  in grids smaller than the SM count, idle-ledger rows (launch overhead among them);
- recommendations, each with the share of step time (or throughput) it rests on, ranked by
  that figure.

A CPU-only trace has no GPU and no device peak: GPU figures stay None and the notes say so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from gpu_trace_analyzer.errors import BadConfigError
from gpu_trace_analyzer.metrics import idle_ledger
from gpu_trace_analyzer.runs import RunSummary

#: Default threshold of the point of diminishing returns: throughput growth per doubling, %.
PLATEAU_PCT: Final = 10.0
#: A configuration's throughput within this % of its series maximum counts as reaching it
#: (the knee: the smallest such configuration).
KNEE_PCT: Final = 90.0
#: Growth per doubling above this % is impossible in steady state (superlinear): noise.
NOISE_GROWTH_PCT: Final = 100.0
#: Fewer profiled steps than this per configuration: no "best" claim (one step is not a rate).
MIN_STEPS_BEST: Final = 3
#: GPU busy below this % of the step: the step is host-bound and its latency measures the host.
HOST_BOUND_BUSY_PCT: Final = 50.0
#: Labels never used to split series (they describe, not configure).
_DESCRIPTIVE: Final = frozenset({"world_size"})
#: Preferred swept labels, in order.
SWEPT_DEFAULTS: Final = ("batch", "batch_size", "bs", "samples")

Goal = str


@dataclass(frozen=True, slots=True)
class Point:
    """One configuration on a series: the swept value, its summary, its scaling figures."""

    x: float  # the swept value; a categorical sweep numbers its values 1, 2, ...
    run: RunSummary
    ideal_samples_per_s: float | None = None
    efficiency_pct: float | None = None
    growth_per_doubling_pct: float | None = None  # from the previous point (None: first)
    label: str = ""  # the swept label's value as given


@dataclass(frozen=True, slots=True)
class Series:
    """Configurations that differ only in the swept label, in increasing order."""

    key: Mapping[str, str]
    points: tuple[Point, ...]
    plateau_x: float | None
    throughput_gain_x: float | None
    latency_growth_x: float | None
    util_gain_pp: float | None
    util_gain_x: float | None
    knee_x: float | None = None  # smallest x within KNEE_PCT of the series maximum
    noise: str | None = None  # why the series reads as noise (no plateau claim), or None

    @property
    def title(self) -> str:
        """``seq=16, device=...`` (``all`` when nothing else varies)."""
        return ", ".join(f"{k}={v}" for k, v in self.key.items()) or "all"

    @property
    def first(self) -> Point:
        return self.points[0]

    @property
    def last(self) -> Point:
        return self.points[-1]


@dataclass(frozen=True, slots=True)
class Best:
    """The configuration that best meets one goal, and its figure."""

    goal: Goal
    run: RunSummary | None
    value: float | None
    unit: str
    why: str


@dataclass(frozen=True, slots=True)
class CeilingRow:
    """One thing keeping utilization from rising at the largest configuration."""

    what: str
    share_pct: float  # of the step time (or of kernel time, as ``of`` says)
    of: str
    detail: str


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A recommendation, the figure it rests on (``gain_pct``) and the numbers quoted."""

    text: str
    gain_pct: float
    basis: str


@dataclass(frozen=True, slots=True)
class Sweep:
    """Everything the renderers show."""

    swept: str
    runs: tuple[RunSummary, ...]
    series: tuple[Series, ...]
    best: tuple[Best, ...]
    ceiling_run: RunSummary | None
    ceiling: tuple[CeilingRow, ...]
    recommendations: tuple[Recommendation, ...]
    plateau_pct: float
    latency_budget_ns: float | None
    cpu_only: bool
    notes: tuple[str, ...] = field(default=())
    numeric: bool = True  # False: a categorical label (device, model): no ideal scaling
    ceiling_why: str = "the largest configuration"

    @property
    def label_keys(self) -> tuple[str, ...]:
        """Every label key, the swept one first."""
        keys: list[str] = [self.swept]
        for r in self.runs:
            keys += [k for k in r.labels if k not in keys]
        return tuple(keys)

    @property
    def second(self) -> str | None:
        """The other label that varies most (the heatmap's second axis), if any."""
        others = [
            (len({r.labels.get(k) for r in self.runs}), k)
            for k in self.label_keys[1:]
            if k not in _DESCRIPTIVE and k != "device"
        ]
        varied = [(n, k) for n, k in others if n > 1]
        return (
            max(varied, key=lambda t: (t[0], -self.label_keys.index(t[1])))[1] if varied else None
        )


# -- choosing the swept label ----------------------------------------------------------------


def _numeric(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) and x > 0 else None


#: Categorical labels preferred as the swept one when no numeric label varies.
CATEGORICAL_DEFAULTS: Final = ("device", "model")


def choose_swept(runs: Sequence[RunSummary], swept: str | None) -> tuple[str, bool]:
    """The swept label and whether it is numeric: ``swept`` if given; else ``batch`` (or a
    synonym) when every run has it; else the numeric label with the most distinct values;
    else a categorical one that varies (``device``, ``model``, then the most distinct)."""
    if swept is not None:
        missing = [r.name for r in runs if not r.labels.get(swept)]
        if missing:
            raise BadConfigError(
                f"--sweep {swept}: no such label in {len(missing)} run(s), e.g. {missing[0]}"
            )
        return swept, all(_numeric(r.labels.get(swept)) is not None for r in runs)
    for key in SWEPT_DEFAULTS:
        if all(_numeric(r.labels.get(key)) is not None for r in runs):
            return key, True
    keys = sorted({k for r in runs for k in r.labels if k not in _DESCRIPTIVE})
    present = [k for k in keys if all(r.labels.get(k) for r in runs)]
    varied = [(len({r.labels[k] for r in runs}), k) for k in present]
    varied = [(n, k) for n, k in varied if n > 1]
    numeric = [(n, k) for n, k in varied if all(_numeric(r.labels[k]) for r in runs)]
    if numeric:
        return max(numeric, key=lambda t: (t[0], t[1]))[1], True
    for key in CATEGORICAL_DEFAULTS:
        if any(k == key for _, k in varied):
            return key, False
    if not varied:
        raise BadConfigError(
            "no label varies across the runs: label them (--label-from, --labels, --label) "
            "with e.g. batch=N"
        )
    return max(varied, key=lambda t: (t[0], t[1]))[1], False


# -- series ------------------------------------------------------------------------------------


def _series_key(r: RunSummary, swept: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted((k, v) for k, v in r.labels.items() if k != swept and k not in _DESCRIPTIVE)
    )


def growth_per_doubling(x0: float, t0: float, x1: float, t1: float) -> float | None:
    """Throughput growth per doubling of x between two points, % (None: no doubling)."""
    if x1 <= x0 or t0 <= 0 or t1 <= 0:
        return None
    ratio: float = (t1 / t0) ** (1.0 / math.log2(x1 / x0))
    return 100.0 * (ratio - 1.0)


def plateau(points: Sequence[Point], threshold_pct: float) -> float | None:
    """The swept value from which every further step grows throughput by less than
    ``threshold_pct`` per doubling; None when the last step still grows by more (or the
    series has one point or no throughput)."""
    growth = [p.growth_per_doubling_pct for p in points[1:]]
    if not growth or any(g is None for g in growth):
        return None
    found: float | None = None
    for i in range(len(growth) - 1, -1, -1):
        g = growth[i]
        assert g is not None
        if g >= threshold_pct:
            break
        found = points[i].x
    return found


def _series(key: Mapping[str, str], runs: Sequence[RunSummary], swept: str, plateau_pct: float,
            numeric: bool = True) -> Series:  # fmt: skip
    if not numeric:
        return _categorical_series(key, runs, swept)
    ordered = sorted(runs, key=lambda r: _numeric(r.labels[swept]) or 0.0)
    xs = [_numeric(r.labels[swept]) or 0.0 for r in ordered]
    x0, t0 = xs[0], ordered[0].samples_per_s
    points: list[Point] = []
    for i, (x, r) in enumerate(zip(xs, ordered, strict=True)):
        ideal = t0 * x / x0 if t0 else None
        eff = 100.0 * r.samples_per_s / ideal if ideal and r.samples_per_s is not None else None
        growth = None
        prev = points[-1] if points else None
        if i and prev is not None and prev.run.samples_per_s and r.samples_per_s:
            growth = growth_per_doubling(prev.x, prev.run.samples_per_s, x, r.samples_per_s)
        points.append(Point(x, r, ideal, eff, growth, r.labels[swept]))
    why = noise(points)
    plat = plateau(points, plateau_pct) if len(points) > 1 and why is None else None
    return replace(_with_gains(key, points, plat), knee_x=knee(points), noise=why)


def rate_range(r: RunSummary) -> tuple[float, float] | None:
    """Throughput at the slowest and at the fastest profiled step (samples/s)."""
    rng = r.step_ns_range
    if rng is None or not r.samples_per_step or rng[0] <= 0:
        return None
    return r.samples_per_step * 1e9 / rng[1], r.samples_per_step * 1e9 / rng[0]


def noise(points: Sequence[Point]) -> str | None:
    """Why a series' throughput reads as noise rather than scaling: a growth per doubling
    above `NOISE_GROWTH_PCT` (superlinear), or a drop followed by a rise (non-monotonic)."""
    for p in points[1:]:
        g = p.growth_per_doubling_pct
        if g is not None and g > NOISE_GROWTH_PCT:
            return (
                f"growth per doubling {g:+.1f}% at {_fmt_x(p.x)} is above "
                f"{NOISE_GROWTH_PCT:g}% (superlinear, impossible in steady state)"
            )
    thr = [p.run.samples_per_s for p in points]
    if any(t is None for t in thr):
        return None
    dropped = None
    for a, b in itertools.pairwise(points):
        ta, tb = a.run.samples_per_s or 0.0, b.run.samples_per_s or 0.0
        if tb < ta and dropped is None:
            dropped = (a, b)
        elif tb > ta and dropped is not None:
            a0, b0 = dropped
            return (
                f"throughput is not monotonic: {a0.run.samples_per_s:,.0f} ({_fmt_x(a0.x)}) -> "
                f"{b0.run.samples_per_s:,.0f} ({_fmt_x(b0.x)}) then {tb:,.0f} ({_fmt_x(b.x)})"
            )
    return None


def knee(points: Sequence[Point], pct: float = KNEE_PCT) -> float | None:
    """The smallest swept value whose throughput is within ``pct``% of the series maximum,
    or whose step interval (throughput at its fastest step) reaches the maximum's slowest."""
    rated = [p for p in points if p.run.samples_per_s]
    if not rated:
        return None
    top = max(rated, key=lambda p: p.run.samples_per_s or 0.0)
    tmax = top.run.samples_per_s or 0.0
    top_rng = rate_range(top.run)
    for p in rated:
        t = p.run.samples_per_s or 0.0
        rng = rate_range(p.run)
        overlaps = rng is not None and top_rng is not None and rng[1] >= top_rng[0]
        if t >= pct / 100.0 * tmax or overlaps:
            return p.x
    return top.x


def _categorical_series(key: Mapping[str, str], runs: Sequence[RunSummary], swept: str
                        ) -> Series:  # fmt: skip
    """A series over a label without an order (device, model): values sorted by name,
    numbered 1, 2, ...; gains against the first; no ideal scaling and no plateau."""
    ordered = sorted(runs, key=lambda r: r.labels[swept])
    points = [Point(float(i), r, label=r.labels[swept]) for i, r in enumerate(ordered, 1)]
    return _with_gains(key, points, None)


def _with_gains(key: Mapping[str, str], points: Sequence[Point], plateau_x: float | None
                ) -> Series:  # fmt: skip
    first, last = points[0].run, points[-1].run
    tgain = (
        last.samples_per_s / first.samples_per_s
        if first.samples_per_s and last.samples_per_s is not None
        else None
    )
    lgrowth = last.latency_median_ns / first.latency_median_ns if first.latency_median_ns else None
    ugain_pp = ugain_x = None
    if first.gpu_busy_pct is not None and last.gpu_busy_pct is not None:
        ugain_pp = last.gpu_busy_pct - first.gpu_busy_pct
        ugain_x = last.gpu_busy_pct / first.gpu_busy_pct if first.gpu_busy_pct else None
    return Series(
        key=dict(key),
        points=tuple(points),
        plateau_x=plateau_x,
        throughput_gain_x=tgain,
        latency_growth_x=lgrowth,
        util_gain_pp=ugain_pp,
        util_gain_x=ugain_x,
    )


# -- best per goal --------------------------------------------------------------------------


def _seq_key(runs: Sequence[RunSummary]) -> str | None:
    """The sequence-length label when it varies across the runs (different work per sample)."""
    from gpu_trace_analyzer.runs import SEQ_KEYS

    for k in SEQ_KEYS:
        if len({r.labels.get(k) for r in runs}) > 1:
            return k
    return None


def _overlap_note(best: RunSummary, pool: Sequence[RunSummary]) -> str:
    """``; within noise of X`` when another configuration's step range overlaps the best's."""
    rng = best.step_ns_range
    for r in sorted(pool, key=lambda r: r.latency_median_ns):
        other = r.step_ns_range
        if r is best or rng is None or other is None:
            continue
        if other[0] <= rng[1] and rng[0] <= other[1]:
            return (
                f"; within noise of {r.name} (steps {other[0] / 1e6:.3f}-{other[1] / 1e6:.3f} ms "
                f"against {rng[0] / 1e6:.3f}-{rng[1] / 1e6:.3f} ms)"
            )
    return ""


def _rate_overlap_note(best: RunSummary, pool: Sequence[RunSummary]) -> str:
    """``; within noise of X`` when another configuration's throughput interval (its
    slowest to fastest step) reaches the best's."""
    rng = rate_range(best)
    for r in sorted(pool, key=lambda r: -(r.samples_per_s or 0.0)):
        other = rate_range(r)
        if r is best or rng is None or other is None:
            continue
        if other[1] >= rng[0]:
            return (
                f"; within noise of {r.name} ({other[0]:,.0f}-{other[1]:,.0f} against "
                f"{rng[0]:,.0f}-{rng[1]:,.0f} samples/s over the steps)"
            )
    return ""


def _best(runs: Sequence[RunSummary], budget_ns: float | None, numeric: bool = True
          ) -> list[Best]:  # fmt: skip
    """Best per goal among configurations doing the same work: within one sequence length
    when it varies; none when a configuration has fewer than `MIN_STEPS_BEST` steps; no
    utilization ranking across devices; host-bound device sweeps rank GPU time per step."""
    few = [r for r in runs if r.steps < MIN_STEPS_BEST]
    devices_vary = len({r.labels.get("device") for r in runs}) > 1
    seq = _seq_key(runs)
    groups: dict[str, list[RunSummary]] = {}
    for r in runs:
        groups.setdefault(f" ({seq}={r.labels.get(seq, '')})" if seq else "", []).append(r)
    out: list[Best] = []
    if few:
        why = (
            f"not ranked: {len(few)} of {len(runs)} configurations have fewer than "
            f"{MIN_STEPS_BEST} profiled steps (e.g. {few[0].name}: {few[0].steps}); one step's "
            "time cannot separate a difference from noise"
        )
        goals = [("lowest latency", "ns"), ("highest throughput", "samples/s")]
        if budget_ns is not None:
            goals.insert(0, ("highest throughput within the latency budget", "samples/s"))
        if not numeric and any(r.gpu_ns_per_step is not None for r in runs):
            goals.append(("lowest GPU time per step", "ns"))
        goals.append(("lowest energy per sample", "J"))
        return [Best(g, None, None, u, why) for g, u in goals] + [_util_best(runs, devices_vary)]
    for suffix, members in sorted(groups.items(), key=lambda kv: _sort_label(kv[0])):
        out += _best_group(members, budget_ns, suffix, numeric and not devices_vary)
    out.append(_util_best(runs, devices_vary))
    return out


def _sort_label(text: str) -> tuple[float, str]:
    digits = "".join(c for c in text if c.isdigit() or c == ".")
    try:
        return float(digits), text
    except ValueError:
        return 0.0, text


def _util_best(runs: Sequence[RunSummary], devices_vary: bool) -> Best:
    util = [r for r in runs if r.gpu_busy_pct is not None]
    if not util:
        return Best("highest utilization", None, None, "pct", "no GPU in the traces")
    if devices_vary:
        return Best(
            "highest utilization",
            None,
            None,
            "pct",
            "not ranked across devices: a slower kernel raises the GPU busy share",
        )
    u = max(util, key=lambda r: r.gpu_busy_pct or 0.0)
    return Best("highest utilization", u, u.gpu_busy_pct, "pct", "GPU busy share")


def _best_group(runs: Sequence[RunSummary], budget_ns: float | None, suffix: str,
                same_device: bool) -> list[Best]:  # fmt: skip
    out: list[Best] = []
    if budget_ns is not None:
        pool = [r for r in runs if r.latency_median_ns <= budget_ns]
        within = [r for r in pool if r.samples_per_s is not None]
        top = max(within, key=lambda r: r.samples_per_s or 0.0) if within else None
        out.append(
            Best(
                "highest throughput within the latency budget" + suffix,
                top,
                top.samples_per_s if top else None,
                "samples/s",
                f"{len(pool)} of {len(runs)} configurations have a median step latency within "
                f"{budget_ns / 1e6:.3g} ms",
            )
        )
    host = [r for r in runs if r.gpu_busy_pct is not None and r.gpu_busy_pct < HOST_BOUND_BUSY_PCT]
    low = min(runs, key=lambda r: r.latency_median_ns)
    if host and not same_device:
        shown = ", ".join(f"{r.name} {r.gpu_busy_pct:.1f}%" for r in host[:4])
        out.append(
            Best(
                "lowest latency" + suffix,
                None,
                None,
                "ns",
                f"host-bound: GPU busy under {HOST_BOUND_BUSY_PCT:g}% of the step ({shown}); "
                "the latency difference measures the host, not the device",
            )
        )
    else:
        out.append(
            Best(
                "lowest latency" + suffix,
                low,
                low.latency_median_ns,
                "ns",
                "median step latency" + _overlap_note(low, runs),
            )
        )
    if not same_device:
        gpu = [r for r in runs if r.gpu_ns_per_step is not None]
        if gpu:
            g = min(gpu, key=lambda r: r.gpu_ns_per_step or 0.0)
            out.append(
                Best(
                    "lowest GPU time per step" + suffix,
                    g,
                    g.gpu_ns_per_step,
                    "ns",
                    "GPU busy time per step (the device figure)",
                )
            )
    rated = [r for r in runs if r.samples_per_s is not None]
    if rated:
        top = max(rated, key=lambda r: r.samples_per_s or 0.0)
        out.append(
            Best(
                "highest throughput" + suffix,
                top,
                top.samples_per_s,
                "samples/s",
                "samples/s" + _rate_overlap_note(top, rated),
            )
        )
    else:
        out.append(
            Best("highest throughput" + suffix, None, None, "samples/s", "no samples per step")
        )
    energy = [r for r in runs if r.energy_per_sample_j is not None]
    if energy:
        e = min(energy, key=lambda r: r.energy_per_sample_j or 0.0)
        out.append(Best("lowest energy per sample" + suffix, e, e.energy_per_sample_j, "J", "DCGM"))
    else:
        out.append(
            Best("lowest energy per sample" + suffix, None, None, "J", "no DCGM counters given")
        )
    return out


# -- the ceiling at the largest configuration ----------------------------------------------------


def _ceiling(r: RunSummary) -> list[CeilingRow]:
    rows: list[CeilingRow] = []
    step = r.latency_median_ns
    if r.has_gpu and r.gpu_busy_pct is not None:
        rows.append(
            CeilingRow(
                "GPU idle within the steps",
                100.0 - r.gpu_busy_pct,
                "step time",
                f"GPU busy {r.gpu_busy_pct:.1f}% of the step time",
            )
        )
    if r.memory_bound_pct is not None and r.kernel_ns_per_step:
        parts = []
        if r.memory_bound_intensity is not None:
            parts.append(f"its modeled ops run at {r.memory_bound_intensity:.3g} FLOP/byte")
        if r.memory_bound_heuristic_pct:
            parts.append(
                f"{r.memory_bound_heuristic_pct:.1f}% of it is classified by kernel name only, "
                "without recorded shapes or a FLOP/byte"
            )
        ai = f"; {'; '.join(parts)}" if parts else ""
        rows.append(
            CeilingRow(
                "memory-bound kernels",
                r.memory_bound_pct,
                "kernel time",
                f"{r.memory_bound_pct:.1f}% of kernel time is memory-bound{ai}",
            )
        )
    if r.small_grid_pct is not None and r.small_grid_pct > 0:
        rows.append(
            CeilingRow(
                f"kernels with fewer blocks than {r.compute_units}",
                r.small_grid_pct,
                "kernel time",
                f"{r.small_grid_pct:.1f}% of compute-kernel time leaves {r.compute_units} idle",
            )
        )
    if step > 0:
        for cause, ns in sorted(r.idle_ns_per_step.items(), key=lambda kv: -kv[1]):
            rows.append(
                CeilingRow(
                    f"idle: {idle_ledger.CAUSE_LABELS.get(cause, cause)}",
                    100.0 * ns / step,
                    "step time",
                    f"{ns / 1e3:.1f} us of GPU idle per step (idle ledger: {cause})",
                )
            )
    return rows


# -- recommendations ------------------------------------------------------------------------------


def _recommendations(sw_series: Sequence[Series], ceiling: Sequence[CeilingRow],
                     top: RunSummary | None, swept: str,
                     why: str = "the largest configuration") -> list[Recommendation]:  # fmt: skip
    out: list[Recommendation] = []
    for s in sw_series:
        where = f" ({s.title})" if len(sw_series) > 1 else ""
        if s.noise is not None:
            continue  # a noisy series carries no batch advice (the notes say why)
        rated = [pt for pt in s.points if pt.run.samples_per_s]
        peak = max(rated, key=lambda pt: pt.run.samples_per_s or 0.0) if rated else None
        last = peak.run if peak is not None else s.last.run
        if peak is not None and s.knee_x is not None and s.knee_x < peak.x:
            p = next(pt for pt in s.points if pt.x == s.knee_x)
            if p.run.samples_per_s and last.samples_per_s and last.latency_median_ns:
                lost = 100.0 * (1.0 - p.run.samples_per_s / last.samples_per_s)
                saved = 100.0 * (1.0 - p.run.latency_median_ns / last.latency_median_ns)
                than = f"{lost:.1f}% less" if lost >= 0 else f"{-lost:.1f}% more"
                out.append(
                    Recommendation(
                        f"Run at {swept}={_fmt_x(s.knee_x)}{where}: the smallest {swept} within "
                        f"{KNEE_PCT:g}% of the series' highest throughput (or whose step "
                        f"interval reaches it); it gives "
                        f"{p.run.samples_per_s:,.1f} samples/s against {last.samples_per_s:,.1f} "
                        f"at {swept}={_fmt_x(peak.x)} ({than}) with a "
                        f"{saved:.1f}% lower median latency "
                        f"({p.run.latency_median_ns / 1e6:.3f} ms vs "
                        f"{last.latency_median_ns / 1e6:.3f} ms).",
                        saved,
                        "latency saved at the knee",
                    )
                )
        elif s.plateau_x is None and len(s.points) > 1 and s.last.efficiency_pct is not None:
            g = s.last.growth_per_doubling_pct
            if g is not None:
                out.append(
                    Recommendation(
                        f"Try {swept} beyond {_fmt_x(s.last.x)}{where}: the last doubling still "
                        f"added {g:.1f}% throughput (above the threshold), if memory and the "
                        "latency budget allow.",
                        g,
                        "throughput growth of the last doubling",
                    )
                )
    if top is not None:
        for row in ceiling:
            if row.of != "step time" or row.what == "GPU idle within the steps":
                continue
            if row.share_pct < 1.0:
                continue
            out.append(
                Recommendation(
                    f"At {why} ({top.name}) {row.detail}: "
                    f"{row.share_pct:.1f}% of its median step "
                    f"({top.latency_median_ns / 1e6:.3f} ms); removing it is the upper bound "
                    "of the gain.",
                    row.share_pct,
                    f"share of step time: {row.what}",
                )
            )
        kernel_share = (top.gpu_busy_pct or 0.0) / 100.0 if top.gpu_busy_pct is not None else None
        for row in ceiling:
            if row.of != "kernel time" or kernel_share is None or row.share_pct < 5.0:
                continue
            at_stake = row.share_pct * kernel_share
            fix = (
                "fuse the memory-bound ops or raise their arithmetic intensity (larger tiles, "
                "lower precision)"
                if row.what == "memory-bound kernels"
                else "raise the work per kernel (larger batch or sequence, fused kernels) so "
                f"every {top.compute_units[:-1]} gets a block"
            )
            out.append(
                Recommendation(
                    f"At {why} ({top.name}) {row.detail}; it is "
                    f"{at_stake:.1f}% of the step time (x GPU busy "
                    f"{top.gpu_busy_pct:.1f}%): {fix}.",
                    at_stake,
                    f"share of step time: {row.what}",
                )
            )
    out.sort(key=lambda r: -r.gain_pct)
    return out


def _fmt_x(x: float) -> str:
    return f"{x:g}"


# -- the sweep ------------------------------------------------------------------------------------


def sweep(
    runs: Sequence[RunSummary],
    *,
    swept: str | None = None,
    plateau_pct: float = PLATEAU_PCT,
    latency_budget_ns: float | None = None,
    notes: Sequence[str] = (),
) -> Sweep:
    """The sweep over ``runs`` (at least two; see the module doc)."""
    if len(runs) < 2:
        raise BadConfigError("analyze sweep needs at least two runs (configurations)")
    key, numeric = choose_swept(runs, swept)
    varying = {
        k for k in {k for r in runs for k in r.labels} if len({r.labels.get(k) for r in runs}) > 1
    }
    groups: dict[tuple[tuple[str, str], ...], list[RunSummary]] = {}
    for r in runs:
        gkey = tuple((k, v) for k, v in _series_key(r, key) if k in varying)
        groups.setdefault(gkey, []).append(r)
    out_notes = list(notes)
    for gkey, members in groups.items():
        xs = [r.labels[key] for r in members]
        if len(set(xs)) != len(xs):
            where = ", ".join(f"{k}={v}" for k, v in gkey) or "all runs"
            raise BadConfigError(
                f"two runs have the same {key} with the same other labels ({where}): "
                "label what differs between them"
            )
    series = [
        _series(dict(k), members, key, plateau_pct, numeric)
        for k, members in sorted(groups.items(), key=lambda kv: kv[0])
    ]
    out_notes += [
        f"{se.title}: read as noise, not scaling ({se.noise}); no plateau or batch "
        "advice is drawn from it: profile more steps per configuration"
        for se in series
        if se.noise is not None
    ]
    few = sorted({r.steps for r in runs if r.steps < MIN_STEPS_BEST})
    if few:
        out_notes.append(
            f"some configurations have {'/'.join(map(str, few))} profiled step(s), fewer than "
            f"{MIN_STEPS_BEST}: no best configuration is named (one step's time is not a rate "
            "and cannot separate a difference from noise)"
        )
    cpu_only = not any(r.has_gpu for r in runs)
    if cpu_only:
        out_notes.insert(
            0,
            "CPU-only traces: no GPU activity and no device peak, so GPU busy share, MFU, "
            "TFLOP/s, arithmetic intensity, memory-bound share and energy are not computable; "
            "latency, throughput, latency growth and scaling against ideal are.",
        )
    missing = [r.name for r in runs if r.samples_per_s is None]
    if missing:
        out_notes.append(
            f"{len(missing)} run(s) have no samples per step (no batch/samples label and no "
            f"--batch-dim-op), so no throughput: {', '.join(missing[:5])}"
        )
    if numeric:
        largest = max(
            runs,
            key=lambda r: (
                _numeric(r.labels[key]) or 0.0,
                r.tokens_per_step or 0.0,
                r.latency_median_ns,
            ),
        )
        why = "the largest configuration"
    else:  # no "largest" device or model: the one that delivers most
        largest = max(runs, key=lambda r: (r.samples_per_s or 0.0, -r.latency_median_ns))
        rated = any(r.samples_per_s for r in runs)
        why = f"the {'highest-throughput' if rated else 'lowest-latency'} configuration"
    ceiling = _ceiling(largest)
    return Sweep(
        swept=key,
        runs=tuple(runs),
        series=tuple(series),
        best=tuple(_best(runs, latency_budget_ns, numeric)),
        ceiling_run=largest,
        ceiling=tuple(ceiling),
        recommendations=tuple(_recommendations(series, ceiling, largest, key, why)),
        plateau_pct=plateau_pct,
        latency_budget_ns=latency_budget_ns,
        cpu_only=cpu_only,
        notes=tuple(out_notes),
        numeric=numeric,
        ceiling_why=why,
    )


def by_name(s: Sweep) -> Mapping[str, RunSummary]:
    """The runs by name."""
    return {r.name: r for r in s.runs}
