"""Ground truth measured on a built trace (``compute_truth``: GPU busy/idle, steps, copies,
syncs, communication, memory...) and the JSON files that hold traces and truths.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from synthetic.records import GpuActivity, RuntimeCall, clip, merge, subtract_ns, union_ns

if TYPE_CHECKING:
    from synthetic.builder import TraceBuilder


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
