"""Typed msgspec shapes of a Kineto Chrome-trace document, its events and their ``args``.

Why typed Structs: decoding into these is several times faster than decoding into dicts and
never builds one Python dict per event; ``gc=False`` keeps the millions of instances of a
large trace out of the cyclic garbage collector (they hold nothing that could form a cycle:
strings, numbers, raw slices, lists of integers). ``ts`` and ``dur`` stay raw JSON text so
that epoch microseconds with three decimals (``1712195495505583.123``) convert to
nanoseconds exactly (`kineto_time`); a float64 cannot hold them. ``args`` stays a
``msgspec.Raw`` slice of the input (empty when absent) and is decoded later, only for the
event kinds that need it, each with its own small Struct.

Every field has a default: real traces omit fields freely (2021 traces have no ``External
id``, ROCm kernels have no occupancy, MTIA events have no ``device``). Integer fields are
typed ``int`` so that values need no conversion; a value of another type sends that one
event's args down a lenient path (`kineto_build.decode_args`). Values whose type varies
between producers (ROCm writes ``"stream": "0x0"`` and ``"size": "2560"`` on runtime calls)
are typed as unions.
"""

from __future__ import annotations

from typing import Final

import msgspec

Raw = msgspec.Raw
#: The value of a raw field whose key is absent (``bool(NO_RAW)`` is False).
NO_RAW: Final = msgspec.Raw()
_Int = int | None
_Num = int | float | None
_Scalar = int | float | str | None


class Event(msgspec.Struct, frozen=True, gc=False):
    """One entry of ``traceEvents``; ``args`` is left undecoded."""

    ph: str = ""
    cat: str | None = None
    name: str | None = None
    pid: int | str | None = None
    tid: int | str | None = None
    ts: Raw = NO_RAW
    dur: Raw = NO_RAW
    args: Raw = NO_RAW


class NumericEvent(msgspec.Struct, frozen=True, gc=False):
    """`Event` with ``ts`` and ``dur`` decoded as numbers: faster to decode and to turn
    into columns; exact for integers and for most floats (`kineto_time.numeric_us_to_ns`
    says when not, and the chunk is then decoded as `Event`)."""

    ph: str = ""
    cat: str | None = None
    name: str | None = None
    pid: int | str | None = None
    tid: int | str | None = None
    ts: _Num = None
    dur: _Num = None
    args: Raw = NO_RAW


AnyEvent = Event | NumericEvent


class Document(msgspec.Struct):
    """The top-level object; everything but ``traceEvents`` stays raw until needed."""

    traceEvents: list[Event] | None = None
    schemaVersion: Raw = NO_RAW
    deviceProperties: Raw = NO_RAW
    computeProperties: Raw = NO_RAW
    distributedInfo: Raw = NO_RAW
    baseTimeNanoseconds: Raw = NO_RAW
    displayTimeUnit: Raw = NO_RAW
    cupti_version: Raw = NO_RAW
    cuda_runtime_version: Raw = NO_RAW
    cuda_driver_version: Raw = NO_RAW
    roctracer_version: Raw = NO_RAW
    hip_runtime_version: Raw = NO_RAW
    hip_driver_version: Raw = NO_RAW
    record_shapes: Raw = NO_RAW
    profile_memory: Raw = NO_RAW
    with_stack: Raw = NO_RAW
    with_flops: Raw = NO_RAW
    with_modules: Raw = NO_RAW
    host_name: Raw = NO_RAW
    hostname: Raw = NO_RAW
    metadata: Raw = NO_RAW


class KernelArgs(msgspec.Struct, frozen=True, gc=False):
    """Args of a GPU kernel (CUDA, ROCm, MTIA CCP); NCCL kernels may carry collective args."""

    device: _Int = None
    stream: _Int = None
    correlation: _Int = None
    external_id: _Int = msgspec.field(default=None, name="External id")
    external_id_2021: _Int = msgspec.field(default=None, name="external id")
    registers: _Int = msgspec.field(default=None, name="registers per thread")
    shared_mem: _Int = msgspec.field(default=None, name="shared memory")
    blocks_per_sm: _Num = msgspec.field(default=None, name="blocks per SM")
    warps_per_sm: _Num = msgspec.field(default=None, name="warps per SM")
    occupancy: _Num = msgspec.field(default=None, name="est. achieved occupancy %")
    grid: list[int] | None = None
    block: list[int] | None = None
    collective: str | None = msgspec.field(default=None, name="Collective name")
    dtype: str | None = None
    in_nelems: _Int = msgspec.field(default=None, name="In msg nelems")
    out_nelems: _Int = msgspec.field(default=None, name="Out msg nelems")
    group_size: _Int = msgspec.field(default=None, name="Group size")
    pg_name: _Scalar = msgspec.field(default=None, name="Process Group Name")
    seq: _Int = msgspec.field(default=None, name="Seq")


class MemopArgs(msgspec.Struct, frozen=True, gc=False):
    """Args of a memcpy / memset on the GPU timeline."""

    device: _Int = None
    stream: _Int = None
    correlation: _Int = None
    external_id: _Int = msgspec.field(default=None, name="External id")
    external_id_2021: _Int = msgspec.field(default=None, name="external id")
    bytes: _Int = None


class DmaArgs(msgspec.Struct, frozen=True, gc=False):
    """Args of an MTIA ``dma_request`` CCP event."""

    stream: _Int = None
    correlation: _Int = None
    direction: str | None = None
    size: _Int = None


class RuntimeArgs(msgspec.Struct, frozen=True, gc=False):
    """Args of a runtime / driver API call; ROCm memcpy calls also carry ``size``."""

    correlation: _Int = None
    external_id: _Int = msgspec.field(default=None, name="External id")
    external_id_2021: _Int = msgspec.field(default=None, name="external id")
    size: _Scalar = None
    bytes: _Scalar = None


class SyncArgs(msgspec.Struct, frozen=True, gc=False):
    """Args of a ``cuda_sync`` record."""

    device: _Int = None
    stream: _Scalar = None
    correlation: _Int = None
    kind: str | None = msgspec.field(default=None, name="cuda_sync_kind")


class OpArgs(msgspec.Struct, frozen=True, gc=False):
    """Args of a CPU op or annotation; shape args stay raw JSON text."""

    external_id: _Int = msgspec.field(default=None, name="External id")
    external_id_2021: _Int = msgspec.field(default=None, name="external id")
    sequence_number: _Int = msgspec.field(default=None, name="Sequence number")
    input_dims: Raw = msgspec.field(default=NO_RAW, name="Input Dims")
    input_types: Raw = msgspec.field(default=NO_RAW, name="Input type")
    concrete_inputs: Raw = msgspec.field(default=NO_RAW, name="Concrete Inputs")


class CommArgs(msgspec.Struct, frozen=True, gc=False):
    """Collective args of ``record_param_comms`` ops and ``collective_comm`` events."""

    external_id: _Int = msgspec.field(default=None, name="External id")
    collective: str | None = msgspec.field(default=None, name="Collective name")
    dtype: str | None = None
    in_nelems: _Int = msgspec.field(default=None, name="In msg nelems")
    out_nelems: _Int = msgspec.field(default=None, name="Out msg nelems")
    group_size: _Int = msgspec.field(default=None, name="Group size")
    pg_name: _Scalar = msgspec.field(default=None, name="Process Group Name")
    seq: _Int = msgspec.field(default=None, name="Seq")


class MemoryArgs(msgspec.Struct, frozen=True, gc=False):
    """Args of a ``[memory]`` allocator instant event."""

    device_type: _Int = msgspec.field(default=None, name="Device Type")
    device_id: _Int = msgspec.field(default=None, name="Device Id")
    bytes: _Int = msgspec.field(default=None, name="Bytes")
    total_allocated: _Int = msgspec.field(default=None, name="Total Allocated")
    total_reserved: _Int = msgspec.field(default=None, name="Total Reserved")


DOCUMENT_DECODER: Final = msgspec.json.Decoder(Document)
EVENT_DECODER: Final = msgspec.json.Decoder(Event)
ANY_DECODER: Final = msgspec.json.Decoder()
