"""Synthetic PyTorch profiler (Kineto) traces with known ground truth.

Why: rules need traces where the right answer is known exactly (30.000% GPU idle, a 3x cold
start, a rank that is 25% slower). Real traces never say what their answer is; these do.
Each trace is written in the CURRENT Kineto schema as PyTorch 2.5+ writes it (field spellings
copied from real H100 / B200 / A100 traces: ``schemaVersion``, ``deviceProperties``,
``distributedInfo``, ``baseTimeNanoseconds`` with base-relative float microseconds at ns
precision, cats ``cpu_op`` / ``user_annotation`` / ``gpu_user_annotation`` / ``cuda_runtime``
/ ``kernel`` / ``gpu_memcpy`` / ``gpu_memset`` / ``cpu_instant_event``, ``ac2g`` flows), and
beside it a ``<name>.truth.json`` holding what the builder measured while building.

The timing model, in integer nanoseconds on the Unix epoch clock:

- One host thread with a cursor. An op (``cpu_op`` or ``user_annotation``) opens at the
  cursor, its children advance it, it closes ``op_exit_ns`` later. Kernels, copies and memsets
  are launched through a runtime call (``cudaLaunchKernel``, ``cudaMemcpyAsync``...) of known
  length; the GPU work starts at the latest of (call start + ``queue_ns``, its stream being
  free, any ``wait_stream`` dependency, any ``idle`` floor). So GPU gaps arise the way they do
  in real runs: the host is slow to launch, or waits in a synchronization.
- ``idle(dur_ns)`` says "the GPU stays idle exactly ``dur_ns`` after it drains": the next GPU
  work starts then, and the unprofiled host time that fills the gap is placed at the call.
- Kernel occupancy fields are computed as Kineto does: blocks per SM = blocks / SMs, warps
  per SM = blocks per SM x warps per block, est. achieved occupancy = min(max active blocks
  per SM, blocks per SM) x threads per block / max threads per SM, where max active blocks
  come from the thread, block, register (256-register warp granularity) and shared-memory
  (1 KiB reserved per block) limits, and is 0 when a block asks for more than the 48 KiB of
  shared memory available without opt-in (as Kineto reports for large cuBLAS/cutlass GEMMs).
- Durations of modeled ops come from the device's dense peak and HBM bandwidth (the table in
  FORMATS.md) times an efficiency, so roofline analyses see plausible numbers; the truth file
  records the FLOPs, bytes and durations used.

Ground truth (``truth()``), times absolute epoch ns (``baseTimeNanoseconds`` + ts):

- ``gpu``: GPU activity is every kernel, memcpy and memset (HTA's "kernels": compute,
  communication and memory). ``busy_ns`` is the union of their intervals over all streams;
  the span runs from the first activity's start to the last one's end; ``idle_ns`` = span -
  busy; ``idle_pct`` = 100 x idle / span. ``kernel_busy_ns`` is the union over kernels only.
- ``steps_window``: the same over [first ProfilerStep start, last ProfilerStep end] (GPU
  intervals clipped to the window), and ``steps_window_extended`` whose end is the later of
  the last step's end and the end of the GPU work launched inside the steps.
- counts, per-step durations, kernel time by label, memcpy by kind, runtime time by name,
  synchronization calls, DataLoader time, communication (kernel time, exposed time = comm
  time not overlapped by any non-comm kernel), allocator peaks, and ``expect``: the numbers
  that make each scenario fire (or not).

Scenarios (functions returning a ``TraceBuilder``, or a ``RankedTrace`` for several ranks) are
listed in ``SCENARIOS``; each docstring says what it shows and its ground truth.

Run ``python sample_traces/synthetic.py`` to regenerate the committed samples
(``synthetic_train.json.gz`` and the 2-rank directory ``synthetic_2rank/``), or
``python sample_traces/synthetic.py SCENARIO OUTPUT`` to write any scenario.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import msgspec

HERE: Final = Path(__file__).resolve().parent

#: Kineto rounds baseTimeNanoseconds to whole seconds; this one is 2025-06-15T15:06:40Z.
BASE_TIME_NS: Final = 1_750_000_000_000_000_000
#: The first event of a trace sits this far after the base (like the profiler's warm-up).
FIRST_EVENT_OFFSET_NS: Final = 1_500_000_000
COMPUTE_STREAM: Final = 7
COMM_STREAM: Final = 20
HOST_PID_BASE: Final = 41_200
MIB: Final = 1 << 20

# CUPTI callback ids of the runtime calls the builder emits (as in the real traces).
CBID: Final[dict[str, int]] = {
    "cudaLaunchKernel": 211,
    "cudaMemcpyAsync": 41,
    "cudaMemcpy": 31,
    "cudaMemsetAsync": 51,
    "cudaStreamSynchronize": 131,
    "cudaDeviceSynchronize": 165,
    "cudaEventRecord": 135,
    "cudaStreamWaitEvent": 147,
    "cudaMalloc": 20,
}

#: dtype key -> (bytes per element, `Input type` spelling, C++ type in kernel names,
#: NCCL kernel suffix, `dtype` spelling of record_param_comms).
DTYPES: Final[dict[str, tuple[int, str, str, str, str]]] = {
    "bf16": (2, "c10::BFloat16", "c10::BFloat16", "bf16", "BFloat16"),
    "fp16": (2, "c10::Half", "c10::Half", "f16", "Half"),
    "fp32": (4, "float", "float", "f32", "Float"),
    "int64": (8, "long int", "long", "i64", "Long"),
}


@dataclass(frozen=True, slots=True)
class DeviceProps:
    """A GPU as `deviceProperties` describes it, plus the peaks used to derive durations.

    ``tensor_tflops`` (dense bf16/fp16 tensor core), ``fp32_tflops`` (vector FP32) and
    ``mem_bw_gbs`` come from the FORMATS.md table (vendor datasheets, dense figures).
    """

    name: str
    num_sms: int
    total_mem_bytes: int
    compute_major: int
    compute_minor: int
    shared_mem_per_sm: int
    shared_mem_per_block_optin: int
    tensor_tflops: float
    fp32_tflops: float
    mem_bw_gbs: float
    max_threads_per_sm: int = 2048
    max_threads_per_block: int = 1024
    max_blocks_per_sm: int = 32
    regs_per_sm: int = 65536
    shared_mem_per_block: int = 49152
    warp_size: int = 32

    def properties(self, device_id: int) -> dict[str, Any]:
        """The `deviceProperties` entry, with Kineto's key spellings and order."""
        return {
            "id": device_id,
            "name": self.name,
            "totalGlobalMem": self.total_mem_bytes,
            "computeMajor": self.compute_major,
            "computeMinor": self.compute_minor,
            "maxThreadsPerBlock": self.max_threads_per_block,
            "maxThreadsPerMultiprocessor": self.max_threads_per_sm,
            "regsPerBlock": self.regs_per_sm,
            "warpSize": self.warp_size,
            "sharedMemPerBlock": self.shared_mem_per_block,
            "numSms": self.num_sms,
            "regsPerMultiprocessor": self.regs_per_sm,
            "sharedMemPerBlockOptin": self.shared_mem_per_block_optin,
            "sharedMemPerMultiprocessor": self.shared_mem_per_sm,
        }


H100: Final = DeviceProps(
    name="NVIDIA H100 80GB HBM3",
    num_sms=132,
    total_mem_bytes=85_018_279_936,  # as the real H100 traces report it
    compute_major=9,
    compute_minor=0,
    shared_mem_per_sm=233_472,
    shared_mem_per_block_optin=232_448,
    tensor_tflops=989.4,
    fp32_tflops=67.0,
    mem_bw_gbs=3350.0,
)
A100: Final = DeviceProps(
    name="NVIDIA A100-SXM4-80GB",
    num_sms=108,
    total_mem_bytes=85_097_971_712,
    compute_major=8,
    compute_minor=0,
    shared_mem_per_sm=167_936,
    shared_mem_per_block_optin=166_912,
    tensor_tflops=312.0,
    fp32_tflops=19.5,
    mem_bw_gbs=2039.0,
)
DEVICES: Final[dict[str, DeviceProps]] = {H100.name: H100, A100.name: A100}


@dataclass(frozen=True, slots=True)
class Timing:
    """Host-side costs of the timing model, in ns."""

    launch_ns: int = 5_000  # cudaLaunchKernel call
    queue_ns: int = 6_000  # from the launch call's start to the earliest kernel start
    op_enter_ns: int = 2_000  # from an op's start to its first child
    op_exit_ns: int = 1_000  # from an op's last child to its end
    memcpy_call_ns: int = 6_000  # cudaMemcpyAsync call (pinned or device memory)
    memset_call_ns: int = 3_000
    sync_min_ns: int = 2_000  # a synchronization call lasts at least this
    sync_return_ns: int = 1_000  # from the GPU draining to the sync call returning
    event_call_ns: int = 2_000  # cudaEventRecord / cudaStreamWaitEvent


@dataclass(frozen=True, slots=True)
class KernelShape:
    """Launch geometry and resources of one kernel."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    registers: int = 32
    shared_mem: int = 0

    @property
    def blocks(self) -> int:
        """Thread blocks in the grid."""
        return self.grid[0] * self.grid[1] * self.grid[2]

    @property
    def threads_per_block(self) -> int:
        """Threads in one block."""
        return self.block[0] * self.block[1] * self.block[2]


def max_active_blocks(props: DeviceProps, shape: KernelShape) -> int:
    """Resident blocks per SM allowed by threads, blocks, registers and shared memory."""
    if shape.shared_mem > props.shared_mem_per_block:
        return 0  # needs opt-in shared memory: Kineto's occupancy query reports 0
    threads = shape.threads_per_block
    warps_per_block = math.ceil(threads / props.warp_size)
    limits = [props.max_threads_per_sm // threads, props.max_blocks_per_sm]
    if shape.registers > 0:
        regs_per_warp = math.ceil(shape.registers * props.warp_size / 256) * 256
        limits.append((props.regs_per_sm // regs_per_warp) // warps_per_block)
    if shape.shared_mem > 0:
        limits.append(props.shared_mem_per_sm // (shape.shared_mem + 1024))
    return min(limits)


def occupancy(props: DeviceProps, shape: KernelShape) -> tuple[float, float, int]:
    """Kineto's (blocks per SM, warps per SM, est. achieved occupancy %) for a launch."""
    blocks_per_sm = shape.blocks / props.num_sms
    warps_per_sm = blocks_per_sm * math.ceil(shape.threads_per_block / props.warp_size)
    active = min(float(max_active_blocks(props, shape)), blocks_per_sm)
    occ = math.floor(100.0 * active * shape.threads_per_block / props.max_threads_per_sm + 0.5)
    return round(blocks_per_sm, 6), round(warps_per_sm, 6), occ


def contiguous_strides(dims: Sequence[int]) -> list[int]:
    """Row-major strides of a tensor shape (what `Input Strides` holds for contiguous inputs)."""
    strides: list[int] = []
    acc = 1
    for d in reversed(dims):
        strides.append(acc)
        acc *= d
    return strides[::-1]


def union_ns(intervals: Iterable[tuple[int, int]]) -> int:
    """Total length of the union of half-open [start, end) intervals."""
    return sum(end - start for start, end in merge(intervals))


def merge(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merged, sorted, non-overlapping intervals."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def clip(intervals: Iterable[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """Intervals cut to [lo, hi), empty pieces dropped."""
    return [(max(s, lo), min(e, hi)) for s, e in intervals if min(e, hi) > max(s, lo)]


def subtract_ns(a: Iterable[tuple[int, int]], b: Iterable[tuple[int, int]]) -> int:
    """Length of union(a) minus union(b)."""
    merged_a = merge(a)
    covered = sum(union_ns(clip(b, s, e)) for s, e in merged_a)
    return sum(e - s for s, e in merged_a) - covered


# ----------------------------------------------------------------------------- records


@dataclass(slots=True)
class CpuEvent:
    """A closed `cpu_op` or `user_annotation` on the host thread."""

    cat: str
    name: str
    start_ns: int
    end_ns: int
    ext_id: int
    args: dict[str, Any]


@dataclass(slots=True)
class RuntimeCall:
    """A CUDA runtime call; ``has_gpu_work`` when a flow links it to a GPU activity."""

    name: str
    start_ns: int
    end_ns: int
    correlation: int
    ext_id: int
    has_gpu_work: bool = False


@dataclass(slots=True)
class GpuActivity:
    """A kernel, memcpy or memset on a stream, with its model numbers when it has them."""

    kind: str  # kernel, memcpy, memset
    name: str
    stream: int
    start_ns: int
    end_ns: int
    correlation: int
    ext_id: int
    step: int | None
    label: str  # gemm, elementwise, norm, reduction, optimizer, comm, copy, other
    args: dict[str, Any]
    nbytes: int = 0
    flops: int = 0
    model_bytes: int = 0
    op: str = ""
    seq: int | None = None

    @property
    def dur_ns(self) -> int:
        """Duration in ns."""
        return self.end_ns - self.start_ns


@dataclass(slots=True)
class MemoryEvent:
    """A `[memory]` allocator event."""

    ts_ns: int
    nbytes: int
    addr: int
    device: int
    total_allocated: int
    total_reserved: int
    ev_idx: int


@dataclass(slots=True)
class StepRecord:
    """A `ProfilerStep#N` annotation."""

    step: int
    start_ns: int
    end_ns: int
    ext_id: int


@dataclass(slots=True)
class CollectiveRecord:
    """One collective as launched on this rank."""

    seq: int
    collective: str
    dtype: str
    nelems: int
    nbytes: int
    start_ns: int
    end_ns: int
    correlation: int
    step: int | None


@dataclass(slots=True)
class _Scope:
    cat: str
    name: str
    start_ns: int
    ext_id: int
    args: dict[str, Any]
    ev_idx: int


@dataclass(slots=True)
class _IdleMark:
    target_ns: int
    cursor_ns: int
    n_cpu: int
    n_runtime: int
    n_memory: int
    requested_ns: int


# ----------------------------------------------------------------------------- builder


class TraceBuilder:
    """Builds one rank's Kineto trace event by event and tracks its ground truth.

    ``device`` picks the properties from `DEVICES` (an unknown name gets the H100's under that
    name); ``num_sms`` overrides the SM count. Rank r uses GPU r % 8, host pid 41200 + r, and
    a ``baseTimeNanoseconds`` r seconds after the others' (absolute times stay aligned).
    ``compute_scale`` multiplies every non-communication kernel's duration (a slower GPU).
    """

    def __init__(
        self,
        device: str = H100.name,
        num_sms: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        *,
        name: str = "synthetic",
        description: str = "",
        timing: Timing | None = None,
        base_time_ns: int | None = None,
        first_step: int = 0,
        compute_scale: Fraction = Fraction(1),
    ) -> None:
        known = DEVICES.get(device, H100)
        self.props = replace(known, name=device, num_sms=num_sms or known.num_sms)
        self.rank = rank
        self.world_size = world_size
        self.device_id = rank % 8
        self.name = name
        self.description = description
        self.timing = timing or Timing()
        self.base_time_ns = (
            BASE_TIME_NS + rank * 1_000_000_000 if base_time_ns is None else base_time_ns
        )
        self.pid = HOST_PID_BASE + rank
        self.tid = self.pid
        self.compute_scale = Fraction(compute_scale)
        self.params: dict[str, Any] = {}
        self.expect: dict[str, Any] = {}
        self.now_ns = BASE_TIME_NS + FIRST_EVENT_OFFSET_NS
        self.cpu_events: list[CpuEvent] = []
        self.runtime: list[RuntimeCall] = []
        self.gpu: list[GpuActivity] = []
        self.memory: list[MemoryEvent] = []
        self.steps: list[StepRecord] = []
        self.collectives: list[CollectiveRecord] = []
        self._scopes: list[_Scope] = []
        self._stream_free: dict[int, int] = defaultdict(int)
        self._stream_floor: dict[int, int] = defaultdict(int)
        self._idle: _IdleMark | None = None
        self._next_step = first_step
        self._current_step: int | None = None
        self._ext = 0
        self._corr = 1_000
        self._seq = 0
        self._ev_idx = 0
        self._comm_seq = 0
        self._backward_depth = 0
        self._addr = 0x7F00_0000_0000
        self._allocated: dict[int, int] = defaultdict(int)
        self._reserved: dict[int, int] = defaultdict(int)
        self._live: dict[int, tuple[int, int]] = {}

    # ------------------------------------------------------------------ ids and cursor

    def _new_ext(self) -> int:
        self._ext += 1
        return self._ext

    def _new_corr(self) -> int:
        self._corr += 1
        return self._corr

    def _new_ev_idx(self) -> int:
        self._ev_idx += 1
        return self._ev_idx - 1

    def new_seq(self) -> int:
        """A fresh autograd `Sequence number` (a backward op reuses its forward op's)."""
        self._seq += 1
        return self._seq

    def _auto_seq(self) -> int | None:
        """A new sequence number for a forward op; backward ops get none (grad mode is off)."""
        return None if self._backward_depth else self.new_seq()

    def _current_ext(self) -> int:
        return self._scopes[-1].ext_id if self._scopes else 0

    def drain_ns(self) -> int:
        """When every stream of this rank's GPU has finished its queued work."""
        return max(self._stream_free.values(), default=0)

    def stream_free_ns(self, stream: int = COMPUTE_STREAM) -> int:
        """When ``stream`` finishes its queued work."""
        return self._stream_free[stream]

    def cpu(self, dur_ns: int) -> None:
        """Unprofiled host time (Python between ops): the cursor moves, nothing is recorded."""
        self.now_ns += dur_ns

    # ------------------------------------------------------------------ scopes

    @contextmanager
    def _scope(
        self, cat: str, name: str, args: dict[str, Any], dur_ns: int | None
    ) -> Iterator[int]:
        ext = self._new_ext()
        scope = _Scope(cat, name, self.now_ns, ext, args, self._new_ev_idx())
        self._scopes.append(scope)
        self.now_ns += self.timing.op_enter_ns if dur_ns is None else 0
        try:
            yield ext
        finally:
            self._scopes.pop()
        if dur_ns is None:
            self.now_ns += self.timing.op_exit_ns
        else:
            if self.now_ns - scope.start_ns > dur_ns:
                overrun = self.now_ns - scope.start_ns - dur_ns
                raise ValueError(f"{name}: content overran its fixed {dur_ns} ns by {overrun} ns")
            self.now_ns = scope.start_ns + dur_ns
        self._close(scope)

    def _close(self, scope: _Scope) -> None:
        base: dict[str, Any] = {"External id": scope.ext_id, "Record function id": 0}
        base.update(scope.args)
        base["Ev Idx"] = scope.ev_idx
        self.cpu_events.append(
            CpuEvent(scope.cat, scope.name, scope.start_ns, self.now_ns, scope.ext_id, base)
        )

    def op(
        self,
        name: str,
        dims: Sequence[Sequence[int]] = (),
        types: Sequence[str] = (),
        concrete: Sequence[str] = (),
        *,
        seq: int | None = None,
        dur_ns: int | None = None,
        extra_args: dict[str, Any] | None = None,
    ) -> AbstractContextManager[int]:
        """A `cpu_op` scope (context manager yielding its External id).

        ``dims`` / ``types`` / ``concrete`` become `Input Dims`, `Input type`, `Concrete
        Inputs` (and contiguous `Input Strides`); ``seq`` adds `Sequence number` and `Fwd
        thread id`; ``dur_ns`` fixes the op's length (its children must fit).
        """
        args: dict[str, Any] = {}
        if dims:
            args["Concrete Inputs"] = list(concrete) if concrete else [""] * len(dims)
            args["Input type"] = list(types)
            args["Input Strides"] = [contiguous_strides(d) for d in dims]
            args["Input Dims"] = [list(d) for d in dims]
        if seq is not None:
            args["Sequence number"] = seq
            args["Fwd thread id"] = 0
        args.update(extra_args or {})
        return self._scope("cpu_op", name, args, dur_ns)

    def annotation(self, name: str, *, dur_ns: int | None = None) -> AbstractContextManager[int]:
        """A `user_annotation` scope (``record_function``)."""
        return self._scope("user_annotation", name, {}, dur_ns)

    @contextmanager
    def step(self, *, dur_ns: int | None = None) -> Iterator[int]:
        """A `ProfilerStep#N` annotation; yields N. ``dur_ns`` pads the step to that length."""
        if self._current_step is not None:
            raise ValueError("steps do not nest")
        number = self._next_step
        self._next_step += 1
        self._current_step = number
        start = self.now_ns
        try:
            with self._scope("user_annotation", f"ProfilerStep#{number}", {}, dur_ns) as ext:
                yield number
        finally:
            self._current_step = None
        self.steps.append(StepRecord(number, start, self.now_ns, ext))

    def dataloader(self, dur_ns: int, *, workers: bool = True) -> None:
        """The DataLoader's `__next__` annotation lasting ``dur_ns`` on the host."""
        kind = "_MultiProcessingDataLoaderIter" if workers else "_SingleProcessDataLoaderIter"
        with self.annotation(f"enumerate(DataLoader)#{kind}.__next__", dur_ns=dur_ns):
            pass

    @contextmanager
    def backward(self, grad_fn: str, seq: int) -> Iterator[int]:
        """The autograd engine's `evaluate_function: <grad_fn>` and the grad_fn op itself."""
        self._backward_depth += 1
        try:
            with (
                self.op(f"autograd::engine::evaluate_function: {grad_fn}", seq=seq),
                self.op(grad_fn, seq=seq) as ext,
            ):
                yield ext
        finally:
            self._backward_depth -= 1

    # ------------------------------------------------------------------ idle

    def idle(self, dur_ns: int) -> None:
        """Keep the GPU idle exactly ``dur_ns`` after it drains.

        The next GPU activity starts at drain + ``dur_ns``; host events recorded between this
        call and that launch move later so that the unprofiled host time sits here. Raises
        ValueError at the launch if the host work in between does not fit in the gap.
        """
        if dur_ns < 0:
            raise ValueError("idle duration must be >= 0")
        self._idle = _IdleMark(
            target_ns=self.drain_ns() + dur_ns,
            cursor_ns=self.now_ns,
            n_cpu=len(self.cpu_events),
            n_runtime=len(self.runtime),
            n_memory=len(self.memory),
            requested_ns=dur_ns,
        )

    def _settle_idle(self) -> None:
        mark = self._idle
        if mark is None:
            return
        self._idle = None
        call_ns = mark.target_ns - self.timing.queue_ns
        if self.now_ns > call_ns:
            raise ValueError(
                f"host work after idle({mark.requested_ns}) overran the gap by "
                f"{self.now_ns - call_ns} ns"
            )
        delta = call_ns - self.now_ns
        self._shift_since(mark, delta)
        self.now_ns += delta
        for stream in list(self._stream_floor):
            self._stream_floor[stream] = max(self._stream_floor[stream], mark.target_ns)
        self._stream_floor[COMPUTE_STREAM] = max(self._stream_floor[COMPUTE_STREAM], mark.target_ns)

    def _shift_since(self, mark: _IdleMark, delta: int) -> None:
        for ev in self.cpu_events[mark.n_cpu :]:
            if ev.start_ns >= mark.cursor_ns:
                ev.start_ns += delta
                ev.end_ns += delta
        for call in self.runtime[mark.n_runtime :]:
            call.start_ns += delta
            call.end_ns += delta
        for mem in self.memory[mark.n_memory :]:
            mem.ts_ns += delta
        for scope in self._scopes:
            if scope.start_ns >= mark.cursor_ns:
                scope.start_ns += delta

    # ------------------------------------------------------------------ launches

    def _gpu_start(self, stream: int, call_ns: int) -> int:
        return max(
            call_ns + self.timing.queue_ns, self._stream_free[stream], self._stream_floor[stream]
        )

    def _launch(
        self,
        runtime: str,
        call_ns: int,
        stream: int,
        dur_ns: int,
        *,
        blocking: bool = False,
    ) -> tuple[int, int, int]:
        """Record the runtime call and reserve the stream; returns (correlation, start, end)."""
        if dur_ns < 0:
            raise ValueError("GPU work cannot have a negative duration")
        self._settle_idle()
        corr = self._new_corr()
        call_start = self.now_ns
        start = self._gpu_start(stream, call_start)
        end = start + dur_ns
        call_end = call_start + call_ns
        if blocking:
            call_end = max(call_end, end + self.timing.sync_return_ns)
        self.runtime.append(
            RuntimeCall(runtime, call_start, call_end, corr, self._current_ext(), True)
        )
        self._stream_free[stream] = end
        self.now_ns = call_end
        return corr, start, end

    def kernel(
        self,
        name: str,
        dur_ns: int,
        grid: tuple[int, int, int] = (1, 1, 1),
        block: tuple[int, int, int] = (128, 1, 1),
        *,
        registers: int = 32,
        shared_mem: int = 0,
        stream: int = COMPUTE_STREAM,
        label: str = "other",
        extra_args: dict[str, Any] | None = None,
        launch_ns: int | None = None,
    ) -> GpuActivity:
        """Launch a kernel through `cudaLaunchKernel` from the innermost open op."""
        shape = KernelShape(grid, block, registers, shared_mem)
        if label != "comm" and self.compute_scale != 1:
            dur_ns = math.floor(dur_ns * self.compute_scale + Fraction(1, 2))
        call = self.timing.launch_ns if launch_ns is None else launch_ns
        corr, start, end = self._launch("cudaLaunchKernel", call, stream, dur_ns)
        blocks_per_sm, warps_per_sm, occ = occupancy(self.props, shape)
        args: dict[str, Any] = {
            "External id": self._current_ext(),
            "queued": 0,
            "device": self.device_id,
            "context": 1,
            "stream": stream,
            "correlation": corr,
            "registers per thread": registers,
            "shared memory": shared_mem,
            "blocks per SM": blocks_per_sm,
            "warps per SM": warps_per_sm,
            "grid": list(grid),
            "block": list(block),
            "est. achieved occupancy %": occ,
        }
        args.update(extra_args or {})
        act = GpuActivity(
            "kernel", name, stream, start, end, corr, self._current_ext(),
            self._current_step, label, args,
        )  # fmt: skip
        self.gpu.append(act)
        return act

    def memcpy(
        self,
        kind: str,
        nbytes: int,
        dur_ns: int | None = None,
        *,
        src_mem: str | None = None,
        dst_mem: str | None = None,
        sync: bool = False,
        stream: int = COMPUTE_STREAM,
        bw_gbs: float | None = None,
    ) -> GpuActivity:
        """A copy of ``kind`` HtoD / DtoH / DtoD / PtoP.

        ``sync=True`` issues a blocking `cudaMemcpy`; a pageable source or destination also
        blocks the `cudaMemcpyAsync` call until the copy ends (the driver stages it). The
        default duration uses ``bw_gbs`` (25 GB/s for pinned host copies, 10 GB/s for
        pageable, 70% of HBM bandwidth on the device).
        """
        src = src_mem or ("device" if kind[0] in "DP" else "pinned")
        dst = dst_mem or ("device" if kind[-1] in "DP" else "pinned")
        if dur_ns is None:
            rate = bw_gbs or _copy_bandwidth(self.props, src, dst)
            dur_ns = max(1_000, math.ceil(nbytes / rate))
        pageable = "pageable" in (src, dst)
        runtime = "cudaMemcpy" if sync else "cudaMemcpyAsync"
        corr, start, end = self._launch(
            runtime, self.timing.memcpy_call_ns, stream, dur_ns, blocking=sync or pageable
        )
        name = f"Memcpy {kind} ({src.capitalize()} -> {dst.capitalize()})"
        act = GpuActivity(
            "memcpy", name, stream, start, end, corr, self._current_ext(),
            self._current_step, "copy", self._mem_args(stream, corr, nbytes, dur_ns),
            nbytes=nbytes,
        )  # fmt: skip
        self.gpu.append(act)
        return act

    def memset(
        self, nbytes: int, dur_ns: int | None = None, *, stream: int = COMPUTE_STREAM
    ) -> GpuActivity:
        """A `cudaMemsetAsync` of device memory."""
        if dur_ns is None:
            dur_ns = max(1_000, math.ceil(nbytes / (self.props.mem_bw_gbs * 0.7)))
        corr, start, end = self._launch(
            "cudaMemsetAsync", self.timing.memset_call_ns, stream, dur_ns
        )
        act = GpuActivity(
            "memset", "Memset (Device)", stream, start, end, corr, self._current_ext(),
            self._current_step, "copy", self._mem_args(stream, corr, nbytes, dur_ns),
            nbytes=nbytes,
        )  # fmt: skip
        self.gpu.append(act)
        return act

    def _mem_args(self, stream: int, corr: int, nbytes: int, dur_ns: int) -> dict[str, Any]:
        return {
            "External id": self._current_ext(),
            "device": self.device_id,
            "context": 1,
            "stream": stream,
            "correlation": corr,
            "bytes": nbytes,
            "memory bandwidth (GB/s)": nbytes / dur_ns if dur_ns else 0.0,
        }

    def sync(self, kind: str = "stream", *, stream: int = COMPUTE_STREAM) -> RuntimeCall:
        """`cudaStreamSynchronize` (kind "stream") or `cudaDeviceSynchronize` ("device")."""
        if kind not in ("stream", "device"):
            raise ValueError(f"sync kind must be 'stream' or 'device', not {kind!r}")
        name = "cudaStreamSynchronize" if kind == "stream" else "cudaDeviceSynchronize"
        drained = self._stream_free[stream] if kind == "stream" else self.drain_ns()
        return self._host_wait(name, drained)

    def _host_wait(self, name: str, until_ns: int) -> RuntimeCall:
        start = self.now_ns
        end = max(start + self.timing.sync_min_ns, until_ns + self.timing.sync_return_ns)
        call = RuntimeCall(name, start, end, self._new_corr(), self._current_ext())
        self.runtime.append(call)
        self.now_ns = end
        return call

    def runtime_call(self, name: str, dur_ns: int) -> RuntimeCall:
        """A runtime call without GPU work (e.g. `cudaMalloc` during a cold start)."""
        call = RuntimeCall(
            name, self.now_ns, self.now_ns + dur_ns, self._new_corr(), self._current_ext()
        )
        self.runtime.append(call)
        self.now_ns += dur_ns
        return call

    def wait_stream(self, stream: int, on_stream: int) -> None:
        """Make later work on ``stream`` wait for what is queued on ``on_stream`` now.

        Emits `cudaEventRecord` and `cudaStreamWaitEvent`, as `Stream.wait_stream` does.
        """
        self.runtime_call("cudaEventRecord", self.timing.event_call_ns)
        self.runtime_call("cudaStreamWaitEvent", self.timing.event_call_ns)
        self._stream_floor[stream] = max(self._stream_floor[stream], self._stream_free[on_stream])

    # ------------------------------------------------------------------ memory

    def memory_event(
        self, nbytes: int, *, device: int | None = None, addr: int | None = None
    ) -> int:
        """A `[memory]` event: allocate ``nbytes`` (> 0; returns the address) or free (< 0).

        Total Reserved follows the caching allocator: it grows in 2 MiB segments and never
        shrinks. A free needs the address, or frees the latest live block of that size.
        """
        dev = self.device_id if device is None else device
        if nbytes >= 0:
            block = addr if addr is not None else self._next_addr(nbytes)
            self._live[block] = (nbytes, dev)
        else:
            block = addr if addr is not None else self._find_live(-nbytes, dev)
            size, dev = self._live.pop(block)
            if size != -nbytes:
                raise ValueError(f"free of {-nbytes} bytes at {block:#x}, which holds {size}")
        self._allocated[dev] += nbytes
        segment = 2 * MIB
        needed = -(-self._allocated[dev] // segment) * segment
        self._reserved[dev] = max(self._reserved[dev], needed)
        self.memory.append(
            MemoryEvent(
                self.now_ns,
                nbytes,
                block,
                dev,
                self._allocated[dev],
                self._reserved[dev],
                self._new_ev_idx(),
            )
        )
        return block

    def free(self, addr: int) -> None:
        """A `[memory]` event freeing the live block at ``addr``."""
        self.memory_event(-self._live[addr][0], addr=addr)

    def _next_addr(self, nbytes: int) -> int:
        block = self._addr
        self._addr += -(-max(nbytes, 1) // 512) * 512
        return block

    def _find_live(self, nbytes: int, device: int) -> int:
        for block in reversed(self._live):
            if self._live[block] == (nbytes, device):
                return block
        raise ValueError(f"no live allocation of {nbytes} bytes on device {device}")

    # ------------------------------------------------------------------ modeled ops

    def gemm(
        self,
        m: int,
        n: int,
        k: int,
        *,
        dtype: str = "bf16",
        op: str = "aten::mm",
        kernel: str = "nvjet",
        batch: int = 1,
        dur_ns: int | None = None,
        efficiency: float = 0.6,
        seq: int | None = None,
        stream: int = COMPUTE_STREAM,
    ) -> GpuActivity:
        """A matrix multiply as `aten::mm`, `aten::addmm` (bias), `aten::bmm` or `aten::linear`.

        FLOPs 2*M*N*K (+ M*N with a bias), times ``batch``; bytes (M*K + K*N + M*N (+ N)) x
        element size; duration max(FLOPs / (peak x efficiency), bytes / (HBM bw x 0.8)).
        `aten::linear` records the real nesting: linear > t, then addmm (bias) or matmul > mm.
        """
        size, tname, _, _, _ = DTYPES[dtype]
        bias = op in ("aten::addmm", "aten::linear")
        flops = batch * (2 * m * n * k + (m * n if bias else 0))
        nbytes = batch * (m * k + k * n + m * n + (n if bias else 0)) * size
        spec = GEMM_KERNELS[kernel]
        if dur_ns is None:
            peak = self.props.tensor_tflops if spec.tensor_core else self.props.fp32_tflops
            compute = flops / (peak * 1e3 * efficiency)
            memory = nbytes / (self.props.mem_bw_gbs * 0.8)
            dur_ns = math.ceil(max(compute, memory))
        seq = self._auto_seq() if seq is None else seq
        if op == "aten::linear":
            with self.op(op, [[m, k], [n, k], [n]], [tname] * 3, ["", "", ""], seq=seq):
                with self.op("aten::t", [[n, k]], [tname], [""]):
                    pass
                return self._gemm_leaf(
                    "aten::addmm", m, n, k, dtype, spec, dur_ns, flops, nbytes, seq, stream, batch
                )
        return self._gemm_leaf(op, m, n, k, dtype, spec, dur_ns, flops, nbytes, seq, stream, batch)

    def _gemm_leaf(
        self,
        op: str,
        m: int,
        n: int,
        k: int,
        dtype: str,
        spec: GemmKernel,
        dur_ns: int,
        flops: int,
        nbytes: int,
        seq: int | None,
        stream: int,
        batch: int,
    ) -> GpuActivity:
        _, tname, _, _, _ = DTYPES[dtype]
        if op == "aten::addmm":
            dims: list[list[int]] = [[n], [m, k], [k, n], [], []]
            types = [tname, tname, tname, "Scalar", "Scalar"]
            concrete = ["", "", "", "1", "1"]
        elif op == "aten::bmm":
            dims, types, concrete = [[batch, m, k], [batch, k, n]], [tname, tname], ["", ""]
        else:
            dims, types, concrete = [[m, k], [k, n]], [tname, tname], ["", ""]
        with self.op(op, dims, types, concrete, seq=seq):
            act = self.kernel(
                spec.name(dtype, bias=op == "aten::addmm"),
                dur_ns,
                spec.grid(m, n, batch, self.props.num_sms),
                spec.block,
                registers=spec.registers,
                shared_mem=spec.shared_mem,
                stream=stream,
                label="gemm",
            )
        act.flops, act.model_bytes, act.op, act.seq = flops, nbytes, op, seq
        return act

    def elementwise(
        self,
        op: str,
        shape: Sequence[int],
        *,
        dtype: str = "bf16",
        dur_ns: int | None = None,
        bw_frac: float = 0.7,
        seq: int | None = None,
    ) -> GpuActivity:
        """`aten::add` / `aten::mul` (binary), `aten::gelu` / `aten::relu` (unary) or
        `aten::fill_` on a tensor of ``shape``: FLOPs = elements, bytes = elements x element
        size x tensors touched (3, 2 or 1); duration bytes / (HBM bw x ``bw_frac``)."""
        size, tname, ctype, _, _ = DTYPES[dtype]
        spec = ELEMENTWISE_OPS[op]
        numel = math.prod(shape)
        nbytes = numel * size * spec.tensors
        if dur_ns is None:
            dur_ns = max(1_000, math.ceil(nbytes / (self.props.mem_bw_gbs * bw_frac)))
        dims = [list(shape)] * spec.tensor_inputs + [[]] * len(spec.extra_types)
        types = [tname] * spec.tensor_inputs + list(spec.extra_types)
        concrete = [""] * spec.tensor_inputs + list(spec.extra_concrete)
        if seq is None and op != "aten::fill_":
            seq = self._auto_seq()
        with self.op(op, dims, types, concrete, seq=seq):
            act = self.kernel(
                spec.kernel.format(T=ctype),
                dur_ns,
                (max(1, math.ceil(numel / 512)), 1, 1),
                (128, 1, 1),
                registers=spec.registers,
                label="elementwise",
            )
        act.flops, act.model_bytes, act.op = numel if spec.tensors > 1 else 0, nbytes, op
        act.seq = seq
        return act

    def layer_norm(
        self, rows: int, cols: int, *, dtype: str = "bf16", dur_ns: int | None = None
    ) -> GpuActivity:
        """`aten::layer_norm` > `aten::native_layer_norm` over [rows, cols]: bytes 2 x
        rows x cols x size + 2 x cols x size (weight, bias); FLOPs 5 per element."""
        size, tname, ctype, _, _ = DTYPES[dtype]
        nbytes = (2 * rows * cols + 2 * cols) * size
        if dur_ns is None:
            dur_ns = max(1_000, math.ceil(nbytes / (self.props.mem_bw_gbs * 0.7)))
        dims = [[rows, cols], [], [cols], [cols], []]
        types = [tname, "ScalarList", tname, tname, "Scalar"]
        concrete = ["", f"[{cols}]", "", "", "1.0000000000000001e-05"]
        seq = self._auto_seq()
        with (
            self.op(
                "aten::layer_norm", [*dims, []], [*types, "Scalar"], [*concrete, "True"], seq=seq
            ),
            self.op("aten::native_layer_norm", dims, types, concrete, seq=seq),
        ):
            act = self.kernel(
                f"void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<{ctype}, "
                f"float>(int, float, {ctype} const*, {ctype} const*, {ctype} const*, float*, "
                f"float*, {ctype}*)",
                dur_ns, (rows, 1, 1), (32, 4, 1), registers=40, label="norm",
            )  # fmt: skip
        act.flops, act.model_bytes, act.op = 5 * rows * cols, nbytes, "aten::native_layer_norm"
        act.seq = seq
        return act

    def softmax(
        self, rows: int, cols: int, *, dtype: str = "bf16", dur_ns: int | None = None
    ) -> GpuActivity:
        """`aten::softmax` > `aten::_softmax` along the last dim of [rows, cols]: bytes 2 x
        rows x cols x size, FLOPs 5 per element."""
        size, tname, ctype, _, _ = DTYPES[dtype]
        nbytes = 2 * rows * cols * size
        if dur_ns is None:
            dur_ns = max(1_000, math.ceil(nbytes / (self.props.mem_bw_gbs * 0.7)))
        log2 = max(0, math.ceil(math.log2(cols)))
        seq = self._auto_seq()
        with (
            self.op(
                "aten::softmax",
                [[rows, cols], [], []],
                [tname, "Scalar", ""],
                ["", "-1", ""],
                seq=seq,
            ),
            self.op(
                "aten::_softmax",
                [[rows, cols], [], []],
                [tname, "Scalar", "Scalar"],
                ["", "-1", "False"],
                seq=seq,
            ),
        ):
            act = self.kernel(
                f"void (anonymous namespace)::softmax_warp_forward<{ctype}, {ctype}, float, "
                f"{log2}, false, false>({ctype}*, {ctype} const*, int, int, int, bool const*, "
                "int, bool)",
                dur_ns, (max(1, rows // 4), 1, 1), (32, 4, 1), registers=38, label="reduction",
            )  # fmt: skip
        act.flops, act.model_bytes, act.op = 5 * rows * cols, nbytes, "aten::_softmax"
        act.seq = seq
        return act

    def reduce_sum(
        self, rows: int, cols: int, *, dtype: str = "bf16", dur_ns: int | None = None
    ) -> GpuActivity:
        """`aten::sum` over dim 0 of [rows, cols] (a bias gradient)."""
        size, tname, ctype, _, _ = DTYPES[dtype]
        nbytes = (rows * cols + cols) * size
        if dur_ns is None:
            dur_ns = max(1_000, math.ceil(nbytes / (self.props.mem_bw_gbs * 0.7)))
        dims = [[rows, cols], [], [], []]
        with self.op(
            "aten::sum", dims, [tname, "ScalarList", "Scalar", ""], ["", "[0]", "True", ""]
        ):
            act = self.kernel(
                f"void at::native::reduce_kernel<512, 1, at::native::ReduceOp<{ctype}, "
                f"at::native::func_wrapper_t<{ctype}, at::native::sum_functor<{ctype}, float, "
                f"{ctype}>::operator()(at::TensorIterator&)::{{lambda(float, float)#1}}>, "
                f"unsigned int, {ctype}, 4> >(at::native::ReduceOp<{ctype}, "
                f"at::native::func_wrapper_t<{ctype}, at::native::sum_functor<{ctype}, float, "
                f"{ctype}>::operator()(at::TensorIterator&)::{{lambda(float, float)#1}}>, "
                f"unsigned int, {ctype}, 4>)",
                dur_ns, (max(1, cols // 32), 4, 1), (32, 16, 1), registers=32,
                shared_mem=4112, label="reduction",
            )  # fmt: skip
        act.flops, act.model_bytes, act.op = rows * cols, nbytes, "aten::sum"
        return act

    def fused_adam(self, numel: int, *, dur_ns: int | None = None) -> GpuActivity:
        """`Optimizer.step#AdamW.step` > `aten::_fused_adamw_` over ``numel`` fp32 parameters
        (param, grad, exp_avg, exp_avg_sq read, three written: 28 bytes per parameter)."""
        nbytes = 28 * numel
        if dur_ns is None:
            dur_ns = max(1_000, math.ceil(nbytes / (self.props.mem_bw_gbs * 0.7)))
        with (
            self.annotation("Optimizer.step#AdamW.step"),
            self.op("aten::_fused_adamw_", [[], [], [], [], [], []],
                    ["TensorList"] * 6, [""] * 6),
        ):  # fmt: skip
            act = self.kernel(
                "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<"
                "at::native::(anonymous namespace)::TensorListMetadata<4>, "
                "at::native::(anonymous namespace)::FusedAdamMathFunctor<float, 4, "
                "(at::native::ADAM_MODE)1, false>, double*, double, double, double, double, "
                "double, bool, float const*, float const*>(at::native::(anonymous namespace)::"
                "TensorListMetadata<4>, at::native::(anonymous namespace)::FusedAdamMathFunctor"
                "<float, 4, (at::native::ADAM_MODE)1, false>, double*, double, double, double, "
                "double, double, bool, float const*, float const*)",
                dur_ns, (max(1, numel // 65536), 1, 1), (512, 1, 1), registers=64,
                label="optimizer",
            )  # fmt: skip
        act.flops, act.model_bytes, act.op = 10 * numel, nbytes, "aten::_fused_adamw_"
        return act

    def to_device(
        self,
        shape: Sequence[int],
        *,
        dtype: str = "bf16",
        pinned: bool = True,
        dur_ns: int | None = None,
    ) -> GpuActivity:
        """`aten::to` > `aten::_to_copy` > `aten::copy_` moving a host tensor to the GPU."""
        size, tname, _, _, _ = DTYPES[dtype]
        nbytes = math.prod(shape) * size
        src = "pinned" if pinned else "pageable"
        dims = [list(shape), [], [], [], [], [], [], []]
        types = [tname, "Scalar", "Scalar", "", "", "Scalar", "Scalar", ""]
        concrete = ["", "", "", "", "", "True" if pinned else "False", "False", ""]
        with (
            self.op("aten::to", dims, types, concrete),
            self.op("aten::_to_copy", dims[:7], types[:7], concrete[:7]),
            self.op("aten::copy_", [list(shape), list(shape), []], [tname, tname, "Scalar"],
                    ["", "", "True" if pinned else "False"]),
        ):  # fmt: skip
            act = self.memcpy("HtoD", nbytes, dur_ns, src_mem=src, dst_mem="device")
        act.op = "aten::copy_"
        return act

    def item(self, *, blocking_memcpy: bool = False, dtype: str = "fp32") -> GpuActivity:
        """`aten::item` > `aten::_local_scalar_dense`: a scalar copied to the host, then waited
        for: `cudaMemcpyAsync` + `cudaStreamSynchronize` (what PyTorch does), or one blocking
        `cudaMemcpy` with ``blocking_memcpy``."""
        size, tname, _, _, _ = DTYPES[dtype]
        with (
            self.op("aten::item", [[]], [tname], [""]),
            self.op("aten::_local_scalar_dense", [[]], [tname], [""]),
        ):
            if blocking_memcpy:
                act = self.memcpy(
                    "DtoH", size, 1_500, src_mem="device", dst_mem="pageable", sync=True
                )
            else:
                act = self.memcpy("DtoH", size, 1_500, src_mem="device", dst_mem="pinned")
                self.sync("stream")
        act.op = "aten::_local_scalar_dense"
        return act

    # ------------------------------------------------------------------ communication

    def _collective_call_ns(self) -> int:
        return self.now_ns + 3 * self.timing.op_enter_ns

    def peek_collective_start(self, stream: int = COMM_STREAM) -> int:
        """When a collective launched now on ``stream`` would start (no state changes)."""
        if self._idle is not None:
            raise ValueError("a collective cannot be peeked while an idle() gap is pending")
        return self._gpu_start(stream, self._collective_call_ns())

    def collective(
        self,
        collective: str,
        nelems: int,
        dur_ns: int,
        *,
        dtype: str = "bf16",
        stream: int = COMM_STREAM,
        pg_name: str = "0",
    ) -> GpuActivity:
        """A c10d collective: `c10d::<op>_` > `nccl:<op>` > `record_param_comms` launching an
        `ncclDevKernel_*` carrying the comm args (Collective name, dtype, In/Out msg nelems,
        Group size, Process Group Name/Description/Ranks, Seq). ``dur_ns`` includes any time
        the kernel waits for slower ranks (see `lockstep_collective`)."""
        spec = COLLECTIVES[collective]
        size, _, _, nccl_dt, comm_dt = DTYPES[dtype]
        in_n, out_n = spec.msg_nelems(nelems, self.world_size)
        seq = self._comm_seq
        self._comm_seq += 1
        ranks = str(list(range(self.world_size)))
        comm_args: dict[str, Any] = {
            "Collective name": spec.arg_name,
            "In msg nelems": in_n,
            "Out msg nelems": out_n,
            "Group size": self.world_size,
            "dtype": comm_dt,
            "In split size": "[]",
            "Out split size": "[]",
            "Process Group Name": pg_name,
            "Process Group Description": "default_pg",
            "Process Group Ranks": ranks,
            "Seq": seq,
        }
        rpc_args = {**comm_args, "Rank": self.rank, "Global rank start": 0, "Global rank stride": 1}
        with (
            self.op(spec.c10d_op),
            self.annotation(spec.annotation),
            self.op("record_param_comms", extra_args=rpc_args),
        ):
            act = self.kernel(
                spec.kernel.format(dt=nccl_dt),
                dur_ns, (16, 1, 1), (640, 1, 1), registers=96, shared_mem=87_568,
                stream=stream, label="comm", extra_args=comm_args,
            )  # fmt: skip
        nbytes = max(in_n, out_n) * size
        act.op, act.model_bytes = "record_param_comms", nbytes
        self.collectives.append(
            CollectiveRecord(
                seq, spec.arg_name, comm_dt, nelems, nbytes, act.start_ns, act.end_ns,
                act.correlation, self._current_step,
            )
        )  # fmt: skip
        return act

    # ------------------------------------------------------------------ output

    def _us(self, abs_ns: int) -> float:
        return (abs_ns - self.base_time_ns) / 1000

    def to_json(self) -> dict[str, Any]:
        """The trace as a Kineto JSON document (plain dict)."""
        if self._scopes:
            raise ValueError(f"{len(self._scopes)} op scopes are still open")
        return {
            "schemaVersion": 1,
            "deviceProperties": [self.props.properties(i) for i in self._device_ids()],
            "distributedInfo": self._distributed_info(),
            "cupti_version": 24,
            "cuda_runtime_version": 12060,
            "cuda_driver_version": 12080,
            "record_shapes": 1,
            "profile_memory": 1,
            "with_stack": 0,
            "with_flops": 0,
            "with_modules": 0,
            "trace_id": hashlib.md5(f"{self.name}/{self.rank}".encode()).hexdigest().upper(),
            "displayTimeUnit": "ms",
            "baseTimeNanoseconds": self.base_time_ns,
            "traceEvents": self._events(),
            "traceName": f"/tmp/synthetic/{self.name}_rank{self.rank}.pt.trace.json",
        }

    def _device_ids(self) -> list[int]:
        return list(range(max(self.device_id + 1, min(self.world_size, 8))))

    def _distributed_info(self) -> dict[str, Any]:
        ranks = list(range(self.world_size))
        return {
            "backend": "nccl",
            "rank": self.rank,
            "world_size": self.world_size,
            "pg_count": 1,
            "pg_config": [
                {
                    "pg_name": "0",
                    "pg_desc": "default_pg",
                    "backend_config": "cuda:nccl",
                    "pg_size": self.world_size,
                    "ranks": ranks,
                }
            ],
            "nccl_version": "2.21.5",
        }

    def _events(self) -> list[dict[str, Any]]:
        events = self._cpu_side_events()
        events += self._runtime_events()
        events += self._gpu_events()
        events += self._metadata_events()
        return events

    def _cpu_side_events(self) -> list[dict[str, Any]]:
        rows: list[tuple[int, int, dict[str, Any]]] = [
            (
                ev.start_ns,
                ev.start_ns - ev.end_ns,
                self._x(ev.cat, ev.name, ev.start_ns, ev.end_ns, ev.args),
            )
            for ev in self.cpu_events
        ]
        for mem in self.memory:
            args = {
                "Total Reserved": mem.total_reserved,
                "Total Allocated": mem.total_allocated,
                "Bytes": mem.nbytes,
                "Addr": mem.addr,
                "Device Id": mem.device,
                "Device Type": 1,
                "Ev Idx": mem.ev_idx,
            }
            instant = {
                "ph": "i", "cat": "cpu_instant_event", "s": "t", "name": "[memory]",
                "pid": self.pid, "tid": self.tid, "ts": self._us(mem.ts_ns), "args": args,
            }  # fmt: skip
            rows.append((mem.ts_ns, 0, instant))
        rows.sort(key=lambda r: (r[0], r[1]))
        return [r[2] for r in rows]

    def _x(
        self, cat: str, name: str, start_ns: int, end_ns: int, args: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "ph": "X", "cat": cat, "name": name, "pid": self.pid, "tid": self.tid,
            "ts": self._us(start_ns), "dur": (end_ns - start_ns) / 1000, "args": args,
        }  # fmt: skip

    def _runtime_events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for call in sorted(self.runtime, key=lambda c: c.start_ns):
            args: dict[str, Any] = {"cbid": CBID[call.name], "correlation": call.correlation}
            if call.ext_id:
                args = {"External id": call.ext_id, **args}
            out.append(self._x("cuda_runtime", call.name, call.start_ns, call.end_ns, args))
            if call.has_gpu_work:
                out.append({
                    "ph": "s", "id": call.correlation, "pid": self.pid, "tid": self.tid,
                    "ts": self._us(call.start_ns), "cat": "ac2g", "name": "ac2g",
                })  # fmt: skip
        return out

    def _gpu_events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cats = {"kernel": "kernel", "memcpy": "gpu_memcpy", "memset": "gpu_memset"}
        for act in sorted(self.gpu, key=lambda a: (a.start_ns, a.stream)):
            ev = {
                "ph": "X", "cat": cats[act.kind], "name": act.name, "pid": self.device_id,
                "tid": act.stream, "ts": self._us(act.start_ns), "dur": act.dur_ns / 1000,
                "args": act.args,
            }  # fmt: skip
            flow = {
                "ph": "f", "id": act.correlation, "pid": self.device_id, "tid": act.stream,
                "ts": self._us(act.start_ns), "cat": "ac2g", "name": "ac2g", "bp": "e",
            }  # fmt: skip
            out += [ev, flow]
        for st in self.steps:
            acts = [a for a in self.gpu if a.step == st.step]
            if acts:
                first = min(acts, key=lambda a: a.start_ns)
                end = max(a.end_ns for a in acts)
                out.append({
                    "ph": "X", "cat": "gpu_user_annotation", "name": f"ProfilerStep#{st.step}",
                    "pid": self.device_id, "tid": first.stream, "ts": self._us(first.start_ns),
                    "dur": (end - first.start_ns) / 1000, "args": {"External id": st.ext_id},
                })  # fmt: skip
        return out

    def _metadata_events(self) -> list[dict[str, Any]]:
        first = min([e.start_ns for e in self.cpu_events] + [a.start_ns for a in self.gpu])
        last = max([e.end_ns for e in self.cpu_events] + [a.end_ns for a in self.gpu])
        ts = self._us(first)

        def meta(name: str, pid: int | str, tid: int | str, args: dict[str, Any]) -> dict[str, Any]:
            return {"name": name, "ph": "M", "ts": ts, "pid": pid, "tid": tid, "args": args}

        out = [
            meta("process_name", self.pid, 0, {"name": "python3"}),
            meta("process_labels", self.pid, 0, {"labels": "CPU"}),
            meta("process_sort_index", self.pid, 0, {"sort_index": self.pid}),
            meta("process_name", self.device_id, 0, {"name": "python3"}),
            meta("process_labels", self.device_id, 0, {"labels": f"GPU {self.device_id}"}),
            meta("process_sort_index", self.device_id, 0, {"sort_index": 5000000 + self.device_id}),
            meta("thread_name", self.pid, self.tid, {"name": f"thread {self.tid} (python3)"}),
            meta("thread_sort_index", self.pid, self.tid, {"sort_index": self.tid}),
        ]
        for stream in sorted({a.stream for a in self.gpu}):
            out.append(meta("thread_name", self.device_id, stream, {"name": f"stream {stream} "}))
            out.append(meta("thread_sort_index", self.device_id, stream, {"sort_index": stream}))
        out += [
            {
                "ph": "X", "cat": "Trace", "ts": ts, "dur": (last - first) / 1000,
                "pid": "Spans", "tid": "PyTorch Profiler", "name": "PyTorch Profiler (0)",
                "args": {"Op count": 0},
            },
            meta("process_sort_index", "Spans", 0, {"sort_index": 536870912}),
            {
                "name": "Iteration Start: PyTorch Profiler", "ph": "i", "s": "g",
                "pid": "Traces", "tid": "Trace PyTorch Profiler", "ts": ts,
            },
            {"name": "Record Window End", "ph": "i", "s": "g", "pid": "", "tid": "",
             "ts": self._us(last + 1_000)},
        ]  # fmt: skip
        return out

    def write(self, path: Path, *, with_truth: bool = True) -> Path:
        """Write the trace (gzip when the name ends in .gz) and, by default, its truth file."""
        write_json(path, self.to_json())
        if with_truth:
            write_truth(truth_path(path), self.truth())
        return path

    def truth(self) -> dict[str, Any]:
        """The ground truth measured while building (see the module docstring)."""
        return compute_truth(self)


# ----------------------------------------------------------------------------- catalogs


@dataclass(frozen=True, slots=True)
class GemmKernel:
    """A GEMM kernel family: name pattern, tile and resources (from real traces)."""

    pattern: str
    tile_m: int
    tile_n: int
    block: tuple[int, int, int]
    registers: int
    shared_mem: int
    tensor_core: bool
    persistent: bool = False

    def name(self, dtype: str, *, bias: bool) -> str:
        """The kernel name for a dtype, with cuBLAS's bias epilogue when fused."""
        return self.pattern.format(bias="_bias" if bias else "", dt=DTYPES[dtype][3])

    def grid(self, m: int, n: int, batch: int, num_sms: int) -> tuple[int, int, int]:
        """One block per output tile, or one per SM for persistent kernels."""
        tiles_m, tiles_n = math.ceil(m / self.tile_m), math.ceil(n / self.tile_n)
        if self.persistent:
            return (min(tiles_m * tiles_n * batch, num_sms), 1, 1)
        return (tiles_n, tiles_m, batch)


GEMM_KERNELS: Final[dict[str, GemmKernel]] = {
    "nvjet": GemmKernel(
        "nvjet_tst_256x128_64x4_1x2_h_bz_coopA{bias}_TNT", 256, 128, (384, 1, 1), 168, 213_656,
        tensor_core=True, persistent=True,
    ),
    "nvjet_small": GemmKernel(
        "nvjet_tst_64x8_64x16_4x1_v_bz{bias}_TNT", 8, 64, (256, 1, 1), 168, 164_504,
        tensor_core=True,
    ),
    "sm90": GemmKernel(
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_"
        "execute_segment_k_off_kernel__5x_cublas", 128, 128, (384, 1, 1), 168, 231_424,
        tensor_core=True,
    ),
    "ampere_bf16": GemmKernel(
        "ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_64x3_tn", 128, 128, (256, 1, 1),
        232, 98_304, tensor_core=True,
    ),
    "ampere_sgemm": GemmKernel(
        "ampere_sgemm_128x64_tn", 128, 64, (128, 1, 1), 122, 12_544, tensor_core=False
    ),
    "ampere_sgemm_sliced": GemmKernel(
        "ampere_sgemm_32x32_sliced1x4_tn", 32, 32, (128, 1, 1), 86, 32_768, tensor_core=False
    ),
    "cutlass_simt": GemmKernel(
        "void cutlass::Kernel2<cutlass_80_simt_sgemm_128x128_8x4_tn_align1>("
        "cutlass_80_simt_sgemm_128x128_8x4_tn_align1::Params)", 128, 128, (256, 1, 1), 254,
        33_280, tensor_core=False,
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ElementwiseOp:
    """How an elementwise aten op appears: its kernel, inputs and tensors touched."""

    kernel: str
    tensor_inputs: int
    tensors: int  # tensors read + written
    extra_types: tuple[str, ...] = ()
    extra_concrete: tuple[str, ...] = ()
    registers: int = 24


_VEC = "void at::native::vectorized_elementwise_kernel<4, "
ELEMENTWISE_OPS: Final[dict[str, ElementwiseOp]] = {
    "aten::add": ElementwiseOp(
        _VEC + "at::native::CUDAFunctor_add<{T}>, std::array<char*, 3ul> >(int, "
        "at::native::CUDAFunctor_add<{T}>, std::array<char*, 3ul>)", 2, 3, ("Scalar",), ("1",),
    ),
    "aten::mul": ElementwiseOp(
        _VEC + "at::native::BinaryFunctor<{T}, {T}, {T}, at::native::binary_internal::"
        "MulFunctor<float> >, std::array<char*, 3ul> >(int, at::native::BinaryFunctor<{T}, {T}, "
        "{T}, at::native::binary_internal::MulFunctor<float> >, std::array<char*, 3ul>)", 2, 3,
    ),
    "aten::gelu": ElementwiseOp(
        _VEC + "at::native::GeluCUDAKernelImpl(at::TensorIteratorBase&, at::native::GeluType)::"
        "{{lambda()#2}}::operator()() const::{{lambda()#4}}::operator()() const::"
        "{{lambda({T})#1}}, std::array<char*, 2ul> >(int, at::native::GeluCUDAKernelImpl("
        "at::TensorIteratorBase&, at::native::GeluType)::{{lambda()#2}}::operator()() const::"
        "{{lambda()#4}}::operator()() const::{{lambda({T})#1}}, std::array<char*, 2ul>)",
        1, 2, ("",), ("none",),
    ),
    "aten::gelu_backward": ElementwiseOp(
        _VEC + "at::native::GeluBackwardCUDAKernelImpl(at::TensorIteratorBase&, "
        "at::native::GeluType)::{{lambda()#2}}::operator()() const::{{lambda()#4}}::operator()"
        "() const::{{lambda({T}, {T})#1}}, std::array<char*, 3ul> >(int, "
        "at::native::GeluBackwardCUDAKernelImpl(at::TensorIteratorBase&, at::native::GeluType)"
        "::{{lambda()#2}}::operator()() const::{{lambda()#4}}::operator()() const::"
        "{{lambda({T}, {T})#1}}, std::array<char*, 3ul>)", 2, 3, ("",), ("none",),
    ),
    "aten::relu": ElementwiseOp(
        _VEC + "at::native::(anonymous namespace)::launch_clamp_scalar(at::TensorIteratorBase&, "
        "c10::Scalar, c10::Scalar, at::native::detail::ClampLimits)::{{lambda()#1}}::operator()"
        "() const::{{lambda()#14}}::operator()() const::{{lambda({T})#1}}, std::array<char*, "
        "2ul> >(int, at::native::(anonymous namespace)::launch_clamp_scalar("
        "at::TensorIteratorBase&, c10::Scalar, c10::Scalar, at::native::detail::ClampLimits)::"
        "{{lambda()#1}}::operator()() const::{{lambda()#14}}::operator()() const::"
        "{{lambda({T})#1}}, std::array<char*, 2ul>)", 1, 2,
    ),
    "aten::fill_": ElementwiseOp(
        _VEC + "at::native::FillFunctor<{T}>, std::array<char*, 1ul> >(int, "
        "at::native::FillFunctor<{T}>, std::array<char*, 1ul>)", 1, 1, ("Scalar",), ("0",), 16,
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CollectiveSpec:
    """Names of one collective across c10d, its annotation, record_param_comms and NCCL."""

    arg_name: str
    c10d_op: str
    annotation: str
    kernel: str
    gathers: bool = False
    scatters: bool = False

    def msg_nelems(self, nelems: int, world: int) -> tuple[int, int]:
        """(In msg nelems, Out msg nelems) for a per-rank input of ``nelems``."""
        if self.gathers:
            return nelems, nelems * world
        if self.scatters:
            return nelems, nelems // world
        return nelems, nelems


_NCCL_ARGS = "(ncclDevKernelArgsStorage<4096ul>)"
COLLECTIVES: Final[dict[str, CollectiveSpec]] = {
    "allreduce": CollectiveSpec(
        "allreduce", "c10d::allreduce_", "nccl:all_reduce",
        "ncclDevKernel_AllReduce_Sum_{dt}_RING_LL" + _NCCL_ARGS,
    ),
    "allgather": CollectiveSpec(
        "_allgather_base", "c10d::_allgather_base_", "nccl:_all_gather_base",
        "ncclDevKernel_AllGather_RING_LL" + _NCCL_ARGS, gathers=True,
    ),
    "reduce_scatter": CollectiveSpec(
        "_reduce_scatter_base", "c10d::_reduce_scatter_base_", "nccl:_reduce_scatter_base",
        "ncclDevKernel_ReduceScatter_Sum_{dt}_RING_LL" + _NCCL_ARGS, scatters=True,
    ),
    "broadcast": CollectiveSpec(
        "broadcast", "c10d::broadcast_", "nccl:broadcast",
        "ncclDevKernel_Broadcast_RING_LL" + _NCCL_ARGS,
    ),
}  # fmt: skip


def _copy_bandwidth(props: DeviceProps, src: str, dst: str) -> float:
    """Default copy bandwidth in GB/s (= bytes per ns) for a source / destination pair."""
    if "pageable" in (src, dst):
        return 10.0
    if "pinned" in (src, dst):
        return 25.0
    return props.mem_bw_gbs * 0.7


# ----------------------------------------------------------------------------- truth


def compute_truth(b: TraceBuilder) -> dict[str, Any]:
    """Everything a test or rule may want to check, measured from the builder's records."""
    return {
        "scenario": b.name,
        "description": b.description,
        "params": b.params,
        "expect": b.expect,
        "rank": b.rank,
        "world_size": b.world_size,
        "device": {
            "id": b.device_id,
            "name": b.props.name,
            "num_sms": b.props.num_sms,
            "total_mem_bytes": b.props.total_mem_bytes,
            "compute_capability": f"{b.props.compute_major}.{b.props.compute_minor}",
        },
        "clock": "absolute Unix epoch ns (baseTimeNanoseconds + ts x 1000)",
        "base_time_ns": b.base_time_ns,
        "pid": b.pid,
        "tid": b.tid,
        "counts": _counts(b),
        "steps": _steps_truth(b),
        "gpu": _span_truth(b.gpu),
        "steps_window": _steps_window_truth(b, extended=False),
        "steps_window_extended": _steps_window_truth(b, extended=True),
        "kernels_by_label": _by_label(b.gpu),
        "memcpy": _memcpy_truth(b.gpu),
        "runtime": _runtime_truth(b.runtime),
        "syncs": _sync_truth(b),
        "dataloader": _dataloader_truth(b),
        "occupancy": _occupancy_truth(b),
        "comm": _comm_truth(b),
        "memory": _memory_truth(b),
        "ops": _ops_truth(b.gpu),
    }


def _counts(b: TraceBuilder) -> dict[str, Any]:
    kinds = Counter(a.kind for a in b.gpu)
    cats = Counter(e.cat for e in b.cpu_events)
    return {
        "kernels": kinds["kernel"],
        "memcpy": kinds["memcpy"],
        "memset": kinds["memset"],
        "gpu_activities": len(b.gpu),
        "cpu_ops": cats["cpu_op"],
        "user_annotations": cats["user_annotation"],
        "gpu_user_annotations": len({a.step for a in b.gpu if a.step is not None}),
        "runtime_calls": len(b.runtime),
        "flows": sum(1 for c in b.runtime if c.has_gpu_work),
        "memory_events": len(b.memory),
        "steps": len(b.steps),
        "collectives": len(b.collectives),
        "streams": sorted({a.stream for a in b.gpu}),
    }


def _steps_truth(b: TraceBuilder) -> list[dict[str, Any]]:
    out = []
    for st in b.steps:
        acts = [a for a in b.gpu if a.step == st.step]
        out.append(
            {
                "step": st.step,
                "start_ns": st.start_ns,
                "end_ns": st.end_ns,
                "dur_ns": st.end_ns - st.start_ns,
                "kernels": sum(1 for a in acts if a.kind == "kernel"),
                "gpu_activities": len(acts),
                "gpu_busy_ns": union_ns((a.start_ns, a.end_ns) for a in acts),
                "compute_busy_ns": union_ns(
                    (a.start_ns, a.end_ns) for a in acts if a.kind == "kernel" and a.label != "comm"
                ),
                "comm_ns": sum(a.dur_ns for a in acts if a.label == "comm"),
                "dataloader_ns": sum(
                    e.end_ns - e.start_ns
                    for e in b.cpu_events
                    if e.name.startswith("enumerate(DataLoader)")
                    and st.start_ns <= e.start_ns < st.end_ns
                ),
            }
        )
    return out


def _span_truth(acts: Sequence[GpuActivity]) -> dict[str, Any]:
    if not acts:
        return {"activities": 0}
    first = min(a.start_ns for a in acts)
    last = max(a.end_ns for a in acts)
    return _window(acts, first, last) | {
        "first_start_ns": first,
        "last_end_ns": last,
        "kernel_busy_ns": union_ns((a.start_ns, a.end_ns) for a in acts if a.kind == "kernel"),
        "kernel_sum_ns": sum(a.dur_ns for a in acts if a.kind == "kernel"),
        "memcpy_sum_ns": sum(a.dur_ns for a in acts if a.kind == "memcpy"),
        "memset_sum_ns": sum(a.dur_ns for a in acts if a.kind == "memset"),
    }


def _window(acts: Sequence[GpuActivity], lo: int, hi: int) -> dict[str, Any]:
    span = hi - lo
    busy = union_ns(clip(((a.start_ns, a.end_ns) for a in acts), lo, hi))
    return {
        "start_ns": lo,
        "end_ns": hi,
        "span_ns": span,
        "busy_ns": busy,
        "idle_ns": span - busy,
        "idle_pct": 100.0 * (span - busy) / span if span else 0.0,
    }


def _steps_window_truth(b: TraceBuilder, *, extended: bool) -> dict[str, Any]:
    if not b.steps:
        return {}
    lo = min(s.start_ns for s in b.steps)
    hi = max(s.end_ns for s in b.steps)
    if extended:
        hi = max([hi] + [a.end_ns for a in b.gpu if a.step is not None])
    return _window(b.gpu, lo, hi)


def _by_label(acts: Sequence[GpuActivity]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for a in acts:
        if a.kind != "kernel":
            continue
        row = out.setdefault(a.label, {"count": 0, "dur_ns": 0})
        row["count"] += 1
        row["dur_ns"] += a.dur_ns
    return dict(sorted(out.items()))


def _memcpy_truth(acts: Sequence[GpuActivity]) -> dict[str, Any]:
    by_kind: dict[str, dict[str, int]] = {}
    by_name: dict[str, dict[str, int]] = {}
    for a in acts:
        if a.kind == "kernel":
            continue
        kind = "memset" if a.kind == "memset" else a.name.split()[1]
        for table, key in ((by_kind, kind), (by_name, a.name)):
            row = table.setdefault(key, {"count": 0, "bytes": 0, "dur_ns": 0})
            row["count"] += 1
            row["bytes"] += a.nbytes
            row["dur_ns"] += a.dur_ns
    return {"by_kind": dict(sorted(by_kind.items())), "by_name": dict(sorted(by_name.items()))}


def _runtime_truth(calls: Sequence[RuntimeCall]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for c in calls:
        row = out.setdefault(c.name, {"count": 0, "dur_ns": 0})
        row["count"] += 1
        row["dur_ns"] += c.end_ns - c.start_ns
    return dict(sorted(out.items()))


SYNC_CALLS: Final = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpy")


def _sync_truth(b: TraceBuilder) -> dict[str, Any]:
    """Synchronizing calls, and the GPU gaps that contain the end of one (the idle time the
    host's wait-then-relaunch cost: each gap counted once)."""
    calls = [c for c in b.runtime if c.name in SYNC_CALLS]
    busy = merge((a.start_ns, a.end_ns) for a in b.gpu)
    gaps = [(busy[i][1], busy[i + 1][0]) for i in range(len(busy) - 1)]
    hit = {g for g in gaps for c in calls if g[0] <= c.end_ns < g[1]}
    return {
        "calls": _runtime_truth(calls),
        "count": len(calls),
        "dur_ns": sum(c.end_ns - c.start_ns for c in calls),
        "gpu_idle_after_sync_ns": sum(e - s for s, e in hit),
        "gaps_after_sync": len(hit),
    }


def _dataloader_truth(b: TraceBuilder) -> dict[str, Any]:
    events = [e for e in b.cpu_events if e.name.startswith("enumerate(DataLoader)")]
    total = sum(e.end_ns - e.start_ns for e in events)
    steps = sum(s.end_ns - s.start_ns for s in b.steps)
    return {
        "count": len(events),
        "dur_ns": total,
        "share_of_steps_pct": 100.0 * total / steps if steps else 0.0,
    }


def _occupancy_truth(b: TraceBuilder) -> dict[str, Any]:
    kernels = [a for a in b.gpu if a.kind == "kernel"]
    total = sum(a.dur_ns for a in kernels)
    small = [a for a in kernels if math.prod(a.args["grid"]) < b.props.num_sms]
    weighted = sum(a.args["est. achieved occupancy %"] * a.dur_ns for a in kernels)
    return {
        "kernel_ns": total,
        "time_weighted_occupancy_pct": weighted / total if total else 0.0,
        "small_grid_kernels": len(small),
        "small_grid_ns": sum(a.dur_ns for a in small),
        "small_grid_share_pct": 100.0 * sum(a.dur_ns for a in small) / total if total else 0.0,
    }


def _comm_truth(b: TraceBuilder) -> dict[str, Any]:
    comm = [(a.start_ns, a.end_ns) for a in b.gpu if a.label == "comm"]
    compute = [(a.start_ns, a.end_ns) for a in b.gpu if a.kind == "kernel" and a.label != "comm"]
    busy = union_ns(comm)
    exposed = subtract_ns(comm, compute)
    return {
        "collectives": [
            {
                "seq": c.seq, "collective": c.collective, "dtype": c.dtype, "nelems": c.nelems,
                "bytes": c.nbytes, "start_ns": c.start_ns, "end_ns": c.end_ns,
                "dur_ns": c.end_ns - c.start_ns, "correlation": c.correlation, "step": c.step,
            }
            for c in b.collectives
        ],
        "kernel_ns": sum(e - s for s, e in comm),
        "busy_ns": busy,
        "exposed_ns": exposed,
        "overlapped_ns": busy - exposed,
        "compute_busy_ns": union_ns(compute),
    }  # fmt: skip


def _memory_truth(b: TraceBuilder) -> dict[str, Any]:
    total = b.props.total_mem_bytes
    devices: dict[str, dict[str, Any]] = {}
    for dev in sorted({m.device for m in b.memory}):
        events = [m for m in b.memory if m.device == dev]
        peak_alloc = max(m.total_allocated for m in events)
        peak_res = max(m.total_reserved for m in events)
        devices[str(dev)] = {
            "events": len(events),
            "peak_allocated_bytes": peak_alloc,
            "peak_reserved_bytes": peak_res,
            "peak_allocated_pct": 100.0 * peak_alloc / total,
            "peak_reserved_pct": 100.0 * peak_res / total,
            "final_allocated_bytes": events[-1].total_allocated,
        }
    return {"total_mem_bytes": total, "devices": devices}


def _ops_truth(acts: Sequence[GpuActivity]) -> list[dict[str, Any]]:
    """Modeled ops grouped by (op, kernel, FLOPs, bytes): what a perf model should find."""
    groups: dict[tuple[str, str, int, int], list[GpuActivity]] = defaultdict(list)
    for a in acts:
        if a.op and a.kind == "kernel":
            groups[(a.op, a.name, a.flops, a.model_bytes)].append(a)
    out = []
    for (op, name, flops, nbytes), members in sorted(groups.items()):
        dur = sum(a.dur_ns for a in members)
        out.append(
            {
                "op": op,
                "kernel": name,
                "label": members[0].label,
                "count": len(members),
                "flops": flops,
                "bytes": nbytes,
                "dur_ns": dur,
                "achieved_tflops": flops * len(members) / dur / 1e3 if dur else 0.0,
                "achieved_gb_per_s": nbytes * len(members) / dur if dur else 0.0,
            }
        )
    return out


# ----------------------------------------------------------------------------- multi-rank


@dataclass
class RankedTrace:
    """Several ranks of one job; written as a directory of ``rank-N.json.gz`` files."""

    name: str
    description: str
    ranks: list[TraceBuilder]
    params: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)

    def write(self, directory: Path, *, with_truth: bool = True) -> Path:
        """Write one file per rank into ``directory`` and the truth file beside it."""
        directory.mkdir(parents=True, exist_ok=True)
        for b in self.ranks:
            b.write(directory / f"rank-{b.rank}.json.gz", with_truth=False)
        if with_truth:
            write_truth(truth_path(directory), self.truth())
        return directory

    def truth(self) -> dict[str, Any]:
        """Per-rank truth plus each collective across ranks."""
        return {
            "scenario": self.name,
            "description": self.description,
            "params": self.params,
            "expect": self.expect,
            "world_size": len(self.ranks),
            "files": [f"rank-{b.rank}.json.gz" for b in self.ranks],
            "ranks": [b.truth() for b in self.ranks],
            "collectives": cross_rank_collectives(self.ranks),
        }


def cross_rank_collectives(ranks: Sequence[TraceBuilder]) -> list[dict[str, Any]]:
    """Per collective (by Seq): each rank's kernel duration, the latency (the minimum across
    ranks, TraceLens's definition: it removes waiting) and each rank's wait above it."""
    out = []
    seqs = sorted({c.seq for b in ranks for c in b.collectives})
    for seq in seqs:
        per_rank = {b.rank: c for b in ranks for c in b.collectives if c.seq == seq}
        durs = {r: c.end_ns - c.start_ns for r, c in per_rank.items()}
        latency = min(durs.values())
        first = next(iter(per_rank.values()))
        out.append(
            {
                "seq": seq,
                "collective": first.collective,
                "bytes": first.nbytes,
                "latency_ns": latency,
                "dur_ns_by_rank": {str(r): d for r, d in sorted(durs.items())},
                "wait_ns_by_rank": {str(r): d - latency for r, d in sorted(durs.items())},
                "end_ns_by_rank": {str(r): c.end_ns for r, c in sorted(per_rank.items())},
            }
        )
    return out


def lockstep_collective(
    ranks: Sequence[TraceBuilder],
    collective: str,
    nelems: int,
    transfer_ns: int,
    *,
    dtype: str = "bf16",
    stream: int = COMM_STREAM,
) -> int:
    """Launch one collective on every rank so that all finish together.

    Each rank's kernel starts when that rank gets there; all end at the latest start plus
    ``transfer_ns``, so earlier ranks' kernels include their wait. Returns the common end.
    """
    starts = [b.peek_collective_start(stream) for b in ranks]
    end = max(starts) + transfer_ns
    for b, start in zip(ranks, starts, strict=True):
        act = b.collective(collective, nelems, end - start, dtype=dtype, stream=stream)
        if act.start_ns != start:
            raise AssertionError(f"rank {b.rank}: collective started {act.start_ns}, not {start}")
    return end


@contextmanager
def lockstep_step(ranks: Sequence[TraceBuilder]) -> Iterator[None]:
    """Open a ProfilerStep on every rank at once."""
    with ExitStack() as stack:
        for b in ranks:
            stack.enter_context(b.step())
        yield


# ----------------------------------------------------------------------------- files


def truth_path(path: Path) -> Path:
    """Where the truth of ``path`` lives: ``x.json.gz``, ``x.json``, dir ``x``: ``x.truth.json``."""
    name = path.name
    for suffix in (".gz", ".json"):
        name = name.removesuffix(suffix)
    return path.with_name(f"{name}.truth.json")


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write JSON, gzipped (with a zero mtime, so equal documents give equal bytes) for .gz."""
    data = msgspec.json.encode(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with (
            path.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
        ):
            gz.write(data)
    else:
        path.write_bytes(data)


def write_truth(path: Path, truth: dict[str, Any]) -> None:
    """Write a truth document as indented JSON."""
    path.write_bytes(msgspec.json.format(msgspec.json.encode(truth), indent=1) + b"\n")


# ----------------------------------------------------------------------------- workloads


@dataclass(frozen=True, slots=True)
class Mlp:
    """A transformer-style MLP block with an output projection, trained in bf16.

    Per step: zero the gradient buffer, copy the batch to the GPU, layer norm, fc1 (linear),
    gelu, fc2 (linear), residual add, scale (mul), logits (mm), softmax; the backward of each;
    one fused AdamW step.
    """

    tokens: int = 4096
    hidden: int = 1024
    ffn: int = 4096
    vocab: int = 1024
    dtype: str = "bf16"

    @property
    def numel(self) -> int:
        """Trainable parameters."""
        h, f, v = self.hidden, self.ffn, self.vocab
        return 2 * h * f + f + h + v * h + 2 * h

    @property
    def bucket_nelems(self) -> tuple[int, int]:
        """Gradient elements of DDP's two buckets: (logits + fc2, fc1 + layer norm)."""
        h, f, v = self.hidden, self.ffn, self.vocab
        return v * h + h * f + h, f * h + f + 2 * h


def _ctype(dtype: str) -> str:
    return DTYPES[dtype][2]


def simple_op(
    b: TraceBuilder,
    op: str,
    dims: Sequence[Sequence[int]],
    types: Sequence[str],
    kernel: str,
    dur_ns: int,
    grid: tuple[int, int, int],
    block: tuple[int, int, int],
    *,
    registers: int = 32,
    shared_mem: int = 0,
    label: str = "other",
    flops: int = 0,
    nbytes: int = 0,
) -> GpuActivity:
    """One op launching one kernel, with its model FLOPs and bytes recorded for the truth."""
    with b.op(op, dims, types):
        act = b.kernel(
            kernel, dur_ns, grid, block, registers=registers, shared_mem=shared_mem, label=label
        )
    act.flops, act.model_bytes, act.op = flops, nbytes, op
    return act


def mlp_forward(b: TraceBuilder, mlp: Mlp) -> dict[str, int | None]:
    """The forward pass; returns each layer's sequence number for its backward."""
    t, h, f, v, dt = mlp.tokens, mlp.hidden, mlp.ffn, mlp.vocab, mlp.dtype
    return {
        "ln": b.layer_norm(t, h, dtype=dt).seq,
        "fc1": b.gemm(t, f, h, dtype=dt, op="aten::linear", kernel="nvjet").seq,
        "gelu": b.elementwise("aten::gelu", (t, f), dtype=dt).seq,
        "fc2": b.gemm(t, h, f, dtype=dt, op="aten::linear", kernel="sm90").seq,
        "add": b.elementwise("aten::add", (t, h), dtype=dt).seq,
        "mul": b.elementwise("aten::mul", (t, h), dtype=dt).seq,
        "logits": b.gemm(t, v, h, dtype=dt, op="aten::mm", kernel="nvjet").seq,
        "softmax": b.softmax(t, v, dtype=dt).seq,
    }


def mlp_backward_head(b: TraceBuilder, mlp: Mlp, seqs: dict[str, int | None]) -> None:
    """Backward of softmax, logits, scale and fc2: the gradients of DDP's first bucket."""
    t, h, f, v, dt = mlp.tokens, mlp.hidden, mlp.ffn, mlp.vocab, mlp.dtype
    size, tname, ct = DTYPES[dt][0], DTYPES[dt][1], _ctype(dt)
    with b.backward("SoftmaxBackward0", _seq(seqs["softmax"])):
        nbytes = 3 * t * v * size
        simple_op(
            b, "aten::_softmax_backward_data", [[t, v], [t, v], [], []],
            [tname, tname, "Scalar", "Scalar"],
            f"void (anonymous namespace)::softmax_warp_backward<{ct}, {ct}, float, 10, false, "
            f"false>({ct}*, {ct} const*, {ct} const*, int, int, int, bool const*)",
            _mem_ns(b, nbytes), (t // 4, 1, 1), (32, 4, 1), registers=40, label="reduction",
            flops=3 * t * v, nbytes=nbytes,
        )  # fmt: skip
    with b.backward("MmBackward0", _seq(seqs["logits"])):
        b.gemm(t, h, v, dtype=dt, kernel="nvjet")
        b.gemm(v, h, t, dtype=dt, kernel="nvjet")
    with b.backward("MulBackward0", _seq(seqs["mul"])):
        b.elementwise("aten::mul", (t, h), dtype=dt)
    with b.backward("AddmmBackward0", _seq(seqs["fc2"])):
        b.gemm(t, f, h, dtype=dt, kernel="sm90")
        b.gemm(h, f, t, dtype=dt, kernel="nvjet")
        b.reduce_sum(t, h, dtype=dt)


def mlp_backward_tail(
    b: TraceBuilder, mlp: Mlp, seqs: dict[str, int | None], *, norm_registers: int = 40
) -> None:
    """Backward of gelu, fc1 and the layer norm: the gradients of DDP's second bucket."""
    t, h, f, dt = mlp.tokens, mlp.hidden, mlp.ffn, mlp.dtype
    with b.backward("GeluBackward0", _seq(seqs["gelu"])):
        b.elementwise("aten::gelu_backward", (t, f), dtype=dt)
    with b.backward("AddmmBackward0", _seq(seqs["fc1"])):
        b.gemm(t, h, f, dtype=dt, kernel="nvjet")
        b.gemm(f, h, t, dtype=dt, kernel="nvjet")
        b.reduce_sum(t, f, dtype=dt)
    with b.backward("NativeLayerNormBackward0", _seq(seqs["ln"])):
        layer_norm_backward(b, t, h, dtype=dt, registers=norm_registers)


def layer_norm_backward(
    b: TraceBuilder,
    rows: int,
    cols: int,
    *,
    dtype: str = "bf16",
    registers: int = 40,
    dur_ns: int | None = None,
    grid: tuple[int, int, int] | None = None,
) -> GpuActivity:
    """`aten::native_layer_norm_backward`: the gamma/beta gradient kernel (reads grad and
    input, writes two [cols] vectors)."""
    size, tname, ct = DTYPES[dtype][0], DTYPES[dtype][1], _ctype(dtype)
    nbytes = (2 * rows * cols + 2 * cols) * size
    dims = [[rows, cols], [rows, cols], [], [rows], [rows], [cols], [cols], []]
    types = [tname, tname, "ScalarList", "float", "float", tname, tname, "ScalarList"]
    return simple_op(
        b, "aten::native_layer_norm_backward", dims, types,
        f"void at::native::(anonymous namespace)::GammaBetaBackwardCUDAKernel<{ct}, float>("
        f"long, long, {ct} const*, {ct} const*, float const*, float const*, {ct}*, {ct}*)",
        _mem_ns(b, nbytes) if dur_ns is None else dur_ns,
        grid or (math.ceil(cols / 32), 1, 1), (32, 8, 1), registers=registers, label="norm",
        flops=4 * rows * cols, nbytes=nbytes,
    )  # fmt: skip


def _seq(seq: int | None) -> int:
    if seq is None:
        raise ValueError("a backward op needs the sequence number of its forward op")
    return seq


def _mem_ns(b: TraceBuilder, nbytes: int, frac: float = 0.7) -> int:
    """Duration of a memory-bound kernel moving ``nbytes`` at ``frac`` of HBM bandwidth."""
    return max(1_000, math.ceil(nbytes / (b.props.mem_bw_gbs * frac)))


def activation_bytes(mlp: Mlp) -> list[int]:
    """Sizes of the activations the forward pass keeps for the backward."""
    size = DTYPES[mlp.dtype][0]
    t, h, f, v = mlp.tokens, mlp.hidden, mlp.ffn, mlp.vocab
    return [s * size for s in (t * h, t * f, t * f, t * h, t * h, t * v, t * v)]


def zero_grads(b: TraceBuilder, mlp: Mlp) -> GpuActivity:
    """`aten::zero_` > `aten::fill_` of the flat fp32 gradient buffer (all parameters)."""
    with b.op("aten::zero_", [[mlp.numel]], ["float"], [""]):
        return b.elementwise("aten::fill_", (mlp.numel,), dtype="fp32")


def train_step(
    b: TraceBuilder,
    mlp: Mlp,
    *,
    first: bool = False,
    sync: str | None = "device",
    pinned: bool = True,
    adam_extra_ns: int = 0,
) -> None:
    """One training step of ``mlp``: zero the gradient buffer (plus one memset on the first
    step), copy the batch, forward, backward, fused AdamW, then ``sync``: "device"
    (`torch.cuda.synchronize()`), "item" (`loss.item()`) or None."""
    t, dt = mlp.tokens, mlp.dtype
    tname = DTYPES[dt][1]
    zero_grads(b, mlp)
    if first:
        with b.op("aten::zero_", [[MIB // 2]], [tname], [""]):
            b.memset(MIB)
    b.to_device((t, 256), dtype=dt, pinned=pinned)
    blocks = [b.memory_event(n) for n in activation_bytes(mlp)]
    seqs = mlp_forward(b, mlp)
    mlp_backward_head(b, mlp, seqs)
    mlp_backward_tail(b, mlp, seqs)
    for block in reversed(blocks):
        b.free(block)
    b.fused_adam(mlp.numel, dur_ns=_mem_ns(b, 28 * mlp.numel) + adam_extra_ns)
    if sync == "device":
        b.sync("device")
    elif sync == "item":
        b.item()


def _fraction(value: float | Fraction | str, what: str, *, upper: int = 1) -> Fraction:
    frac = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    frac = frac.limit_denominator(10_000)
    if not 0 <= frac < upper:
        raise ValueError(f"{what} must be in [0, {upper}), not {value}")
    return frac


def _split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one (larger first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _content_ns(make: Callable[[], TraceBuilder], body: Callable[[TraceBuilder], None]) -> int:
    """How long one step running ``body`` lasts on a fresh builder (GPU idle at its start)."""
    probe = make()
    with probe.step():
        body(probe)
    return probe.steps[0].end_ns - probe.steps[0].start_ns


# ----------------------------------------------------------------------------- scenarios

STEPS: Final = 5


def gpu_idle(idle_frac: float = 0.3, *, name: str = "gpu_idle") -> TraceBuilder:
    """GPU idle for exactly ``idle_frac`` of the GPU span (H100, bf16 MLP, 5 steps).

    Each step runs `train_step` and ends with `torch.cuda.synchronize()`; between steps the
    GPU stays idle (the host loads data, then unprofiled Python) so that idle / span equals
    ``idle_frac`` exactly, where span = [first GPU activity start, last GPU activity end]
    (kernels, memcpy and memset all count as busy, as in HTA) and idle = span - union of
    GPU intervals. The span lies inside the steps window, so idle within the span and idle
    within (span AND steps window) are the same number; ``steps_window`` in the truth also
    counts the host time before the first GPU activity and after the last.

    Truth: ``gpu.idle_ns``, ``gpu.busy_ns``, ``gpu.idle_pct``; ``expect.idle_fraction`` as a
    fraction string. The busy time is padded by at most (q - p) ns for idle_frac = p/q.
    """
    frac = _fraction(idle_frac, "idle_frac")
    timing = Timing()
    host_min = timing.sync_return_ns + timing.op_exit_ns + 3 * timing.op_enter_ns + timing.queue_ns
    probe_gap = 200_000

    def build(gaps: Sequence[int] | None, pad_ns: int) -> TraceBuilder:
        b = TraceBuilder(name=name, timing=timing)
        mlp = Mlp()
        for i in range(STEPS):
            with b.step():
                if i and gaps is not None:
                    b.idle(gaps[i - 1])
                    dataloader_ns = (gaps[i - 1] - host_min) // 4
                else:
                    dataloader_ns = 20_000
                if dataloader_ns > 0:
                    b.dataloader(dataloader_ns)
                last = i == STEPS - 1
                train_step(b, mlp, first=i == 0, adam_extra_ns=pad_ns if last else 0)
        return b

    probe = build([probe_gap] * (STEPS - 1), 0)
    busy, idle = probe.truth()["gpu"]["busy_ns"], probe.truth()["gpu"]["idle_ns"]
    natural = idle - (STEPS - 1) * probe_gap
    den = frac.denominator - frac.numerator
    pad = -busy % den
    target = (busy + pad) * frac.numerator // den
    gaps = _split(target - natural, STEPS - 1)
    if min(gaps) < host_min:
        raise ValueError(
            f"idle_frac {idle_frac} is too small: each of the {STEPS - 1} gaps between steps "
            f"needs at least {host_min} ns of host work, got {min(gaps)}"
        )
    b = build(gaps, pad)
    gpu = b.truth()["gpu"]
    if gpu["busy_ns"] != busy + pad or gpu["idle_ns"] != target:
        raise AssertionError(f"{name}: idle {gpu['idle_ns']} != {target}")
    b.description = gpu_idle.__doc__ or ""
    b.params = {"idle_frac": float(frac)}
    b.expect = {
        "idle_fraction": f"{frac.numerator}/{frac.denominator}",
        "idle_ns": target,
        "busy_ns": busy + pad,
        "span_ns": target + busy + pad,
        "idle_pct": 100.0 * float(frac),
        "gaps_between_steps_ns": gaps,
        "natural_idle_in_steps_ns": natural,
    }
    return b


def train_idle30() -> TraceBuilder:
    """The README sample: `gpu_idle(0.30)` named ``train_idle30``.

    H100, 5 ProfilerSteps of a bf16 MLP training step: GEMMs on `aten::linear` >
    `aten::addmm` (nvjet and sm90 kernels) and `aten::mm`, `aten::layer_norm`,
    `aten::gelu`, `aten::add`, `aten::mul`, `aten::softmax`, their backward, a fused AdamW,
    one pinned HtoD copy per step, one memset (first step), `[memory]` events, a DataLoader
    fetch per step and a `cudaDeviceSynchronize` ending each step. GPU idle is exactly 30% of
    [first GPU activity start, last GPU activity end].
    """
    b = gpu_idle(0.3, name="train_idle30")
    b.description = train_idle30.__doc__ or ""
    return b


def _steady_train(name: str, mem_frac: Fraction, description: str) -> TraceBuilder:
    """5 GPU-bound steps without host synchronization; the host is paced to 97% of each
    step's GPU time so the queue never runs dry. The allocator peaks at ``mem_frac`` of the
    device's memory (a resident block for weights and optimizer state, plus activations)."""
    b = TraceBuilder(name=name, description=description)
    mlp = Mlp()
    total = Fraction(b.props.total_mem_bytes)
    resident = int((total * mem_frac - sum(activation_bytes(mlp))) // 512) * 512
    for i in range(STEPS):
        with b.step():
            start, first_act = b.now_ns, len(b.gpu)
            if i == 0:
                b.memory_event(resident)
            b.dataloader(5_000)
            train_step(b, mlp, first=i == 0, sync=None)
            gpu_ns = sum(a.dur_ns for a in b.gpu[first_act:])
            b.cpu(max(0, gpu_ns * 97 // 100 - (b.now_ns - start) - b.timing.op_exit_ns))
    b.params = {"mem_frac": float(mem_frac)}
    return b


def healthy() -> TraceBuilder:
    """A clean run where no rule should fire.

    H100, 5 steps of the bf16 MLP (tensor-core GEMMs dominate; large grids except the GEMMs'
    persistent/tiled grids of one block per SM or more), no host synchronization, host paced
    just ahead of the GPU (GPU idle < 1% of its span), one 2 MiB pinned HtoD copy per step,
    DataLoader under 1% of the step, steps of equal length, single rank, allocator peak at
    70% of device memory (between the 50% "room for a larger batch" and 90% "pressure"
    marks). GEMM kernels report 0% occupancy, as Kineto does for kernels needing more than
    48 KiB of shared memory; a low-occupancy rule must not count those.
    """
    b = _steady_train("healthy", Fraction(7, 10), healthy.__doc__ or "")
    t = b.truth()
    b.expect = {
        "fires": [],
        "gpu_idle_pct": t["gpu"]["idle_pct"],
        "peak_allocated_pct": t["memory"]["devices"]["0"]["peak_allocated_pct"],
        "dataloader_share_pct": t["dataloader"]["share_of_steps_pct"],
    }
    return b


def memory_pressure(frac: float = 0.95) -> TraceBuilder:
    """`[memory]` events whose Total Allocated peaks at ``frac`` of totalGlobalMem.

    The healthy workload with a resident allocation sized so that resident + activations =
    ``frac`` x total memory (rounded down to 512 bytes). Truth: ``memory.devices["0"]``
    peak_allocated_bytes / peak_reserved_bytes (reserved grows in 2 MiB segments) and their
    percentages of ``memory.total_mem_bytes``.
    """
    b = _steady_train("memory_pressure", _fraction(frac, "frac"), memory_pressure.__doc__ or "")
    mem = b.truth()["memory"]["devices"]["0"]
    b.expect = {
        "peak_allocated_bytes": mem["peak_allocated_bytes"],
        "peak_allocated_pct": mem["peak_allocated_pct"],
        "peak_reserved_pct": mem["peak_reserved_pct"],
    }
    return b


def small_grids(grid_x: int = 16) -> TraceBuilder:
    """Most kernel time in kernels whose grid has fewer blocks than the GPU has SMs.

    Per step: three `aten::sum` row reductions launched with ``grid_x`` blocks of 256 threads
    (each lasting 20 us x max(1, 132 / grid_x): only grid_x SMs work), one large GEMM, then
    `loss.item()`. With the default 16 blocks, 16 of 132 SMs are used. Truth:
    ``occupancy.small_grid_share_pct`` (kernels with grid blocks < numSms), per-kernel grids.
    """
    b = TraceBuilder(name="small_grids", description=small_grids.__doc__ or "")
    dur = 20_000 * max(1, math.ceil(b.props.num_sms / grid_x))
    for _ in range(STEPS):
        with b.step():
            for _ in range(3):
                simple_op(
                    b, "aten::sum", [[grid_x * 64, 65536], [], [], []],
                    ["float", "ScalarList", "Scalar", ""],
                    "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, "
                    "at::native::func_wrapper_t<float, at::native::sum_functor<float, float, "
                    "float>::operator()(at::TensorIterator&)::{lambda(float, float)#1}>, "
                    "unsigned int, float, 4> >(at::native::ReduceOp<float, "
                    "at::native::func_wrapper_t<float, at::native::sum_functor<float, float, "
                    "float>::operator()(at::TensorIterator&)::{lambda(float, float)#1}>, "
                    "unsigned int, float, 4>)",
                    dur, (grid_x, 1, 1), (256, 1, 1), registers=32, shared_mem=4112,
                    label="reduction", flops=grid_x * 64 * 65536,
                    nbytes=grid_x * 64 * 65536 * 4,
                )  # fmt: skip
            b.gemm(4096, 4096, 4096, op="aten::mm")
            b.item()
    b.params = {"grid_x": grid_x}
    occ = b.truth()["occupancy"]
    b.expect = {
        "small_grid_share_pct": occ["small_grid_share_pct"],
        "small_grid_kernels": occ["small_grid_kernels"],
        "blocks_per_sm": round(grid_x / b.props.num_sms, 6),
    }
    return b


def low_occupancy(registers: int = 255) -> TraceBuilder:
    """Most kernel time in non-GEMM kernels with low achieved occupancy.

    Per step: four layer-norm backward kernels (`GammaBetaBackwardCUDAKernel`, 256 threads,
    grid 32 blocks per SM, 100 us each) using ``registers`` registers per thread, one GEMM,
    then `loss.item()`. At 255 registers a warp takes 8192 registers, so one 8-warp block
    fits per SM: occupancy 256 / 2048 = 12.5%, reported as 13. At 32 registers 8 blocks fit
    (the 2048-thread limit): 100%. Truth: ``expect.kernel_occupancy_pct`` and the share of
    kernel time in those kernels.
    """
    b = TraceBuilder(name="low_occupancy", description=low_occupancy.__doc__ or "")
    grid = (32 * b.props.num_sms, 1, 1)
    for _ in range(STEPS):
        with b.step():
            for _ in range(4):
                layer_norm_backward(b, 8192, 8192, registers=registers, dur_ns=100_000, grid=grid)
            b.gemm(4096, 4096, 4096, op="aten::mm")
            b.item()
    norm = [a for a in b.gpu if a.label == "norm"]
    kernel_ns = sum(a.dur_ns for a in b.gpu if a.kind == "kernel")
    b.params = {"registers": registers}
    b.expect = {
        "kernel_occupancy_pct": norm[0].args["est. achieved occupancy %"],
        "low_occupancy_kernel_share_pct": 100.0 * sum(a.dur_ns for a in norm) / kernel_ns,
        "max_active_blocks_per_sm": max_active_blocks(
            b.props, KernelShape(grid, (32, 8, 1), registers)
        ),
    }
    return b


def small_batch_gemm(m: int = 8) -> TraceBuilder:
    """bf16 GEMMs with a small M (a small batch): memory-bound, far below tensor peak.

    Per step: eight `aten::mm` [m, 4096] x [4096, 4096] in bf16 (nvjet kernels), then
    `loss.item()`. FLOPs 2 x m x 4096 x 4096; bytes (m x 4096 + 4096 x 4096 + m x 4096) x 2;
    duration max(FLOPs / (60% of 989.4 TFLOP/s), bytes / (80% of 3.35 TB/s)). At m = 8 the
    arithmetic intensity is ~8 FLOP/byte (H100 ridge ~295): memory-bound. At m = 4096 it is
    ~1365: compute-bound. Truth: ``expect`` FLOPs, bytes, intensity, bound, and ``ops``.
    """
    b = TraceBuilder(name="small_batch_gemm", description=small_batch_gemm.__doc__ or "")
    kernel = "nvjet_small" if m <= 64 else "nvjet"
    n = k = 4096
    for _ in range(STEPS):
        with b.step():
            for _ in range(8):
                b.gemm(m, n, k, op="aten::mm", kernel=kernel)
            b.item()
    flops = 2 * m * n * k
    nbytes = (m * k + k * n + m * n) * 2
    ridge = b.props.tensor_tflops * 1e12 / (b.props.mem_bw_gbs * 1e9)
    b.params = {"m": m, "n": n, "k": k, "dtype": "bf16"}
    b.expect = {
        "gemm_flops": flops,
        "gemm_bytes": nbytes,
        "intensity_flop_per_byte": flops / nbytes,
        "ridge_flop_per_byte": ridge,
        "bound": "memory" if flops / nbytes < ridge else "compute",
        "gemm_count": 8 * STEPS,
    }
    return b


def launch_bound(
    kernel_dur_ns: Sequence[int] = (3_000, 4_000, 5_000), kernels_per_step: int = 400
) -> TraceBuilder:
    """Thousands of tiny kernels: the host spends longer launching than the GPU computing.

    Per step: ``kernels_per_step`` `aten::add` on [256] bf16 tensors, each launched by a
    7 us `cudaLaunchKernel` (plus 2 us op entry, 1 us exit), kernels lasting
    ``kernel_dur_ns`` in turn (3, 4, 5 us); then `loss.item()`. The GPU idles between
    kernels. Truth: ``expect.launch_ns`` (sum of cudaLaunchKernel durations) vs
    ``expect.gpu_busy_ns``.
    """
    b = TraceBuilder(
        name="launch_bound", description=launch_bound.__doc__ or "", timing=Timing(launch_ns=7_000)
    )
    i = 0
    for _ in range(STEPS):
        with b.step():
            for _ in range(kernels_per_step):
                b.elementwise("aten::add", (256,), dur_ns=kernel_dur_ns[i % len(kernel_dur_ns)])
                i += 1
            b.item()
    t = b.truth()
    b.params = {"kernel_dur_ns": list(kernel_dur_ns), "kernels_per_step": kernels_per_step}
    b.expect = {
        "kernels": t["counts"]["kernels"],
        "launch_ns": t["runtime"]["cudaLaunchKernel"]["dur_ns"],
        "gpu_busy_ns": t["gpu"]["busy_ns"],
        "kernel_sum_ns": t["gpu"]["kernel_sum_ns"],
        "gpu_idle_pct": t["gpu"]["idle_pct"],
    }
    return b


def host_sync(syncs_per_step: int = 6) -> TraceBuilder:
    """Host synchronization stalling the GPU inside each step.

    Per step, ``syncs_per_step`` times: a `aten::linear` layer, then one of (in turn)
    `cudaStreamSynchronize`, `loss.item()` (`aten::item` > `aten::_local_scalar_dense` >
    `cudaMemcpyAsync` DtoH + `cudaStreamSynchronize`), `cudaDeviceSynchronize`, and
    `aten::item` with a blocking `cudaMemcpy` DtoH to pageable memory; then 30 us of Python
    before the next launch, during which the GPU is idle. With 0 the step has no sync at all.
    Truth: ``syncs`` (calls by name, ``gpu_idle_after_sync_ns``: GPU gaps containing a sync
    call's end).
    """
    b = TraceBuilder(name="host_sync", description=host_sync.__doc__ or "")
    kinds = ("stream", "item", "device", "blocking")
    for _ in range(STEPS):
        with b.step():
            b.dataloader(10_000)
            b.to_device((4096, 256))
            if not syncs_per_step:
                for _ in range(6):
                    b.gemm(4096, 4096, 1024, op="aten::linear")
            for j in range(syncs_per_step):
                b.gemm(4096, 4096, 1024, op="aten::linear")
                kind = kinds[j % len(kinds)]
                if kind in ("stream", "device"):
                    b.sync(kind)
                else:
                    b.item(blocking_memcpy=kind == "blocking")
                b.cpu(30_000)
    t = b.truth()
    b.params = {"syncs_per_step": syncs_per_step}
    b.expect = {
        "sync_calls": t["syncs"]["count"],
        "calls": t["syncs"]["calls"],
        "gpu_idle_after_sync_ns": t["syncs"]["gpu_idle_after_sync_ns"],
        "gpu_idle_pct": t["gpu"]["idle_pct"],
    }
    return b


def pageable_memcpy(pageable: bool = True) -> TraceBuilder:
    """HtoD copies from pageable host memory (the driver stages them; the call blocks).

    Per step: `aten::to` of an 8 MiB bf16 batch ([4096, 1024]) from pageable memory at
    10 GB/s (`Memcpy HtoD (Pageable -> Device)`, the `cudaMemcpyAsync` call blocking until
    the copy ends), then a train step. With ``pageable=False`` the batch is pinned (25 GB/s,
    asynchronous). Truth: ``memcpy.by_name``.
    """
    b = TraceBuilder(name="pageable_memcpy", description=pageable_memcpy.__doc__ or "")
    mlp = Mlp()
    for i in range(STEPS):
        with b.step():
            b.dataloader(20_000)
            b.to_device((4096, 1024), pinned=not pageable)
            train_step(b, mlp, first=i == 0, sync="item")
    t = b.truth()
    name = "Memcpy HtoD (Pageable -> Device)"
    row = t["memcpy"]["by_name"].get(name, {"count": 0, "bytes": 0, "dur_ns": 0})
    b.params = {"pageable": pageable}
    b.expect = {"pageable_copies": row["count"], "pageable_bytes": row["bytes"]}
    return b


def small_memcpy(copies_per_step: int = 100, nbytes: int = 64) -> TraceBuilder:
    """Hundreds of tiny host-to-device copies (e.g. `torch.tensor(list).cuda()` per item).

    Per step: ``copies_per_step`` pinned HtoD copies of ``nbytes`` (int64 tensors of
    nbytes / 8 elements) through `aten::to`, each a 6 us `cudaMemcpyAsync` and a 1.2 us
    copy, then a train step. Truth: ``expect.copies``, ``expect.copy_bytes``.
    """
    b = TraceBuilder(name="small_memcpy", description=small_memcpy.__doc__ or "")
    mlp = Mlp()
    for i in range(STEPS):
        with b.step():
            for _ in range(copies_per_step):
                b.to_device((max(1, nbytes // 8),), dtype="int64", dur_ns=1_200)
            train_step(b, mlp, first=i == 0, sync="item")
    b.params = {"copies_per_step": copies_per_step, "nbytes": nbytes}
    b.expect = {"copies": copies_per_step * STEPS, "copy_bytes": nbytes}
    return b


def fp32_gemm(dtype: str = "fp32") -> TraceBuilder:
    """GEMMs in FP32 on the CUDA cores of an A100 while tensor cores sit unused.

    A100-SXM4-80GB (108 SMs). Per step: six `aten::mm` [2048, 2048] x [2048, 2048] with
    `Input type` float, kernels `ampere_sgemm_128x64_tn`, `ampere_sgemm_32x32_sliced1x4_tn`
    and `cutlass_80_simt_sgemm` in turn (70% of the 19.5 TFLOP/s FP32 peak), an `aten::add`,
    then `loss.item()`. With ``dtype="bf16"`` the same GEMMs run as `ampere_bf16_s16816gemm`
    tensor-core kernels (60% of 312). Truth: ``kernels_by_label.gemm`` and ``ops``.
    """
    b = TraceBuilder(A100.name, name="fp32_gemm", description=fp32_gemm.__doc__ or "")
    kernels = (
        ("ampere_sgemm", "ampere_sgemm_sliced", "cutlass_simt")
        if dtype == "fp32"
        else ("ampere_bf16",)
    )
    eff = 0.7 if dtype == "fp32" else 0.6
    i = 0
    for _ in range(STEPS):
        with b.step():
            for _ in range(6):
                b.gemm(
                    2048, 2048, 2048, dtype=dtype, kernel=kernels[i % len(kernels)], efficiency=eff
                )
                i += 1
            b.elementwise("aten::add", (2048, 2048), dtype=dtype)
            b.item()
    t = b.truth()
    b.params = {"dtype": dtype}
    b.expect = {
        "gemm_ns": t["kernels_by_label"]["gemm"]["dur_ns"],
        "gemm_share_pct": 100.0
        * t["kernels_by_label"]["gemm"]["dur_ns"]
        / t["gpu"]["kernel_sum_ns"],
        "tensor_core": dtype != "fp32",
    }
    return b


def dataloader_stall(frac: float = 0.3) -> TraceBuilder:
    """The DataLoader's `__next__` takes exactly ``frac`` of every step.

    Each step (fixed length S) fetches a batch (`enumerate(DataLoader)#_MultiProcessing
    DataLoaderIter.__next__`, S x frac) while the GPU waits, then runs a train step ending
    with `loss.item()`, then pads to S with unprofiled host time (under q ns for frac = p/q).
    Truth: per-step ``dataloader_ns`` and ``dur_ns``; ``dataloader.share_of_steps_pct``.
    """
    share = _fraction(frac, "frac")
    mlp = Mlp()

    def make() -> TraceBuilder:
        return TraceBuilder(name="dataloader_stall", description=dataloader_stall.__doc__ or "")

    content = max(
        _content_ns(make, lambda x: train_step(x, mlp, first=True, sync="item")),
        _content_ns(make, lambda x: train_step(x, mlp, sync="item")),
    )
    p, q = share.numerator, share.denominator
    step_ns = math.ceil(math.ceil(content * q / (q - p)) / q) * q
    loader_ns = step_ns * p // q
    b = make()
    for i in range(STEPS):
        with b.step(dur_ns=step_ns):
            if loader_ns:
                b.dataloader(loader_ns)
            train_step(b, mlp, first=i == 0, sync="item")
    b.params = {"frac": float(share)}
    b.expect = {
        "step_ns": step_ns,
        "dataloader_ns_per_step": loader_ns,
        "dataloader_share_pct": 100.0 * float(share),
    }
    return b


def cold_start(factor: float = 3.0) -> TraceBuilder:
    """The first step lasts exactly ``factor`` times the median step (6 steps).

    Steps 1-5 each last D (a train step ending with `loss.item()`, padded to D); step 0
    lasts factor x D and, when there is room, also shows what cold starts do: eight 40 us
    `cudaMalloc` calls and four extra fc1-shaped GEMMs (cuBLAS trying algorithms), the rest
    unprofiled host time (lazy initialization). Truth: ``expect.first_step_ns``,
    ``expect.median_step_ns``.
    """
    ratio = _fraction(factor, "factor", upper=1_000)
    mlp = Mlp()
    steps = 6

    def make() -> TraceBuilder:
        return TraceBuilder(name="cold_start", description=cold_start.__doc__ or "")

    def warmup(x: TraceBuilder) -> None:
        for _ in range(8):
            x.runtime_call("cudaMalloc", 40_000)
        for _ in range(4):
            x.gemm(mlp.tokens, mlp.ffn, mlp.hidden, op="aten::mm")

    def first(x: TraceBuilder) -> None:
        warmup(x)
        train_step(x, mlp, first=True, sync="item")

    normal = max(
        _content_ns(make, lambda x: train_step(x, mlp, first=True, sync="item")),
        _content_ns(make, lambda x: train_step(x, mlp, sync="item")),
    )
    den = ratio.denominator
    step_ns = math.ceil(normal / den) * den
    first_ns = int(step_ns * ratio)
    with_warmup = _content_ns(make, first) <= first_ns
    b = make()
    for i in range(steps):
        with b.step(dur_ns=first_ns if i == 0 else step_ns):
            if i == 0 and with_warmup:
                warmup(b)
            train_step(b, mlp, first=i == 0, sync="item")
    b.params = {"factor": float(ratio)}
    b.expect = {
        "first_step_ns": first_ns,
        "median_step_ns": step_ns,
        "ratio": float(ratio),
        "warmup_work": with_warmup,
    }
    return b


def step_variance(cv: float = 0.25) -> TraceBuilder:
    """Step times with a coefficient of variation of exactly ``cv`` (8 steps).

    Steps alternate long and short batches: GPU work scaled by (1 + cv) and (1 - cv), each
    step padded to M x (1 + cv) or M x (1 - cv). Population standard deviation / mean =
    ``cv`` exactly; the sample (n - 1) CV is cv x sqrt(8 / 7). Truth: per-step ``dur_ns``,
    ``expect.cv_population``, ``expect.cv_sample``.
    """
    spread = _fraction(cv, "cv")
    mlp = Mlp()
    steps = 8
    p, q = spread.numerator, spread.denominator
    scales = (1 + spread, 1 - spread)

    def make(scale: Fraction = Fraction(1)) -> TraceBuilder:
        return TraceBuilder(
            name="step_variance", description=step_variance.__doc__ or "", compute_scale=scale
        )

    contents = [
        max(
            _content_ns(lambda s=s: make(s), lambda x: train_step(x, mlp, first=True, sync="item")),  # type: ignore[misc]
            _content_ns(lambda s=s: make(s), lambda x: train_step(x, mlp, sync="item")),  # type: ignore[misc]
        )
        for s in scales
    ]
    mean = max(math.ceil(contents[0] * q / (q + p)), math.ceil(contents[1] * q / (q - p)))
    mean = math.ceil(mean / q) * q
    durations = [mean * (q + p) // q, mean * (q - p) // q]
    b = make()
    for i in range(steps):
        b.compute_scale = scales[i % 2]
        with b.step(dur_ns=durations[i % 2]):
            train_step(b, mlp, first=i == 0, sync="item")
    b.compute_scale = Fraction(1)
    b.params = {"cv": float(spread)}
    b.expect = {
        "mean_step_ns": mean,
        "step_ns": [durations[i % 2] for i in range(steps)],
        "cv_population": float(spread),
        "cv_sample": float(spread) * math.sqrt(steps / (steps - 1)),
    }
    return b


def memory_bound_elementwise(
    elementwise_share: float = 0.8, bandwidth_pct: float = 20.0
) -> TraceBuilder:
    """Most GPU time in elementwise kernels running at a low share of HBM bandwidth.

    Per step: two `aten::mm` [4096, 4096] x [4096, 4096] bf16 GEMMs, then n `aten::add` /
    `aten::mul` on [4096, 4096] bf16 tensors (3 x 32 MiB moved each) at ``bandwidth_pct``%
    of 3.35 TB/s, n chosen so elementwise time is about ``elementwise_share`` of kernel
    time; then `loss.item()`. Truth: ``expect.elementwise_share_pct`` (actual),
    ``expect.achieved_bw_pct``.
    """
    share = _fraction(elementwise_share, "elementwise_share")
    b = TraceBuilder(
        name="memory_bound_elementwise", description=memory_bound_elementwise.__doc__ or ""
    )
    frac = bandwidth_pct / 100
    shape = (4096, 4096)
    nbytes = 3 * math.prod(shape) * 2
    op_ns = _mem_ns(b, nbytes, frac)
    probe = TraceBuilder(name="probe")
    gemm_ns = probe.gemm(4096, 4096, 4096).dur_ns * 2
    count = max(0, round(gemm_ns * share / (1 - share) / op_ns))
    for _ in range(STEPS):
        with b.step():
            b.gemm(4096, 4096, 4096)
            b.gemm(4096, 4096, 4096)
            for j in range(count):
                b.elementwise(("aten::add", "aten::mul")[j % 2], shape, bw_frac=frac)
            b.item()
    t = b.truth()
    elem = t["kernels_by_label"].get("elementwise", {"dur_ns": 0, "count": 0})
    b.params = {"elementwise_share": float(share), "bandwidth_pct": bandwidth_pct}
    b.expect = {
        "elementwise_share_pct": 100.0 * elem["dur_ns"] / t["gpu"]["kernel_sum_ns"],
        "elementwise_kernels": elem["count"],
        "achieved_bw_pct": 100.0 * nbytes / op_ns / b.props.mem_bw_gbs,
        "bytes_per_kernel": nbytes,
    }
    return b


def comm_heavy(world_size: int = 2, bucket_ns: tuple[int, int] = (200_000, 120_000)) -> RankedTrace:
    """Data-parallel training where NCCL all-reduce takes a large, partly exposed share.

    ``world_size`` ranks (one H100 each) run the bf16 MLP in lockstep. DDP's first gradient
    bucket (logits + fc2, bf16) is all-reduced on stream 20 while the rest of the backward
    runs on stream 7 (overlapped); the second bucket (fc1 + layer norm) after the backward
    (exposed); the optimizer waits for both (`cudaStreamWaitEvent`). Transfers last
    ``bucket_ns``. Per rank, truth ``comm``: kernel_ns, exposed_ns (comm time not overlapped
    by any compute kernel), overlapped_ns; ``expect.comm_share_of_step_pct``.
    """
    ranks = [
        TraceBuilder(rank=r, world_size=world_size, name="comm_heavy") for r in range(world_size)
    ]
    mlp = Mlp()
    first_bucket, second_bucket = mlp.bucket_nelems
    for _ in range(STEPS):
        with lockstep_step(ranks):
            seqs = {}
            for b in ranks:
                b.dataloader(20_000)
                seqs[b.rank] = _dp_forward(b, mlp)
                mlp_backward_head(b, mlp, seqs[b.rank])
                b.wait_stream(COMM_STREAM, COMPUTE_STREAM)
            lockstep_collective(ranks, "allreduce", first_bucket, bucket_ns[0])
            for b in ranks:
                mlp_backward_tail(b, mlp, seqs[b.rank])
                b.wait_stream(COMM_STREAM, COMPUTE_STREAM)
            lockstep_collective(ranks, "allreduce", second_bucket, bucket_ns[1])
            for b in ranks:
                _dp_optimizer(b, mlp)
    trace = RankedTrace("comm_heavy", comm_heavy.__doc__ or "", ranks)
    trace.params = {"world_size": world_size, "bucket_ns": list(bucket_ns)}
    per_rank = [b.truth() for b in ranks]
    steps_ns = sum(s["dur_ns"] for s in per_rank[0]["steps"])
    trace.expect = {
        "comm_ns": per_rank[0]["comm"]["kernel_ns"],
        "exposed_ns": per_rank[0]["comm"]["exposed_ns"],
        "overlapped_ns": per_rank[0]["comm"]["overlapped_ns"],
        "comm_share_of_step_pct": 100.0 * per_rank[0]["comm"]["kernel_ns"] / steps_ns,
        "exposed_share_of_step_pct": 100.0 * per_rank[0]["comm"]["exposed_ns"] / steps_ns,
        "collectives_per_rank": 2 * STEPS,
    }
    return trace


def _dp_forward(b: TraceBuilder, mlp: Mlp) -> dict[str, int | None]:
    zero_grads(b, mlp)
    b.to_device((mlp.tokens, 256), dtype=mlp.dtype)
    return mlp_forward(b, mlp)


def _dp_optimizer(b: TraceBuilder, mlp: Mlp) -> None:
    b.wait_stream(COMPUTE_STREAM, COMM_STREAM)
    b.fused_adam(mlp.numel)
    b.item()


def straggler(world_size: int = 4, slow_rank: int = 2, slowdown: float = 0.25) -> RankedTrace:
    """One rank computes ``slowdown`` slower; the others wait for it inside the all-reduce.

    ``world_size`` ranks run the bf16 MLP; rank ``slow_rank``'s compute kernels last
    (1 + slowdown) x as long (a throttled GPU). After the backward every rank all-reduces
    all gradients (one bucket, 150 us of transfer); the collective ends at the same time on
    every rank, so the fast ranks' NCCL kernels include their wait. Wall-clock step times
    are therefore nearly equal across ranks (as in real synchronous data parallelism); the
    imbalance shows in per-rank compute time and in per-rank wait inside the collective.
    Truth: ``collectives`` (latency = min duration across ranks, wait per rank),
    ``expect.compute_ns_by_rank``, ``expect.wait_ns_by_rank``.
    """
    scale = 1 + _fraction(slowdown, "slowdown", upper=10)
    ranks = [
        TraceBuilder(
            rank=r, world_size=world_size, name="straggler",
            compute_scale=scale if r == slow_rank else Fraction(1),
        )
        for r in range(world_size)
    ]  # fmt: skip
    mlp = Mlp()
    for _ in range(STEPS):
        with lockstep_step(ranks):
            for b in ranks:
                b.dataloader(20_000)
                seqs = _dp_forward(b, mlp)
                mlp_backward_head(b, mlp, seqs)
                mlp_backward_tail(b, mlp, seqs)
                b.wait_stream(COMM_STREAM, COMPUTE_STREAM)
            lockstep_collective(ranks, "allreduce", sum(mlp.bucket_nelems), 150_000)
            for b in ranks:
                _dp_optimizer(b, mlp)
    trace = RankedTrace("straggler", straggler.__doc__ or "", ranks)
    trace.params = {"world_size": world_size, "slow_rank": slow_rank, "slowdown": float(scale - 1)}
    truths = {b.rank: b.truth() for b in ranks}
    colls = cross_rank_collectives(ranks)
    trace.expect = {
        "slow_rank": slow_rank,
        "compute_ns_by_rank": {str(r): t["comm"]["compute_busy_ns"] for r, t in truths.items()},
        "comm_ns_by_rank": {str(r): t["comm"]["kernel_ns"] for r, t in truths.items()},
        "wait_ns_by_rank": {
            str(r): sum(c["wait_ns_by_rank"][str(r)] for c in colls) for r in truths
        },
        "step_ns_by_rank": {str(r): [s["dur_ns"] for s in t["steps"]] for r, t in truths.items()},
    }
    return trace


SCENARIOS: Final[dict[str, Callable[[], TraceBuilder | RankedTrace]]] = {
    "train_idle30": train_idle30,
    "healthy": healthy,
    "gpu_idle": gpu_idle,
    "small_grids": small_grids,
    "low_occupancy": low_occupancy,
    "small_batch_gemm": small_batch_gemm,
    "launch_bound": launch_bound,
    "comm_heavy": comm_heavy,
    "host_sync": host_sync,
    "pageable_memcpy": pageable_memcpy,
    "small_memcpy": small_memcpy,
    "fp32_gemm": fp32_gemm,
    "dataloader_stall": dataloader_stall,
    "straggler": straggler,
    "memory_pressure": memory_pressure,
    "cold_start": cold_start,
    "step_variance": step_variance,
    "memory_bound_elementwise": memory_bound_elementwise,
}


def write_committed_samples(out_dir: Path = HERE) -> list[Path]:
    """Regenerate the committed samples: the README trace and the 2-rank directory."""
    train = train_idle30().write(out_dir / "synthetic_train.json.gz")
    ranks = comm_heavy(world_size=2).write(out_dir / "synthetic_2rank")
    return [train, truth_path(train), ranks, truth_path(ranks)]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: no arguments regenerate the committed samples; ``SCENARIO OUTPUT`` writes one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS))
    parser.add_argument("output", nargs="?", type=Path)
    args = parser.parse_args(argv)
    if args.scenario is None:
        paths = write_committed_samples()
    else:
        if args.output is None:
            parser.error("OUTPUT is required with SCENARIO")
        built = SCENARIOS[args.scenario]()
        paths = [built.write(args.output)]
    for path in paths:
        size = (
            sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size
        )
        print(f"wrote {path} ({size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
