"""Several runs and their labels: what a command comparing many runs (a sweep, a scaling
study) loads, and each run's summary figures.

A `Run` is one input (a trace file, a per-rank directory, a Parquet export) with its labels
(``batch=8``, ``seq=64``, ``device=...``) and its loaded `Analysis`. Labels come from, in
increasing precedence: the trace's own metadata (``device``, ``world_size``), a regular
expression with named groups applied to the file name (``--label-from``), a CSV file
(``--labels``), and ``--label RUN=key=value,...``. `summarize` reads each run's figures from
the project's own metrics (step accounting, roofline op groups, idle ledger, the energy
rule) and converts nothing: times stay int nanoseconds, rates carry their unit in the name.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec
import polars as pl
from gpu_trace_analyzer.api import Analysis, load
from gpu_trace_analyzer.config import AnalyzerConfig
from gpu_trace_analyzer.diff import _energy_per_step, _peak_memory, divisor, per_step
from gpu_trace_analyzer.errors import BadConfigError
from gpu_trace_analyzer.metrics import idle_ledger
from gpu_trace_analyzer.metrics.roofline import roofline
from gpu_trace_analyzer.untrusted import one_line

#: Label keys that give the samples (and tokens) per step, in order of preference.
SAMPLE_KEYS: Final = ("samples", "batch", "batch_size", "bs")
TOKEN_KEYS: Final = ("tokens",)
SEQ_KEYS: Final = ("seq", "seq_len", "sequence", "seqlen")
#: File-name suffixes dropped to name a run (``bs8_seq64.pt.trace.json.gz`` -> ``bs8_seq64``).
_SUFFIXES: Final = (".gz", ".json", ".trace", ".pt", ".sqlite", ".parquet", ".csv")


@dataclass(frozen=True, slots=True)
class Run:
    """One input with its labels and its analysis."""

    path: Path
    name: str
    labels: Mapping[str, str]
    analysis: Analysis


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run's figures (None: not computable from this run; ``notes`` say why).

    Per step figures use the slowest rank of each profiled step (`analyzer.diff.per_step`);
    ``gpu_busy_pct`` is the GPU time of the steps' own work over their step time;
    ``memory_bound_intensity`` is the FLOP/byte of the memory-bound modeled op groups and
    ``memory_bound_heuristic_pct`` the share of memory-bound kernel time classified by kernel
    name only (no FLOP/byte exists for it); ``flops_per_step`` / ``bytes_per_step`` are the
    roofline's modeled op groups per step and rank; ``mfu_pct`` divides the modeled FLOPs
    per step by the median step time and by the peak of the roof (pipe, dtype) holding most
    modeled FLOPs; ``achieved_tflops`` is the modeled ops' FLOPs over their own GPU time;
    ``idle_ns_per_step`` the idle ledger per cause per step and rank.
    """

    name: str
    path: str
    labels: Mapping[str, str]
    devices: tuple[str, ...]
    world_size: int
    steps: int
    has_steps: bool
    has_gpu: bool
    step_ns: tuple[int, ...]
    latency_median_ns: float
    latency_p90_ns: float
    samples_per_step: float | None = None
    samples_source: str | None = None
    tokens_per_step: float | None = None
    tokens_source: str | None = None
    samples_per_s: float | None = None
    tokens_per_s: float | None = None
    gpu_busy_pct: float | None = None
    flops_per_step: float | None = None
    bytes_per_step: float | None = None
    peak_dtype: str | None = None
    peak_tflops: float | None = None
    mfu_pct: float | None = None
    achieved_tflops: float | None = None
    intensity_flop_per_byte: float | None = None
    memory_bound_pct: float | None = None
    memory_bound_intensity: float | None = None
    memory_bound_heuristic_pct: float | None = None
    kernel_ns_per_step: float | None = None
    small_grid_pct: float | None = None
    peak_memory_bytes: float | None = None
    energy_per_step_j: float | None = None
    energy_per_sample_j: float | None = None
    avg_power_w: float | None = None
    idle_ns_per_step: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    gpu_ns_per_step: float | None = None  # GPU busy time of the steps' own work, mean per step
    vendor: str | None = None  # the device database's vendor when every device agrees

    @property
    def step_ns_range(self) -> tuple[int, int] | None:
        """Shortest and longest profiled step (the interval shown per configuration)."""
        return (min(self.step_ns), max(self.step_ns)) if self.step_ns else None

    @property
    def compute_units(self) -> str:
        """What the device calls its compute units: ``CUs`` on AMD, ``SMs`` otherwise."""
        return "CUs" if self.vendor == "amd" else "SMs"


# -- naming and labels ------------------------------------------------------------------------


def run_name(path: Path) -> str:
    """The run's short name: its file or directory name without trace suffixes."""
    name = path.name or str(path)
    while True:
        for suffix in _SUFFIXES:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
        else:
            return name


def _keys(path: Path) -> set[str]:
    """What ``RUN`` in ``--label RUN=...`` or a CSV row may say to name ``path``."""
    return {str(path), path.name, run_name(path)}


def _pairs(text: str, what: str) -> dict[str, str]:
    """``key=value,key=value`` as a dict (a bad pair is a one-line error)."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise BadConfigError(f"{what}: expected key=value, got {one_line(part)!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise BadConfigError(f"{what}: label key {one_line(key)!r} is not a plain name")
        out[key] = value
    return out


def parse_label_args(items: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
    """``--label RUN=key=value,...`` arguments as (RUN, labels)."""
    out = []
    for item in items:
        run, sep, rest = item.partition("=")
        if not sep or not run.strip() or not rest.strip():
            raise BadConfigError(f"--label {one_line(item)!r}: expected RUN=key=value[,...]")
        out.append((run.strip(), _pairs(rest, f"--label {run.strip()}")))
    return out


def read_labels_csv(path: Path) -> list[tuple[str, dict[str, str]]]:
    """A labels CSV: a header whose first column (``run``, ``path`` or ``file``) names the
    run, the other columns label keys; one row per run."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadConfigError(f"--labels: cannot read {one_line(str(path))}: {exc}") from exc
    rows = list(csv.reader(text.splitlines()))
    if not rows or len(rows[0]) < 2:
        raise BadConfigError(f"--labels {one_line(str(path))}: needs a header: run,key,...")
    header = [h.strip() for h in rows[0]]
    if header[0].lower() not in ("run", "path", "file"):
        raise BadConfigError(
            f"--labels {one_line(str(path))}: the first column must be run, path or file"
        )
    for key in header[1:]:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise BadConfigError(f"--labels: label key {one_line(key)!r} is not a plain name")
    out = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise BadConfigError(
                f"--labels {one_line(str(path))} line {number}: {len(row)} cells, "
                f"header has {len(header)}"
            )
        labels = {k: v.strip() for k, v in zip(header[1:], row[1:], strict=True) if v.strip()}
        out.append((row[0].strip(), labels))
    return out


def compile_label_regex(pattern: str) -> re.Pattern[str]:
    """``--label-from`` compiled; it must have at least one named group."""
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise BadConfigError(f"--label-from: not a regular expression: {exc}") from exc
    if not rx.groupindex:
        raise BadConfigError("--label-from: the expression has no named group (?P<key>...)")
    return rx


def labels_from_name(rx: re.Pattern[str], path: Path) -> dict[str, str]:
    """The named groups of ``rx`` searched in the file name (a miss is an error)."""
    match = rx.search(path.name)
    if match is None:
        raise BadConfigError(
            f"--label-from: {one_line(rx.pattern)!r} does not match {one_line(path.name)!r}"
        )
    return {k: v for k, v in match.groupdict().items() if v is not None}


def assign_labels(
    paths: Sequence[Path],
    *,
    label_args: Sequence[str] = (),
    labels_csv: Path | None = None,
    label_from: str | None = None,
) -> list[dict[str, str]]:
    """The user's labels of each path (metadata labels are added by `load_runs`)."""
    out: list[dict[str, str]] = [{} for _ in paths]
    if label_from is not None:
        rx = compile_label_regex(label_from)
        for i, p in enumerate(paths):
            out[i].update(labels_from_name(rx, p))
    given: list[tuple[str, str, dict[str, str]]] = []
    if labels_csv is not None:
        given += [("--labels", run, lab) for run, lab in read_labels_csv(labels_csv)]
    given += [("--label", run, lab) for run, lab in parse_label_args(label_args)]
    for option, run, labels in given:
        hits = [i for i, p in enumerate(paths) if run in _keys(p)]
        if not hits:
            raise BadConfigError(f"{option}: {one_line(run)!r} names none of the runs given")
        for i in hits:
            out[i].update(labels)
    return out


def load_runs(
    paths: Sequence[Path],
    labels: Sequence[Mapping[str, str]],
    *,
    dcgm: Mapping[int, Sequence[Path]] | None = None,
    device: str | None = None,
    config: AnalyzerConfig | Path | None = None,
) -> list[Run]:
    """Load each path (plus its DCGM files) and add metadata labels: ``device`` (the trace's
    device names) and ``world_size``, unless the user gave them."""
    runs = []
    for i, path in enumerate(paths):
        a = load([path, *(dcgm or {}).get(i, ())], device=device, config=config)
        merged = dict(labels[i])
        for key, value in metadata_labels(a).items():
            merged.setdefault(key, value)
        runs.append(Run(path, run_name(path), merged, a))
    return runs


def metadata_labels(a: Analysis) -> dict[str, str]:
    """Labels the trace itself gives: ``device`` (names, joined) and ``world_size``."""
    out: dict[str, str] = {}
    names = sorted({d.name for d in a.meta.devices})
    if names and a.kernels.height:
        out["device"] = " + ".join(names)
    elif not a.kernels.height:
        out["device"] = "CPU only"
    ranks = {r.rank for r in a.meta.ranks}
    world = a.meta.world_size or len(ranks) or 1
    out["world_size"] = str(world)
    return out


# -- samples per step ---------------------------------------------------------------------------


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _label_number(labels: Mapping[str, str], keys: Sequence[str]) -> tuple[float, str] | None:
    for key in keys:
        if key in labels and (value := _number(labels[key])) is not None:
            return value, f"label {key}"
    return None


def leading_dim(a: Analysis, op_name: str) -> tuple[int, int] | None:
    """The leading dimension of the first input of ``op_name`` (the most common value over
    its calls) and how many calls have another one; None when the op has no shapes."""
    ops = a.ops.filter(pl.col("name").cast(pl.String) == op_name).select("input_dims")
    values: list[int] = []
    for text in ops["input_dims"].drop_nulls().to_list():
        try:
            dims = msgspec.json.decode(str(text))
        except msgspec.DecodeError:
            continue
        if isinstance(dims, list) and dims and isinstance(dims[0], list) and dims[0]:
            first = dims[0][0]
            if isinstance(first, int) and first > 0:
                values.append(first)
    if not values:
        return None
    mode = statistics.mode(values)
    return mode, sum(v != mode for v in values)


def samples_per_step(
    run: Run, batch_dim_op: str | None
) -> tuple[float | None, str | None, float | None, str | None, list[str]]:
    """Samples and tokens per step with their sources: a ``samples``/``batch`` label, else
    the leading dimension of ``batch_dim_op``'s input; tokens from a ``tokens`` label, else
    samples x a ``seq`` label. Also notes on what was inferred."""
    notes: list[str] = []
    found = _label_number(run.labels, SAMPLE_KEYS)
    samples, source = found if found else (None, None)
    if samples is None and batch_dim_op is not None:
        lead = leading_dim(run.analysis, batch_dim_op)
        if lead is None:
            notes.append(f"--batch-dim-op {batch_dim_op}: no call with input shapes in this run")
        else:
            samples, source = float(lead[0]), f"leading dim of {batch_dim_op}"
            if lead[1]:
                notes.append(
                    f"{lead[1]} calls of {batch_dim_op} have another leading dimension than "
                    f"{lead[0]} (the most common, used)"
                )
    tok = _label_number(run.labels, TOKEN_KEYS)
    tokens, tsource = tok if tok else (None, None)
    if tokens is None and samples is not None:
        seq = _label_number(run.labels, SEQ_KEYS)
        if seq is not None:
            tokens, tsource = samples * seq[0], f"samples x {seq[1]}"
    return samples, source, tokens, tsource, notes


# -- one run's figures ----------------------------------------------------------------------------


def _p90(values: Sequence[int]) -> float:
    """The 90th percentile, linear between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = 0.9 * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _dominant_peak(ops: pl.DataFrame) -> tuple[str | None, float | None]:
    """The roof (pipe dtype) holding most modeled FLOPs and its peak TFLOP/s."""
    modeled = ops.filter(
        (pl.col("basis") == "modeled") & pl.col("peak_tflops").is_not_null() & (pl.col("flops") > 0)
    )
    if modeled.height == 0:
        return None, None
    top = (
        modeled.group_by("pipe", "roof_dtype")
        .agg(pl.col("flops").sum(), pl.col("peak_tflops").max())
        .sort(["flops", "pipe", "roof_dtype"], descending=[True, False, False])
        .row(0, named=True)
    )
    return f"{top['pipe']} {top['roof_dtype']}", float(top["peak_tflops"])


def _small_grid_pct(a: Analysis) -> float | None:
    """Share of compute-kernel time in kernels whose grid has fewer blocks than the device
    has SMs (`rules.idle_sms.kernel_efficiency`); None without grid or SM counts."""
    from gpu_trace_analyzer.rules.idle_sms import kernel_efficiency

    k = kernel_efficiency(a.tables, a.context.options)
    k = k.filter(pl.col("num_sms").is_not_null() & (pl.col("num_sms") > 0))
    total = float(k["dur_ns"].sum() or 0) if k.height else 0.0
    if total <= 0:
        return None
    small = float(k.filter(pl.col("blocks") < pl.col("num_sms"))["dur_ns"].sum() or 0)
    return 100.0 * small / total


def _idle_per_step(a: Analysis, per: int) -> dict[str, float]:
    rows = idle_ledger.by_cause(a.context)
    if rows.height == 0:
        return {}
    sums = rows.group_by("cause").agg(pl.col("idle_ns").sum())
    return {str(c): float(ns) / per for c, ns in sums.iter_rows() if ns}


def _intensity(groups: pl.DataFrame) -> float | None:
    """FLOPs over bytes of these modeled op groups (None: no bytes)."""
    flops = float(groups["flops"].sum() or 0) if groups.height else 0.0
    nbytes = float(groups["bytes"].sum() or 0) if groups.height else 0.0
    return flops / nbytes if flops and nbytes else None


def _avg_power(a: Analysis) -> float | None:
    for f in a.findings:
        value = f.evidence.get("mean_power_w") if f.rule_id == "energy" else None
        if isinstance(value, int | float):
            return float(value)
    return None


def _vendor(names: Sequence[str]) -> str | None:
    """The vendor of the named devices (device database), None when unknown or mixed."""
    from gpu_trace_analyzer.devices import match

    vendors = {spec.vendor if (spec := match(n)) else None for n in names}
    return vendors.pop() if len(vendors) == 1 else None


def summarize(run: Run, batch_dim_op: str | None = None) -> RunSummary:
    """The run's figures (see `RunSummary`)."""
    a = run.analysis
    steps = per_step(a)
    step_ns = tuple(int(v) for v in steps["step_ns"])
    median = float(statistics.median(step_ns)) if step_ns else 0.0
    samples, ssrc, tokens, tsrc, notes = samples_per_step(run, batch_dim_op)
    has_steps = bool(a.steps.height)
    if not has_steps:
        notes.append("no ProfilerStep annotations: the analysis window counts as one step")
    per_s = 1e9 / median if median > 0 else None
    labels = dict(run.labels)
    if samples is not None and ssrc and ssrc.startswith("leading dim") and "batch" not in labels:
        labels["batch"] = f"{samples:g}"  # the inferred batch is a label like a given one
    base = RunSummary(
        name=run.name,
        path=str(run.path),
        labels=labels,
        devices=tuple(sorted({d.name for d in a.meta.devices})),
        world_size=int(_number(run.labels.get("world_size", "1")) or 1),
        steps=len(step_ns),
        has_steps=has_steps,
        has_gpu=a.kernels.height > 0,
        step_ns=step_ns,
        vendor=_vendor(tuple(d.name for d in a.meta.devices)),
        latency_median_ns=median,
        latency_p90_ns=_p90(step_ns) if step_ns else 0.0,
        samples_per_step=samples,
        samples_source=ssrc,
        tokens_per_step=tokens,
        tokens_source=tsrc,
        samples_per_s=samples * per_s if samples is not None and per_s else None,
        tokens_per_s=tokens * per_s if tokens is not None and per_s else None,
        notes=tuple(notes),
    )
    if not base.has_gpu:
        return base
    return _with_gpu(base, a, steps, samples)


def _with_gpu(base: RunSummary, a: Analysis, steps: pl.DataFrame, samples: float | None
              ) -> RunSummary:  # fmt: skip
    from dataclasses import replace

    per = divisor(a, steps)
    total_step = float(steps["step_ns"].sum() or 0)
    busy = float(steps["gpu_busy_ns"].sum() or 0)
    r = roofline(a.context)
    modeled = r.ops.filter(pl.col("basis") == "modeled") if r.ops.height else r.ops
    flops = float(modeled["flops"].sum() or 0) if modeled.height else 0.0
    nbytes = float(modeled["bytes"].sum() or 0) if modeled.height else 0.0
    modeled_ns = float(modeled["gpu_time_ns"].sum() or 0) if modeled.height else 0.0
    dtype, peak = _dominant_peak(r.ops) if r.ops.height else (None, None)
    fps = flops / per if flops else None
    median = base.latency_median_ns
    mfu = (
        100.0 * fps / (median / 1e9) / (peak * 1e12)
        if fps is not None and peak and median > 0
        else None
    )
    energy = _energy_per_step(a) if a.counters.height else None
    return replace(
        base,
        gpu_busy_pct=100.0 * busy / total_step if total_step > 0 else None,
        gpu_ns_per_step=busy / steps.height if steps.height else None,
        flops_per_step=fps,
        bytes_per_step=nbytes / per if nbytes else None,
        peak_dtype=dtype,
        peak_tflops=peak,
        mfu_pct=mfu,
        achieved_tflops=flops / (modeled_ns / 1e9) / 1e12 if flops and modeled_ns else None,
        intensity_flop_per_byte=flops / nbytes if flops and nbytes else None,
        memory_bound_pct=100.0 * r.summary.memory_bound_share,
        memory_bound_intensity=_intensity(modeled.filter(pl.col("bound") == "memory"))
        if modeled.height
        else None,
        memory_bound_heuristic_pct=(
            100.0 * r.summary.heuristic_memory_bound_share / r.summary.memory_bound_share
            if r.summary.memory_bound_share > 0
            else None
        ),
        kernel_ns_per_step=float(r.summary.kernel_time_ns) / per,
        small_grid_pct=_small_grid_pct(a),
        peak_memory_bytes=_peak_memory(a),
        energy_per_step_j=energy,
        energy_per_sample_j=energy / samples if energy is not None and samples else None,
        avg_power_w=_avg_power(a) if a.counters.height else None,
        idle_ns_per_step=_idle_per_step(a, per),
    )
