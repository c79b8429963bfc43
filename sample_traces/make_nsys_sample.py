"""Write ``nsys_sample.sqlite``: a small synthetic Nsight Systems export with known truth.

The tables have the exact column layout of a real ``nsys export --type sqlite`` of schema
3.25 (Nsight Systems 2026.2; DDL copied from a real export, comments dropped), plus
``GPU_METRICS`` / ``TARGET_INFO_GPU_METRICS`` as ``--gpu-metrics-devices`` writes them.
Only tables with rows are created, as nsys does.

Scenario (the ground truth, also written to ``nsys_sample.truth.json``):

- The capture starts at Unix epoch 1,700,000,000,000,000,000 ns
  (TARGET_INFO_SESSION_START_TIME.utcEpochNs); export timestamps count from it.
- Two processes, pid 4101 on GPU 0 and pid 4102 on GPU 1, both "NVIDIA H100 80GB HBM3"
  (132 SMs) in TARGET_INFO_GPU: ranks 0 and 1.
- Each process first makes one driver call (``cuModuleGetLoadingMode``) and has one Fill
  kernel whose launch was not captured (no runtime row: the LEFT JOIN case).
- Then three 1 ms steps. Rank 0 names them ``step 5``, ``step 6``, ``step 7``; rank 1
  names all three ``train_step`` (numbered 0, 1, 2 in order). In each step:
  ``forward`` > ``aten::mm`` (PyTorch emit_nvtx text with seq, op_id and sizes) launches a
  200 us cuBLAS GEMM; ``forward`` > ``aten::relu`` launches a 30 us elementwise kernel;
  ``optimizer`` issues a 4,096-byte memset and a 256-byte pinned DtoH copy; then
  ``cudaStreamSynchronize`` (40 us, GPU-side stream_sync record). Step 0 of each rank also
  copies 1 MiB from pageable host memory (HtoD, 90 us). Rank 0's last step holds an NVTX
  mark ``checkpoint``.
- After the steps, ``cudaDeviceSynchronize`` (50 us, context_sync record), outside any range.
- GPU metrics: 10 samples per GPU of ``SM Active [Throughput %]`` and
  ``GPC Clock Frequency [MHz]``, 100 us apart.

Run ``python sample_traces/make_nsys_sample.py`` to rewrite both files.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT_DB = HERE / "nsys_sample.sqlite"
OUT_TRUTH = HERE / "nsys_sample.truth.json"

SESSION_START_NS = 1_700_000_000_000_000_000
STEP_NS = 1_000_000
GPU_NAME = "NVIDIA H100 80GB HBM3"
GEMM = (
    "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1"
    "_execute_segment_k_off_kernel__5x_cublas"
)
RELU = (
    "void at::native::vectorized_elementwise_kernel<(int)4, at::native::"
    "(anonymous namespace)::launch_clamp_scalar(at::TensorIteratorBase &, c10::Scalar, "
    "c10::Scalar, at::native::detail::ClampLimits)::[lambda() (instance 1)]::operator ()() "
    "const::[lambda() (instance 7)]::operator ()() const::[lambda(c10::BFloat16) "
    "(instance 1)], std::array<char *, (unsigned long)2>>(int, T2, T3)"
)
FILL = (
    "void at::native::vectorized_elementwise_kernel<(int)4, at::native::FillFunctor<float>, "
    "std::array<char *, (unsigned long)1>>(int, T2, T3)"
)
SHORT = {GEMM: GEMM, RELU: "vectorized_elementwise_kernel", FILL: "vectorized_elementwise_kernel"}

# Enum ids as Nsight Systems writes them.
HTOD, DTOH = 1, 2
PAGEABLE, PINNED, DEVICE = 0, 1, 2
STREAM_SYNC, CONTEXT_SYNC = 3, 4
PUSH_POP, MARK = 59, 34
RUNTIME_CLASS, DRIVER_CLASS = 0, 1

DDL = {
    "StringIds": "id INTEGER NOT NULL PRIMARY KEY, value TEXT NOT NULL",
    "CUPTI_ACTIVITY_KIND_KERNEL": (
        "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, "
        "contextId INTEGER NOT NULL, greenContextId INTEGER, streamId INTEGER NOT NULL, "
        "correlationId INTEGER, globalPid INTEGER, demangledName INTEGER NOT NULL, "
        "shortName INTEGER NOT NULL, mangledName INTEGER, launchType INTEGER, "
        "cacheConfig INTEGER, registersPerThread INTEGER NOT NULL, gridX INTEGER NOT NULL, "
        "gridY INTEGER NOT NULL, gridZ INTEGER NOT NULL, blockX INTEGER NOT NULL, "
        "blockY INTEGER NOT NULL, blockZ INTEGER NOT NULL, "
        "staticSharedMemory INTEGER NOT NULL, dynamicSharedMemory INTEGER NOT NULL, "
        "localMemoryPerThread INTEGER NOT NULL, localMemoryTotal INTEGER NOT NULL, "
        "gridId INTEGER NOT NULL, sharedMemoryExecuted INTEGER, graphNodeId INTEGER, "
        "sharedMemoryLimitConfig INTEGER, qmdBulkReleaseDone INTEGER, qmdPreexitDone INTEGER, "
        "qmdLastCtaDone INTEGER, graphId INTEGER, clusterX INTEGER, clusterY INTEGER, "
        "clusterZ INTEGER, clusterSchedulingPolicy INTEGER, maxPotentialClusterSize INTEGER, "
        "maxActiveClusters INTEGER, sharedMemoryRequestedPercentage INTEGER, "
        "tensorSizeMinusOneElements TEXT NOT NULL"
    ),
    "CUPTI_ACTIVITY_KIND_MEMCPY": (
        "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, "
        "contextId INTEGER NOT NULL, greenContextId INTEGER, streamId INTEGER NOT NULL, "
        "correlationId INTEGER, globalPid INTEGER, bytes INTEGER NOT NULL, "
        "copyKind INTEGER NOT NULL, deprecatedSrcId INTEGER, srcKind INTEGER, dstKind INTEGER, "
        "srcDeviceId INTEGER, srcContextId INTEGER, dstDeviceId INTEGER, dstContextId INTEGER, "
        "migrationCause INTEGER, graphNodeId INTEGER, virtualAddress INTEGER, copyCount INTEGER"
    ),
    "CUPTI_ACTIVITY_KIND_MEMSET": (
        "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, "
        "contextId INTEGER NOT NULL, greenContextId INTEGER, streamId INTEGER NOT NULL, "
        "correlationId INTEGER, globalPid INTEGER, value INTEGER NOT NULL, "
        "bytes INTEGER NOT NULL, graphNodeId INTEGER, memKind INTEGER"
    ),
    "CUPTI_ACTIVITY_KIND_RUNTIME": (
        "start INTEGER NOT NULL, end INTEGER NOT NULL, eventClass INTEGER NOT NULL, "
        "globalTid INTEGER, correlationId INTEGER, nameId INTEGER NOT NULL, "
        "returnValue INTEGER NOT NULL, callchainId INTEGER"
    ),
    "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION": (
        "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, "
        "contextId INTEGER NOT NULL, greenContextId INTEGER, streamId INTEGER NOT NULL, "
        "correlationId INTEGER, globalPid INTEGER, deprecatedSyncType INTEGER, "
        "syncType INTEGER NOT NULL, eventId INTEGER NOT NULL, eventSyncId INTEGER"
    ),
    "NVTX_EVENTS": (
        "start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL, rangeId INTEGER, "
        "category INTEGER, color INTEGER, text TEXT, globalTid INTEGER, endGlobalTid INTEGER, "
        "textId INTEGER, domainId INTEGER, uint64Value INTEGER, int64Value INTEGER, "
        "doubleValue REAL, uint32Value INTEGER, int32Value INTEGER, floatValue REAL, "
        "jsonTextId INTEGER, jsonText TEXT, binaryData TEXT"
    ),
    "TARGET_INFO_SESSION_START_TIME": (
        "utcEpochNs INTEGER, utcTime TEXT, localTime TEXT, systemClockNs INTEGER"
    ),
    "META_DATA_EXPORT": "name TEXT NOT NULL, value TEXT",
    "TARGET_INFO_SYSTEM_ENV": (
        "globalVid INTEGER, devStateName TEXT NOT NULL, name TEXT NOT NULL, "
        "nameEnum INTEGER NOT NULL, value TEXT NOT NULL"
    ),
    "ENUM_CUDA_MEMCPY_OPER": "id INTEGER NOT NULL PRIMARY KEY, name TEXT, label TEXT",
    "ENUM_CUDA_MEM_KIND": "id INTEGER NOT NULL PRIMARY KEY, name TEXT, label TEXT",
    "ENUM_CUPTI_SYNC_TYPE": "id INTEGER NOT NULL PRIMARY KEY, name TEXT, label TEXT",
    "PROCESSES": "globalPid INTEGER, pid INTEGER, name TEXT",
    "TARGET_INFO_GPU": (
        "vmId INTEGER NOT NULL, id INTEGER NOT NULL, name TEXT, busLocation TEXT, "
        "isDiscrete INTEGER, l2CacheSize INTEGER, totalMemory INTEGER, memoryBandwidth INTEGER, "
        "clockRate INTEGER, smCount INTEGER, pwGpuId INTEGER, uuid TEXT, luid INTEGER, "
        "chipName TEXT, cuDevice INTEGER, ctxswDevPath TEXT, ctrlDevPath TEXT, "
        "revision INTEGER, nodeMask INTEGER, constantMemory INTEGER, maxIPC INTEGER, "
        "maxRegistersPerBlock INTEGER, maxShmemPerBlock INTEGER, maxShmemPerBlockOptin INTEGER, "
        "maxShmemPerSm INTEGER, maxRegistersPerSm INTEGER, threadsPerWarp INTEGER, "
        "asyncEngines INTEGER, maxWarpsPerSm INTEGER, maxBlocksPerSm INTEGER, "
        "maxThreadsPerBlock INTEGER, maxBlockDimX INTEGER, maxBlockDimY INTEGER, "
        "maxBlockDimZ INTEGER, maxGridDimX INTEGER, maxGridDimY INTEGER, maxGridDimZ INTEGER, "
        "computeMajor INTEGER, computeMinor INTEGER, smMajor INTEGER, smMinor INTEGER"
    ),
    "TARGET_INFO_GPU_METRICS": (
        "typeId INTEGER NOT NULL, sourceId INTEGER NOT NULL, typeName TEXT NOT NULL, "
        "metricId INTEGER NOT NULL, metricName TEXT NOT NULL"
    ),
    "GPU_METRICS": (
        "timestamp INTEGER, typeId INTEGER NOT NULL, metricId INTEGER NOT NULL, "
        "value INTEGER NOT NULL"
    ),
}

ENUMS = {
    "ENUM_CUDA_MEMCPY_OPER": [
        (0, "CUDA_MEMCPY_KIND_UNKNOWN", "Unknown"),
        (1, "CUDA_MEMCPY_KIND_HTOD", "Host-to-Device"),
        (2, "CUDA_MEMCPY_KIND_DTOH", "Device-to-Host"),
        (8, "CUDA_MEMCPY_KIND_DTOD", "Device-to-Device"),
        (10, "CUDA_MEMCPY_KIND_PTOP", "Peer-to-Peer"),
    ],
    "ENUM_CUDA_MEM_KIND": [
        (0, "CUDA_MEMOPR_MEMORY_KIND_PAGEABLE", "Pageable"),
        (1, "CUDA_MEMOPR_MEMORY_KIND_PINNED", "Pinned"),
        (2, "CUDA_MEMOPR_MEMORY_KIND_DEVICE", "Device"),
        (4, "CUDA_MEMOPR_MEMORY_KIND_MANAGED", "Managed"),
        (7, "CUDA_MEMOPR_MEMORY_KIND_UNKNOWN", "Unknown"),
    ],
    "ENUM_CUPTI_SYNC_TYPE": [
        (0, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_UNKNOWN", "Unknown"),
        (1, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_EVENT_SYNCHRONIZE", "Event sync"),
        (2, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_WAIT_EVENT", "Stream wait sync"),
        (3, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_SYNCHRONIZE", "Stream sync"),
        (4, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_CONTEXT_SYNCHRONIZE", "Context sync"),
    ],
}

METRICS = {1: "SM Active [Throughput %]", 2: "GPC Clock Frequency [MHz]"}


@dataclass
class Capture:
    """The rows of every table, plus the strings they point to."""

    strings: dict[str, int] = field(default_factory=dict)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def sid(self, text: str) -> int:
        """The StringIds id of a string, added on first use."""
        return self.strings.setdefault(text, len(self.strings) + 1)

    def add(self, table: str, **row: Any) -> dict[str, Any]:
        self.rows[table].append(row)
        return row


@dataclass
class Process:
    """One profiled process and the GPU it drives."""

    pid: int
    device: int
    stream: int
    step_names: tuple[str, str, str]
    next_correlation: int = 100

    @property
    def global_pid(self) -> int:
        return (1 << 48) | (self.pid << 24)

    @property
    def global_tid(self) -> int:
        return self.global_pid | self.pid

    @property
    def base_ns(self) -> int:
        return 1_000_000 + 1_000 * self.device

    def correlation(self) -> int:
        self.next_correlation += 1
        return self.next_correlation


PROCESSES = (
    Process(4101, 0, 7, ("step 5", "step 6", "step 7")),
    Process(4102, 1, 13, ("train_step", "train_step", "train_step")),
)


def api(cap: Capture, proc: Process, name: str, start: int, dur: int, driver: bool = False) -> int:
    """A CUDA API call; returns its correlation id."""
    corr = proc.correlation()
    cap.add(
        "CUPTI_ACTIVITY_KIND_RUNTIME",
        start=start,
        end=start + dur,
        eventClass=DRIVER_CLASS if driver else RUNTIME_CLASS,
        globalTid=proc.global_tid,
        correlationId=corr,
        nameId=cap.sid(name),
        returnValue=0,
    )
    return corr


def kernel(
    cap: Capture, proc: Process, name: str, start: int, dur: int, corr: int, grid: int
) -> None:
    cap.add(
        "CUPTI_ACTIVITY_KIND_KERNEL",
        start=start,
        end=start + dur,
        deviceId=proc.device,
        contextId=proc.device + 1,
        streamId=proc.stream,
        correlationId=corr,
        globalPid=proc.global_pid,
        demangledName=cap.sid(name),
        shortName=cap.sid(SHORT[name]),
        registersPerThread=168 if name == GEMM else 32,
        gridX=grid,
        gridY=4 if name == GEMM else 1,
        gridZ=1,
        blockX=128,
        blockY=1,
        blockZ=1,
        staticSharedMemory=0,
        dynamicSharedMemory=98_304 if name == GEMM else 0,
        gridId=corr,
        tensorSizeMinusOneElements="",
    )


def nvtx(cap: Capture, proc: Process, text: str, start: int, end: int | None) -> None:
    cap.add(
        "NVTX_EVENTS",
        start=start,
        end=end,
        eventType=PUSH_POP if end is not None else MARK,
        text=text,
        globalTid=proc.global_tid,
        domainId=0,
    )


def gpu_row(
    cap: Capture, table: str, proc: Process, start: int, dur: int, corr: int
) -> dict[str, Any]:
    return cap.add(
        table,
        start=start,
        end=start + dur,
        deviceId=proc.device,
        contextId=proc.device + 1,
        streamId=proc.stream,
        correlationId=corr,
        globalPid=proc.global_pid,
    )


def one_step(cap: Capture, proc: Process, index: int) -> None:
    """One training step of one process (see the module docstring)."""
    t0 = proc.base_ns + index * STEP_NS
    nvtx(cap, proc, proc.step_names[index], t0, t0 + 900_000)
    nvtx(cap, proc, "forward", t0 + 10_000, t0 + 500_000)
    mm = f"aten::mm, seq = {index}, op_id = {40 + index}, sizes = [[64, 64], [64, 64]]"
    nvtx(cap, proc, mm, t0 + 20_000, t0 + 120_000)
    corr = api(cap, proc, "cudaLaunchKernel_v7000", t0 + 30_000, 10_000)
    kernel(cap, proc, GEMM, t0 + 50_000, 200_000, corr, grid=8)
    nvtx(cap, proc, "aten::relu", t0 + 130_000, t0 + 200_000)
    corr = api(cap, proc, "cudaLaunchKernel_v7000", t0 + 140_000, 6_000)
    kernel(cap, proc, RELU, t0 + 260_000, 30_000, corr, grid=264)
    nvtx(cap, proc, "optimizer", t0 + 520_000, t0 + 800_000)
    corr = api(cap, proc, "cudaMemsetAsync_v3020", t0 + 530_000, 5_000)
    row = gpu_row(cap, "CUPTI_ACTIVITY_KIND_MEMSET", proc, t0 + 540_000, 2_000, corr)
    row.update(value=0, bytes=4_096, memKind=DEVICE)
    corr = api(cap, proc, "cudaMemcpyAsync_v3020", t0 + 600_000, 10_000)
    row = gpu_row(cap, "CUPTI_ACTIVITY_KIND_MEMCPY", proc, t0 + 620_000, 3_000, corr)
    row.update(bytes=256, copyKind=DTOH, srcKind=DEVICE, dstKind=PINNED)
    if index == 0:
        corr = api(cap, proc, "cudaMemcpyAsync_v3020", t0 + 700_000, 20_000)
        row = gpu_row(cap, "CUPTI_ACTIVITY_KIND_MEMCPY", proc, t0 + 725_000, 90_000, corr)
        row.update(bytes=1_048_576, copyKind=HTOD, srcKind=PAGEABLE, dstKind=DEVICE)
    corr = api(cap, proc, "cudaStreamSynchronize_v3020", t0 + 820_000, 40_000)
    row = gpu_row(cap, "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION", proc, t0 + 821_000, 38_000, corr)
    row.update(syncType=STREAM_SYNC, eventId=0)
    if index == 2 and proc.device == 0:
        nvtx(cap, proc, "checkpoint", t0 + 850_000, None)


def one_process(cap: Capture, proc: Process) -> None:
    base = proc.base_ns
    api(cap, proc, "cuModuleGetLoadingMode", base - 900_000, 300, driver=True)
    kernel(cap, proc, FILL, base - 500_000, 1_000, corr=9, grid=1)  # launch not captured
    for index in range(3):
        one_step(cap, proc, index)
    end = base + 3 * STEP_NS
    corr = api(cap, proc, "cudaDeviceSynchronize_v3020", end, 50_000)
    row = gpu_row(cap, "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION", proc, end + 1_000, 48_000, corr)
    row.update(syncType=CONTEXT_SYNC, eventId=0)
    cap.add("PROCESSES", globalPid=proc.global_pid, pid=proc.pid, name="python3")


def target_info(cap: Capture) -> None:
    cap.add(
        "TARGET_INFO_SESSION_START_TIME",
        utcEpochNs=SESSION_START_NS,
        utcTime="2023-11-14T22:13:20",
        localTime="2023-11-14T22:13:20",
        systemClockNs=12_345_678_901,
    )
    export = {
        "EXPORT_PRODUCT_NAME": "NVIDIA Nsight Systems",
        "EXPORT_PRODUCT_VERSION": "2026.2.1.210",
        "EXPORT_SCHEMA_VERSION": "3.25.0",
    }
    for name, value in export.items():
        cap.add("META_DATA_EXPORT", name=name, value=value)
    for name, enum_id, value in (
        ("Hostname", 619, "sample-host"),
        ("NvDriverVersion", 205, "580.95.05"),
    ):
        cap.add(
            "TARGET_INFO_SYSTEM_ENV",
            globalVid=1 << 48,
            devStateName="Local (CLI)",
            name=name,
            nameEnum=enum_id,
            value=value,
        )
    for table, rows in ENUMS.items():
        for enum_id, name, label in rows:
            cap.add(table, id=enum_id, name=name, label=label)
    for proc in PROCESSES:
        cap.add(
            "TARGET_INFO_GPU",
            vmId=1 << 48,
            id=proc.device,
            name=GPU_NAME,
            busLocation=f"0000:{0x18 + proc.device:02x}:00.0",
            isDiscrete=1,
            totalMemory=85_520_809_984,
            memoryBandwidth=3_352_320_000_000,
            clockRate=1_980_000_000,
            smCount=132,
            uuid=f"GPU-00000000-0000-0000-0000-00000000000{proc.device}",
            chipName="GH100",
            cuDevice=proc.device,
            maxShmemPerSm=233_472,
            maxRegistersPerSm=65_536,
            threadsPerWarp=32,
            maxWarpsPerSm=64,
            maxThreadsPerBlock=1_024,
            computeMajor=9,
            computeMinor=0,
        )


def gpu_metrics(cap: Capture) -> None:
    for proc in PROCESSES:
        type_id = (1 << 16) | proc.device
        for metric_id, name in METRICS.items():
            cap.add(
                "TARGET_INFO_GPU_METRICS",
                typeId=type_id,
                sourceId=1,
                typeName=f"GPU Metrics [{proc.device}]",
                metricId=metric_id,
                metricName=name,
            )
        for i in range(10):
            ts = proc.base_ns + i * 100_000
            cap.add("GPU_METRICS", timestamp=ts, typeId=type_id, metricId=1, value=10 * i)
            cap.add("GPU_METRICS", timestamp=ts, typeId=type_id, metricId=2, value=1_980)


def build() -> Capture:
    cap = Capture()
    target_info(cap)
    for proc in PROCESSES:
        one_process(cap, proc)
    gpu_metrics(cap)
    return cap


def write_db(cap: Capture, path: Path) -> None:
    """Create only the tables that have rows; fill NOT NULL columns left unset with 0 or ''."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    tables = {**cap.rows, "StringIds": [{"id": i, "value": s} for s, i in cap.strings.items()]}
    for table, rows in tables.items():
        conn.execute(f"CREATE TABLE {table} ({DDL[table]})")
        info = conn.execute(f"PRAGMA table_info({table})").fetchall()
        for row in rows:
            values = {
                name: row.get(name, ("" if kind == "TEXT" else 0) if notnull else None)
                for _, name, kind, notnull, _, _ in info
            }
            marks = ", ".join("?" for _ in values)
            conn.execute(
                f"INSERT INTO {table} ({', '.join(values)}) VALUES ({marks})", list(values.values())
            )
    conn.commit()
    conn.execute("VACUUM")
    conn.close()


def truth(cap: Capture) -> dict[str, Any]:
    """What a correct parser must recover, computed from the scenario's own rows."""
    names = {i: s for s, i in cap.strings.items()}
    rank_of_pid = {p.pid: rank for rank, p in enumerate(PROCESSES)}
    kernels = cap.rows["CUPTI_ACTIVITY_KIND_KERNEL"]
    runtime = cap.rows["CUPTI_ACTIVITY_KIND_RUNTIME"]
    memcpy = cap.rows["CUPTI_ACTIVITY_KIND_MEMCPY"]
    kernel_ns: Counter[str] = Counter()
    for k in kernels:
        kernel_ns[names[k["demangledName"]]] += k["end"] - k["start"]
    api_calls: Counter[str] = Counter(names[r["nameId"]].split("_v")[0] for r in runtime)
    copy_bytes: Counter[str] = Counter()
    for m in memcpy:
        copy_bytes[{HTOD: "HtoD", DTOH: "DtoH"}[m["copyKind"]]] += m["bytes"]
    steps = []
    for rank, proc in enumerate(PROCESSES):
        for index, name in enumerate(proc.step_names):
            number = int(name.split()[-1]) if name[-1].isdigit() else index
            start = SESSION_START_NS + proc.base_ns + index * STEP_NS
            steps.append(
                {"rank": rank, "step": number, "start_ns": start, "end_ns": start + 900_000}
            )
    return {
        "session_start_ns": SESSION_START_NS,
        "ranks": {str(p.pid): rank_of_pid[p.pid] for p in PROCESSES},
        "rows": {
            "kernels": len(kernels),
            "memops": len(memcpy) + len(cap.rows["CUPTI_ACTIVITY_KIND_MEMSET"]),
            "runtime": len(runtime),
            "syncs": len(cap.rows["CUPTI_ACTIVITY_KIND_SYNCHRONIZATION"]),
            "ops": len(cap.rows["NVTX_EVENTS"]),
            # every sample, plus SM Active again as DCGM's sm_active_ratio
            "counters": len(cap.rows["GPU_METRICS"])
            + sum(r["metricId"] == 1 for r in cap.rows["GPU_METRICS"]),
        },
        "kernel_ns_by_name": dict(kernel_ns),
        "api_calls_by_name": dict(api_calls),
        "driver_calls": sum(r["eventClass"] == DRIVER_CLASS for r in runtime),
        "memcpy_bytes_by_kind": dict(copy_bytes),
        "pageable_htod": {
            "count": sum(m["srcKind"] == PAGEABLE and m["copyKind"] == HTOD for m in memcpy),
            "bytes": sum(m["bytes"] for m in memcpy if m["srcKind"] == PAGEABLE),
        },
        "syncs_by_kind": dict(
            Counter(
                {STREAM_SYNC: "stream_sync", CONTEXT_SYNC: "context_sync"}[s["syncType"]]
                for s in cap.rows["CUPTI_ACTIVITY_KIND_SYNCHRONIZATION"]
            )
        ),
        "kernels_without_launch": sum(k["correlationId"] == 9 for k in kernels),
        "launching_op": {GEMM: "aten::mm", RELU: "aten::relu"},
        "op_depth": {"step": 0, "forward": 1, "aten::mm": 2, "aten::relu": 2, "optimizer": 1},
        "steps": steps,
        "device": {"name": GPU_NAME, "num_sms": 132, "compute": [9, 0]},
        "gemm_blocks_per_sm": 8 * 4 / 132,
        "counter_metrics": ["gpc_clock_frequency_mhz", "sm_active_pct", "sm_active_ratio"],
        "sm_active_pct_mean": sum(10 * i for i in range(10)) / 10,
    }


def main() -> None:
    cap = build()
    write_db(cap, OUT_DB)
    OUT_TRUTH.write_text(json.dumps(truth(cap), indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT_DB} ({OUT_DB.stat().st_size} bytes) and {OUT_TRUTH}")


if __name__ == "__main__":
    main()
