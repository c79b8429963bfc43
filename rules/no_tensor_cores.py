"""`no-tensor-cores`: fp32 GEMMs and convolutions run on CUDA cores of a tensor-core GPU.

Which kernels use tensor (matrix) cores is read from their names, as tb_plugin does, with one
ordered table covering Volta to Blackwell (``h884``/``s1688``/``16816``/``xmma``/``wgmma``/
``nvjet``/``sm90``/``sm100``, ``tensorop``, TF32) and AMD matrix-core kernels (Tensile
``_MI16x16x1``, ``mfma``, MIOpen ``gtcx``/``xdlops``). fp32 SIMT kernels are recognised by their
own markers (``sgemm``, ``scudnn``, ``implicit_convolve_sgemm``, ``ffma``/``simt``,
``f32f32_f32f32``, cuDNN ``<float`` engines). When shapes were recorded, a GEMM kernel whose
name tells nothing is classified by its launching op's input type (``float`` is fp32).

fp32 matrix-vector and small-N kernels (``gemv``, ``gemmSN``) are listed but not counted:
they are memory-bound and tensor cores would not speed them up. fp64 and low-precision
kernels are never fp32. The rule only runs on devices with tensor or matrix cores (compute
capability 7.0 and newer, AMD CDNA with matrix cores).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Final

import polars as pl
from gpu_trace_analyzer import devices
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Severity
from gpu_trace_analyzer.metrics import timeline
from gpu_trace_analyzer.metrics.roofline import launch_external_ids
from gpu_trace_analyzer.parsers.schema import DeviceInfo, TraceTables
from gpu_trace_analyzer.rules import _advice
from gpu_trace_analyzer.rules._common import window_scope
from gpu_trace_analyzer.rules.base import RuleConfig, register

TENSOR = "tensor core"
FP32_GEMM = "fp32 GEMM"
FP32_CONV = "fp32 convolution"
FP32_GEMV = "fp32 GEMV / small-N GEMM"

#: Names that are never fp32: low precision, fp64.
_NOT_FP32 = (
    r"half|bf16|bfloat16|fp16|f16|e4m3|e5m2|fp8|mxfp|int8|\bi8|hgemm|hcudnn|h884|h1688"
    r"|dgemm|zgemm|dcudnn|<double"
)

#: (class, pattern, exclude) rows, case-insensitive; the first row that matches decides.
KERNEL_CLASSES: Final[tuple[tuple[str, str, str | None], ...]] = (
    # TF32 / xf32 tensor-core kernels (cuBLAS, cuDNN xmma, cutlass, hipBLASLt xf32).
    (TENSOR, r"tf32|xf32", None),
    # fp32 matrix-vector and small-N cuBLAS kernels: memory-bound, not TC-eligible.
    (FP32_GEMV, r"gemv|gemmSN|gemmk1", _NOT_FP32),
    # fp32 convolutions on CUDA cores: cuDNN scudnn / implicit-GEMM sgemm / FFT / engines.
    (
        FP32_CONV,
        r"convolve_sgemm|scudnn|conv\w*_sgemm|dgrad\w*<float|wgrad\w*<float|fft2d_(r2c|c2r)"
        r"|fft\w*conv|winograd\w*<float",
        _NOT_FP32,
    ),
    # fp32 GEMMs on CUDA cores: cuBLAS sgemm/cgemm, cutlass simt, xmma ffma, f32-only xmma.
    (
        FP32_GEMM,
        r"sgemm|cgemm|gcgemm|ffma|simt|f32f32_f32f32|gemm\w*<float",
        _NOT_FP32,
    ),
    # Tensor / matrix cores by name: Volta to Blackwell, cutlass, cuBLASLt, AMD MFMA.
    (
        TENSOR,
        r"h884|s884|h1688|s1688|16816|161616|i8816|hmma|imma|wgmma|wmma|tensorop|xmma|nvjet"
        r"|sm90|sm100|sm120|bf16|f16|e4m3|e5m2|fp8|mxfp|_MI\d+x\d+|mfma|xdlops|gtcx",
        None,
    ),
)

_COMPILED: Final = tuple(
    (cls, re.compile(p, re.IGNORECASE), re.compile(x, re.IGNORECASE) if x else None)
    for cls, p, x in KERNEL_CLASSES
)

#: CPU ops whose kernels do matrix math; their first input's type tells the precision.
_MATRIX_OPS = (
    r"^aten::(mm|addmm|bmm|baddbmm|addbmm|matmul|linear|_addmm_activation"
    r"|convolution|_convolution|conv\w*|cudnn_convolution\w*)$"
)
_TABLE_ROWS = 8
_NAME_CHARS = 100
_TC_DTYPES = ("tf32", "bf16", "fp16")


@dataclass(frozen=True, slots=True)
class NoTensorCoresConfig(RuleConfig):
    """Thresholds of `no-tensor-cores`."""

    warning_share_pct: float = 10.0
    """fp32 GEMM/convolution time as % of compute-kernel time at which the rule warns."""
    critical_share_pct: float = 40.0
    """fp32 GEMM/convolution share at which the finding is critical."""


def kernel_class(name: str) -> str | None:
    """The precision class of a kernel from its name, or None (not matrix math / unknown)."""
    for cls, pattern, exclude in _COMPILED:
        if pattern.search(name) and not (exclude is not None and exclude.search(name)):
            return cls
    return None


@register
class NoTensorCores:
    """fp32 GEMM/convolution time on a device whose tensor cores sit unused."""

    id: ClassVar[str] = "no-tensor-cores"
    title: ClassVar[str] = "fp32 matrix math bypasses the tensor cores"
    description: ClassVar[str] = (
        "Share of compute-kernel time in fp32 GEMMs and convolutions running on CUDA cores "
        "(from kernel names, and op input types when shapes were recorded) on a device with "
        "tensor or matrix cores; recommends TF32 or bf16/fp16 autocast as the device allows."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"kernels"})
    Config: ClassVar[type[NoTensorCoresConfig]] = NoTensorCoresConfig

    def check(self, ctx: AnalysisContext, cfg: NoTensorCoresConfig) -> Iterable[Finding]:
        """One finding when fp32 GEMM/conv time passes the share threshold."""
        kernels = ctx.metric("no_tensor_cores.kernels", classified_kernels)
        pairs = timeline.distinct_rows(kernels, ["rank", "device"])
        tc_devices = _tensor_core_devices(ctx, kernels, pairs)
        if tc_devices.height < pairs.height:  # some device without tensor cores: drop it
            kernels = kernels.join(tc_devices, on=["rank", "device"], how="semi")
        compute_ns = int(kernels.filter(pl.col("category") != "comm")["dur_ns"].sum())
        if compute_ns == 0:
            return []
        stake = kernels.filter(pl.col("class").is_in([FP32_GEMM, FP32_CONV]))
        stake_ns = int(stake["dur_ns"].sum())
        share_pct = 100.0 * stake_ns / compute_ns
        if share_pct < cfg.warning_share_pct:
            return []
        severity = Severity.CRITICAL if share_pct >= cfg.critical_share_pct else Severity.WARNING
        device = _device_of(ctx.tables, stake)
        spec = _spec(ctx, device)
        ranks = stake["rank"].unique().to_list()
        class_ns = dict(kernels.group_by("class").agg(pl.col("dur_ns").sum()).iter_rows())
        by_class = {c: int(class_ns.get(c) or 0) for c in (FP32_GEMM, FP32_CONV, FP32_GEMV, TENSOR)}
        return [
            Finding(
                rule_id=self.id,
                severity=severity,
                title=self.title,
                summary=_summary(share_pct, stake_ns, by_class, device),
                evidence={
                    "fp32_share_pct": round(share_pct, 2),
                    "fp32_gemm_conv_ns": stake_ns,
                    "fp32_gemm_ns": by_class[FP32_GEMM],
                    "fp32_conv_ns": by_class[FP32_CONV],
                    "fp32_gemv_ns": by_class[FP32_GEMV],
                    "tensor_core_ns": by_class[TENSOR],
                    "compute_kernel_ns": compute_ns,
                    "classified_by_op_dtype_ns": int(
                        stake.filter(pl.col("basis") == "op input type")["dur_ns"].sum()
                    ),
                    "device": device.name if device else "",
                    "compute_capability": _cc(device),
                    "tensor_over_fp32_peak": _peak_ratio(spec),
                },
                recommendation=_recommendation(
                    device, spec, by_class, _advice.profile(ctx).is_training
                ),
                scope=window_scope(ctx.tables, ranks),
                impact_ns=stake_ns,
                table=_table(kernels, compute_ns),
            )
        ]


def classified_kernels(t: TraceTables) -> pl.DataFrame:
    """Kernels in the analysis window with ``class`` and ``basis`` (kernel name / op type).

    A kernel's launching op is found through its own ``external_id``, or its runtime call's.
    Names and categories stay categorical; the name regexes run once per distinct name.
    """
    kernels = timeline.in_windows(
        t.kernels.select("rank", "device", "name", "category", "start_ns", "dur_ns").with_columns(
            launch_external_ids(t)["external_id"]
        ),
        timeline.analysis_windows(t, "steps"),
    ).select("rank", "device", "name", "category", "dur_ns", "external_id")
    names = kernels.get_column("name").unique().drop_nulls()
    classes = pl.Series([kernel_class(n) for n in names.cast(pl.String).to_list()], dtype=pl.String)
    kernels = kernels.with_columns(
        pl.col("name")
        .replace_strict(names, classes, default=None, return_dtype=pl.String)
        .alias("class")
    )
    fp32_ops = _fp32_matrix_ops(t)
    by_op = (pl.col("class").is_null()) & (pl.col("category") == "gemm") & pl.col("_fp32_op")
    if fp32_ops.height == 0:  # no fp32 GEMM/conv op recorded: kernel names decide alone
        flagged = kernels.with_columns(pl.lit(False).alias("_fp32_op"))
    else:
        flagged = kernels.join(
            fp32_ops, on=["rank", "external_id"], how="left", maintain_order="left"
        ).with_columns(pl.col("_fp32_op").fill_null(False))
    return flagged.with_columns(
        pl.when(by_op).then(pl.lit(FP32_GEMM)).otherwise(pl.col("class")).alias("class"),
        pl.when(by_op)
        .then(pl.lit("op input type"))
        .when(pl.col("class").is_not_null())
        .then(pl.lit("kernel name"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("basis"),
    ).drop("_fp32_op")


def _fp32_matrix_ops(t: TraceTables) -> pl.DataFrame:
    """(rank, external_id) of GEMM/conv CPU ops whose first input is an fp32 tensor."""
    ops = t.ops.filter(pl.col("external_id").is_not_null() & pl.col("input_types").is_not_null())
    names = ops["name"].unique().cast(pl.String)
    matrix = names.filter(names.str.contains(_MATRIX_OPS))
    first_type = pl.col("input_types").str.extract(r'^\s*\[\s*"([^"]*)"', 1)
    return (
        ops.filter(pl.col("name").is_in(matrix.implode()))
        .filter(first_type == "float")
        .select("rank", "external_id", pl.lit(True).alias("_fp32_op"))
        .unique(["rank", "external_id"])
    )


def _tensor_core_devices(
    ctx: AnalysisContext, kernels: pl.DataFrame, pairs: pl.DataFrame
) -> pl.DataFrame:
    """(rank, device) pairs that ran kernels (``pairs``: the distinct ones, sorted) and have
    tensor or matrix cores.

    From the device database when it knows the device; else from what the trace says
    (`_has_tc_from_trace`); a device the trace does not describe takes its rank's described
    device; with no description at all, tensor-core kernels having run on it decide.
    """
    try:
        resolved = devices.resolve(ctx.tables.meta, ctx.options)
    except Exception:  # a bad --device is reported elsewhere; fall back to the trace
        resolved = {}
    tc_ran = set(
        kernels.filter(pl.col("class") == TENSOR).select("rank", "device").unique().iter_rows()
    )
    names = kernels.get_column("name").unique().cast(pl.String)
    mfma_seen = bool(names.str.contains(r"_MI\d+x\d+|mfma|xdlops|gtcx").any())
    keys = []
    for rank, device in pairs.iter_rows():
        info = _describe(ctx.tables, int(rank), int(device))
        entry = resolved.get((info.rank, info.device)) if info is not None else None
        spec = entry.spec if entry is not None else None
        if spec is not None and spec.key != "user":
            has_tc = any(pipe == "tensor" and d in _TC_DTYPES for pipe, d in spec.peak_flops)
        elif info is not None:
            has_tc = _has_tc_from_trace(info, mfma_seen)
        else:
            has_tc = (rank, device) in tc_ran
        if has_tc:
            keys.append((rank, device))
    return pl.DataFrame(
        {"rank": [k[0] for k in keys], "device": [k[1] for k in keys]},
        schema={"rank": pl.Int32(), "device": pl.Int32()},
    )


def _has_tc_from_trace(info: DeviceInfo, mfma_seen: bool) -> bool:
    """Tensor cores from what the trace says: NVIDIA cc >= 7.0; AMD when MFMA kernels ran."""
    name = info.name.upper()
    if info.warp_size == 64 or "AMD" in name or "INSTINCT" in name:
        return mfma_seen
    return info.compute_major is not None and info.compute_major >= 7


def _describe(t: TraceTables, rank: int, device: int) -> DeviceInfo | None:
    """The trace's description of a device, or of the rank's only described device model."""
    same_rank = [d for d in t.meta.devices if d.rank == rank]
    for info in same_rank:
        if info.device == device:
            return info
    if same_rank and len({d.name for d in same_rank}) == 1:
        return same_rank[0]
    return None


def _device_of(t: TraceTables, stake: pl.DataFrame) -> DeviceInfo | None:
    """The device that ran the most fp32 GEMM/conv time."""
    if stake.height == 0:
        return None
    top = (
        stake.group_by("rank", "device")
        .agg(pl.col("dur_ns").sum())
        .sort("dur_ns", descending=True)
        .row(0, named=True)
    )
    return _describe(t, int(top["rank"]), int(top["device"]))


def _spec(ctx: AnalysisContext, device: DeviceInfo | None) -> devices.DeviceSpec | None:
    if device is None:
        return None
    try:
        return devices.resolve_one(device, ctx.options).spec
    except Exception:
        return None


def _cc(device: DeviceInfo | None) -> str:
    if device is None or device.compute_major is None:
        return ""
    return f"{device.compute_major}.{device.compute_minor or 0}"


def _peak_ratio(spec: devices.DeviceSpec | None) -> float:
    """Best tensor-core peak (tf32, bf16 or fp16) over the fp32 vector peak; 0 if unknown."""
    if spec is None:
        return 0.0
    fp32 = spec.peak("vector", "fp32")
    tensor = max((spec.peak("tensor", d) or 0.0) for d in _TC_DTYPES)
    return round(tensor / fp32, 1) if fp32 and tensor else 0.0


def _summary(
    share_pct: float, stake_ns: int, by_class: dict[str, int], device: DeviceInfo | None
) -> str:
    """One sentence: the fp32 share, split GEMM/conv, on which device."""
    on = f" on {device.name}" if device is not None and device.name else ""
    parts = [
        f"{label} ({_ms(by_class[cls])})"
        for label, cls in (("GEMMs", FP32_GEMM), ("convolutions", FP32_CONV))
        if by_class[cls]
    ]
    return (
        f"{share_pct:.0f}% of compute-kernel time ({_ms(stake_ns)}) is fp32 "
        f"{' and '.join(parts)} on CUDA cores{on}, while tensor-core kernels ran "
        f"{_ms(by_class[TENSOR])}."
    )


def _ms(ns: int) -> str:
    """A duration in ms with a precision that suits its size."""
    ms = ns / 1e6
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 1 else f"{ms:.3f} ms"


def _recommendation(
    device: DeviceInfo | None,
    spec: devices.DeviceSpec | None,
    by_class: dict[str, int],
    training: bool = True,
) -> str:
    """TF32 / bf16 where the device has them, fp16 autocast on Volta/Turing (with a grad
    scaler only when training)."""
    tensor_dtypes = {d for pipe, d in (spec.peak_flops if spec else {}) if pipe == "tensor"}
    amd = spec is not None and spec.vendor == "amd"
    if amd:
        text = (
            "Run the model under torch.autocast('cuda', dtype=torch.bfloat16) so GEMMs and "
            "convolutions use the matrix cores (MFMA) in bf16"
        )
    elif spec is not None and "tf32" not in tensor_dtypes and "bf16" not in tensor_dtypes:
        text = (
            "This GPU's tensor cores take fp16 only (no TF32 or bf16): train under "
            "torch.autocast('cuda', dtype=torch.float16) with torch.amp.GradScaler"
            if training
            else "This GPU's tensor cores take fp16 only (no TF32 or bf16): run under "
            "torch.autocast('cuda', dtype=torch.float16) or convert the model with .half()"
        )
    else:
        text = (
            "Allow TF32 for fp32 math (torch.set_float32_matmul_precision('high') for "
            "matmuls; torch.backends.cudnn.allow_tf32 = True for convolutions), or better, "
            "run under torch.autocast('cuda', dtype=torch.bfloat16)"
        )
    if by_class[FP32_CONV]:
        text += (
            "; for convolutions also keep channel counts multiples of 8 and try "
            "memory_format=torch.channels_last so cuDNN can pick tensor-core algorithms"
        )
    ratio = _peak_ratio(spec)
    if ratio:
        text += f" (the tensor-core peak is {ratio:g}x the fp32 peak on this device)"
    return text + "."


def _short(name: str) -> str:
    name = " ".join(name.split())
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


def _table(kernels: pl.DataFrame, compute_ns: int) -> EvidenceTable:
    """The fp32 kernels with the most time (GEMV rows marked as not counted)."""
    fp32 = (
        kernels.filter(pl.col("class").is_in([FP32_GEMM, FP32_CONV, FP32_GEMV]))
        .group_by("name", "class", "basis")
        .agg(pl.len().alias("calls"), pl.col("dur_ns").sum())
        .with_columns(pl.col("name").cast(pl.String))
        .sort(["dur_ns", "name"], descending=[True, False])
        .head(_TABLE_ROWS)
    )
    rows: list[list[str | int | float | None]] = [
        [
            _short(r["name"]),
            r["class"] + (" (not counted)" if r["class"] == FP32_GEMV else ""),
            int(r["calls"]),
            round(r["dur_ns"] / 1e6, 3),
            round(100.0 * r["dur_ns"] / compute_ns, 1),
            r["basis"],
        ]
        for r in fp32.iter_rows(named=True)
    ]
    return EvidenceTable(
        columns=["kernel", "class", "calls", "time (ms)", "share of compute (%)", "from"],
        rows=rows,
    )
