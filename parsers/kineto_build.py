"""Kineto events to column frames, one builder per event kind.

Each builder takes the events of one kind and returns a polars frame whose columns are a
subset of the canonical table's, plus private ``_``-prefixed columns that `kineto_link`
consumes (collective args, ROCm copy sizes) and drops. Builders decode ``args`` with the
kind's own Struct and nothing else; python_function events never have their args decoded.

Builders work on any slice of a trace's events, so a chunked reader can call them batch by
batch and concatenate the frames.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Final, TypeVar

import msgspec
import polars as pl

from parsers.kineto_events import (
    CommArgs,
    DmaArgs,
    Event,
    KernelArgs,
    MemopArgs,
    MemoryArgs,
    OpArgs,
    RuntimeArgs,
    SyncArgs,
)
from parsers.kineto_time import us_to_ns

#: Event ``cat`` -> our kind, for complete (``ph: X``) events. 2021 names included.
KIND_BY_CAT: Final[dict[str, str]] = {
    "kernel": "kernel",
    "Kernel": "kernel",
    "mtia_ccp_events": "mtia",
    "gpu_memcpy": "memcpy",
    "Memcpy": "memcpy",
    "gpu_memset": "memset",
    "Memset": "memset",
    "cuda_runtime": "runtime",
    "Runtime": "runtime",
    "mtia_runtime": "runtime",
    "xpu_runtime": "runtime",
    "privateuse1_runtime": "runtime",
    "cuda_driver": "driver",
    "xpu_driver": "driver",
    "privateuse1_driver": "driver",
    "cuda_sync": "sync",
    "cpu_op": "cpu_op",
    "Operator": "cpu_op",
    "user_annotation": "user_annotation",
    "python_function": "python_function",
    "gpu_user_annotation": "gpu_user_annotation",
    "collective_comm": "collective",
}
MEMORY_EVENT_NAME: Final = "[memory]"
OP_KINDS: Final = ("cpu_op", "user_annotation", "python_function", "gpu_user_annotation")

S = TypeVar("S", bound=msgspec.Struct)

_STREAM_TID: Final = re.compile(r"^\s*stream\s+(-?\d+)", re.IGNORECASE)
_I32 = pl.Int32()
_I64 = pl.Int64()
_F64 = pl.Float64()
_STR = pl.String()


def group_events(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Events by kind; metadata, flows, instants other than ``[memory]`` are left out.

    MTIA CCP events are the accelerator's kernels, except its DMA requests, which are
    memory copies (HTA counts ``dma*`` events as memory, like Memcpy / Memset).
    """
    groups: dict[str, list[Event]] = defaultdict(list)
    kinds = KIND_BY_CAT
    for event in events:
        if event.ph == "X":
            kind = kinds.get(event.cat or "")
            if kind == "mtia":
                kind = "dma" if (event.name or "").startswith("dma") else "kernel"
            if kind is not None:
                groups[kind].append(event)
        elif event.ph in ("i", "I") and event.name == MEMORY_EVENT_NAME:
            groups["memory"].append(event)
    return groups


def as_int(value: object) -> int | None:
    """An integer from a JSON scalar: ints, integral floats, decimal or hex strings."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        return _int_text(value.strip())
    return None


def _int_text(text: str) -> int | None:
    """Decimal (leading zeros allowed) or 0x-prefixed hexadecimal text as an integer."""
    for base in (10, 0):
        try:
            return int(text, base)
        except ValueError:
            continue
    return None


def as_id(value: object) -> int | None:
    """A pid / tid / stream as an integer: 2021 traces write ``"25738"`` or ``"stream 7"``."""
    number = as_int(value)
    if number is not None or not isinstance(value, str):
        return number
    match = _STREAM_TID.match(value)
    return int(match.group(1)) if match else None


def as_str(value: object) -> str | None:
    """A string from a JSON scalar (numbers written as their text)."""
    if value is None or isinstance(value, bool):
        return None
    return value if isinstance(value, str) else str(value)


def decode_args(decoder: msgspec.json.Decoder[S], raw: msgspec.Raw, kind: type[S]) -> S:
    """Typed args; when a value has an unexpected type, keep the fields that do fit."""
    if not raw:
        return kind()
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _lenient_args(raw, decoder, kind)


def _lenient_args(raw: msgspec.Raw, decoder: msgspec.json.Decoder[S], kind: type[S]) -> S:
    """Re-decode args keeping the keys whose values fit (integers written as text or as
    integral floats are converted); the others are dropped."""
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return kind()
    if not isinstance(value, dict):
        return kind()
    good: dict[str, Any] = {}
    for key, item in value.items():
        for candidate in (item, as_int(item)):
            if candidate is None and item is not None:
                continue
            try:
                decoder.decode(msgspec.json.encode({key: candidate}))
            except msgspec.DecodeError:
                continue
            good[key] = candidate
            break
    return decoder.decode(msgspec.json.encode(good))


def _decoder(kind: type[S]) -> msgspec.json.Decoder[S]:
    return msgspec.json.Decoder(kind)


_KERNEL_ARGS: Final = _decoder(KernelArgs)
_MEMOP_ARGS: Final = _decoder(MemopArgs)
_RUNTIME_ARGS: Final = _decoder(RuntimeArgs)
_SYNC_ARGS: Final = _decoder(SyncArgs)
_OP_ARGS: Final = _decoder(OpArgs)
_COMM_ARGS: Final = _decoder(CommArgs)
_MEMORY_ARGS: Final = _decoder(MemoryArgs)
_DMA_ARGS: Final = _decoder(DmaArgs)
_EMPTY_OP_ARGS: Final = OpArgs()
_EMPTY_COMM_ARGS: Final = CommArgs()


def _series(name: str, values: Sequence[Any], dtype: pl.DataType) -> pl.Series:
    """A typed column; values that do not fit the type (int64 overflow) become null."""
    return pl.Series(name, values, dtype=dtype, strict=False)


def _times(events: Sequence[Event], offset_ns: int) -> list[pl.Series]:
    """``start_ns`` and ``dur_ns`` columns, exact, shifted onto the trace's clock."""
    start = us_to_ns([e.ts for e in events], "start_ns") + offset_ns
    dur = us_to_ns([e.dur for e in events], "dur_ns")
    return [start, dur]


def _ids(values: Sequence[object]) -> list[int | None]:
    """pids / tids as integers (ints pass through untouched)."""
    return [v if type(v) is int else as_id(v) for v in values]


def _or_ids(primary: Sequence[int | None], fallback: Sequence[object]) -> list[int | None]:
    """``primary`` where present, else the fallback id (a kernel's device from its pid)."""
    return [
        p if p is not None else (f if type(f) is int else as_id(f))
        for p, f in zip(primary, fallback, strict=True)
    ]


_WithExternalId = KernelArgs | MemopArgs | RuntimeArgs | OpArgs


def _external_ids(args: Sequence[_WithExternalId]) -> list[int | None]:
    """``External id`` (or 2021's ``external id``); 0 and below mean "no op" in Kineto."""
    values = [a.external_id if a.external_id is not None else a.external_id_2021 for a in args]
    return [v if v is not None and v > 0 else None for v in values]


def _component(triples: Sequence[list[int] | None], index: int) -> list[int | None]:
    """One component of grid / block triples."""
    return [t[index] if t is not None and len(t) > index else None for t in triples]


_XYZ: Final = ((0, "x"), (1, "y"), (2, "z"))


def kernels(events: Sequence[Event], offset_ns: int) -> pl.DataFrame:
    """Kernel rows (CUDA, ROCm, MTIA CCP) with launch geometry and collective args."""
    args = [decode_args(_KERNEL_ARGS, e.args, KernelArgs) for e in events]
    grids = [a.grid for a in args]
    blocks = [a.block for a in args]
    columns = [
        _series("device", _or_ids([a.device for a in args], [e.pid for e in events]), _I32),
        _series("stream", [a.stream for a in args], _I64),
        _series("name", [e.name for e in events], _STR),
        *_times(events, offset_ns),
        _series("correlation", [a.correlation for a in args], _I64),
        _series("external_id", _external_ids(args), _I64),
        *(_series(f"grid_{c}", _component(grids, i), _I32) for i, c in _XYZ),
        *(_series(f"block_{c}", _component(blocks, i), _I32) for i, c in _XYZ),
        _series("registers_per_thread", [a.registers for a in args], _I32),
        _series("shared_mem_bytes", [a.shared_mem for a in args], _I64),
        _series("blocks_per_sm", [a.blocks_per_sm for a in args], _F64),
        _series("warps_per_sm", [a.warps_per_sm for a in args], _F64),
        _series("occupancy_pct", [a.occupancy for a in args], _F64),
        *_comm_columns(args),
    ]
    return pl.DataFrame(columns)


_COMM_DTYPES: Final[tuple[tuple[str, pl.DataType], ...]] = (
    ("_c_collective", _STR),
    ("_c_dtype", _STR),
    ("_c_in_nelems", _I64),
    ("_c_out_nelems", _I64),
    ("_c_group_size", _I32),
    ("_c_pg_name", _STR),
    ("_c_seq", _I64),
)


def _comm_columns(args: Sequence[KernelArgs | CommArgs]) -> list[pl.Series]:
    """Private collective-arg columns (``_c_*``) read by `kineto_link`; all null (cheaply)
    when no event of the batch carries a collective name."""
    if all(a.collective is None for a in args):
        return [pl.Series(name, [None] * len(args), dtype=dtype) for name, dtype in _COMM_DTYPES]
    values: tuple[list[Any], ...] = (
        [a.collective for a in args],
        [a.dtype for a in args],
        [a.in_nelems for a in args],
        [a.out_nelems for a in args],
        [a.group_size for a in args],
        [as_str(a.pg_name) for a in args],
        [a.seq for a in args],
    )
    return [
        _series(name, column, dtype)
        for (name, dtype), column in zip(_COMM_DTYPES, values, strict=True)
    ]


def memops(events: Sequence[Event], offset_ns: int, kind: str) -> pl.DataFrame:
    """Memcpy or memset rows; kind and memory types come later from the name."""
    args = [decode_args(_MEMOP_ARGS, e.args, MemopArgs) for e in events]
    return pl.DataFrame(
        [
            _series("device", _or_ids([a.device for a in args], [e.pid for e in events]), _I32),
            _series("stream", [a.stream for a in args], _I64),
            _series("name", [e.name for e in events], _STR),
            _series("_memset", [kind == "memset"] * len(events), pl.Boolean()),
            _series("bytes", [a.bytes for a in args], _I64),
            *_times(events, offset_ns),
            _series("correlation", [a.correlation for a in args], _I64),
            _series("external_id", _external_ids(args), _I64),
        ]
    )


_DMA_DIRECTION: Final[dict[str, tuple[str, str, str]]] = {
    "HOST_TO_DEVICE": ("HtoD", "unknown", "device"),
    "DEVICE_TO_HOST": ("DtoH", "device", "unknown"),
    "DEVICE_TO_DEVICE": ("DtoD", "device", "device"),
}


def dma(events: Sequence[Event], offset_ns: int) -> pl.DataFrame:
    """MTIA DMA requests as memory copies: direction gives the kind, ``size`` the bytes."""
    args = [decode_args(_DMA_ARGS, e.args, DmaArgs) for e in events]
    kinds = [_DMA_DIRECTION.get(a.direction or "", ("other", "unknown", "unknown")) for a in args]
    return pl.DataFrame(
        [
            _series("device", _ids([e.pid for e in events]), _I32),
            _series("stream", [a.stream for a in args], _I64),
            _series("name", [e.name for e in events], _STR),
            _series("_memset", [False] * len(events), pl.Boolean()),
            _series("kind", [k[0] for k in kinds], _STR),
            _series("src_mem", [k[1] for k in kinds], _STR),
            _series("dst_mem", [k[2] for k in kinds], _STR),
            _series("bytes", [a.size for a in args], _I64),
            *_times(events, offset_ns),
            _series("correlation", [a.correlation for a in args], _I64),
        ]
    )


def runtime(events: Sequence[Event], offset_ns: int, kind: str) -> pl.DataFrame:
    """Runtime or driver API call rows, with the ROCm copy size kept privately."""
    args = [decode_args(_RUNTIME_ARGS, e.args, RuntimeArgs) for e in events]
    return pl.DataFrame(
        [
            _series("pid", _ids([e.pid for e in events]), _I64),
            _series("tid", _ids([e.tid for e in events]), _I64),
            _series("name", [e.name for e in events], _STR),
            _series("kind", [kind] * len(events), _STR),
            *_times(events, offset_ns),
            _series("correlation", [a.correlation for a in args], _I64),
            _series("external_id", _external_ids(args), _I64),
            _series("_copy_bytes", [_copy_size(a) for a in args], _I64),
        ]
    )


def _copy_size(args: RuntimeArgs) -> int | None:
    """The byte count a ROCm copy call carries (``size``, sometimes ``bytes``)."""
    if args.size is None and args.bytes is None:
        return None
    return as_int(args.size if args.size is not None else args.bytes)


_SYNC_KIND: Final[dict[str, str]] = {
    "event sync": "event_sync",
    "stream sync": "stream_sync",
    "context sync": "context_sync",
    "stream wait event": "stream_wait_event",
}


def syncs(events: Sequence[Event], offset_ns: int) -> pl.DataFrame:
    """``cuda_sync`` rows; the kind comes from ``cuda_sync_kind`` or else the name."""
    args = [decode_args(_SYNC_ARGS, e.args, SyncArgs) for e in events]
    kinds = [
        _SYNC_KIND.get((a.kind or e.name or "").strip().lower(), "other")
        for a, e in zip(args, events, strict=True)
    ]
    return pl.DataFrame(
        [
            _series("device", [_non_negative(a.device) for a in args], _I32),
            _series("stream", [_non_negative(as_id(a.stream)) for a in args], _I64),
            _series("kind", kinds, _STR),
            *_times(events, offset_ns),
            _series("correlation", [a.correlation for a in args], _I64),
        ]
    )


def _non_negative(value: int | None) -> int | None:
    """Kineto writes -1 for "none" in sync records."""
    return value if value is not None and value >= 0 else None


def ops(events: Sequence[Event], offset_ns: int, kind: str) -> pl.DataFrame:
    """CPU op / annotation / python function rows; shapes kept as raw JSON text."""
    if kind == "python_function":
        args: list[OpArgs] = [_EMPTY_OP_ARGS] * len(events)
    else:
        args = [decode_args(_OP_ARGS, e.args, OpArgs) for e in events]
    comm_args = [
        decode_args(_COMM_ARGS, e.args, CommArgs)
        if e.name == "record_param_comms"
        else _EMPTY_COMM_ARGS
        for e in events
    ]
    return pl.DataFrame(
        [
            _series("pid", _ids([e.pid for e in events]), _I64),
            _series("tid", _ids([e.tid for e in events]), _I64),
            _series("name", [e.name for e in events], _STR),
            _series("kind", [kind] * len(events), _STR),
            *_times(events, offset_ns),
            _series("external_id", _external_ids(args), _I64),
            _series("sequence_number", [a.sequence_number for a in args], _I64),
            _series("input_dims", [_text(a.input_dims) for a in args], _STR),
            _series("input_types", [_text(a.input_types) for a in args], _STR),
            _series("concrete_inputs", [_text(a.concrete_inputs) for a in args], _STR),
            *_comm_columns(comm_args),
        ]
    )


def _text(raw: msgspec.Raw) -> str | None:
    """Raw JSON as text, undecoded (None when the key is absent or null)."""
    if not raw:
        return None
    text = bytes(raw).decode("utf-8", "replace")
    return None if text == "null" else text


def collectives(events: Sequence[Event], offset_ns: int) -> pl.DataFrame:
    """``collective_comm`` events: collectives recorded by Kineto's NCCL profiler."""
    args = [decode_args(_COMM_ARGS, e.args, CommArgs) for e in events]
    external = [a.external_id for a in args]
    return pl.DataFrame(
        [
            _series("name", [e.name for e in events], _STR),
            *_times(events, offset_ns),
            _series(
                "external_id", [v if v is not None and v > 0 else None for v in external], _I64
            ),
            *_comm_columns(args),
        ]
    )


def memory(events: Sequence[Event], offset_ns: int) -> pl.DataFrame:
    """``[memory]`` allocator events; host memory (Device Type 0) gets device -1."""
    args = [decode_args(_MEMORY_ARGS, e.args, MemoryArgs) for e in events]
    return pl.DataFrame(
        [
            _series("device", [-1 if a.device_type == 0 else a.device_id for a in args], _I32),
            us_to_ns([e.ts for e in events], "ts_ns") + offset_ns,
            _series("bytes", [a.bytes for a in args], _I64),
            _series("total_allocated_bytes", [a.total_allocated for a in args], _I64),
            _series("total_reserved_bytes", [a.total_reserved for a in args], _I64),
        ]
    )


def build_frames(groups: dict[str, list[Event]], offset_ns: int) -> dict[str, list[pl.DataFrame]]:
    """Frames per target table from grouped events (several frames per table possible)."""
    frames: dict[str, list[pl.DataFrame]] = defaultdict(list)
    for kind, events in groups.items():
        if not events:
            continue
        table, frame = _build_one(kind, events, offset_ns)
        frames[table].append(frame)
    return frames


def _build_one(kind: str, events: Sequence[Event], offset_ns: int) -> tuple[str, pl.DataFrame]:
    """The target table and frame for one kind's events."""
    if kind == "kernel":
        return "kernels", kernels(events, offset_ns)
    if kind in ("memcpy", "memset"):
        return "memops", memops(events, offset_ns, kind)
    if kind == "dma":
        return "memops", dma(events, offset_ns)
    if kind in ("runtime", "driver"):
        return "runtime", runtime(events, offset_ns, kind)
    if kind == "sync":
        return "syncs", syncs(events, offset_ns)
    if kind in OP_KINDS:
        return "ops", ops(events, offset_ns, kind)
    if kind == "collective":
        return "collectives", collectives(events, offset_ns)
    if kind == "memory":
        return "memory", memory(events, offset_ns)
    raise KeyError(kind)
