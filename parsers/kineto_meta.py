"""What a Kineto file says about itself: rank, devices, versions, flags, clock.

Read from the top-level keys of the document (each decoded only here, leniently: a key of an
unexpected shape is ignored, never fatal). The rank comes from ``distributedInfo.rank``, else
from the file name (``rank-3``, ``rank_3``, ``rank[3]``), else it is assumed, with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec
from gpu_trace_analyzer.parsers.kineto_build import as_int
from gpu_trace_analyzer.parsers.kineto_events import Document
from gpu_trace_analyzer.parsers.kineto_time import raw_us
from gpu_trace_analyzer.parsers.schema import DeviceInfo

_RANK_IN_NAME: Final = re.compile(r"rank(?:[-_]|\[)?(\d+)", re.IGNORECASE)
#: Epoch microseconds are above this (1973); relative timestamps are far below.
_EPOCH_US_FLOOR: Final = Decimal(10**14)
_VERSION_KEYS: Final = (
    "cupti_version",
    "cuda_runtime_version",
    "cuda_driver_version",
    "roctracer_version",
    "hip_runtime_version",
    "hip_driver_version",
)
_FLAG_KEYS: Final = ("record_shapes", "profile_memory", "with_stack", "with_flops", "with_modules")
_TORCH_VERSION_KEYS: Final = ("torch_version", "pytorch_version")


@dataclass(frozen=True, slots=True)
class FileFacts:
    """Top-level facts of one Kineto file."""

    rank: int | None
    world_size: int | None
    backend: str | None
    hostname: str | None
    base_time_ns: int | None
    devices: tuple[Mapping[str, Any], ...]
    versions: Mapping[str, str] = field(default_factory=dict)
    flags: Mapping[str, str] = field(default_factory=dict)


def _value(raw: msgspec.Raw) -> Any:
    """A raw JSON value decoded, or None when absent or unreadable."""
    if not raw:
        return None
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def _text(value: Any) -> str | None:
    """A scalar as text (numbers as written: 4.1 stays "4.1")."""
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def facts(document: Document) -> FileFacts:
    """The facts of a decoded document."""
    distributed = _value(document.distributedInfo)
    distributed = distributed if isinstance(distributed, dict) else {}
    versions = {
        key: text
        for key in _VERSION_KEYS
        if (text := _text(_value(getattr(document, key)))) is not None
    }
    if (schema := _text(_value(document.schemaVersion))) is not None:
        versions["kineto_schema_version"] = schema
    if (nccl := _text(distributed.get("nccl_version"))) is not None:
        versions["nccl_version"] = nccl
    if (torch := _torch_version(_value(document.metadata))) is not None:
        versions["pytorch_version"] = torch
    flags = {
        key: text
        for key in _FLAG_KEYS
        if (text := _text(_value(getattr(document, key)))) is not None
    }
    base_time_ns = as_int(_value(document.baseTimeNanoseconds))
    if base_time_ns is not None:
        # Not a profiler flag, but where readers find the origin the file's ``ts`` count
        # from (to reproduce tools that read those microseconds as floats).
        flags["base_time_ns"] = str(base_time_ns)
    return FileFacts(
        rank=as_int(distributed.get("rank")),
        world_size=as_int(distributed.get("world_size")),
        backend=_text(distributed.get("backend")),
        hostname=_text(_value(document.host_name)) or _text(_value(document.hostname)),
        base_time_ns=base_time_ns,
        devices=_device_entries(document),
        versions=versions,
        flags=flags,
    )


def _device_entries(document: Document) -> tuple[Mapping[str, Any], ...]:
    """``deviceProperties`` entries (very old traces: ``computeProperties``)."""
    for raw in (document.deviceProperties, document.computeProperties):
        entries = _value(raw)
        if isinstance(entries, list):
            return tuple(e for e in entries if isinstance(e, dict))
    return ()


def _torch_version(metadata: Any, depth: int = 0) -> str | None:
    """A ``torch_version`` anywhere (depth-limited) in a free-form ``metadata`` object."""
    if not isinstance(metadata, dict) or depth > 4:
        return None
    for key in _TORCH_VERSION_KEYS:
        if isinstance(metadata.get(key), str):
            return str(metadata[key])
    for value in metadata.values():
        found = _torch_version(value, depth + 1)
        if found is not None:
            return found
    return None


def devices(entries: tuple[Mapping[str, Any], ...], rank: int) -> tuple[DeviceInfo, ...]:
    """`DeviceInfo` per listed device (all listed, used or not)."""
    result = []
    for index, entry in enumerate(entries):

        def pick(*keys: str, _e: Mapping[str, Any] = entry) -> int | None:
            return next((v for k in keys if (v := as_int(_e.get(k))) is not None), None)

        device = pick("id")
        result.append(
            DeviceInfo(
                rank=rank,
                device=index if device is None else device,
                name=str(entry.get("name", "unknown")),
                total_mem_bytes=pick("totalGlobalMem"),
                compute_major=pick("computeMajor", "major"),
                compute_minor=pick("computeMinor", "minor"),
                num_sms=pick("numSms", "multiProcessorCount"),
                max_threads_per_sm=pick(
                    "maxThreadsPerMultiprocessor", "maxThreadsPerMultiProcessor"
                ),
                max_threads_per_block=pick("maxThreadsPerBlock"),
                regs_per_sm=pick("regsPerMultiprocessor"),
                shared_mem_per_sm_bytes=pick(
                    "sharedMemPerMultiprocessor", "maxSharedMemoryPerMultiProcessor"
                ),
                warp_size=pick("warpSize"),
            )
        )
    return tuple(result)


def rank_from_name(path: Path) -> int | None:
    """A rank written in the file name: ``rank-3``, ``rank_3``, ``rank[3]``, ``rank3``."""
    match = _RANK_IN_NAME.search(path.name)
    return int(match.group(1)) if match else None


def clock(first_ts: bytes | None, base_time_ns: int | None) -> tuple[str, int]:
    """The trace's clock and the offset that puts its timestamps on it.

    ``baseTimeNanoseconds`` present: timestamps are relative to it, the clock is the Unix
    epoch. Absent: timestamps are epoch microseconds when large enough (before PyTorch 2.4),
    judged from ``first_ts``, the raw ``ts`` of the first complete event; else they are
    relative to an unknown origin.
    """
    if base_time_ns is not None:
        return "epoch", base_time_ns
    first = raw_us(msgspec.Raw(first_ts)) if first_ts is not None else None
    if first is not None and abs(first) >= _EPOCH_US_FLOOR:
        return "epoch", 0
    return "relative", 0
