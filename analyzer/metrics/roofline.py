"""Roofline: each kernel's FLOPs and bytes, the roof that applies, and what bounds it.

Attribution (how an op's FLOPs reach its kernels)
    A kernel's ``external_id`` (its own, or its launching runtime call's through
    ``correlation``) names the CPU op active at launch: the innermost op, a leaf such as
    ``aten::addmm`` under ``aten::linear``. That op gets the kernel when the perf model covers
    it. When it does not (``aten::native_dropout``, an op without shapes), the nearest modeled
    ancestor gets the kernel, but only when no other modeled op sits below that ancestor:
    otherwise the ancestor's FLOPs belong to its modeled child, and giving it a stray kernel
    would pair those FLOPs with the wrong time. Each kernel is therefore counted once, under
    the lowest modeled op that launched it. An op's FLOPs and bytes are split over its kernels
    in proportion to their duration; its GPU time is the union of its kernels' intervals.

Classification
    The roof: the tensor/matrix pipe for GEMM, convolution and attention in bf16, fp16, fp8,
    int8 and fp64 (where the device has that pipe), and for fp32 ones that run as TF32 (kernel
    name says so) or on AMD's FP32 matrix cores; the vector pipe otherwise (fp64 vector for
    fp64 work, fp32 vector for everything else, since PyTorch's elementwise kernels compute in
    fp32). Bound = the larger of ``FLOPs / peak`` and ``bytes / bandwidth``; % of roof = that
    roofline time over the measured time. A point above its roof (% of roof over 100) is an
    inconsistency of the model or the measurement and is flagged (``above_roof``), never
    clipped. Kernels no modeled op claims are classified from their name category and marked
    ``basis = "heuristic"``: gemm/attention/conv count as compute-bound, elementwise/
    reduction/norm/copy as memory-bound, the rest (communication, other) as unclassified.
    Decode attention is the exception among attention kernels: it reads each sequence's
    whole KV cache per generated token at a few FLOP/byte, so it is memory-bound whatever the
    batch; it is recognized by name (paged attention, decode kernels: `parsers.categories.
    decode_attention`) and, for kernels that serve both phases (vLLM
    ``kernel_unified_attention_*``, ``flash_fwd_splitkv*``), by the trace's served steps
    being all decode (``RooflineSummary.decode_attention_note`` says which).
    Except in decode: when every served step the trace annotates is decode
    (`analyzer.metrics.workload.serving_decode`), name-only GEMM and MoE-expert kernels are
    *unclassified*, not compute-bound. A decode GEMM has M = the batch's sequence count (32
    rows against a 2880 x 201088 weight: ~32 FLOP/byte, far left of an H100/MI300X ridge of
    ~250), so it is usually memory-bound, but without its shapes the intensity is unknown;
    calling it either way would be a guess, and the compute-bound default inverted the
    headline split on vLLM decode traces. The reason is in ``RooflineSummary.unclassified_note``.
    On a device the database does not know, every kernel is heuristic and no roof applies.

Use `roofline(ctx)` (cached on the analysis context). Shares in `RooflineSummary` are
fractions of kernel time (durations summed, so overlapping kernels count in full).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext, AnalysisOptions
from gpu_trace_analyzer.devices import DeviceSpec, ResolvedDevice, resolve, resolve_missing
from gpu_trace_analyzer.metrics.intervals import join_within_rank
from gpu_trace_analyzer.metrics.perf_model import KEY_COLUMNS, may_have_cost, op_costs
from gpu_trace_analyzer.metrics.steps import without_queued
from gpu_trace_analyzer.metrics.timeline import as_strings, kernel_devices, per_tables
from gpu_trace_analyzer.metrics.workload import serving_decode
from gpu_trace_analyzer.parsers.categories import decode_attention
from gpu_trace_analyzer.parsers.schema import TraceTables

METRIC_NAME: Final = "roofline"

_TERA: Final = 1e12
_NS_PER_S: Final = 1e9

#: Kernel categories whose heuristic bound is compute / memory; others are unclassified.
COMPUTE_CATEGORIES: Final = frozenset({"gemm", "attention", "conv"})
MEMORY_CATEGORIES: Final = frozenset({"elementwise", "reduction", "norm", "copy"})

#: Families the tensor/matrix pipe can run.
_MATRIX_FAMILIES: Final = frozenset({"gemm", "conv", "attention"})
_TENSOR_DTYPES: Final = frozenset({"fp64", "bf16", "fp16", "fp8", "int8"})
#: Kernel names that show FP32 data running on tensor cores as TF32.
_TF32_KERNEL: Final = re.compile(r"tf32|s1688|s16816|_s168|xmma.*f32f32", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RooflineSummary:
    """Time-weighted figures over all kernels (shares are fractions 0..1 of kernel time).

    ``*_bound_share`` counts modeled and heuristic kernels together; the ``modeled_*`` and
    ``heuristic_*`` fields split them. ``achieved_tensor_tflops`` is the FLOPs of modeled
    tensor-pipe ops over their own GPU time; ``tensor_dtype`` / ``tensor_peak_tflops`` the
    roof dtype and peak with the most modeled tensor FLOPs; None when no tensor-pipe op was
    modeled. ``above_roof_ops`` counts op calls over 100% of their roof.
    """

    kernel_time_ns: int = 0
    compute_bound_share: float = 0.0
    memory_bound_share: float = 0.0
    unclassified_share: float = 0.0
    modeled_share: float = 0.0
    heuristic_share: float = 0.0
    modeled_compute_bound_share: float = 0.0
    modeled_memory_bound_share: float = 0.0
    heuristic_compute_bound_share: float = 0.0
    heuristic_memory_bound_share: float = 0.0
    above_roof_ops: int = 0
    tensor_flops: float = 0.0
    tensor_gpu_time_ns: int = 0
    achieved_tensor_tflops: float | None = None
    tensor_dtype: str | None = None
    tensor_peak_tflops: float | None = None
    tensor_pct_of_peak: float | None = None
    unknown_devices: tuple[str, ...] = ()
    unclassified_note: str = ""
    """Why name-only GEMM kernels are unclassified here (decode steps), else empty."""
    decode_step: str = ""
    """The decode-step annotation the note rests on (empty when none)."""
    decode_attention_share: float = 0.0
    """Share of kernel time in name-only attention kernels counted memory-bound as decode."""
    decode_attention_note: str = ""
    """Why those attention kernels are memory-bound, else empty."""
    modeled_pct_of_own_roof: float | None = None
    """Modeled op groups' achieved share of their own roof (``pct_of_roof``: the compute or
    bandwidth roof at their intensity), weighted by GPU time; None when nothing is modeled."""
    tensor_memory_bound_share: float = 0.0
    """Share (0..1) of the modeled tensor-pipe ops' GPU time in memory-bound ops: when most of
    it is, ``tensor_pct_of_peak`` is no measure of tensor-core use."""


@dataclass(frozen=True, slots=True)
class Roofline:
    """The roofline tables of one analysis.

    ``kernels``: one row per kernel (`KERNEL_COLUMNS`, plus ``device_key`` and
    ``bw_bytes_per_s``). ``ops``: one row per op group (`GROUP_COLUMNS`), largest GPU time
    first: modeled groups per (device, op, shapes, dtype, roof), heuristic groups per launching
    op name (kernel name when no op is linked). ``devices``: the resolved device of every
    (rank, device) described or running kernels.

    Columns, both tables: ``flops``/``bytes`` (modeled only; a kernel's share of its op's by
    duration), ``intensity_flop_per_byte``, ``achieved_tflops``, ``achieved_tb_per_s``,
    ``pipe`` (tensor / vector) and ``roof_dtype`` of the roof, ``dtype`` of the op's data,
    ``peak_tflops`` of that roof, ``roof_tflops`` attainable at the intensity
    (min(peak, bandwidth x intensity)), ``bound`` (compute / memory, heuristic kernels also
    unclassified), ``pct_of_roof`` (roofline time over measured time, %), ``above_roof``
    (pct_of_roof > 100: an inconsistency, kept as measured), ``basis`` (modeled / heuristic),
    ``device_key`` (the database key, or ``unknown: <name>``). Op groups add ``calls``,
    ``kernels``, ``gpu_time_ns`` (sum over calls of each call's kernel-interval union) and
    ``above_roof_calls``.
    """

    kernels: pl.DataFrame
    ops: pl.DataFrame
    summary: RooflineSummary
    devices: Mapping[tuple[int, int], ResolvedDevice] = field(default_factory=dict)


KERNEL_COLUMNS: Final = (
    "rank", "device", "stream", "name", "category", "start_ns", "dur_ns", "launch_op",
    "launch_op_name", "op_id", "op_name",
    "shapes", "family", "flops", "bytes", "intensity_flop_per_byte", "achieved_tflops",
    "achieved_tb_per_s", "pipe", "dtype", "roof_dtype", "peak_tflops", "roof_tflops", "bound",
    "pct_of_roof", "basis", "above_roof",
)  # fmt: skip


def roofline(ctx: AnalysisContext) -> Roofline:
    """The roofline of the context's trace, computed once and cached on the context."""
    return ctx.metric_with_options(METRIC_NAME, compute)


def compute(tables: TraceTables, options: AnalysisOptions) -> Roofline:
    """Attribute modeled FLOPs/bytes to kernels, pick roofs, classify (see module docstring)."""
    tables = without_queued(tables)  # warm-up leftovers queued before profiling are not shown
    kernels = tables.kernels
    devices = resolved_devices(tables, options)
    if kernels.height == 0:
        return Roofline(_empty_kernels(), _empty_groups(), RooflineSummary(), devices)
    used = set(kernel_devices(tables).iter_rows())
    linked = _link_kernels(tables)
    instances = _op_instances(linked)
    classified = _classify_instances(instances, devices)
    per_kernel = _kernel_rows(linked, classified, devices, used)
    decode = serving_decode(tables)
    per_kernel, note = _decode_gemms(per_kernel, decode)
    per_kernel, attention_ns = _decode_attention(per_kernel, decode)
    groups = _op_groups(per_kernel)
    total = int(per_kernel["dur_ns"].sum() or 0)
    summary = replace(
        _summary(per_kernel, groups, devices, used),
        unclassified_note=note,
        decode_step=decode or "" if note else "",
        decode_attention_share=attention_ns / total if total > 0 else 0.0,
        decode_attention_note=_decode_attention_note(attention_ns, decode),
    )
    return Roofline(_as_strings(per_kernel), groups, summary, devices)


def _decode_gemms(per_kernel: pl.DataFrame, decode: str | None) -> tuple[pl.DataFrame, str]:
    """Name-only GEMM/MoE kernels of an all-decode trace -> unclassified (module docstring)."""
    if decode is None:
        return per_kernel, ""
    name_only_gemm = (pl.col("basis") == "heuristic") & (pl.col("category") == "gemm")
    if not per_kernel.select(name_only_gemm.any()).item():
        return per_kernel, ""
    per_kernel = per_kernel.with_columns(
        pl.when(name_only_gemm)
        .then(pl.lit("unclassified"))
        .otherwise(pl.col("bound"))
        .alias("bound")
    )
    return per_kernel, (
        "every served step is decode: its GEMM and MoE-expert "
        "kernels multiply one token per sequence (small M), usually memory-bound, but "
        "without recorded shapes their intensity is unknown, so kernels classified by "
        "name only are left unclassified rather than called compute-bound"
    )


def _decode_attention(per_kernel: pl.DataFrame, decode: str | None) -> tuple[pl.DataFrame, int]:
    """Name-only attention kernels that run decode -> memory-bound; returns their time (ns).

    Decode attention reads each sequence's whole KV cache per generated token at a few
    FLOP/byte (`gpu_trace_analyzer.parsers.categories.decode_attention` gives the
    arithmetic), so it is memory-bound whatever its batch. A kernel runs decode when its name
    says so (paged attention, decode kernels, split-KV combines) or, for kernels that serve
    both phases (vLLM ``kernel_unified_attention_*``, ``flash_fwd_splitkv*``), when every
    served step of the trace is decode (``decode`` is that step's annotation). Modeled
    attention keeps its shape-based bound.
    """
    heuristic_attention = (pl.col("basis") == "heuristic") & (pl.col("category") == "attention")
    candidates = per_kernel.select(heuristic_attention.any()).item()
    if not candidates:
        return per_kernel, 0
    per_kernel = per_kernel.with_columns(decode_attention(per_kernel["name"]).alias("_decode"))
    is_decode = heuristic_attention & (pl.lit(decode is not None) | pl.col("_decode"))
    decode_ns = int(per_kernel.filter(is_decode)["dur_ns"].sum() or 0)
    per_kernel = per_kernel.with_columns(
        pl.when(is_decode).then(pl.lit("memory")).otherwise(pl.col("bound")).alias("bound")
    ).drop("_decode")
    return per_kernel, decode_ns


def _decode_attention_note(attention_ns: int, decode: str | None) -> str:
    """Why attention kernels count as memory-bound here (empty when none does)."""
    if attention_ns <= 0:
        return ""
    which = (
        "every served step is decode"
        if decode is not None
        else "their names say decode (paged attention, decode kernels, split-KV combines)"
    )
    return (
        f"{which}, and each generated token's query reads its own sequence's whole KV cache: "
        "about 2 x (query heads per KV head) / (bytes per element) FLOP per byte, far below "
        "the ridge whatever the batch"
    )


# --- Devices ------------------------------------------------------------------------------


def resolved_devices(
    tables: TraceTables, options: AnalysisOptions
) -> dict[tuple[int, int], ResolvedDevice]:
    """Resolved devices for every (rank, device) described or running kernels.

    A device that runs kernels but has no ``deviceProperties`` entry (ROCm numbers kernel
    devices differently) takes its rank's only described model when there is one.
    """
    found = resolve(tables.meta, options)
    for rank, device in kernel_devices(tables).drop_nulls().iter_rows():
        if (rank, device) not in found:
            found[(rank, device)] = _undescribed(found, rank, device, options)
    return found


def _undescribed(
    found: Mapping[tuple[int, int], ResolvedDevice],
    rank: int,
    device: int,
    options: AnalysisOptions,
) -> ResolvedDevice:
    """A device that ran kernels under an index ``deviceProperties`` does not list.

    ROCm traces number kernels' devices by HSA agent (CPU agents first: the only GPU of an
    MI300X trace runs kernels on "device 2" while deviceProperties lists id 0). When every
    device the rank describes has the same name, that description is used, and said so.
    """
    described = {v.trace_name: v for (r, _), v in found.items() if r == rank}
    if len(described) != 1:
        return resolve_missing(rank, device, options)
    twin = next(iter(described.values()))
    note = (
        f"kernels run on device {device}, which deviceProperties does not list; "
        f"the rank's only described device type ({twin.label}) is assumed"
    )
    return replace(twin, device=device, notes=(*twin.notes, note))


def _device_key(resolved: ResolvedDevice | None) -> str:
    if resolved is None or resolved.spec is None:
        return f"unknown: {resolved.label if resolved else 'unnamed device'}"
    return resolved.spec.key


# --- Attribution --------------------------------------------------------------------------


@per_tables
def launch_external_ids(t: TraceTables) -> pl.DataFrame:
    """One row per kernel, in table order: ``external_id`` of the CPU op that launched it.

    The kernel's own external id, else its launching runtime call's (matched on rank and
    correlation; the first call in table order when several share a correlation). Only
    kernels without their own id are looked up: current Kineto traces give every kernel one.
    """
    kernels = t.kernels.select("rank", "correlation", "external_id")
    keys = ["rank", "correlation"]
    missing = kernels.filter(pl.col("external_id").is_null()).select(keys).drop_nulls().unique()
    if missing.height == 0:
        return kernels.select("external_id")
    calls = (
        t.runtime.select(*keys, pl.col("external_id").alias("_rt_ext"))
        .drop_nulls(["correlation", "_rt_ext"])
        .join(missing, on=keys, how="semi", maintain_order="left")
        .unique(keys, keep="first")
    )
    return kernels.join(calls, on=keys, how="left", maintain_order="left").select(
        pl.coalesce("external_id", "_rt_ext").alias("external_id")
    )


@dataclass(frozen=True, slots=True)
class OpTree:
    """Ops looked up by ``op_id``, to walk ``parent`` links a level at a time.

    An op's row is its id minus the first id when the ids are consecutive (the parsers
    number ops 0..n-1), else found by binary search over the sorted ids. A walk over some
    ops then costs in proportion to those ops, not to the whole ops table (as a hash join
    or a dict of every op would).
    """

    ops: pl.DataFrame
    consecutive: bool

    @classmethod
    def of(cls, ops: pl.DataFrame) -> OpTree:
        """The tree of ``ops`` (needs ``op_id``, unique, and whatever columns are looked up)."""
        ops = ops if ops["op_id"].is_sorted() else ops.sort("op_id")
        steps = ops["op_id"].diff().drop_nulls()
        return cls(ops, steps.len() == 0 or (steps.min() == 1 and steps.max() == 1))

    def rows(self, op_ids: pl.Series) -> pl.Series:
        """The row of each op in ``op_ids``: null where the id is null or not in the tree."""
        ids = self.ops["op_id"]
        if ids.len() == 0:
            return pl.repeat(None, op_ids.len(), dtype=pl.Int64, eager=True)
        if self.consecutive:
            row = op_ids - ids[0]
            return pl.select(pl.when((row >= 0) & (row < ids.len())).then(row)).to_series()
        row = ids.search_sorted(op_ids).clip(upper_bound=ids.len() - 1)
        return pl.select(pl.when(ids.gather(row) == op_ids).then(row)).to_series()

    def lookup(self, op_ids: pl.Series, column: str) -> pl.Series:
        """``column`` of each op in ``op_ids``: null where the id is null or not in the tree."""
        return self.ops[column].gather(self.rows(op_ids))


#: The kernel columns the roofline reads (the rest of the table is not copied along).
_KERNEL_INPUTS: Final = ("rank", "device", "stream", "name", "category", "start_ns", "dur_ns")


def _link_kernels(tables: TraceTables) -> pl.DataFrame:
    """Kernels with the op that launched them (``launch_op``) and the op that gets them
    (``op_id``, with its cost columns), per the attribution rule in the module docstring.

    The joins run on the two key columns only; their result is set beside the kernels.
    Names stay categorical (``launch_op_name`` too) until `_as_strings`.
    """
    keys = tables.kernels.select("rank", launch_external_ids(tables)["external_id"].alias("_ext"))
    cpu_ops = tables.ops.lazy().filter(pl.col("kind") == "cpu_op")
    launch = _launch_ops(cpu_ops, keys["_ext"])
    links = join_within_rank(keys, launch, ["_ext"], how="left")
    cost = _modeled_ops(cpu_ops.filter(may_have_cost()).select("op_id", *KEY_COLUMNS).collect())
    if cost.height == 0:  # no op modeled: nothing to attribute
        links = links.with_columns(
            pl.lit(None, dtype=pl.Int64).alias("op_id"),
            *(pl.lit(None, dtype=d).alias(c) for c, d in cost.schema.items() if c != "op_id"),
        )
    else:
        modeled = pl.col("op_id").is_in(cost["op_id"].implode()).alias("modeled")
        tree = OpTree.of(cpu_ops.select("op_id", "parent", modeled).collect())
        target = _attribution_targets(tree, cost["op_id"], links["launch_op"].drop_nulls().unique())
        links = links.join(target, on="launch_op", how="left", maintain_order="left").join(
            cost, on="op_id", how="left", maintain_order="left"
        )
    return pl.concat(
        [tables.kernels.select(_KERNEL_INPUTS), links.drop("rank", "_ext")], how="horizontal"
    )


def _modeled_ops(ops: pl.DataFrame) -> pl.DataFrame:
    """The ops the perf model covers: op_id, op_name and the cost columns (dtype as op_dtype)."""
    costs = op_costs(ops)
    named = ops[costs["row"]].select("op_id", pl.col("name").cast(pl.String).alias("op_name"))
    return pl.concat([named, costs.drop("row").rename({"dtype": "op_dtype"})], how="horizontal")


def _launch_ops(ops: pl.LazyFrame, kernel_ext: pl.Series) -> pl.DataFrame:
    """(rank, ``_ext``) -> the innermost op carrying that external id (``launch_op``, the
    first in table order among equally deep ones) and its (categorical) name, for the
    kernels' ids."""
    return (
        ops.filter(pl.col("external_id").is_in(kernel_ext.drop_nulls().unique().implode()))
        .select("rank", "op_id", "depth", "external_id", "name")
        .collect()
        .sort("depth", descending=True, maintain_order=True)
        .unique(["rank", "external_id"], keep="first")
        .select(
            "rank", pl.col("external_id").alias("_ext"), pl.col("op_id").alias("launch_op"),
            pl.col("name").alias("launch_op_name"),
        )
    )  # fmt: skip


def _attribution_targets(tree: OpTree, modeled: pl.Series, launch_ops: pl.Series) -> pl.DataFrame:
    """launch_op -> op_id: itself when modeled, else the nearest modeled ancestor that has no
    modeled descendant (null when there is none)."""
    node = launch_ops
    for _ in range(tree.ops.height + 1):  # each op once, then one id outside the tree
        climb = node.is_not_null() & ~tree.lookup(node, "modeled").fill_null(False)
        if not climb.any():
            break
        node = pl.select(pl.when(climb).then(tree.lookup(node, "parent")).otherwise(node))[:, 0]
    above = node.is_not_null() & (node != launch_ops)
    if above.any():
        node = pl.select(
            pl.when(above & node.is_in(_ancestors(tree, modeled).implode()))
            .then(None)
            .otherwise(node)
        )[:, 0]
    return pl.DataFrame(
        {"launch_op": launch_ops, "op_id": node},
        schema={"launch_op": pl.Int64(), "op_id": pl.Int64()},
    )


def _ancestors(tree: OpTree, nodes: pl.Series) -> pl.Series:
    """Every strict ancestor of any op in ``nodes`` (climbing stops at ids not in the tree)."""
    found = pl.Series("op_id", [], dtype=pl.Int64)
    level = tree.lookup(nodes, "parent").drop_nulls().unique()
    while level.len():
        level = level.filter(~level.is_in(found.implode()))
        found = pl.concat([found, level])
        level = tree.lookup(level, "parent").drop_nulls().unique()
    return found


# --- Per op instance ----------------------------------------------------------------------


def _op_instances(linked: pl.DataFrame) -> pl.DataFrame:
    """One row per attributed op call: its kernels' union time, kernel time, cost, TF32 hint."""
    k = _with_covered_ns(linked.filter(pl.col("op_id").is_not_null()), "op_id")
    return k.group_by("op_id").agg(
        pl.col("rank").first(),
        pl.col("device").first(),
        pl.col("op_name").first(),
        pl.col("shapes").first(),
        pl.col("family").first(),
        pl.col("flops").first(),
        pl.col("bytes").first(),
        pl.col("op_dtype").first(),
        pl.col("matrix").first(),
        pl.col("_covered_ns").sum().alias("gpu_time_ns"),
        pl.col("dur_ns").sum().alias("kernel_time_ns"),
        pl.len().alias("kernels"),
        pl.col("name").cast(pl.String).str.contains(_TF32_KERNEL.pattern).any().alias("_tf32"),
    )


def choose_roof(spec: DeviceSpec, family: str, dtype: str, tf32_kernel: bool) -> tuple[str, str]:
    """(pipe, dtype) of the roof an op runs under on ``spec`` (rules in the module docstring)."""
    if family in _MATRIX_FAMILIES:
        if dtype in _TENSOR_DTYPES and spec.peak("tensor", dtype) is not None:
            return "tensor", dtype
        if dtype == "fp32":
            if spec.peak("tensor", "fp32") is not None:
                return "tensor", "fp32"
            if tf32_kernel and spec.peak("tensor", "tf32") is not None:
                return "tensor", "tf32"
    vector = "fp64" if dtype == "fp64" else "fp32"
    if spec.peak("vector", vector) is None and spec.peak("vector", "fp32") is not None:
        vector = "fp32"
    return "vector", vector


def _roof_table(
    instances: pl.DataFrame, devices: Mapping[tuple[int, int], ResolvedDevice]
) -> pl.DataFrame:
    """Per distinct (rank, device, family, dtype, tf32 hint): device key, pipe, roof, peak, bw."""
    combos = instances.select("rank", "device", "family", "op_dtype", "_tf32").unique()
    rows = []
    for rank, device, family, dtype, tf32 in combos.iter_rows():
        resolved = devices.get((rank, device))
        spec = resolved.spec if resolved else None
        row: dict[str, object] = {
            "rank": rank, "device": device, "family": family, "op_dtype": dtype, "_tf32": tf32,
            "device_key": _device_key(resolved), "pipe": None, "roof_dtype": None,
            "peak_flops": None, "bw_bytes_per_s": None,
        }  # fmt: skip
        if spec is not None:
            pipe, roof_dtype = choose_roof(spec, family, dtype, bool(tf32))
            row.update(
                pipe=pipe, roof_dtype=roof_dtype, peak_flops=spec.peak(pipe, roof_dtype),
                bw_bytes_per_s=spec.mem_bw_bytes_per_s,
            )  # fmt: skip
        rows.append(row)
    schema = {
        "rank": pl.Int32(), "device": pl.Int32(), "family": pl.String(), "op_dtype": pl.String(),
        "_tf32": pl.Boolean(), "device_key": pl.String(), "pipe": pl.String(),
        "roof_dtype": pl.String(), "peak_flops": pl.Float64(), "bw_bytes_per_s": pl.Float64(),
    }  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def roof_metrics(
    flops: pl.Expr, nbytes: pl.Expr, time_ns: pl.Expr, peak: pl.Expr, bw: pl.Expr
) -> list[pl.Expr]:
    """Intensity, achieved TFLOP/s and TB/s, attainable roof, bound, % of roof, above-roof.

    The same expressions serve op calls, op groups and kernels: roofline time is
    ``max(FLOPs / peak, bytes / bandwidth)``; the bound is the larger term.
    """
    seconds = time_ns.cast(pl.Float64) / _NS_PER_S
    t_compute = flops.cast(pl.Float64) / peak
    t_memory = nbytes.cast(pl.Float64) / bw
    roof_time = pl.max_horizontal(t_compute, t_memory)
    intensity = pl.when(nbytes > 0).then(flops.cast(pl.Float64) / nbytes.cast(pl.Float64))
    valid = time_ns > 0
    pct = pl.when(valid & peak.is_not_null()).then(100.0 * roof_time / seconds).fill_nan(None)
    return [
        intensity.alias("intensity_flop_per_byte"),
        pl.when(valid).then(flops.cast(pl.Float64) / seconds / _TERA).alias("achieved_tflops"),
        pl.when(valid).then(nbytes.cast(pl.Float64) / seconds / _TERA).alias("achieved_tb_per_s"),
        (peak / _TERA).alias("peak_tflops"),
        (pl.min_horizontal(peak, intensity.fill_null(0.0) * bw) / _TERA).alias("roof_tflops"),
        pl.when(peak.is_null())
        .then(None)
        .when(t_compute >= t_memory)
        .then(pl.lit("compute"))
        .otherwise(pl.lit("memory"))
        .alias("bound"),
        pct.alias("pct_of_roof"),
        (pct > 100.0).fill_null(False).alias("above_roof"),
    ]


def _classify_instances(
    instances: pl.DataFrame, devices: Mapping[tuple[int, int], ResolvedDevice]
) -> pl.DataFrame:
    """Op calls with their roof and classification (modeled calls only)."""
    modeled = instances.filter(pl.col("flops").is_not_null())
    roofs = _roof_table(modeled, devices)
    joined = modeled.join(roofs, on=["rank", "device", "family", "op_dtype", "_tf32"], how="left")
    return joined.with_columns(
        roof_metrics(
            pl.col("flops"), pl.col("bytes"), pl.col("gpu_time_ns"), pl.col("peak_flops"),
            pl.col("bw_bytes_per_s"),
        )
    )  # fmt: skip


# --- Per kernel ---------------------------------------------------------------------------


def heuristic_bound(category: pl.Expr) -> pl.Expr:
    """compute / memory / unclassified from a kernel's name category."""
    return (
        pl.when(category.is_in(sorted(COMPUTE_CATEGORIES)))
        .then(pl.lit("compute"))
        .when(category.is_in(sorted(MEMORY_CATEGORIES)))
        .then(pl.lit("memory"))
        .otherwise(pl.lit("unclassified"))
    )


def _kernel_rows(
    linked: pl.DataFrame,
    calls: pl.DataFrame,
    devices: Mapping[tuple[int, int], ResolvedDevice],
    used: set[tuple[int, int]],
) -> pl.DataFrame:
    """One row per kernel: its share of its op's FLOPs/bytes, its roof and bound (names
    still categorical: `_as_strings`). ``used``: the kernels' (rank, device) pairs."""
    call_cols = calls.select(
        "op_id", "kernel_time_ns", "pipe", "roof_dtype", "peak_flops", "bw_bytes_per_s",
        pl.col("kernels").alias("_op_kernels"), "device_key",
    )  # fmt: skip
    if call_cols.height == 0:  # no modeled call: every call column is null
        k = linked.with_columns(
            pl.lit(None, dtype=d).alias(c) for c, d in call_cols.schema.items() if c != "op_id"
        )
    else:
        k = linked.join(call_cols, on="op_id", how="left", maintain_order="left")
    # By duration; equally when every kernel of the call lasted 0 ns (integer-us old traces).
    share = (
        pl.when(pl.col("kernel_time_ns") > 0)
        .then(pl.col("dur_ns").cast(pl.Float64) / pl.col("kernel_time_ns").cast(pl.Float64))
        .otherwise(1.0 / pl.col("_op_kernels").cast(pl.Float64))
    )
    k = k.with_columns(
        (pl.col("flops").cast(pl.Float64) * share).alias("_kflops"),
        (pl.col("bytes").cast(pl.Float64) * share).alias("_kbytes"),
    )
    k = k.with_columns(
        roof_metrics(
            pl.col("_kflops"), pl.col("_kbytes"), pl.col("dur_ns"), pl.col("peak_flops"),
            pl.col("bw_bytes_per_s"),
        )
    )  # fmt: skip
    modeled = pl.col("bound").is_not_null()
    k = k.with_columns(
        pl.when(modeled).then(pl.lit("modeled")).otherwise(pl.lit("heuristic")).alias("basis"),
        pl.when(modeled).then(pl.col("bound")).otherwise(heuristic_bound(pl.col("category")))
        .alias("bound"),
        pl.col("_kflops").alias("flops"),
        pl.col("_kbytes").alias("bytes"),
        pl.col("op_dtype").alias("dtype"),
    )  # fmt: skip
    k = _with_device_keys(k, devices, used)
    return k.select(*KERNEL_COLUMNS, "device_key", "bw_bytes_per_s")


def _with_device_keys(
    k: pl.DataFrame,
    devices: Mapping[tuple[int, int], ResolvedDevice],
    used: set[tuple[int, int]],
) -> pl.DataFrame:
    """``device_key``: the op call's, else the kernel's own device's (null for a device
    ``devices`` lacks). One device in use: a constant, no join."""
    if len(used) == 1:
        pair = next(iter(used))
        key = _device_key(devices[pair]) if pair in devices else None
        own: pl.Expr = pl.lit(key, dtype=pl.String)
    else:
        rows = [(r, d, _device_key(v)) for (r, d), v in devices.items()]
        keys = pl.DataFrame(
            rows, schema={"rank": pl.Int32(), "device": pl.Int32(), "_dev_key": pl.String()},
            orient="row",
        )  # fmt: skip
        k = k.join(keys, on=["rank", "device"], how="left", maintain_order="left")
        own = pl.col("_dev_key")
    return k.with_columns(pl.coalesce("device_key", own).alias("device_key"))


def _as_strings(per_kernel: pl.DataFrame) -> pl.DataFrame:
    """The per-kernel table as `Roofline.kernels` holds it: names as plain strings."""
    return as_strings(per_kernel, ["name", "category", "launch_op_name"])


# --- Op groups ----------------------------------------------------------------------------

GROUP_COLUMNS: Final = (
    "device_key", "op_name", "shapes", "dtype", "pipe", "roof_dtype", "basis", "calls",
    "kernels", "gpu_time_ns", "flops", "bytes", "intensity_flop_per_byte", "achieved_tflops",
    "achieved_tb_per_s", "peak_tflops", "roof_tflops", "bound", "pct_of_roof", "above_roof",
    "above_roof_calls",
)  # fmt: skip


#: The per-kernel columns op groups are built from (filtering copies only these).
_MODELED_INPUTS: Final = (
    "basis", "op_id", "start_ns", "dur_ns", "device_key", "op_name", "shapes", "dtype", "pipe",
    "roof_dtype", "flops", "bytes", "peak_tflops", "bw_bytes_per_s",
)  # fmt: skip
_HEURISTIC_INPUTS: Final = (
    "basis", "device_key", "launch_op_name", "name", "bound", "launch_op", "dur_ns", "dtype",
)  # fmt: skip


def _op_groups(per_kernel: pl.DataFrame) -> pl.DataFrame:
    """Modeled op groups (device, op, shapes, dtype, pipe) and heuristic groups, by GPU time."""
    modeled = per_kernel.select(_MODELED_INPUTS).filter(pl.col("basis") == "modeled")
    calls = _calls(modeled)
    keys = ["device_key", "op_name", "shapes", "dtype", "pipe", "roof_dtype"]
    groups = calls.group_by(keys).agg(
        pl.len().alias("calls"),
        pl.col("kernels").sum(),
        pl.col("gpu_time_ns").sum(),
        pl.col("flops").sum(),
        pl.col("bytes").sum(),
        pl.col("peak_flops").first(),
        pl.col("bw_bytes_per_s").first(),
        pl.col("above_roof").sum().alias("above_roof_calls"),
    )
    groups = groups.with_columns(
        roof_metrics(
            pl.col("flops"), pl.col("bytes"), pl.col("gpu_time_ns"), pl.col("peak_flops"),
            pl.col("bw_bytes_per_s"),
        )
    ).with_columns(pl.lit("modeled").alias("basis"))  # fmt: skip
    heuristic = _heuristic_groups(
        per_kernel.select(_HEURISTIC_INPUTS).filter(pl.col("basis") == "heuristic")
    )
    merged = pl.concat(
        [groups.select(GROUP_COLUMNS), heuristic.select(GROUP_COLUMNS)], how="vertical_relaxed"
    )
    ties = ["op_name", "shapes", "dtype", "device_key", "basis"]
    return merged.sort(
        ["gpu_time_ns", *ties], descending=[True] + [False] * len(ties), nulls_last=True
    )


def _calls(modeled_kernels: pl.DataFrame) -> pl.DataFrame:
    """Modeled kernels back to op calls (union time), with their call-level roof metrics."""
    calls = (
        _with_covered_ns(modeled_kernels, "op_id")
        .group_by("op_id")
        .agg(
            pl.col("device_key").first(),
            pl.col("op_name").first(),
            pl.col("shapes").first(),
            pl.col("dtype").first(),
            pl.col("pipe").first(),
            pl.col("roof_dtype").first(),
            pl.len().alias("kernels"),
            pl.col("_covered_ns").sum().alias("gpu_time_ns"),
            pl.col("flops").sum(),
            pl.col("bytes").sum(),
            (pl.col("peak_tflops").first() * _TERA).alias("peak_flops"),
            pl.col("bw_bytes_per_s").first(),
        )
    )
    return calls.with_columns(
        roof_metrics(
            pl.col("flops"), pl.col("bytes"), pl.col("gpu_time_ns"), pl.col("peak_flops"),
            pl.col("bw_bytes_per_s"),
        )
    )  # fmt: skip


def _with_covered_ns(kernels: pl.DataFrame, key: str) -> pl.DataFrame:
    """Adds ``_covered_ns``: what each kernel adds to the union of its ``key`` group's
    intervals (sorted by start; a kernel inside an earlier one adds 0), so that the group sum
    is the union length."""
    k = kernels.with_columns((pl.col("start_ns") + pl.col("dur_ns")).alias("_end_ns"))
    k = _with_prev_end(k.sort(key, "start_ns"), key)
    covered = (
        pl.col("_end_ns") - pl.max_horizontal("start_ns", pl.col("_prev_end").fill_null(0))
    ).clip(lower_bound=0)
    return k.with_columns(covered.alias("_covered_ns")).drop("_end_ns", "_prev_end")


def _with_prev_end(k: pl.DataFrame, key: str) -> pl.DataFrame:
    """Adds ``_prev_end``: the latest ``_end_ns`` of the rows before each row in its run of
    equal ``key`` (``k`` is sorted by key; null on a run's first row).

    A running max restarted at every run, computed in log2(longest run) vectorized steps
    (each row takes the max reached ``span`` rows back when that row is in its run, for
    span = 1, 2, 4, ...): a window expression over ``key`` costs per group, and ops are
    many with few kernels each.
    """
    row = pl.int_range(pl.len())

    def same_run(span: int) -> pl.Expr:
        return (row >= span) & pl.col(key).eq_missing(pl.col(key).shift(span))

    longest = int(k.select(pl.col(key).rle().struct.field("len").max()).item() or 0)
    k = k.with_columns(pl.col("_end_ns").alias("_run_end"))
    span = 1
    while span < longest:
        reach = pl.max_horizontal("_run_end", pl.col("_run_end").shift(span))
        k = k.with_columns(
            pl.when(same_run(span)).then(reach).otherwise("_run_end").alias("_run_end")
        )
        span *= 2
    prev_end = pl.when(same_run(1)).then(pl.col("_run_end").shift(1))
    return k.with_columns(prev_end.alias("_prev_end")).drop("_run_end")


def _heuristic_groups(kernels: pl.DataFrame) -> pl.DataFrame:
    """Unmodeled kernels grouped by launching op name (kernel name when no op is linked);
    names are grouped as categoricals and given out as strings."""
    label = pl.coalesce(pl.col("launch_op_name"), pl.col("name"))
    return (
        kernels.with_columns(label.alias("_label"))
        .group_by("device_key", "_label", "bound")
        .agg(
            pl.len().alias("kernels"),
            pl.when(pl.col("launch_op").is_not_null().any())
            .then(pl.col("launch_op").drop_nulls().n_unique())
            .otherwise(pl.len())
            .alias("calls"),
            pl.col("dur_ns").sum().alias("gpu_time_ns"),
            pl.col("dtype").first(),
        )
        .with_columns(
            pl.col("_label").cast(pl.String).alias("op_name"),
            pl.lit(None, pl.String).alias("shapes"),
            pl.lit(None, pl.String).alias("pipe"),
            pl.lit(None, pl.String).alias("roof_dtype"),
            pl.lit("heuristic").alias("basis"),
            pl.lit(None, pl.Int64).alias("flops"),
            pl.lit(None, pl.Int64).alias("bytes"),
            *(
                pl.lit(None, pl.Float64).alias(c)
                for c in (
                    "intensity_flop_per_byte",
                    "achieved_tflops",
                    "achieved_tb_per_s",
                    "peak_tflops",
                    "roof_tflops",
                    "pct_of_roof",
                )
            ),
            pl.lit(False).alias("above_roof"),
            pl.lit(0, pl.UInt32).alias("above_roof_calls"),
        )
    )


# --- Summary ------------------------------------------------------------------------------


def _summary(
    per_kernel: pl.DataFrame,
    groups: pl.DataFrame,
    devices: Mapping[tuple[int, int], ResolvedDevice],
    used: set[tuple[int, int]],
) -> RooflineSummary:
    total = int(per_kernel["dur_ns"].sum())
    if total <= 0:
        return RooflineSummary(unknown_devices=_unknown(used, devices))

    kernel_ns = _time_by_basis_and_bound(per_kernel)

    def share(basis: str | None = None, bound: str | None = None) -> float:
        """Share of kernel time with that basis and bound (None: any)."""
        ns = sum(v for (b, d), v in kernel_ns.items() if basis in (None, b) and bound in (None, d))
        return float(ns) / total

    tensor = groups.filter((pl.col("basis") == "modeled") & (pl.col("pipe") == "tensor"))
    tensor_flops = float(tensor["flops"].sum() or 0)
    tensor_ns = int(tensor["gpu_time_ns"].sum() or 0)
    achieved = tensor_flops / (tensor_ns / _NS_PER_S) / _TERA if tensor_ns else None
    dtype, peak = _tensor_peak(tensor)
    modeled = groups.filter(
        (pl.col("basis") == "modeled") & pl.col("pct_of_roof").is_not_null()
    ).select("gpu_time_ns", "pct_of_roof")
    modeled_ns = float(modeled["gpu_time_ns"].sum() or 0)
    own_roof = (
        float((modeled["pct_of_roof"] * modeled["gpu_time_ns"]).sum()) / modeled_ns
        if modeled_ns > 0
        else None
    )
    tensor_mem_ns = int(tensor.filter(pl.col("bound") == "memory")["gpu_time_ns"].sum() or 0)
    return RooflineSummary(
        kernel_time_ns=total,
        compute_bound_share=share(bound="compute"),
        memory_bound_share=share(bound="memory"),
        unclassified_share=share(bound="unclassified"),
        modeled_share=share("modeled"),
        heuristic_share=share("heuristic"),
        modeled_compute_bound_share=share("modeled", "compute"),
        modeled_memory_bound_share=share("modeled", "memory"),
        heuristic_compute_bound_share=share("heuristic", "compute"),
        heuristic_memory_bound_share=share("heuristic", "memory"),
        above_roof_ops=int(groups["above_roof_calls"].sum() or 0),
        tensor_flops=tensor_flops,
        tensor_gpu_time_ns=tensor_ns,
        achieved_tensor_tflops=achieved,
        tensor_dtype=dtype,
        tensor_peak_tflops=peak,
        tensor_pct_of_peak=(100.0 * achieved / peak) if achieved is not None and peak else None,
        unknown_devices=_unknown(used, devices),
        modeled_pct_of_own_roof=own_roof,
        tensor_memory_bound_share=(tensor_mem_ns / tensor_ns) if tensor_ns else 0.0,
    )


_BASES: Final = ("modeled", "heuristic")
_BOUNDS: Final = ("compute", "memory", "unclassified")


def _time_by_basis_and_bound(per_kernel: pl.DataFrame) -> dict[tuple[str, str], int]:
    """Kernel time per (basis, bound) present (every kernel has one of each)."""
    pairs = {
        (b, d): (pl.col("basis") == b) & (pl.col("bound") == d) for b in _BASES for d in _BOUNDS
    }
    sums = per_kernel.select(
        *(pl.col("dur_ns").filter(hit).sum().alias(f"{b}|{d}") for (b, d), hit in pairs.items()),
        *(hit.any().alias(f"_{b}|{d}") for (b, d), hit in pairs.items()),
    ).row(0, named=True)
    return {(b, d): int(sums[f"{b}|{d}"]) for b, d in pairs if sums[f"_{b}|{d}"]}


def _tensor_peak(tensor_groups: pl.DataFrame) -> tuple[str | None, float | None]:
    """The tensor dtype with the most modeled FLOPs, and its peak TFLOP/s."""
    if tensor_groups.height == 0:
        return None, None
    by_dtype = (
        tensor_groups.group_by("roof_dtype", "device_key")
        .agg(pl.col("flops").sum(), pl.col("peak_tflops").first())
        .sort(["flops", "roof_dtype", "device_key"], descending=[True, False, False])
    )
    top = by_dtype.row(0, named=True)
    return str(top["roof_dtype"]), float(top["peak_tflops"])


def _unknown(
    used: set[tuple[int, int]], devices: Mapping[tuple[int, int], ResolvedDevice]
) -> tuple[str, ...]:
    names = {v.label for k, v in devices.items() if k in used and v.spec is None}
    return tuple(sorted(names))


# --- Empty frames -------------------------------------------------------------------------


def _empty_kernels() -> pl.DataFrame:
    extra = ("device_key", "bw_bytes_per_s")
    return pl.DataFrame(schema={c: pl.Null() for c in (*KERNEL_COLUMNS, *extra)})


def _empty_groups() -> pl.DataFrame:
    return pl.DataFrame(schema={c: pl.Null() for c in GROUP_COLUMNS})
