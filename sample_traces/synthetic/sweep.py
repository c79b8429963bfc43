"""A GPU batch-size x sequence-length sweep with ground truth, for ``analyze sweep``.

`gpu_sweep` builds one H100 trace per configuration (batch 1, 2, 4, ..., 64 x sequence 128
and 512): each of 5 ``ProfilerStep``s spends ``HOST_NS`` of unprofiled host time (input
preparation; the GPU is idle), then runs a two-layer bf16 MLP on ``M = batch x seq`` tokens
(`aten::linear` 1024 -> 4096, a GELU kernel launched from an `aten::gelu` op without recorded
shapes (so the roofline classifies it by name), `aten::linear` 4096 -> 1024), then
`cudaDeviceSynchronize`. Small configurations are host- and launch-bound with memory-bound
GEMMs on few SMs; large ones are compute-bound, and throughput flattens.

The truth (``synthetic_sweep.truth.json``) is computed here from the builder's own records
(step durations, GPU-busy unions, each GEMM's FLOPs and bytes), never from the analyzer:
per configuration the median step latency, samples/s and tokens/s, GPU busy share of the
step time, modeled FLOPs and bytes per step, MFU against the H100's dense bf16 peak, the
memory-bound share of kernel time; per sequence length the growth per doubling, the
efficiency against ideal linear scaling and the point of diminishing returns (10% per
doubling); the best configuration per goal.

Run ``python sample_traces/synthetic/sweep.py [OUTPUT_DIR]`` to rewrite the committed set
(``sample_traces/synthetic_sweep/`` and its truth file beside it).
"""

from __future__ import annotations

import itertools
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):  # run as a script: make `synthetic` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthetic.builder import TraceBuilder
from synthetic.catalog import ELEMENTWISE_OPS
from synthetic.records import H100
from synthetic.truth import truth_path, write_truth

HERE: Final = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT: Final = HERE / "synthetic_sweep"
BATCHES: Final = (1, 2, 4, 8, 16, 32, 64)
SEQS: Final = (128, 512)
STEPS: Final = 5
LAYERS: Final = 2
D_MODEL: Final = 1024
D_FF: Final = 4096
HOST_NS: Final = 200_000
PLATEAU_PCT: Final = 10.0
GELU_KERNEL: Final = ELEMENTWISE_OPS["aten::gelu"].kernel.format(T="c10::BFloat16")


def file_name(batch: int, seq: int) -> str:
    """``bs8_seq128.json.gz``: the name ``--label-from 'bs(?P<batch>\\d+)_seq(?P<seq>\\d+)'``
    reads."""
    return f"bs{batch}_seq{seq}.json.gz"


def build(batch: int, seq: int) -> tuple[TraceBuilder, dict[str, Any]]:
    """One configuration's trace and the per-kernel facts its truth needs."""
    b = TraceBuilder(name=f"sweep_bs{batch}_seq{seq}")
    m = batch * seq
    gemms: list[tuple[int, int, int, int]] = []  # (step, flops, bytes, dur_ns)
    gelus: list[tuple[int, int]] = []  # (step, dur_ns)
    for _ in range(STEPS):
        with b.step() as step:
            b.cpu(HOST_NS)
            with b.op("nn.Module: MLP"):
                for _layer in range(LAYERS):
                    up = b.gemm(m, D_FF, D_MODEL, op="aten::linear")
                    gemms.append((step, up.flops, up.model_bytes, up.dur_ns))
                    nbytes = m * D_FF * 2 * 2
                    dur = max(1_000, math.ceil(nbytes / (H100.mem_bw_gbs * 0.7)))
                    with b.op("aten::gelu"):
                        act = b.kernel(
                            GELU_KERNEL,
                            dur,
                            (max(1, math.ceil(m * D_FF / 512)), 1, 1),
                            (128, 1, 1),
                            label="elementwise",
                        )
                    gelus.append((step, act.dur_ns))
                    down = b.gemm(m, D_MODEL, D_FF, op="aten::linear")
                    gemms.append((step, down.flops, down.model_bytes, down.dur_ns))
            b.sync("device")
    return b, {"gemms": gemms, "gelus": gelus}


def _growth(x0: float, t0: float, x1: float, t1: float) -> float:
    ratio: float = (t1 / t0) ** (1.0 / math.log2(x1 / x0))
    return 100.0 * (ratio - 1.0)


def config_truth(b: TraceBuilder, facts: dict[str, Any], batch: int, seq: int) -> dict[str, Any]:
    """The figures `analyze sweep` must find for one configuration."""
    t = b.truth()
    steps = t["steps"]
    durs = [s["dur_ns"] for s in steps]
    busy = [s["gpu_busy_ns"] for s in steps]
    median = statistics.median(durs)
    flops = sum(f for _, f, _, _ in facts["gemms"]) / STEPS
    nbytes = sum(by for _, _, by, _ in facts["gemms"]) / STEPS
    ridge = H100.tensor_tflops * 1e12 / (H100.mem_bw_gbs * 1e9)
    gemm_ns = sum(d for _, _, _, d in facts["gemms"])
    gelu_ns = sum(d for _, d in facts["gelus"])
    memory_gemm_ns = sum(d for _, f, by, d in facts["gemms"] if f / by < ridge)
    return {
        "file": file_name(batch, seq),
        "batch": batch,
        "seq": seq,
        "step_dur_ns": durs,
        "latency_median_ns": median,
        "samples_per_s": batch / median * 1e9,
        "tokens_per_s": batch * seq / median * 1e9,
        "gpu_busy_pct": 100.0 * sum(busy) / sum(durs),
        "flops_per_step": flops,
        "bytes_per_step": nbytes,
        "intensity_flop_per_byte": flops / nbytes,
        "peak_tflops": H100.tensor_tflops,
        "mfu_pct": 100.0 * flops / (median / 1e9) / (H100.tensor_tflops * 1e12),
        "memory_bound_pct": 100.0 * (memory_gemm_ns + gelu_ns) / (gemm_ns + gelu_ns),
    }


def series_truth(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """Scaling over batch of one sequence length."""
    pts = sorted(configs, key=lambda c: c["batch"])
    x0, t0 = pts[0]["batch"], pts[0]["samples_per_s"]
    growth = [
        _growth(a["batch"], a["samples_per_s"], b["batch"], b["samples_per_s"])
        for a, b in itertools.pairwise(pts)
    ]
    plateau = None
    for i in range(len(growth) - 1, -1, -1):
        if growth[i] >= PLATEAU_PCT:
            break
        plateau = pts[i]["batch"]
    first, last = pts[0], pts[-1]
    return {
        "batches": [p["batch"] for p in pts],
        "efficiency_pct": [100.0 * p["samples_per_s"] / (t0 * p["batch"] / x0) for p in pts],
        "growth_per_doubling_pct": growth,
        "plateau_batch": plateau,
        "throughput_gain_x": last["samples_per_s"] / first["samples_per_s"],
        "latency_growth_x": last["latency_median_ns"] / first["latency_median_ns"],
        "util_gain_pp": last["gpu_busy_pct"] - first["gpu_busy_pct"],
        "util_gain_x": last["gpu_busy_pct"] / first["gpu_busy_pct"],
    }


def gpu_sweep(out_dir: Path = DEFAULT_OUTPUT) -> dict[str, Any]:
    """Write every configuration into ``out_dir`` and the truth beside it; returns it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = []
    for seq in SEQS:
        for batch in BATCHES:
            b, facts = build(batch, seq)
            b.write(out_dir / file_name(batch, seq), with_truth=False)
            configs.append(config_truth(b, facts, batch, seq))
    series = {str(seq): series_truth([c for c in configs if c["seq"] == seq]) for seq in SEQS}
    truth = {
        "scenario": "gpu_sweep",
        "description": __doc__,
        "device": H100.name,
        "plateau_threshold_pct": PLATEAU_PCT,
        "configs": configs,
        "series": series,
        "best": {
            "lowest_latency": min(configs, key=lambda c: c["latency_median_ns"])["file"],
            "highest_throughput": max(configs, key=lambda c: c["samples_per_s"])["file"],
            "highest_utilization": max(configs, key=lambda c: c["gpu_busy_pct"])["file"],
        },
    }
    write_truth(truth_path(out_dir), truth)
    return truth


def main(argv: list[str]) -> int:
    """Write the set to the directory given, or the committed one."""
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    gpu_sweep(out)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {out} ({size} bytes) and {truth_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
