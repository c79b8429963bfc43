"""Scenarios for step accounting and the idle ledger, each with its ground truth recorded
from the builder's own records (`synthetic.TraceBuilder`), never from the analyzer.

- `queued_before_profiling`: a warm-up step the profiler never saw left GPU work queued; the
  first profiled step waits for it in a `cudaDeviceSynchronize`; the profiled steps are equal.
- `pipelined`: the host runs ahead of the GPU by more than one step, steps of equal work (no
  cold start, no step variance).
- `real_cold_start`: the first step's own GPU work is slower (autotuning GEMMs).
- `pageable_stall`: five blocking 704-byte device-to-host copies into pageable memory that
  each freeze the main thread behind a long kernel.
- `held_by_event_wait`: kernels launched behind a ``cudaStreamWaitEvent`` on work the trace
  does not hold; a small blocking copy queued behind them waits for them (SGLang's overlap
  scheduler captured mid-pipeline): the idle is the dependency's, not the copy's.
- `overlapping_causes`: a `.item()`-style sync inside the DataLoader: idle time that a naive
  host-sync rule and a naive DataLoader rule would both claim.

``expect["ledger"]`` is the idle ledger computed here by plain interval arithmetic over the
builder's GPU activities, runtime calls and CPU events, with the analyzer's documented
precedence (`ledger`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synthetic import COMM_STREAM, COMPUTE_STREAM, H100, TraceBuilder

Interval = tuple[int, int]
LAUNCH_GAP_NS = 30_000
PENDING_SLACK_NS = 50_000


# ----------------------------------------------------------------------------- reference ledger


def merge(intervals: Sequence[Interval]) -> list[Interval]:
    """The union of ``intervals`` (empty ones dropped), sorted."""
    out: list[Interval] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def gaps(busy: Sequence[Interval], lo: int, hi: int) -> list[tuple[int, int, bool]]:
    """Idle gaps of [lo, hi) around ``busy``: (start, end, interior: between two GPU ops)."""
    merged = merge([(max(s, lo), min(e, hi)) for s, e in busy if e > lo and s < hi])
    out = []
    cursor = lo
    for s, e in merged:
        if s > cursor:
            out.append((cursor, s, cursor != lo))
        cursor = max(cursor, e)
    if hi > cursor:
        out.append((cursor, hi, False))
    return out


def ledger(
    idle: Sequence[tuple[int, int, bool]], causes: Sequence[tuple[str, Sequence[Interval]]]
) -> dict[str, int]:
    """Idle ns per cause: each idle ns to the first of ``causes`` (in order) covering it;
    the name ``launch_overhead`` (intervals ignored) stands for interior gaps shorter than
    30 us, and ``dependency_wait`` holds only in gaps of 30 us or more. The rest is
    ``other``; causes with no time are left out."""
    out: dict[str, int] = {}
    for gs, ge, interior in idle:
        remaining = [(gs, ge)]
        for name, intervals in causes:
            if name == "launch_overhead":
                hit = [(gs, ge)] if interior and ge - gs < LAUNCH_GAP_NS else []
            elif name == "dependency_wait" and ge - gs < LAUNCH_GAP_NS:
                hit = []  # microsecond gaps in a full queue are the GPU's own scheduling
            else:
                hit = merge(list(intervals))
            left: list[Interval] = []
            taken = 0
            for rs, re_ in remaining:
                cursor = rs
                for hs, he in hit:
                    s, e = max(rs, hs), min(re_, he)
                    if e <= s:
                        continue
                    if s > cursor:
                        left.append((cursor, s))
                    taken += e - s
                    cursor = e
                if cursor < re_:
                    left.append((cursor, re_))
            out[name] = out.get(name, 0) + taken
            remaining = left
        out["other"] = out.get("other", 0) + sum(e - s for s, e in remaining)
    return {k: v for k, v in out.items() if v}


def builder_ledger(b: TraceBuilder, queued_until: int | None = None) -> dict[str, int]:
    """The ledger of a one-device, one-thread builder trace from its own records.

    Window: first step start to the later of the last step's end and the last GPU end.
    Causes, in the analyzer's order: launched GPU work not yet started more than 50 us
    after its launch call returned (held by a dependency), the wait before the first
    launched GPU op (when work was queued before profiling: ``queued_until``), syncs and
    reads inside ``aten::_local_scalar_dense``, other blocking copies (``cudaMemcpy``,
    pageable async), the DataLoader, launch gaps, CPU ops (``cpu_op`` events, in gaps they
    cover at least half of), other.
    """
    busy = [(a.start_ns, a.end_ns) for a in b.gpu]
    lo = b.steps[0].start_ns
    hi = max(b.steps[-1].end_ns, max(e for _, e in busy))
    pageable = {a.correlation for a in b.gpu if a.kind == "memcpy" and "Pageable" in a.name}
    item = [(e.start_ns, e.end_ns) for e in b.cpu_events if e.name == "aten::_local_scalar_dense"]

    def in_item(s: int, e: int) -> bool:
        return any(i0 <= s and e <= i1 for i0, i1 in item)

    blocking = [
        c
        for c in b.runtime
        if "Synchronize" in c.name
        or c.name == "cudaMemcpy"
        or (c.name == "cudaMemcpyAsync" and c.correlation in pageable)
    ]
    sync = [
        (c.start_ns, c.end_ns)
        for c in blocking
        if "Synchronize" in c.name or in_item(c.start_ns, c.end_ns)
    ]
    copy = [
        (c.start_ns, c.end_ns)
        for c in blocking
        if "Synchronize" not in c.name and not in_item(c.start_ns, c.end_ns)
    ]
    loader = [(e.start_ns, e.end_ns) for e in b.cpu_events if "DataLoader" in e.name]
    ops = [(e.start_ns, e.end_ns) for e in b.cpu_events if e.cat == "cpu_op"]
    idle = gaps(busy, lo, hi)
    # CPU work only in the gaps that CPU ops (not annotations) cover at least half of.
    recorded = [
        (max(s, gs), min(e, ge))
        for gs, ge, _ in idle
        if _overlap([(gs, ge)], ops) >= 0.5 * (ge - gs)
        for s, e in merge(ops)
        if min(e, ge) > max(s, gs)
    ]
    boundary = [(lo, queued_until)] if queued_until is not None else []
    launched = {c.correlation: c.end_ns for c in b.runtime}
    held = [
        (launched[a.correlation] + PENDING_SLACK_NS, a.start_ns)
        for a in b.gpu
        if a.correlation in launched
    ]
    return ledger(
        idle,
        [
            ("dependency_wait", held),
            ("queued_boundary", boundary),
            ("sync_wait", sync),
            ("blocking_copy", copy),
            ("dataloader", loader),
            ("launch_overhead", []),
            ("cpu_work", recorded),
        ],
    )


def _overlap(a: Sequence[Interval], b: Sequence[Interval]) -> int:
    return sum(max(0, min(e1, e2) - max(s1, s2)) for s1, e1 in merge(a) for s2, e2 in merge(b))


def _record(b: TraceBuilder, **expect: Any) -> TraceBuilder:
    """Store the ground truth: the expectations given and the reference ledger."""
    b.expect = {**expect, **b.expect}
    return b


# ----------------------------------------------------------------------------- scenarios


def _equal_step(b: TraceBuilder, kernels: int = 8, kernel_ns: int = 1_000_000) -> None:
    """One step's work: ``kernels`` GEMM-like kernels of ``kernel_ns`` each under ops."""
    for _ in range(kernels):
        with b.op("aten::mm"):
            b.kernel("sm90_xmma_gemm_bf16bf16_bf16f32", kernel_ns, (132, 1, 1), label="gemm")


def queued_before_profiling(queued_kernels: int = 40, steps: int = 5) -> TraceBuilder:
    """Work queued before profiling: a warm-up step (``queued_kernels`` 350 us kernels) is
    launched, then its CPU side is dropped from the trace as if the profiler started after
    it; the first profiled step begins with a `cudaDeviceSynchronize` that waits for that
    queue; every profiled step then runs the same eight 1 ms kernels and a stream sync.

    Truth: ``queued_ops``, ``queued_gpu_ns`` (union of the queued kernels),
    ``first_wait_ns`` (CPU time of the first step inside the sync while the queued work
    ran), ``own_gpu_busy_ns`` per step, ``ledger``.
    """
    b = TraceBuilder(
        name="queued_before_profiling", description=queued_before_profiling.__doc__ or ""
    )
    for _ in range(queued_kernels):
        b.kernel("warmup_kernel", 350_000, (132, 1, 1), label="other")
    warm_calls = len(b.runtime)
    warm_gpu = list(b.gpu)
    b.runtime = b.runtime[warm_calls:]  # the profiler starts now: no launch of them is seen
    b.cpu_events = []
    for i in range(steps):
        with b.step():
            if i == 0:
                b.sync("device")
            _equal_step(b)
            b.sync("stream")
    queued = merge([(a.start_ns, a.end_ns) for a in warm_gpu])
    first = b.steps[0]
    sync0 = next(c for c in b.runtime if c.name == "cudaDeviceSynchronize")
    first_launched = min(a.start_ns for a in b.gpu if a not in warm_gpu)
    own = [sum(a.dur_ns for a in b.gpu if a.step == s.step) for s in b.steps]
    return _record(
        b,
        queued_ops=len(warm_gpu),
        queued_gpu_ns=sum(e - s for s, e in queued),
        first_wait_ns=_overlap([(sync0.start_ns, sync0.end_ns)], queued),
        first_step=first.step,
        own_gpu_busy_ns=own,
        ledger=builder_ledger(b, queued_until=first_launched),
    )


def pipelined(steps: int = 6, host_step_ns: int = 3_000_000) -> TraceBuilder:
    """The host runs ahead: each step launches eight 1 ms kernels and returns after
    ``host_step_ns`` of host time (no sync), so the GPU falls further behind every step
    (by more than a step from the third on); one final sync ends the last step. Steps
    have equal work: no cold start, no step variance.

    Truth: ``own_gpu_busy_ns`` per step (8 ms each), ``gpu_lag_ns`` (how far the GPU end of
    each step's work is after its CPU end), ``ledger``.
    """
    b = TraceBuilder(name="pipelined", description=pipelined.__doc__ or "")
    for i in range(steps):
        with b.step(dur_ns=None if i == steps - 1 else host_step_ns):
            _equal_step(b)
            if i == steps - 1:
                b.sync("device")
    own = [sum(a.dur_ns for a in b.gpu if a.step == s.step) for s in b.steps]
    lag = [max(a.end_ns for a in b.gpu if a.step == s.step) - s.end_ns for s in b.steps]
    return _record(b, own_gpu_busy_ns=own, gpu_lag_ns=lag, ledger=builder_ledger(b))


def real_cold_start(steps: int = 6, factor: int = 3) -> TraceBuilder:
    """The first step's own GPU work is ``factor`` times slower (every kernel: cuBLAS and
    cuDNN trying algorithms), each step ending in a stream sync; later steps are equal.

    Truth: ``own_gpu_busy_ns`` per step, ``first_ratio`` (first step's own time over the
    others'), ``ledger``.
    """
    b = TraceBuilder(name="real_cold_start", description=real_cold_start.__doc__ or "")
    for i in range(steps):
        with b.step():
            _equal_step(b, kernel_ns=1_000_000 * (factor if i == 0 else 1))
            b.sync("stream")
    own = [sum(a.dur_ns for a in b.gpu if a.step == s.step) for s in b.steps]
    cpu = [s.end_ns - s.start_ns for s in b.steps]
    return _record(
        b,
        own_gpu_busy_ns=own,
        cpu_step_ns=cpu,
        first_ratio=cpu[0] / sorted(cpu[1:])[len(cpu[1:]) // 2],
        ledger=builder_ledger(b),
    )


def pageable_stall(
    steps: int = 5, kernel_ns: int = 140_000_000, host_ns: int = 5_000_000
) -> TraceBuilder:
    """Blocking pageable copies stalling the main thread: each step launches a
    ``kernel_ns`` kernel, then copies a 704-byte result to pageable host memory
    (`cudaMemcpyAsync`, synchronous for pageable memory: it returns when the copy is done,
    after the kernel), then runs ``host_ns`` of host work in an op before the next step.

    Truth: ``blocked_ns`` (CPU time in the copy calls), ``copy_gpu_ns`` (their own GPU time),
    ``ledger``.
    """
    b = TraceBuilder(name="pageable_stall", description=pageable_stall.__doc__ or "")
    for _ in range(steps):
        with b.step():
            with b.op("aten::mm"):
                b.kernel("sm90_xmma_gemm_bf16bf16_bf16f32", kernel_ns, (132, 1, 1), label="gemm")
            with b.op("aten::to"), b.op("aten::copy_"):
                b.memcpy("DtoH", 704, 1_500, src_mem="device", dst_mem="pageable")
            with b.annotation("postprocess", dur_ns=host_ns):
                pass
    copies = [c for c in b.runtime if c.name == "cudaMemcpyAsync"]
    return _record(
        b,
        copies=len(copies),
        blocked_ns=sum(c.end_ns - c.start_ns for c in copies),
        copy_gpu_ns=sum(a.dur_ns for a in b.gpu if a.kind == "memcpy"),
        ledger=builder_ledger(b),
    )


def held_by_event_wait(
    steps: int = 4, held_ns: int = 400_000_000, side_stream: int = COMM_STREAM
) -> TraceBuilder:
    """Work held behind an event on work outside the trace: before the first step a
    ``held_ns`` kernel runs on ``side_stream``; the profiler starts after its launch and
    does not hold it (neither the call nor the kernel). The first step makes the compute
    stream wait on it (`cudaEventRecord` + `cudaStreamWaitEvent`), launches three small
    kernels, then a blocking 256-byte device-to-host `cudaMemcpy` that returns only after
    those kernels ran, then its own eight 1 ms kernels and a stream sync; later steps are
    equal steps.

    Truth: ``held_idle_ns`` (idle while launched kernels waited beyond 50 us after their
    launch call), ``copy_blocked_ns`` (CPU time in the copy), ``own_gpu_busy_ns`` per step,
    ``ledger``.
    """
    b = TraceBuilder(name="held_by_event_wait", description=held_by_event_wait.__doc__ or "")
    b.kernel("previous_batch_forward", held_ns, (132, 1, 1), stream=side_stream)
    b.runtime, b.gpu, b.cpu_events = [], [], []  # the profiler starts now
    for i in range(steps):
        with b.step():
            if i == 0:
                b.wait_stream(COMPUTE_STREAM, side_stream)
                for name in ("resolve_future_token_ids_kernel", "clamp_position_kernel"):
                    b.kernel(name, 5_000, (1, 1, 1))
                with b.op("aten::to"), b.op("aten::copy_"):
                    b.memcpy("DtoH", 256, 2_000, sync=True)
            _equal_step(b)
            b.sync("stream")
    busy = [(a.start_ns, a.end_ns) for a in b.gpu]
    lo = b.steps[0].start_ns
    hi = max(b.steps[-1].end_ns, max(e for _, e in busy))
    idle = [(s, e) for s, e, _ in gaps(busy, lo, hi)]
    launched = {c.correlation: c.end_ns for c in b.runtime}
    held = [(launched[a.correlation] + PENDING_SLACK_NS, a.start_ns) for a in b.gpu]
    copy = next(c for c in b.runtime if c.name == "cudaMemcpy")
    own = [sum(a.dur_ns for a in b.gpu if a.step == s.step) for s in b.steps]
    return _record(
        b,
        held_idle_ns=_overlap(idle, held),
        copy_blocked_ns=copy.end_ns - copy.start_ns,
        own_gpu_busy_ns=own,
        ledger=builder_ledger(b),
    )


def overlapping_causes(steps: int = 5, loader_ns: int = 12_000_000) -> TraceBuilder:
    """A `.item()` inside the DataLoader: each step fetches its batch in
    `enumerate(DataLoader)...__next__`, which first reads a device scalar (`aten::item` >
    `aten::_local_scalar_dense` > `cudaMemcpyAsync` + `cudaStreamSynchronize`, waiting for
    the previous step's kernels) and then spends the rest of ``loader_ns`` on host work;
    then four 2 ms kernels. The GPU idle inside the sync is the sync's; the rest of the
    loader's idle is the DataLoader's: a naive host-sync rule (GPU gaps opened by a sync)
    and a naive DataLoader rule (GPU idle during the loader) would both claim it.

    Truth: ``sync_idle_ns`` (idle inside the reads' blocking calls), ``loader_idle_ns``
    (idle inside the loader, those included), ``ledger``.
    """
    b = TraceBuilder(name="overlapping_causes", description=overlapping_causes.__doc__ or "")
    for i in range(steps):
        with b.step():
            with b.annotation(
                "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", dur_ns=loader_ns
            ):
                if i:
                    b.item()
            _equal_step(b, kernels=4, kernel_ns=2_000_000)
    busy = [(a.start_ns, a.end_ns) for a in b.gpu]
    lo = b.steps[0].start_ns
    hi = max(b.steps[-1].end_ns, max(e for _, e in busy))
    idle = [(s, e) for s, e, _ in gaps(busy, lo, hi)]
    syncs = [(c.start_ns, c.end_ns) for c in b.runtime if "Synchronize" in c.name]
    loader = [(e.start_ns, e.end_ns) for e in b.cpu_events if "DataLoader" in e.name]
    return _record(
        b,
        sync_idle_ns=_overlap(idle, syncs),
        loader_idle_ns=_overlap(idle, loader),
        ledger=builder_ledger(b),
    )


SCENARIOS = {
    "queued_before_profiling": queued_before_profiling,
    "pipelined": pipelined,
    "real_cold_start": real_cold_start,
    "pageable_stall": pageable_stall,
    "overlapping_causes": overlapping_causes,
    "held_by_event_wait": held_by_event_wait,
}
assert H100.name  # the builder's default device: an H100
