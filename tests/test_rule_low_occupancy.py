"""`low-occupancy`: time-weighted est. achieved occupancy (tb_plugin's definition).

tb_plugin's expected-output file (test__gpu_metrics_expected.json) carries only GPU
utilization and SM efficiency counters, and its input kernels carry `theoretical occupancy %`
rather than `est. achieved occupancy %`, so it cannot check occupancy. The tb_plugin figure is
checked instead against the raw JSON of its ResNet-50 sample, and the rule's own figure
against occupancies worked out by hand with the CUDA occupancy rules on synthetic kernels.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import pytest
import synthetic
from conftest import needs_shared, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers.kineto import parse
from gpu_trace_analyzer.parsers.schema import DeviceInfo
from gpu_trace_analyzer.rules.low_occupancy import (
    LowOccupancy,
    kernels_in_window,
    limiter,
    occupancy_known,
)

WORKERS_0 = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"
MI300_BERT = "tracelens/mi300__gaunernst_bert-small-uncased__1016001.json.gz"

# H100: 132 SMs, 2048 threads, 65536 registers per SM, 32 resident blocks at most.
# custom kernel, 256 threads x 255 registers: a warp takes ceil(255 * 32 / 256) * 256 = 8192
# registers, so 65536 / 8192 = 8 warps = 1 block of 8 warps fits: 256 / 2048 = 12.5%, which
# Kineto rounds to 13%. Registers are the binding limit (threads would allow 8 blocks).
CUSTOM_OCC = 13
# elementwise kernel, 128 threads x 32 registers, 100 blocks per SM of grid: threads allow
# 16 blocks, registers 64 warps = 16 blocks: 16 x 128 / 2048 = 100%.
ELEMENTWISE_OCC = 100


class _KernelArgs(msgspec.Struct):
    occupancy_pct: float | None = msgspec.field(default=None, name="est. achieved occupancy %")


class _Event(msgspec.Struct):
    cat: str = ""
    dur: float = 0.0
    args: _KernelArgs | None = None


class _Doc(msgspec.Struct):
    traceEvents: list[_Event]


def _run(path: Path, **overrides: Any) -> list[Finding]:
    ctx = AnalysisContext(parse(path))
    return list(LowOccupancy().check(ctx, LowOccupancy.Config(**overrides)))


def _trace(tmp_path: Path, custom_ns: int, elementwise_ns: int) -> Path:
    """Three steps: a register-heavy custom kernel, an elementwise kernel and a cuBLAS-style
    GEMM (213 KiB of shared memory: Kineto's calculator gives it 0)."""
    b = synthetic.TraceBuilder()
    for _ in range(3):
        with b.step():
            b.kernel("my_custom_kernel", custom_ns, grid=(1320, 1, 1), block=(256, 1, 1),
                     registers=255)  # fmt: skip
            b.kernel("void at::native::vectorized_elementwise_kernel<4, add>", elementwise_ns,
                     grid=(13200, 1, 1), block=(128, 1, 1), registers=32)  # fmt: skip
            b.kernel("nvjet_tst_256x128_64x4_1x2_h_bz_coopA_TNT", 1_000_000, grid=(132, 1, 1),
                     block=(384, 1, 1), registers=168, shared_mem=213_656)  # fmt: skip
            b.sync("device")
    return b.write(tmp_path / "occupancy.json.gz")


def test_fires_with_hand_computed_occupancy(tmp_path: Path) -> None:
    path = _trace(tmp_path, custom_ns=900_000, elementwise_ns=100_000)
    findings = _run(path)
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.WARNING
    # The GEMM is left out (library kernel, and its 0 is "unknown").
    want = (CUSTOM_OCC * 900 + ELEMENTWISE_OCC * 100) / 1000
    assert f.evidence["occupancy_pct"] == pytest.approx(want)
    # tb_plugin averages every kernel, the GEMM's 0 included.
    assert f.evidence["tb_plugin_occupancy_pct"] == pytest.approx(
        (CUSTOM_OCC * 900 + ELEMENTWISE_OCC * 100 + 0 * 1000) / 2000
    )
    assert f.evidence["judged_share_pct"] == pytest.approx(50.0)
    assert f.evidence["low_occupancy_kernel_ns"] == 3 * 900_000 == f.impact_ns
    assert f.evidence["top_limiter"] == "registers"
    assert f.table is not None
    row = f.table.rows[0]
    assert row[0] == "my_custom_kernel" and row[3] == CUSTOM_OCC and row[4] == 255
    assert row[8] == "registers"
    assert "__launch_bounds__" in f.recommendation


def test_silent_when_the_weighted_occupancy_is_high(tmp_path: Path) -> None:
    path = _trace(tmp_path, custom_ns=300_000, elementwise_ns=700_000)
    assert (CUSTOM_OCC * 300 + ELEMENTWISE_OCC * 700) / 1000 >= 25
    assert _run(path) == []


def test_kineto_zero_is_unknown_unless_the_grid_rounds_it_to_zero(tmp_path: Path) -> None:
    b = synthetic.TraceBuilder()
    with b.step():
        # 1 block of 64 threads on 132 SMs: 100 x (1/132) x 64 / 2048 = 0.02%, rounds to 0.
        b.kernel("one_block_kernel", 10_000, grid=(1, 1, 1), block=(64, 1, 1))
        # 64 KiB of shared memory needs opt-in: Kineto's calculator reports 0.
        b.kernel("big_smem_kernel", 10_000, grid=(1320, 1, 1), block=(256, 1, 1),
                 shared_mem=65_536)  # fmt: skip
        b.sync("device")
    t = parse(b.write(tmp_path / "zeros.json.gz"))
    k = kernels_in_window(t).with_columns(occupancy_known(t).alias("known"))
    assert k["occupancy_pct"].to_list() == [0.0, 0.0]
    assert dict(zip(k["name"], k["known"], strict=True)) == {
        "one_block_kernel": True,
        "big_smem_kernel": False,
    }


@needs_shared
def test_tb_plugin_figure_on_resnet_matches_raw_json() -> None:
    raw = gzip.decompress(shared_trace(WORKERS_0).read_bytes())
    kernels = [e for e in msgspec.json.decode(raw, type=_Doc).traceEvents if e.cat == "Kernel"]
    assert all(k.args and k.args.occupancy_pct is not None for k in kernels)
    total = sum(k.dur for k in kernels)
    want = (
        sum(k.dur * k.args.occupancy_pct for k in kernels if k.args and k.args.occupancy_pct)
        / total
    )
    # Every kernel of this trace runs inside the profiled steps' window. Force a verdict to
    # read the evidence: the rule stays silent at its default threshold.
    assert _run(shared_trace(WORKERS_0)) == []
    findings = _run(shared_trace(WORKERS_0), warning_occupancy_pct=100.0)
    assert findings[0].evidence["tb_plugin_occupancy_pct"] == pytest.approx(want, abs=0.01)
    assert findings[0].evidence["kernels_without_occupancy"] == 0


@needs_shared
def test_rocm_kernels_without_occupancy_are_left_out() -> None:
    path = shared_trace(MI300_BERT)
    with gzip.open(path) as fh:
        kernels = [e for e in json.load(fh)["traceEvents"] if e.get("cat") == "kernel"]
    assert kernels and not any("est. achieved occupancy %" in k["args"] for k in kernels)
    t = parse(path)
    assert kernels_in_window(t).filter(pl.col("occupancy_pct").is_not_null()).height == 0
    assert _run(path, warning_occupancy_pct=100.0) == []


_H100_INFO = DeviceInfo(
    rank=0, device=0, name="NVIDIA H100 80GB HBM3", compute_major=9, compute_minor=0,
    num_sms=132, max_threads_per_sm=2048, regs_per_sm=65536, shared_mem_per_sm_bytes=233_472,
    warp_size=32,
)  # fmt: skip


@pytest.mark.parametrize(
    ("block", "registers", "smem", "bps", "expected"),
    [
        # 233472 // (100000 + 1024 reserved) = 2 blocks; registers allow 8, threads 8.
        (256, 32, 100_000, 10.0, "shared memory"),
        # 2048 // 32 = 64 blocks by threads, capped at 32 resident blocks; registers allow 128.
        (32, 16, 0, 100.0, "block size"),
        # Half a block per SM: the grid binds before any per-SM resource.
        (128, 32, 0, 0.5, "grid"),
        # 255 registers: a 256-thread block takes all 65536.
        (256, 255, 0, 10.0, "registers"),
    ],
)
def test_limiter_by_hand(block: int, registers: int, smem: int, bps: float, expected: str) -> None:
    row = {
        "block_x": block, "block_y": 1, "block_z": 1, "registers_per_thread": registers,
        "shared_mem_bytes": smem, "blocks_per_sm": bps,
    }  # fmt: skip
    assert limiter(row, _H100_INFO) == expected
    assert limiter(row, None) == ""


def test_low_occupancy_scenario_matches_its_ground_truth(tmp_path: Path) -> None:
    built = synthetic.low_occupancy()
    findings = _run(built.write(tmp_path / "low_occupancy.json.gz"))
    assert len(findings) == 1
    f = findings[0]
    assert f.table is not None
    assert f.table.rows[0][3] == built.expect["kernel_occupancy_pct"] == CUSTOM_OCC
    assert f.evidence["top_limiter"] == "registers"


@pytest.mark.parametrize("scenario", ["healthy", "low_occupancy_32_registers"])
def test_scenarios_without_low_occupancy_are_silent(tmp_path: Path, scenario: str) -> None:
    built = synthetic.healthy() if scenario == "healthy" else synthetic.low_occupancy(registers=32)
    assert _run(built.write(tmp_path / "t.json.gz")) == []


def test_skipped_with_reason_when_no_kernel_records_occupancy() -> None:
    """ROCm kernels carry no occupancy: the engine lists the rule as skipped, saying why."""
    from conftest import shared_trace
    from gpu_trace_analyzer.config import default_config
    from gpu_trace_analyzer.context import AnalysisContext
    from gpu_trace_analyzer.engine import run_rules
    from gpu_trace_analyzer.parsers import kineto

    path = shared_trace("tracelens/mi300__gaunernst_bert-small-uncased__1016001.json.gz")
    tables = kineto.parse(path)
    assert tables.kernels.height > 0 and tables.kernels["occupancy_pct"].null_count() == (
        tables.kernels.height
    )
    result = run_rules(AnalysisContext(tables=tables), default_config(), ["low-occupancy"])
    assert [s.rule_id for s in result.skipped] == ["low-occupancy"]
    assert "occupancy" in result.skipped[0].reason
