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

The package: `synthetic.records` (constants, devices, records), `synthetic.catalog`,
`synthetic.builder` (`TraceBuilder`, `RankedTrace`), `synthetic.truth`, `synthetic.workloads`,
`synthetic.scenarios`; everything public is re-exported here, so ``import synthetic`` and
``from synthetic import TraceBuilder`` work as they did when this was one module.

Run ``python sample_traces/synthetic`` to regenerate the committed samples
(``synthetic_train.json.gz`` and the 2-rank directory ``synthetic_2rank/``), or
``python sample_traces/synthetic SCENARIO OUTPUT`` to write any scenario.
"""

from __future__ import annotations

from synthetic.builder import (
    RankedTrace,
    TraceBuilder,
    cross_rank_collectives,
    lockstep_collective,
    lockstep_step,
)
from synthetic.catalog import (
    COLLECTIVES,
    ELEMENTWISE_OPS,
    GEMM_KERNELS,
    CollectiveSpec,
    ElementwiseOp,
    GemmKernel,
    copy_bandwidth,
)
from synthetic.records import (
    A100,
    BASE_TIME_NS,
    CBID,
    COMM_STREAM,
    COMPUTE_STREAM,
    DEVICES,
    DTYPES,
    FIRST_EVENT_OFFSET_NS,
    H100,
    HOST_PID_BASE,
    MIB,
    CollectiveRecord,
    CpuEvent,
    DeviceProps,
    GpuActivity,
    IdleMark,
    KernelShape,
    MemoryEvent,
    RuntimeCall,
    Scope,
    StepRecord,
    Timing,
    clip,
    contiguous_strides,
    forward_seq,
    max_active_blocks,
    merge,
    occupancy,
    subtract_ns,
    union_ns,
)
from synthetic.scenarios import (
    HERE,
    SCENARIOS,
    STEPS,
    cold_start,
    comm_heavy,
    dataloader_stall,
    fp32_gemm,
    gpu_idle,
    healthy,
    host_sync,
    launch_bound,
    low_occupancy,
    main,
    memory_bound_elementwise,
    memory_pressure,
    pageable_memcpy,
    small_batch_gemm,
    small_grids,
    small_memcpy,
    step_variance,
    straggler,
    train_idle30,
    write_committed_samples,
)
from synthetic.truth import (
    SYNC_CALLS,
    compute_truth,
    truth_path,
    write_json,
    write_truth,
)
from synthetic.workloads import (
    Mlp,
    activation_bytes,
    content_ns,
    fraction,
    layer_norm_backward,
    mem_ns,
    mlp_backward_head,
    mlp_backward_tail,
    mlp_forward,
    simple_op,
    split,
    train_step,
    zero_grads,
)

__all__ = [
    "A100",
    "BASE_TIME_NS",
    "CBID",
    "COLLECTIVES",
    "COMM_STREAM",
    "COMPUTE_STREAM",
    "DEVICES",
    "DTYPES",
    "ELEMENTWISE_OPS",
    "FIRST_EVENT_OFFSET_NS",
    "GEMM_KERNELS",
    "H100",
    "HERE",
    "HOST_PID_BASE",
    "MIB",
    "SCENARIOS",
    "STEPS",
    "SYNC_CALLS",
    "CollectiveRecord",
    "CollectiveSpec",
    "CpuEvent",
    "DeviceProps",
    "ElementwiseOp",
    "GemmKernel",
    "GpuActivity",
    "IdleMark",
    "KernelShape",
    "MemoryEvent",
    "Mlp",
    "RankedTrace",
    "RuntimeCall",
    "Scope",
    "StepRecord",
    "Timing",
    "TraceBuilder",
    "activation_bytes",
    "clip",
    "cold_start",
    "comm_heavy",
    "compute_truth",
    "content_ns",
    "contiguous_strides",
    "copy_bandwidth",
    "cross_rank_collectives",
    "dataloader_stall",
    "forward_seq",
    "fp32_gemm",
    "fraction",
    "gpu_idle",
    "healthy",
    "host_sync",
    "launch_bound",
    "layer_norm_backward",
    "lockstep_collective",
    "lockstep_step",
    "low_occupancy",
    "main",
    "max_active_blocks",
    "mem_ns",
    "memory_bound_elementwise",
    "memory_pressure",
    "merge",
    "mlp_backward_head",
    "mlp_backward_tail",
    "mlp_forward",
    "occupancy",
    "pageable_memcpy",
    "simple_op",
    "small_batch_gemm",
    "small_grids",
    "small_memcpy",
    "split",
    "step_variance",
    "straggler",
    "subtract_ns",
    "train_idle30",
    "train_step",
    "truth_path",
    "union_ns",
    "write_committed_samples",
    "write_json",
    "write_truth",
    "zero_grads",
]
