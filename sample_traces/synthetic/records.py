"""Constants, device properties, kernel shapes, interval arithmetic and the records a
`TraceBuilder` collects (CPU events, runtime calls, GPU activities, steps, collectives).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

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
class Scope:
    cat: str
    name: str
    start_ns: int
    ext_id: int
    args: dict[str, Any]
    ev_idx: int


@dataclass(slots=True)
class IdleMark:
    target_ns: int
    cursor_ns: int
    n_cpu: int
    n_runtime: int
    n_memory: int
    requested_ns: int


def forward_seq(seq: int | None) -> int:
    if seq is None:
        raise ValueError("a backward op needs the sequence number of its forward op")
    return seq
