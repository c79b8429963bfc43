"""The scenarios (``SCENARIOS``): each function builds a trace whose answer is known, its
docstring says which; ``main`` writes one or regenerates the committed samples.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Final

from synthetic.builder import (
    RankedTrace,
    TraceBuilder,
    cross_rank_collectives,
    lockstep_collective,
    lockstep_step,
)
from synthetic.records import (
    A100,
    COMM_STREAM,
    COMPUTE_STREAM,
    KernelShape,
    Timing,
    max_active_blocks,
)
from synthetic.truth import truth_path
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

HERE: Final = Path(__file__).resolve().parent.parent


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
    frac = fraction(idle_frac, "idle_frac")
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
    gaps = split(target - natural, STEPS - 1)
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
    b = _steady_train("memory_pressure", fraction(frac, "frac"), memory_pressure.__doc__ or "")
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
    share = fraction(frac, "frac")
    mlp = Mlp()

    def make() -> TraceBuilder:
        return TraceBuilder(name="dataloader_stall", description=dataloader_stall.__doc__ or "")

    content = max(
        content_ns(make, lambda x: train_step(x, mlp, first=True, sync="item")),
        content_ns(make, lambda x: train_step(x, mlp, sync="item")),
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
    ratio = fraction(factor, "factor", upper=1_000)
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
        content_ns(make, lambda x: train_step(x, mlp, first=True, sync="item")),
        content_ns(make, lambda x: train_step(x, mlp, sync="item")),
    )
    den = ratio.denominator
    step_ns = math.ceil(normal / den) * den
    first_ns = int(step_ns * ratio)
    with_warmup = content_ns(make, first) <= first_ns
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
    spread = fraction(cv, "cv")
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
            content_ns(lambda s=s: make(s), lambda x: train_step(x, mlp, first=True, sync="item")),  # type: ignore[misc]
            content_ns(lambda s=s: make(s), lambda x: train_step(x, mlp, sync="item")),  # type: ignore[misc]
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
    share = fraction(elementwise_share, "elementwise_share")
    b = TraceBuilder(
        name="memory_bound_elementwise", description=memory_bound_elementwise.__doc__ or ""
    )
    frac = bandwidth_pct / 100
    shape = (4096, 4096)
    nbytes = 3 * math.prod(shape) * 2
    op_ns = mem_ns(b, nbytes, frac)
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
    scale = 1 + fraction(slowdown, "slowdown", upper=10)
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
