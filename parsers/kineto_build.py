"""Kineto events to column frames, one builder per event kind.

Each builder takes the events of one kind and returns a polars frame whose columns are a
subset of the canonical table's, plus private ``_``-prefixed columns that `kineto_link`
consumes (collective args, ROCm copy sizes) and drops. Times are on the file's own origin
(`kineto_link.shift_times` moves them onto the trace's clock).

Why it is written this way: a 500 MB trace has millions of events, so per-event Python
work is what costs. Events are grouped by kind with one vectorized expression; each kind's
``args`` are decoded by one msgspec call over all its events (falling back to one call per
event, leniently, when a value has an unexpected type); fields are taken out of the decoded
Structs with C-level transposition (``attrgetter`` + ``zip``); timestamps and raw JSON text
become columns through one joined string (`kineto_time`). python_function events never have
their args decoded.

Builders work on any slice of a trace's events, so a chunked reader can call them chunk by
chunk (`build_kind_frames`) and concatenate the frames (`merge_kind_frames`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from operator import attrgetter
from typing import Any, Final, Generic, TypeVar

import msgspec
import polars as pl
from gpu_trace_analyzer.parsers.kineto_events import (
    AnyEvent,
    CommArgs,
    DmaArgs,
    KernelArgs,
    MemopArgs,
    MemoryArgs,
    OpArgs,
    RuntimeArgs,
    SyncArgs,
)
from gpu_trace_analyzer.parsers.kineto_time import (
    numeric_us_to_ns,
    raw_text_column,
    raw_us,
    us_to_ns,
)

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


def group_events(events: Iterable[AnyEvent]) -> dict[str, list[AnyEvent]]:
    """Events by kind, kinds in order of first appearance; metadata, flows, instants
    other than ``[memory]`` are left out.

    MTIA CCP events are the accelerator's kernels, except its DMA requests, which are
    memory copies (HTA counts ``dma*`` events as memory, like Memcpy / Memset).
    """
    groups: dict[str, list[AnyEvent]] = defaultdict(list)
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


class _Fields:
    """The common fields of a kind's events, one list per field, each taken out of the
    events when a builder first asks for it (a ``[memory]`` event needs only two)."""

    def __init__(self, events: Sequence[AnyEvent]) -> None:
        self.events = events
        self.count = len(events)

    def _take(self, name: str) -> list[Any]:
        return list(map(attrgetter(name), self.events))

    @cached_property
    def name(self) -> list[str | None]:
        return self._take("name")

    @cached_property
    def pid(self) -> list[int | str | None]:
        return self._take("pid")

    @cached_property
    def tid(self) -> list[int | str | None]:
        return self._take("tid")

    @cached_property
    def ts(self) -> list[msgspec.Raw | int | float | None]:
        """All raw, or all numbers (a chunk decodes to one event type)."""
        return self._take("ts")

    @cached_property
    def dur(self) -> list[msgspec.Raw | int | float | None]:
        return self._take("dur")

    @cached_property
    def args(self) -> list[msgspec.Raw]:
        return self._take("args")


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


class _Decoders(Generic[S]):
    """A kind's args decoders: all of a batch at once, or one event at a time."""

    def __init__(self, kind: type[S]) -> None:
        self.kind = kind
        self.one = msgspec.json.Decoder(kind)
        self.batch = msgspec.json.Decoder(list[kind])  # type: ignore[valid-type]

    def decode(self, raws: Sequence[msgspec.Raw]) -> list[S]:
        """Each raw args object decoded; the batch decode falls back to one by one (and
        lenient) when any value does not fit."""
        if not raws:
            return []
        payload = b"[" + b",".join([raw or b"{}" for raw in raws]) + b"]"
        try:
            decoded: list[S] = self.batch.decode(payload)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return [decode_args(self.one, raw, self.kind) for raw in raws]
        return decoded


_KERNEL_ARGS: Final = _Decoders(KernelArgs)
_MEMOP_ARGS: Final = _Decoders(MemopArgs)
_RUNTIME_ARGS: Final = _Decoders(RuntimeArgs)
_SYNC_ARGS: Final = _Decoders(SyncArgs)
_OP_ARGS: Final = _Decoders(OpArgs)
_COMM_ARGS: Final = _Decoders(CommArgs)
_MEMORY_ARGS: Final = _Decoders(MemoryArgs)
_DMA_ARGS: Final = _Decoders(DmaArgs)


def _columns(items: Sequence[Any], names: Sequence[str]) -> dict[str, list[Any]]:
    """Attributes of many Structs, one list per attribute."""
    return {name: list(map(attrgetter(name), items)) for name in names}


def _nulls(name: str, dtype: pl.DataType, height: int) -> pl.Series:
    """A column of ``height`` nulls."""
    return pl.Series(name, dtype=dtype).extend_constant(None, height)


def _series(name: str, values: Sequence[Any], dtype: pl.DataType) -> pl.Series:
    """A typed column; values that do not fit the type (int64 overflow) become null."""
    return pl.Series(name, values, dtype=dtype, strict=False)


def _times(fields: _Fields) -> list[pl.Series]:
    """``start_ns`` and ``dur_ns`` columns, exact, on the file's own origin."""
    return [_ns(fields.ts, "start_ns"), _ns(fields.dur, "dur_ns")]


def _ns(values: Sequence[msgspec.Raw | int | float | None], name: str) -> pl.Series:
    """Nanoseconds from raw text or decoded numbers (`NeedExactTimes` when inexact)."""
    if values and isinstance(values[0], msgspec.Raw):
        return us_to_ns(values, name)  # type: ignore[arg-type]
    return numeric_us_to_ns(values, name)  # type: ignore[arg-type]


def _id_series(name: str, values: Sequence[object], dtype: pl.DataType) -> pl.Series:
    """pids / tids / devices as integers: integers pass through, 2021 text is read."""
    try:
        return pl.Series(name, values, dtype=_I64, strict=True).cast(dtype, strict=False)
    except (TypeError, OverflowError, pl.exceptions.PolarsError):
        return _series(name, [v if type(v) is int else as_id(v) for v in values], dtype)


def _device_or_pid(primary: Sequence[int | None], fields: _Fields) -> pl.Series:
    """The ``device`` arg where present, else the device id the event's pid gives."""
    if None not in primary:
        return _series("device", primary, _I32)
    values = [
        p if p is not None else (f if type(f) is int else as_id(f))
        for p, f in zip(primary, fields.pid, strict=True)
    ]
    return _series("device", values, _I32)


def _external_ids(columns: dict[str, list[Any]]) -> pl.Series:
    """``External id`` (or 2021's ``external id``); 0 and below mean "no op" in Kineto."""
    current, old = columns["external_id"], columns["external_id_2021"]
    if old.count(None) != len(old):
        values = [c if c is not None else o for c, o in zip(current, old, strict=True)]
    else:
        values = list(current)
    ids = _series("external_id", values, _I64)
    return ids.set(ids <= 0, None) if ids.len() else ids


def _triples(prefix: str, triples: Sequence[list[int] | None]) -> list[pl.Series]:
    """``{prefix}_x/_y/_z`` columns from grid / block triples (null where absent)."""
    try:  # the usual case, every event with three components: a C-level transposition
        components: list[Sequence[int | None]] = list(zip(*triples, strict=True))
    except (TypeError, ValueError):  # a triple absent, or triples of different lengths
        components = []
    if len(components) != 3:
        components = [
            [t[index] if t is not None and len(t) > index else None for t in triples]
            for index in range(3)
        ]
    return [
        _series(f"{prefix}_{axis}", values, _I32)
        for axis, values in zip("xyz", components, strict=True)
    ]


_KERNEL_FIELDS: Final = (
    "device",
    "stream",
    "correlation",
    "external_id",
    "external_id_2021",
    "registers",
    "shared_mem",
    "blocks_per_sm",
    "warps_per_sm",
    "occupancy",
    "grid",
    "block",
)


def kernels(fields: _Fields) -> pl.DataFrame:
    """Kernel rows (CUDA, ROCm, MTIA CCP) with launch geometry and collective args."""
    args = _KERNEL_ARGS.decode(fields.args)
    a = _columns(args, _KERNEL_FIELDS)
    columns = [
        _device_or_pid(a["device"], fields),
        _series("stream", a["stream"], _I64),
        _series("name", fields.name, _STR),
        *_times(fields),
        _series("correlation", a["correlation"], _I64),
        _external_ids(a),
        *_triples("grid", a["grid"]),
        *_triples("block", a["block"]),
        _series("registers_per_thread", a["registers"], _I32),
        _series("shared_mem_bytes", a["shared_mem"], _I64),
        _series("blocks_per_sm", a["blocks_per_sm"], _F64),
        _series("warps_per_sm", a["warps_per_sm"], _F64),
        _series("occupancy_pct", a["occupancy"], _F64),
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
_COMM_FIELDS: Final = (
    "collective",
    "dtype",
    "in_nelems",
    "out_nelems",
    "group_size",
    "pg_name",
    "seq",
)


def _comm_columns(args: Sequence[KernelArgs | CommArgs]) -> list[pl.Series]:
    """Private collective-arg columns (``_c_*``) read by `kineto_link`; none when no event
    of the batch carries a collective name (`_OPTIONAL_COLUMNS`)."""
    collective = _columns(args, ("collective",))["collective"]
    if collective.count(None) == len(collective):
        return []
    values = _columns(args, _COMM_FIELDS)
    values["pg_name"] = [as_str(v) for v in values["pg_name"]]
    return [
        _series(name, values[field], dtype)
        for (name, dtype), field in zip(_COMM_DTYPES, _COMM_FIELDS, strict=True)
    ]


_MEMOP_FIELDS: Final = (
    "device",
    "stream",
    "correlation",
    "external_id",
    "external_id_2021",
    "bytes",
)


def memops(fields: _Fields, kind: str) -> pl.DataFrame:
    """Memcpy or memset rows; kind and memory types come later from the name."""
    a = _columns(_MEMOP_ARGS.decode(fields.args), _MEMOP_FIELDS)
    return pl.DataFrame(
        [
            _device_or_pid(a["device"], fields),
            _series("stream", a["stream"], _I64),
            _series("name", fields.name, _STR),
            _series("bytes", a["bytes"], _I64),
            *_times(fields),
            _series("correlation", a["correlation"], _I64),
            _external_ids(a),
        ]
    )


_DMA_DIRECTION: Final[dict[str, tuple[str, str, str]]] = {
    "HOST_TO_DEVICE": ("HtoD", "unknown", "device"),
    "DEVICE_TO_HOST": ("DtoH", "device", "unknown"),
    "DEVICE_TO_DEVICE": ("DtoD", "device", "device"),
}


def dma(fields: _Fields) -> pl.DataFrame:
    """MTIA DMA requests as memory copies: direction gives the kind, ``size`` the bytes."""
    args = _DMA_ARGS.decode(fields.args)
    kinds = [_DMA_DIRECTION.get(a.direction or "", ("other", "unknown", "unknown")) for a in args]
    return pl.DataFrame(
        [
            _id_series("device", fields.pid, _I32),
            _series("stream", [a.stream for a in args], _I64),
            _series("name", fields.name, _STR),
            _series("kind", [k[0] for k in kinds], _STR),
            _series("src_mem", [k[1] for k in kinds], _STR),
            _series("dst_mem", [k[2] for k in kinds], _STR),
            _series("bytes", [a.size for a in args], _I64),
            *_times(fields),
            _series("correlation", [a.correlation for a in args], _I64),
        ]
    )


_RUNTIME_FIELDS: Final = ("correlation", "external_id", "external_id_2021", "size", "bytes")


def runtime(fields: _Fields, kind: str) -> pl.DataFrame:
    """Runtime or driver API call rows, with the ROCm copy size kept privately."""
    a = _columns(_RUNTIME_ARGS.decode(fields.args), _RUNTIME_FIELDS)
    return pl.DataFrame(
        [
            _id_series("pid", fields.pid, _I64),
            _id_series("tid", fields.tid, _I64),
            _series("name", fields.name, _STR),
            *_times(fields),
            _series("correlation", a["correlation"], _I64),
            _external_ids(a),
            *_copy_sizes(a["size"], a["bytes"]),
        ]
    )


def _copy_sizes(sizes: list[object], byte_counts: list[object]) -> list[pl.Series]:
    """The byte count a ROCm copy call carries (``size``, sometimes ``bytes``), as the
    private ``_copy_bytes`` column; none when no call of the batch has one (CUDA)."""
    if sizes.count(None) == len(sizes) and byte_counts.count(None) == len(byte_counts):
        return []
    values = [
        None if s is None and b is None else as_int(s if s is not None else b)
        for s, b in zip(sizes, byte_counts, strict=True)
    ]
    return [_series("_copy_bytes", values, _I64)]


_SYNC_KIND: Final[dict[str, str]] = {
    "event sync": "event_sync",
    "stream sync": "stream_sync",
    "context sync": "context_sync",
    "stream wait event": "stream_wait_event",
}


def syncs(fields: _Fields) -> pl.DataFrame:
    """``cuda_sync`` rows; the kind comes from ``cuda_sync_kind`` or else the name."""
    args = _SYNC_ARGS.decode(fields.args)
    kinds = [
        _SYNC_KIND.get((a.kind or name or "").strip().lower(), "other")
        for a, name in zip(args, fields.name, strict=True)
    ]
    return pl.DataFrame(
        [
            _series("device", [_non_negative(a.device) for a in args], _I32),
            _series("stream", [_non_negative(as_id(a.stream)) for a in args], _I64),
            _series("kind", kinds, _STR),
            *_times(fields),
            _series("correlation", [a.correlation for a in args], _I64),
        ]
    )


def _non_negative(value: int | None) -> int | None:
    """Kineto writes -1 for "none" in sync records."""
    return value if value is not None and value >= 0 else None


_OP_FIELDS: Final = (
    "external_id",
    "external_id_2021",
    "sequence_number",
    "input_dims",
    "input_types",
    "concrete_inputs",
)


def ops(fields: _Fields, kind: str) -> pl.DataFrame:
    """CPU op / annotation / python function rows; shapes kept as raw JSON text."""
    if kind == "python_function":
        args: list[OpArgs] = []
        a = {name: [None] * fields.count for name in _OP_FIELDS}
        shapes: list[pl.Series] = []
    else:
        args = _OP_ARGS.decode(fields.args)
        a = _columns(args, _OP_FIELDS)
        shapes = [
            text
            for n, f in zip(_SHAPE_COLUMNS, _SHAPE_FIELDS, strict=True)
            if (text := _json_text(n, a[f])) is not None
        ]
    names = _series("name", fields.name, _STR)
    return pl.DataFrame(
        [
            _id_series("pid", fields.pid, _I64),
            _id_series("tid", fields.tid, _I64),
            names,
            *_times(fields),
            _external_ids(a),
            _series("sequence_number", a["sequence_number"], _I64),
            *shapes,
            *_recorded_comm_columns(fields, names),
        ]
    )


_SHAPE_COLUMNS: Final = ("input_dims", "input_types", "concrete_inputs")
_SHAPE_FIELDS: Final = ("input_dims", "input_types", "concrete_inputs")
_RECORD_PARAM_COMMS: Final = "record_param_comms"


def _recorded_comm_columns(fields: _Fields, names: pl.Series) -> list[pl.Series]:
    """Collective-arg columns of a batch of ops: only ``record_param_comms`` ops carry them,
    so only their args are decoded, and the values land on their rows (null elsewhere)."""
    if _RECORD_PARAM_COMMS not in fields.name:
        return []
    positions = (names == _RECORD_PARAM_COMMS).arg_true()
    args = [decode_args(_COMM_ARGS.one, fields.args[i], CommArgs) for i in positions]
    return [
        _nulls(column.name, column.dtype, fields.count).scatter(positions, column)
        for column in _comm_columns(args)
    ]


def _json_text(name: str, raws: Sequence[msgspec.Raw | None]) -> pl.Series | None:
    """Raw JSON values as text, undecoded (null when the key is absent or null); None when
    no event of the batch has the key (`_OPTIONAL_COLUMNS`)."""
    if not any(raws):
        return None
    text = raw_text_column([r or msgspec.Raw() for r in raws], name)
    return text.set((text == "") | (text == "null"), None)


def collectives(fields: _Fields) -> pl.DataFrame:
    """``collective_comm`` events: collectives recorded by Kineto's NCCL profiler."""
    args = _COMM_ARGS.decode(fields.args)
    external = _series("external_id", [a.external_id for a in args], _I64)
    return pl.DataFrame(
        [
            _series("name", fields.name, _STR),
            *_times(fields),
            external.set(external <= 0, None) if external.len() else external,
            *_comm_columns(args),
        ]
    )


_MEMORY_FIELDS: Final = ("device_type", "device_id", "bytes", "total_allocated", "total_reserved")


def memory(fields: _Fields) -> pl.DataFrame:
    """``[memory]`` allocator events; host memory (Device Type 0) gets device -1."""
    a = _columns(_MEMORY_ARGS.decode(fields.args), _MEMORY_FIELDS)
    device = [-1 if t == 0 else d for t, d in zip(a["device_type"], a["device_id"], strict=True)]
    return pl.DataFrame(
        [
            _series("device", device, _I32),
            _ns(fields.ts, "ts_ns"),
            _series("bytes", a["bytes"], _I64),
            _series("total_allocated_bytes", a["total_allocated"], _I64),
            _series("total_reserved_bytes", a["total_reserved"], _I64),
        ]
    )


@dataclass(frozen=True, slots=True)
class KindFrames:
    """Frames built from one slice of a trace's events, one per event kind present, in the
    order the kinds first appear (so that slices concatenate to the whole-file result)."""

    frames: tuple[tuple[str, str, pl.DataFrame], ...]  # (kind, table, frame)
    events: int  # events decoded from the slice
    skipped: int  # malformed events skipped in it
    first_x_ts: bytes | None  # raw ``ts`` of its first complete event (fixes the clock)
    repaired: int = 0  # 1 when its bytes were not strict JSON and had to be replaced


def first_complete_ts(events: Sequence[AnyEvent]) -> bytes | None:
    """``ts`` (as JSON text) of the first complete (``ph: X``) event whose ``ts`` is a
    number."""
    for event in events:
        if event.ph != "X":
            continue
        text = event.ts if isinstance(event.ts, msgspec.Raw) else _number_text(event.ts)
        if raw_us(text) is not None:
            return bytes(text)
    return None


def _number_text(value: int | float | None) -> msgspec.Raw:
    return msgspec.Raw(b"" if value is None else str(value).encode())


def build_kind_frames(
    events: Sequence[AnyEvent], skipped: int = 0, repaired: int = 0
) -> KindFrames:
    """Frames of one slice of events, times relative to the file's own origin (offset 0),
    compacted (`merge_kind_frames` restores what compacting left out)."""
    built = tuple(
        (kind, table, _compact(frame))
        for kind, grouped in group_events(events).items()
        if grouped
        for table, frame in (_build_one(kind, grouped),)
    )
    return KindFrames(built, len(events), skipped, first_complete_ts(events), repaired)


def _compact(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame without its all-null columns: a slice built in a worker process crosses
    to the parent at half the size (`merge_kind_frames` restores them)."""
    return frame.drop([c for c in frame.columns if frame[c].null_count() == frame.height])


def _restore(kind: str, table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The columns whose value follows from the kind alone (no builder writes them: the
    value would repeat on every row of the slice)."""
    if table in ("ops", "runtime"):
        return frame.with_columns(pl.lit(kind, dtype=_STR).alias("kind"))
    if table == "memops":
        return frame.with_columns(pl.lit(kind == "memset").alias("_memset"))
    return frame


#: One kind per table whose builder yields every column of that table (plus DMA for the
#: columns only MTIA copies have).
_SCHEMA_KINDS: Final[dict[str, tuple[str, ...]]] = {
    "kernels": ("kernel",),
    "memops": ("memcpy", "dma"),
    "runtime": ("runtime",),
    "syncs": ("sync",),
    "ops": ("cpu_op",),
    "collectives": ("collective",),
    "memory": ("memory",),
}


#: Columns a builder leaves out of a batch in which no event has them (`_compact` would drop
#: them anyway); a table's empty frame declares them, so every concatenation has them.
_OPTIONAL_COLUMNS: Final[dict[str, tuple[tuple[str, pl.DataType], ...]]] = {
    "kernels": _COMM_DTYPES,
    "ops": (*_COMM_DTYPES, *((name, _STR) for name in _SHAPE_COLUMNS)),
    "collectives": _COMM_DTYPES,
    "runtime": (("_copy_bytes", _I64),),
}


@cache
def _empty_frame(table: str) -> pl.DataFrame:
    """A table's builder columns and types, no rows (what compacted slices lack)."""
    parts = [_build_one(kind, [])[1] for kind in _SCHEMA_KINDS[table]]
    frame = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
    return frame.with_columns(
        pl.Series(name, dtype=dtype)
        for name, dtype in _OPTIONAL_COLUMNS.get(table, ())
        if name not in frame.columns
    )


def merge_kind_frames(slices: Iterable[KindFrames]) -> dict[str, list[pl.DataFrame]]:
    """Frames per target table, kinds in order of first appearance, each kind's frames in
    slice order: the same row order as building every event at once. Each table's list
    starts with an empty frame of all its columns, so the concatenation has them all."""
    by_kind: dict[str, tuple[str, list[pl.DataFrame]]] = {}
    for piece in slices:
        for kind, table, frame in piece.frames:
            by_kind.setdefault(kind, (table, []))[1].append(_restore(kind, table, frame))
    tables: dict[str, list[pl.DataFrame]] = {}
    for table, frames in by_kind.values():
        tables.setdefault(table, [_empty_frame(table)]).extend(frames)
    return tables


def _build_one(kind: str, events: Sequence[AnyEvent]) -> tuple[str, pl.DataFrame]:
    """The target table and frame for one kind's events."""
    fields = _Fields(events)
    if kind == "kernel":
        return "kernels", kernels(fields)
    if kind in ("memcpy", "memset"):
        return "memops", memops(fields, kind)
    if kind == "dma":
        return "memops", dma(fields)
    if kind in ("runtime", "driver"):
        return "runtime", runtime(fields, kind)
    if kind == "sync":
        return "syncs", syncs(fields)
    if kind in OP_KINDS:
        return "ops", ops(fields, kind)
    if kind == "collective":
        return "collectives", collectives(fields)
    if kind == "memory":
        return "memory", memory(fields)
    raise KeyError(kind)
