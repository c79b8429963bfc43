"""GPU specifications for the roofline, and matching them to the devices a trace names.

The database lives in ``devices.toml`` beside this module: one row per product with dense peak
FLOP/s per (pipe, dtype), memory bandwidth, SM/CU count, the datasheet it came from and whether
every figure was checked against it. ``match`` finds a row from a device name as the driver
reports it (``NVIDIA H100 80GB HBM3``, ``AMD Instinct MI300X VF``); ``resolve`` does it for every
device of a trace, honouring ``--device`` and ``--peak-tflops``/``--mem-bw-gbs``. A device that
matches nothing is returned with ``spec=None`` and a reason, so the report can name it instead
of guessing.

Pipes: ``"vector"`` (CUDA cores, AMD vector ALUs) and ``"tensor"`` (Tensor Cores, AMD Matrix
Cores). Dtypes: ``fp64 fp32 tf32 bf16 fp16 fp8 int8``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any, Final

from gpu_trace_analyzer.context import AnalysisOptions
from gpu_trace_analyzer.parsers.errors import BadConfigError
from gpu_trace_analyzer.parsers.schema import DeviceInfo, TraceMeta

PIPES: Final = ("vector", "tensor")
DTYPES: Final = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")

_TERA: Final = 1e12
_GIGA: Final = 1e9

PeakKey = tuple[str, str]  # (pipe, dtype)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One visible device's peaks: FLOP/s per (pipe, dtype) and memory bytes per second."""

    key: str
    name: str
    vendor: str
    sm_count: int
    mem_bw_bytes_per_s: float
    peak_flops: Mapping[PeakKey, float]
    source: str
    confirmed: bool = True
    notes: str = ""
    patterns: tuple[str, ...] = ()
    compute_capability: str = ""
    """computeMajor.computeMinor as traces report it (CUDA capability, AMD gfx arch)."""
    mem_gib: tuple[float, ...] = ()
    """Nominal memory sizes (GB as printed) of the product's variants, per visible device."""

    def peak(self, pipe: str, dtype: str) -> float | None:
        """Peak FLOP/s of ``dtype`` on ``pipe``, or None when that pipe lacks the dtype."""
        return self.peak_flops.get((pipe, dtype))

    def ridge_flop_per_byte(self, pipe: str, dtype: str) -> float | None:
        """Arithmetic intensity where the memory roof meets the compute roof of a pipe."""
        peak = self.peak(pipe, dtype)
        if peak is None or self.mem_bw_bytes_per_s <= 0:
            return None
        return peak / self.mem_bw_bytes_per_s

    def roofs(self) -> list[PeakKey]:
        """Every (pipe, dtype) with a peak, tensor first, in `DTYPES` order."""
        order = {d: i for i, d in enumerate(DTYPES)}
        return sorted(self.peak_flops, key=lambda k: (k[0] != "tensor", order.get(k[1], 99)))


@dataclass(frozen=True, slots=True)
class ResolvedDevice:
    """A trace's device, the spec chosen for it (None when unknown), and why.

    ``num_sms`` is the trace's own count when it reports one; the spec's ``sm_count`` then
    equals it (see `resolve`). ``origin`` says where the spec came from: ``"trace name"``,
    ``"--device"``, ``"--peak-tflops/--mem-bw-gbs"``, ``"properties"`` (identified from
    compute capability / gfx arch, SM/CU count and memory, `identify`), or ``""`` when unknown.
    """

    rank: int
    device: int
    trace_name: str
    num_sms: int | None
    spec: DeviceSpec | None
    origin: str
    reason: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def known(self) -> bool:
        """Whether a spec (hence a roofline) is available."""
        return self.spec is not None

    @property
    def label(self) -> str:
        """The name to show: the trace's own; the identified product, said so, when the
        trace's name is empty or unknown; else a placeholder."""
        if self.origin == "properties" and self.spec is not None:
            return f"{self.spec.name} (identified from properties)"
        return self.trace_name or "unnamed device"


def _peaks(row: Mapping[str, Any], dies: int) -> dict[PeakKey, float]:
    peaks: dict[PeakKey, float] = {}
    for pipe in PIPES:
        for dtype, tflops in (row.get(f"{pipe}_tflops") or {}).items():
            if dtype not in DTYPES:
                raise ValueError(f"devices.toml: {row['key']}: unknown dtype {dtype!r}")
            peaks[(pipe, dtype)] = float(tflops) * _TERA / dies
    return peaks


def _spec_from_row(row: Mapping[str, Any]) -> DeviceSpec:
    dies = int(row.get("dies", 1))
    return DeviceSpec(
        key=str(row["key"]),
        name=str(row["name"]),
        vendor=str(row["vendor"]),
        sm_count=int(row["sm_count"]) // dies,
        mem_bw_bytes_per_s=float(row["mem_bw_gbs"]) * _GIGA / dies,
        peak_flops=_peaks(row, dies),
        source=str(row["source"]),
        confirmed=bool(row["confirmed"]),
        notes=" ".join(str(row.get("notes", "")).split()),
        patterns=tuple(str(p) for p in row["patterns"]),
        compute_capability=str(row.get("compute_capability", "")),
        mem_gib=tuple(float(m) for m in row.get("mem_gib", ())),
    )


#: How far the memory a trace reports (GiB) may lie from the nominal size (GB as printed).
MEM_TOLERANCE: Final = 0.10


def identify(info: DeviceInfo) -> list[DeviceSpec]:
    """The products whose properties equal the trace's: compute capability (gfx arch on AMD),
    SM/CU count and memory size. Each property the trace lacks is not compared, but at least
    the SM count and one other must be there; a single candidate identifies the device."""
    if not info.num_sms or (info.compute_major is None and not info.total_mem_bytes):
        return []
    cc = (
        f"{info.compute_major}.{info.compute_minor or 0}"
        if info.compute_major is not None
        else None
    )
    gib = info.total_mem_bytes / 2**30 if info.total_mem_bytes else None
    found = []
    for spec in database():
        if spec.sm_count != info.num_sms:
            continue
        if cc is not None and spec.compute_capability and spec.compute_capability != cc:
            continue
        if gib is not None and not _memory_fits(gib, spec.mem_gib):
            continue
        found.append(spec)
    return found


def _memory_fits(gib: float, sizes: tuple[float, ...]) -> bool:
    """True when ``gib`` lies within `MEM_TOLERANCE` of a nominal size (or none is listed)."""
    return not sizes or any(abs(gib - m) <= MEM_TOLERANCE * m for m in sizes)


def _properties(info: DeviceInfo) -> str:
    """The trace's properties as a reader checks them: ``304 CUs, 192 GiB, gfx 9.4``."""
    amd = (info.warp_size or 0) == 64 or "amd" in info.name.lower()
    parts = []
    if info.num_sms:
        parts.append(f"{info.num_sms} {'CUs' if amd else 'SMs'}")
    if info.total_mem_bytes:
        parts.append(f"{info.total_mem_bytes / 2**30:.0f} GiB")
    if info.compute_major is not None:
        label = "gfx" if amd else "compute capability"
        parts.append(f"{label} {info.compute_major}.{info.compute_minor or 0}")
    return ", ".join(parts)


@cache
def database() -> tuple[DeviceSpec, ...]:
    """Every device of ``devices.toml``, in file order (the order `match` tries them)."""
    text = (
        resources.files(__name__.rpartition(".")[0])
        .joinpath("devices.toml")
        .read_text(encoding="utf-8")
    )
    rows = tomllib.loads(text)["device"]
    return tuple(_spec_from_row(r) for r in rows)


def match(name: str) -> DeviceSpec | None:
    """The spec whose pattern occurs in ``name`` (case-insensitive), or None.

    Also accepts a row's own ``key`` or ``name`` (``--device H100-SXM``).
    """
    text = name.strip()
    if not text:
        return None
    for spec in database():
        if text.lower() in (spec.key.lower(), spec.name.lower()):
            return spec
    for spec in database():
        if any(re.search(p, text, flags=re.IGNORECASE) for p in spec.patterns):
            return spec
    return None


def user_spec(peak_tflops: float, mem_bw_gbs: float) -> DeviceSpec:
    """A spec from ``--peak-tflops`` and ``--mem-bw-gbs``: one peak for every pipe and dtype."""
    if peak_tflops <= 0 or mem_bw_gbs <= 0:
        raise BadConfigError("--peak-tflops and --mem-bw-gbs must be positive")
    peaks = {(pipe, dtype): peak_tflops * _TERA for pipe in PIPES for dtype in DTYPES}
    return DeviceSpec(
        key="user",
        name=f"user-described device ({peak_tflops:g} TFLOP/s, {mem_bw_gbs:g} GB/s)",
        vendor="unknown",
        sm_count=0,
        mem_bw_bytes_per_s=mem_bw_gbs * _GIGA,
        peak_flops=peaks,
        source="--peak-tflops / --mem-bw-gbs on the command line",
        confirmed=True,
    )


def _scaled_to_trace(spec: DeviceSpec, num_sms: int | None) -> tuple[DeviceSpec, tuple[str, ...]]:
    """The spec with the trace's SM count; compute peaks scale with it when the counts differ.

    A MIG slice, a compute partition or a harvested part reports fewer SMs than the product;
    its compute peak shrinks in proportion (clocks assumed equal). Bandwidth is left alone.
    """
    if not num_sms or spec.sm_count <= 0 or num_sms == spec.sm_count:
        return spec, ()
    ratio = num_sms / spec.sm_count
    scaled = replace(
        spec,
        sm_count=num_sms,
        peak_flops={k: v * ratio for k, v in spec.peak_flops.items()},
    )
    note = (
        f"the trace reports {num_sms} SMs/CUs where {spec.name} has {spec.sm_count}: "
        f"compute peaks scaled by {ratio:.3f}, memory bandwidth unchanged"
    )
    return scaled, (note,)


def _unknown_reason(info: DeviceInfo) -> str:
    name = info.name.strip()
    base = (
        "the trace gives no device name" if not name else f"{name!r} is not in the device database"
    )
    hints = []
    if info.num_sms:
        hints.append(f"{info.num_sms} SMs/CUs")
    if info.total_mem_bytes:
        hints.append(f"{info.total_mem_bytes / 2**30:.0f} GiB")
    if info.compute_major is not None:
        hints.append(f"compute capability {info.compute_major}.{info.compute_minor or 0}")
    detail = f" (trace reports {', '.join(hints)})" if hints else ""
    return (
        f"{base}{detail}; pass --device NAME, or --peak-tflops and --mem-bw-gbs, to get a roofline"
    )


def _check_options(options: AnalysisOptions) -> DeviceSpec | None:
    """The override spec the options ask for (None when they ask for none)."""
    if options.device_override:
        spec = match(options.device_override)
        if spec is None:
            known = ", ".join(s.key for s in database())
            raise BadConfigError(
                f"--device {options.device_override!r} matches no known device (known: {known})"
            )
        return spec
    given = (options.peak_tflops is not None, options.mem_bw_gbs is not None)
    if any(given) and not all(given):
        raise BadConfigError("--peak-tflops and --mem-bw-gbs must be given together")
    return None


def resolve_one(info: DeviceInfo, options: AnalysisOptions) -> ResolvedDevice:
    """The spec for one device of a trace (see `resolve`)."""
    override = _check_options(options)
    if override is not None:
        spec, origin = override, "--device"
    else:
        found = match(info.name)
        candidates = identify(info) if found is None else []
        if found is not None:
            spec, origin = found, "trace name"
        elif len(candidates) == 1:
            spec, origin = candidates[0], "properties"
        elif options.peak_tflops is not None and options.mem_bw_gbs is not None:
            spec, origin = (
                user_spec(options.peak_tflops, options.mem_bw_gbs),
                ("--peak-tflops/--mem-bw-gbs"),
            )
        else:
            reason = _unknown_reason(info)
            if len(candidates) > 1:
                names = ", ".join(c.key for c in candidates)
                reason = (
                    f"{reason.split(';')[0]}; its properties fit several devices ({names}): "
                    "pass --device NAME to choose"
                )
            return ResolvedDevice(info.rank, info.device, info.name, info.num_sms, None, "", reason)
    notes: tuple[str, ...] = ()
    if origin == "properties":
        notes = (f"identified from properties ({_properties(info)}) as {spec.name}",)
    if origin != "--peak-tflops/--mem-bw-gbs":
        spec, scaled = _scaled_to_trace(spec, info.num_sms)
        notes = (*notes, *scaled)
    if not spec.confirmed:
        notes = (*notes, f"unconfirmed peak: {spec.notes or spec.source}")
    return ResolvedDevice(info.rank, info.device, info.name, info.num_sms, spec, origin, "", notes)


def resolve(meta: TraceMeta, options: AnalysisOptions) -> dict[tuple[int, int], ResolvedDevice]:
    """Every device the trace describes, keyed by (rank, device), with its spec or the reason.

    Precedence: ``--device NAME`` for every device; else the trace's own name; else, for a
    device the database does not know, ``--peak-tflops`` with ``--mem-bw-gbs``. The trace's
    SM count wins over the database's. Raises `BadConfigError` for a ``--device`` that matches
    nothing, or for only one of ``--peak-tflops``/``--mem-bw-gbs``.
    """
    _check_options(options)
    return {(d.rank, d.device): resolve_one(d, options) for d in meta.devices}


def resolve_missing(rank: int, device: int, options: AnalysisOptions) -> ResolvedDevice:
    """A device that ran kernels but that the trace does not describe (no deviceProperties)."""
    info = DeviceInfo(rank=rank, device=device, name="")
    resolved = resolve_one(info, options)
    if resolved.spec is None:
        reason = (
            "the trace has no deviceProperties entry for this device; pass --device NAME, "
            "or --peak-tflops and --mem-bw-gbs, to get a roofline"
        )
        return replace(resolved, reason=reason)
    return resolved


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One interconnect link generation (``[[link]]`` of ``devices.toml``).

    ``unidirectional_bytes_per_s`` is what one GPU sends (or receives) per second over the
    link: the figure NCCL-tests' bus bandwidth is compared against. ``bidirectional`` is the
    vendor's headline (both directions summed), kept for the report's wording.
    """

    key: str
    name: str
    kind: str
    scope: str
    unidirectional_bytes_per_s: float
    bidirectional_bytes_per_s: float
    source: str
    confirmed: bool = True
    notes: str = ""
    devices: tuple[str, ...] = ()

    @property
    def unidirectional_gbps(self) -> float:
        """The busbw reference in GB/s (10^9 B/s)."""
        return self.unidirectional_bytes_per_s / _GIGA

    @property
    def bidirectional_gbps(self) -> float:
        """The vendor's bidirectional headline in GB/s."""
        return self.bidirectional_bytes_per_s / _GIGA


def _link_from_row(row: Mapping[str, Any]) -> LinkSpec:
    return LinkSpec(
        key=str(row["key"]),
        name=str(row["name"]),
        kind=str(row["kind"]),
        scope=str(row["scope"]),
        unidirectional_bytes_per_s=float(row["unidirectional_gbs"]) * _GIGA,
        bidirectional_bytes_per_s=float(row["bidirectional_gbs"]) * _GIGA,
        source=str(row["source"]),
        confirmed=bool(row.get("confirmed", True)),
        notes=str(row.get("notes", "")),
        devices=tuple(str(d) for d in row.get("devices", ())),
    )


@cache
def links() -> tuple[LinkSpec, ...]:
    """Every link of ``devices.toml``, in file order."""
    text = (
        resources.files(__name__.rpartition(".")[0])
        .joinpath("devices.toml")
        .read_text(encoding="utf-8")
    )
    return tuple(_link_from_row(r) for r in tomllib.loads(text).get("link", ()))


def link_by_name(name: str) -> LinkSpec:
    """The link named ``name`` (its key or name, case-insensitive, ``-``/``_``/space alike):
    ``nvlink4``, ``pcie5-x16``, ``ib-ndr``. Raises `BadConfigError` naming the known ones."""
    wanted = re.sub(r"[\s_]+", "-", name.strip().lower())
    for spec in links():
        if wanted in (spec.key, re.sub(r"[\s_]+", "-", spec.name.lower())):
            return spec
    known = ", ".join(s.key for s in links())
    raise BadConfigError(f"--link {name!r} matches no known link (known: {known})")


def intra_node_link(device_key: str) -> LinkSpec | None:
    """The link a device's collectives inside one node use by default (None when unknown)."""
    for spec in links():
        if device_key in spec.devices:
            return spec
    return None
