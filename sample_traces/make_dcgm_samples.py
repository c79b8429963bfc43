"""Synthetic DCGM time series with known ground truth, written in three real formats.

Five scenarios, each a set of per-GPU counter series sampled every second:

- ``compute_bound``: tensor pipe 0.7, SM active 0.9, DRAM 0.35 (one H100).
- ``memory_bound``: DRAM active 0.85, tensor/FP pipes low (one H100).
- ``host_bound``: SM active 0.2, DRAM 0.1, GPU util 35% (one H100), memory 49% used.
- ``throttled``: busy GPU (SM 0.88, tensor 0.6) with the SW power cap bit (0x4) set in 40% of
  the samples and the SW thermal slowdown bit (0x20) in 20%, SM clock down while throttled,
  memory 95.6% used.
- ``imbalanced_8gpu``: eight H100s of one host; GPU 5 runs at SM active 0.45 while its peers
  run at 0.88.

Each scenario is written as ``dcgmi dmon`` text (header repeated every 14 rows, profiling
fields N/A in the first two samples, as dcgmi prints them), a Prometheus ``query_range``
matrix answer (JSON) and dcgm-exporter text with millisecond timestamps (gzipped: the text
repeats its labels on every line), all carrying the same
numbers (rounded the way each format prints them, so every format parses to the same values).
The ground truth beside them (``<scenario>.truth.json``) is computed here, in plain Python,
from the emitted values: per GPU and metric n / mean / p50 / p95 (linear interpolation between
order statistics) / max, energy from the energy counter and from integrating power, throttle
shares of busy samples, the expected bound class and which counter rules must fire.

Deterministic: no randomness; jitter is a fixed 5-sample pattern. Run
``python sample_traces/make_dcgm_samples.py`` to regenerate ``sample_traces/dcgm/``.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "dcgm"
START_UNIX_S = 1_700_000_000  # 2023-11-14T22:13:20Z: epoch origin of the JSON / exporter files
INTERVAL_MS = 1000
SAMPLES = 30
PROFILING_NA_SAMPLES = 2  # dcgmi prints N/A for profiling fields in its first samples
FB_TOTAL_MIB = 81559  # H100 80GB HBM3 as DCGM reports it
MODEL = "NVIDIA H100 80GB HBM3"
JITTER = (-2, -1, 0, 1, 2)  # fixed pattern, in units of each metric's jitter step

#: (field id, DCGM name, dmon short name, our metric name, is profiling field, decimals, jitter)
FIELDS: tuple[tuple[int, str, str, str, bool, int, float], ...] = (
    (1002, "DCGM_FI_PROF_SM_ACTIVE", "SMACT", "sm_active_ratio", True, 3, 0.01),
    (1003, "DCGM_FI_PROF_SM_OCCUPANCY", "SMOCC", "sm_occupancy_ratio", True, 3, 0.01),
    (1004, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "TENSO", "tensor_active_ratio", True, 3, 0.01),
    (1005, "DCGM_FI_PROF_DRAM_ACTIVE", "DRAMA", "dram_active_ratio", True, 3, 0.01),
    (1006, "DCGM_FI_PROF_PIPE_FP64_ACTIVE", "FP64A", "fp64_active_ratio", True, 3, 0.0),
    (1007, "DCGM_FI_PROF_PIPE_FP32_ACTIVE", "FP32A", "fp32_active_ratio", True, 3, 0.005),
    (1008, "DCGM_FI_PROF_PIPE_FP16_ACTIVE", "FP16A", "fp16_active_ratio", True, 3, 0.005),
    (203, "DCGM_FI_DEV_GPU_UTIL", "GPUTL", "gpu_util_pct", False, 0, 1.0),
    (155, "DCGM_FI_DEV_POWER_USAGE", "POWER", "power_w", False, 3, 2.0),
    (156, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "TOTEC", "energy_mj", False, 0, 0.0),
    (252, "DCGM_FI_DEV_FB_USED", "FBUSD", "fb_used_mib", False, 0, 0.0),
    (251, "DCGM_FI_DEV_FB_FREE", "FBFRE", "fb_free_mib", False, 0, 0.0),
    (250, "DCGM_FI_DEV_FB_TOTAL", "FBTTL", "fb_total_mib", False, 0, 0.0),
    (100, "DCGM_FI_DEV_SM_CLOCK", "SMCLK", "sm_clock_mhz", False, 0, 0.0),
    (101, "DCGM_FI_DEV_MEM_CLOCK", "MMCLK", "mem_clock_mhz", False, 0, 0.0),
    (150, "DCGM_FI_DEV_GPU_TEMP", "TMPTR", "gpu_temp_c", False, 0, 1.0),
    (112, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "DVCCTR", "throttle_reasons_bitmask", False, 0,
     0.0),
    (1009, "DCGM_FI_PROF_PCIE_TX_BYTES", "PCITX", "pcie_tx_bytes_per_s", True, 0, 1.0e6),
    (1010, "DCGM_FI_PROF_PCIE_RX_BYTES", "PCIRX", "pcie_rx_bytes_per_s", True, 0, 1.0e6),
    (1011, "DCGM_FI_PROF_NVLINK_TX_BYTES", "NVLTX", "nvlink_tx_bytes_per_s", True, 0, 1.0e8),
    (1012, "DCGM_FI_PROF_NVLINK_RX_BYTES", "NVLRX", "nvlink_rx_bytes_per_s", True, 0, 1.0e8),
)  # fmt: skip

#: Power-related and thermal throttle reason bits (DCGM field 112).
POWER_BITS = 0x4 | 0x80  # SW power cap, HW power brake
THERMAL_BITS = 0x20 | 0x40  # SW thermal slowdown, HW thermal slowdown
#: A sample counts as busy when GPU util is at least this (%), as analyzer.metrics.counters does.
BUSY_GPU_UTIL_MIN_PCT = 1.0


@dataclass(frozen=True)
class Gpu:
    """The levels one GPU holds through a scenario (jitter is added per sample)."""

    sm_active_ratio: float
    sm_occupancy_ratio: float
    tensor_active_ratio: float
    dram_active_ratio: float
    fp32_active_ratio: float
    fp16_active_ratio: float
    gpu_util_pct: float
    power_w: float
    fb_used_mib: float
    fp64_active_ratio: float = 0.0
    sm_clock_mhz: float = 1980.0
    mem_clock_mhz: float = 2619.0
    gpu_temp_c: float = 62.0
    pcie_tx_bytes_per_s: float = 2.0e8
    pcie_rx_bytes_per_s: float = 4.0e8
    nvlink_tx_bytes_per_s: float = 5.0e9
    nvlink_rx_bytes_per_s: float = 5.0e9
    throttle: Callable[[int], int] = field(default=lambda k: 0)  # bitmask of sample k
    throttled_sm_clock_mhz: float = 1500.0


@dataclass(frozen=True)
class Scenario:
    """A named set of GPUs on one host, and which counter rules must fire on it."""

    name: str
    description: str
    host: str
    gpus: tuple[Gpu, ...]
    bound: tuple[str, ...]  # expected bound class per GPU
    fires: dict[str, bool]  # rule id -> fires


def _throttle_pattern(k: int) -> int:
    """SW power cap in samples k % 5 in {0, 1} (40%); SW thermal when k % 5 == 2 (20%)."""
    phase = k % 5
    if phase in (0, 1):
        return 0x4
    return 0x20 if phase == 2 else 0


_BUSY = Gpu(0.88, 0.45, 0.60, 0.40, 0.05, 0.02, 100.0, 620.0, 52000.0)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "compute_bound",
        "tensor pipe 0.7, SM active 0.9: compute-bound, healthy",
        "node-a",
        (Gpu(0.90, 0.45, 0.70, 0.35, 0.05, 0.02, 100.0, 640.0, 60000.0),),
        ("compute-bound",),
        {"low-sm-activity": False, "memory-bound-counters": False, "throttling": False,
         "gpu-imbalance": False, "memory-headroom": False},
    ),
    Scenario(
        "memory_bound",
        "DRAM active 0.85 with tensor/FP pipes low: memory-bandwidth-bound",
        "node-a",
        (Gpu(0.85, 0.60, 0.10, 0.85, 0.15, 0.03, 100.0, 480.0, 60000.0),),
        ("memory-bound",),
        {"low-sm-activity": False, "memory-bound-counters": True, "throttling": False,
         "gpu-imbalance": False, "memory-headroom": False},
    ),
    Scenario(
        "host_bound",
        "SM active 0.2, DRAM 0.1, GPU util 35%: under-utilized, likely host-bound",
        "node-a",
        (Gpu(0.20, 0.10, 0.05, 0.10, 0.03, 0.01, 35.0, 160.0, 39964.0),),
        ("under-utilized",),
        {"low-sm-activity": True, "memory-bound-counters": False, "throttling": False,
         "gpu-imbalance": False, "memory-headroom": True},
    ),
    Scenario(
        "throttled",
        "busy GPU with SW power cap (40% of samples) and SW thermal (20%) throttle bits",
        "node-a",
        (Gpu(0.88, 0.45, 0.60, 0.40, 0.05, 0.02, 100.0, 695.0, 78000.0, gpu_temp_c=86.0,
             throttle=_throttle_pattern),),
        ("compute-bound",),
        {"low-sm-activity": False, "memory-bound-counters": False, "throttling": True,
         "gpu-imbalance": False, "memory-headroom": True},
    ),
    Scenario(
        "imbalanced_8gpu",
        "8 GPUs of one host; GPU 5 at SM active 0.45 and util 60% while its peers run at 0.88",
        "node-b",
        tuple(
            Gpu(0.45, 0.25, 0.28, 0.20, 0.03, 0.01, 60.0, 380.0, 52000.0) if i == 5 else _BUSY
            for i in range(8)
        ),
        tuple("under-utilized" if i == 5 else "compute-bound" for i in range(8)),
        {"low-sm-activity": True, "memory-bound-counters": False, "throttling": False,
         "gpu-imbalance": True, "memory-headroom": False},
    ),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Series


def _round(value: float, decimals: int) -> float:
    """Round half away from zero, as printf does for the values we emit."""
    scale = 10.0**decimals
    return math.floor(abs(value) * scale + 0.5) / scale * (1 if value >= 0 else -1)


def _level(gpu: Gpu, metric: str, k: int) -> float:
    """The value of ``metric`` at sample k before jitter and rounding."""
    if metric == "sm_clock_mhz" and gpu.throttle(k):
        return gpu.throttled_sm_clock_mhz
    if metric == "throttle_reasons_bitmask":
        return float(gpu.throttle(k))
    if metric == "fb_total_mib":
        return float(FB_TOTAL_MIB)
    if metric == "fb_free_mib":
        return FB_TOTAL_MIB - gpu.fb_used_mib
    return float(getattr(gpu, metric))


def series(gpu: Gpu) -> dict[str, list[float | None]]:
    """Every metric of one GPU: SAMPLES values each, None where dcgmi prints N/A."""
    out: dict[str, list[float | None]] = {}
    for _fid, _name, _short, metric, profiling, decimals, jitter in FIELDS:
        if metric == "energy_mj":
            continue
        values: list[float | None] = []
        for k in range(SAMPLES):
            if profiling and k < PROFILING_NA_SAMPLES:
                values.append(None)
                continue
            raw = _level(gpu, metric, k) + JITTER[k % len(JITTER)] * jitter
            upper = 1.0 if metric.endswith("_ratio") else 100.0 if metric.endswith("_pct") else None
            raw = max(0.0, raw if upper is None else min(upper, raw))
            values.append(_round(raw, decimals))
        out[metric] = values
    out["energy_mj"] = _energy_counter(out["power_w"])
    return out


def _energy_counter(power_w: Sequence[float | None]) -> list[float | None]:
    """Total energy since boot (mJ, integer): trapezoids of power, from an arbitrary origin."""
    energy = 5_000_000_000.0
    out: list[float | None] = [energy]
    for a, b in itertools.pairwise(power_w):
        assert a is not None and b is not None
        energy += (a + b) / 2 * INTERVAL_MS  # W x ms = mJ
        out.append(float(round(energy)))
    return out


# ---------------------------------------------------------------------------------------------
# Ground truth (plain Python, independent of the analyzer)


def _p(values: Sequence[float], q: float) -> float:
    """Quantile q by linear interpolation between order statistics (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _stats(values: Sequence[float | None]) -> dict[str, float]:
    """n, mean, p50, p95, max of the non-null values."""
    v = [x for x in values if x is not None]
    return {
        "n": len(v),
        "mean": sum(v) / len(v),
        "p50": _p(v, 0.5),
        "p95": _p(v, 0.95),
        "max": max(v),
    }


def _truth_gpu(gpu_index: int, s: dict[str, list[float | None]], bound: str) -> dict[str, object]:
    """Ground truth of one GPU."""
    power = [p for p in s["power_w"] if p is not None]
    energy = [e for e in s["energy_mj"] if e is not None]
    integral_j = sum((a + b) / 2 * INTERVAL_MS / 1000 for a, b in itertools.pairwise(power))
    util = s["gpu_util_pct"]
    busy = [k for k in range(SAMPLES) if (util[k] or 0.0) >= BUSY_GPU_UTIL_MIN_PCT]
    bits = [int(s["throttle_reasons_bitmask"][k] or 0) for k in busy]
    used = _stats(s["fb_used_mib"])["max"]
    return {
        "gpu": gpu_index,
        "metrics": {m: _stats(v) for m, v in s.items()},
        "energy_j_from_counter": (energy[-1] - energy[0]) / 1000.0,
        "energy_j_from_power": integral_j,
        "span_s": (SAMPLES - 1) * INTERVAL_MS / 1000,
        "busy_samples": len(busy),
        "power_throttle_share_of_busy": sum(1 for b in bits if b & POWER_BITS) / len(busy),
        "thermal_throttle_share_of_busy": sum(1 for b in bits if b & THERMAL_BITS) / len(busy),
        "fb_used_pct_max": 100.0 * used / FB_TOTAL_MIB,
        "bound": bound,
    }


def truth(sc: Scenario) -> dict[str, object]:
    """Ground truth of a scenario."""
    return {
        "scenario": sc.name,
        "description": sc.description,
        "host": sc.host,
        "model_name": MODEL,
        "gpu_count": len(sc.gpus),
        "samples": SAMPLES,
        "interval_ms": INTERVAL_MS,
        "start_unix_s": START_UNIX_S,
        "fb_total_mib": FB_TOTAL_MIB,
        "profiling_na_samples": PROFILING_NA_SAMPLES,
        "gpus": [_truth_gpu(i, series(g), sc.bound[i]) for i, g in enumerate(sc.gpus)],
        "fires": sc.fires,
    }


# ---------------------------------------------------------------------------------------------
# Writers


def _fmt(value: float | None, decimals: int) -> str:
    """A value as dcgmi / the exporter print it."""
    if value is None:
        return "N/A"
    return f"{value:.{decimals}f}" if decimals else str(round(value))


def dmon_text(sc: Scenario) -> str:
    """``dcgmi dmon -e ... -d 1000`` output: GPUs in descending order, header every 14 rows."""
    shorts = [short for _f, _n, short, *_ in FIELDS]
    header = "#Entity   " + "".join(f"{s:<14}" for s in shorts)
    units = "ID        " + "".join(f"{'':<14}" for _ in shorts)
    data = [series(g) for g in sc.gpus]
    lines: list[str] = []
    rows = 0
    for k in range(SAMPLES):
        for i in reversed(range(len(sc.gpus))):
            if rows % 14 == 0:
                lines += [header.rstrip() + "  ", units]
            cells = [_fmt(data[i][m][k], d) for _f, _n, _s, m, _p, d, _j in FIELDS]
            lines.append(f"{'GPU ' + str(i):<10}" + "".join(f"{c:<14}" for c in cells))
            rows += 1
    return "\n".join(lines) + "\n"


def _labels(sc: Scenario, gpu: int) -> dict[str, str]:
    """The labels dcgm-exporter puts on every series of one GPU."""
    return {
        "gpu": str(gpu),
        "UUID": f"GPU-{zlib.crc32(sc.name.encode()):08x}-0000-4000-8000-{gpu:012x}",
        "device": f"nvidia{gpu}",
        "modelName": MODEL,
        "Hostname": sc.host,
    }


def query_range_json(sc: Scenario) -> dict[str, object]:
    """A Prometheus ``/api/v1/query_range`` matrix answer holding every series."""
    data = [series(g) for g in sc.gpus]
    result = []
    for _fid, name, _short, metric, _prof, decimals, _j in FIELDS:
        for i in range(len(sc.gpus)):
            points = [
                [START_UNIX_S + k * INTERVAL_MS / 1000, _fmt(v, decimals)]
                for k, v in enumerate(data[i][metric])
                if v is not None
            ]
            labels = {"__name__": name, **_labels(sc, i), "instance": f"{sc.host}:9400",
                      "job": "dcgm-exporter"}  # fmt: skip
            result.append({"metric": labels, "values": points})
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


def exporter_text(sc: Scenario) -> str:
    """dcgm-exporter text with HELP/TYPE once per family and ms timestamps on every sample."""
    data = [series(g) for g in sc.gpus]
    lines: list[str] = []
    for _fid, name, _short, metric, _prof, decimals, _j in FIELDS:
        kind = "counter" if metric == "energy_mj" else "gauge"
        lines += [f"# HELP {name} {metric} (synthetic).", f"# TYPE {name} {kind}"]
        for k in range(SAMPLES):
            ts_ms = START_UNIX_S * 1000 + k * INTERVAL_MS
            for i in range(len(sc.gpus)):
                value = data[i][metric][k]
                if value is None:
                    continue
                labels = ",".join(f'{key}="{val}"' for key, val in _labels(sc, i).items())
                text = f"{value:.6f}" if decimals else str(round(value))
                lines.append(f"{name}{{{labels}}} {text} {ts_ms}")
    return "\n".join(lines) + "\n"


def write_all(out_dir: Path = OUT_DIR) -> list[Path]:
    """Write every scenario in every format plus its truth; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for sc in SCENARIOS:
        files: dict[str, str | bytes] = {
            f"{sc.name}.dmon.txt": dmon_text(sc),
            f"{sc.name}.query_range.json": json.dumps(query_range_json(sc), separators=(",", ":")),
            f"{sc.name}.prom.gz": gzip.compress(exporter_text(sc).encode(), mtime=0),
            f"{sc.name}.truth.json": json.dumps(truth(sc), indent=1, sort_keys=True) + "\n",
        }
        for fname, content in files.items():
            path = out_dir / fname
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
            written.append(path)
    return written


if __name__ == "__main__":
    for p in write_all():
        print(f"{p.relative_to(OUT_DIR.parent)}  {p.stat().st_size:,} bytes")
