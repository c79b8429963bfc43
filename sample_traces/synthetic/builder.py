"""`TraceBuilder`: one rank's Kineto trace, built on a host cursor with exact GPU timing; and
`RankedTrace`, several ranks in lockstep (collectives, steps).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from synthetic.catalog import COLLECTIVES, ELEMENTWISE_OPS, GEMM_KERNELS, GemmKernel, copy_bandwidth
from synthetic.records import (
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
    GpuActivity,
    IdleMark,
    KernelShape,
    MemoryEvent,
    RuntimeCall,
    Scope,
    StepRecord,
    Timing,
    contiguous_strides,
    occupancy,
)
from synthetic.truth import compute_truth, truth_path, write_json, write_truth


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
        self._scopes: list[Scope] = []
        self._stream_free: dict[int, int] = defaultdict(int)
        self._stream_floor: dict[int, int] = defaultdict(int)
        self._idle: IdleMark | None = None
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
        scope = Scope(cat, name, self.now_ns, ext, args, self._new_ev_idx())
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

    def _close(self, scope: Scope) -> None:
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
        self._idle = IdleMark(
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

    def _shift_since(self, mark: IdleMark, delta: int) -> None:
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
            rate = bw_gbs or copy_bandwidth(self.props, src, dst)
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
