"""`idle-sms`: estimated SM efficiency checked against tb_plugin's own expected output, hand
calculations on synthetic traces, and a real ROCm trace whose kernels run on a device that
``deviceProperties`` does not list."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import polars as pl
import pytest
import synthetic
from conftest import needs_shared, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers.kineto import merge_ranks, parse
from gpu_trace_analyzer.rules.idle_sms import IdleSms, kernel_efficiency, sm_efficiency_segments

H100_SMS = 132


def _run(path: Path) -> tuple[AnalysisContext, list[Finding]]:
    ctx = AnalysisContext(parse(path))
    return ctx, list(IdleSms().check(ctx, IdleSms.Config()))


def _segments(ctx: AnalysisContext) -> pl.DataFrame:
    kernels = kernel_efficiency(ctx.tables, ctx.options)
    return sm_efficiency_segments(kernels.filter(pl.col("sm_eff").is_not_null()))


def _expected_ranges() -> list[tuple[int, int, float]]:
    """tb_plugin's SM-efficiency ranges from its expected file, in us, at their real value.

    The file writes each range as a counter at its start with the value, then one at its end
    with 0. Its test fed values 10x the real ones ("Real data values are 1/10 of these"), and
    the first pair (1 then 0 at the trace start) has no length: it pins the chart's axis.
    """
    doc = json.loads(shared_trace("tb_plugin/test__gpu_metrics_expected.json").read_text())
    counters = [
        (int(e["ts"]), float(e["args"]["Est. SM Efficiency"]))
        for e in doc["traceEvents"]
        if e.get("ph") == "C" and e.get("name") == "GPU 0 Est. SM Efficiency"
    ]
    pairs = zip(counters[0::2], counters[1::2], strict=True)
    return [(s, e, v / 10) for (s, v), (e, zero) in pairs if e > s and zero == 0]


@needs_shared
def test_segments_match_tb_plugin_expected_output() -> None:
    ctx = AnalysisContext(parse(shared_trace("tb_plugin/test__gpu_metrics_input.json")))
    got = [
        (s // 1000, e // 1000, eff)
        for s, e, eff in _segments(ctx).select("start_ns", "end_ns", "sm_eff").iter_rows()
    ]
    expected = _expected_ranges()
    assert len(expected) == 30
    assert [(s, e) for s, e, _ in got] == [(s, e) for s, e, _ in expected]
    for (_, _, eff), (_, _, want) in zip(got, expected, strict=True):
        assert eff == pytest.approx(want, abs=1e-9)


@needs_shared
def test_fires_on_tb_plugin_input_with_its_averages() -> None:
    _, findings = _run(shared_trace("tb_plugin/test__gpu_metrics_input.json"))
    expected = _expected_ranges()
    busy_us = sum(e - s for s, e, _ in expected)
    weighted = sum((e - s) * v for s, e, v in expected)
    # The steps span: ProfilerStep#2 (ts 1621401187223358, dur 13410 us) holds every kernel.
    raw = json.loads(shared_trace("tb_plugin/test__gpu_metrics_input.json").read_text())
    step = next(e for e in raw["traceEvents"] if e.get("name") == "ProfilerStep#2")
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.CRITICAL
    assert f.evidence["sm_efficiency_busy_pct"] == pytest.approx(100 * weighted / busy_us, abs=0.01)
    assert f.evidence["sm_efficiency_span_pct"] == pytest.approx(
        100 * weighted / step["dur"], abs=0.01
    )
    assert f.evidence["num_sms"] == 80
    assert f.evidence["small_grid_time_pct"] == 100.0


def _overlapping(tmp_path: Path) -> tuple[Path, list[tuple[int, int, int, int]]]:
    """Per step, A (66 blocks = 0.5 of 132 SMs) on stream 7 and B (99 blocks = 0.75) on 8."""
    b = synthetic.TraceBuilder()
    pairs = []
    for _ in range(3):
        with b.step():
            a = b.kernel("kernel_a", 20_000, grid=(66, 1, 1), stream=7)
            c = b.kernel("kernel_b", 20_000, grid=(99, 1, 1), stream=8)
            b.sync("device")
        pairs.append((a.start_ns, a.end_ns, c.start_ns, c.end_ns))
    return b.write(tmp_path / "overlap.json.gz"), pairs


def test_overlapping_kernels_add_up_capped_at_one(tmp_path: Path) -> None:
    path, pairs = _overlapping(tmp_path)
    ctx, findings = _run(path)
    expected = []
    for a0, a1, b0, b1 in pairs:
        assert a0 < b0 < a1 < b1  # A alone, both, B alone
        expected += [(a0, b0, 0.5), (b0, a1, 1.0), (a1, b1, 0.75)]
    got = list(_segments(ctx).select("start_ns", "end_ns", "sm_eff").iter_rows())
    assert got == [pytest.approx(x) for x in expected]
    # Busy-time efficiency by hand: (0.5*5 + 1.0*15 + 0.75*5) / 25 us per step = 85%.
    assert all(b0 - a0 == 5_000 and b1 - a0 == 25_000 for a0, _, b0, b1 in pairs)
    assert len(findings) == 1
    f = findings[0]
    assert f.severity is Severity.INFO  # 85% >= 50%, but every kernel has fewer blocks than SMs
    assert f.evidence["sm_efficiency_busy_pct"] == pytest.approx(85.0)
    assert f.evidence["small_grid_time_pct"] == 100.0
    assert f.evidence["idle_sm_time_ns"] == 3 * (25_000 - 21_250)


def test_tiny_grids_are_critical_with_the_worst_kernel_named(tmp_path: Path) -> None:
    b = synthetic.TraceBuilder()
    for _ in range(3):
        with b.step():
            b.kernel("tiny_grid_kernel", 50_000, grid=(13, 1, 1))
            b.kernel("full_grid_kernel", 10_000, grid=(2 * H100_SMS, 1, 1))
            b.sync("device")
    _, findings = _run(b.write(tmp_path / "tiny.json.gz"))
    assert len(findings) == 1
    f = findings[0]
    # 13 / 132 of the SMs for 50 us, all of them for 10 us, per step.
    want = 100 * (50 * 13 / 132 + 10 * 1.0) / 60
    assert f.evidence["sm_efficiency_busy_pct"] == pytest.approx(want, abs=0.01)
    assert f.severity is Severity.CRITICAL  # 24.9% < 25%
    assert f.evidence["small_grid_time_pct"] == pytest.approx(100 * 50 / 60, abs=0.01)
    assert f.table is not None and f.table.rows[0][0] == "tiny_grid_kernel"
    assert f.table.rows[0][4] == 13.0 and f.table.rows[0][5] == H100_SMS
    assert f.impact_ns == round(3 * 50_000 * (1 - 13 / 132))


def test_equal_ranks_name_the_first_as_worst_every_time(tmp_path: Path) -> None:
    """Eight identical ranks: the worst device is the first one (rank 0), on every run (a
    hash aggregation used to leave it, and the order of float sums, to chance)."""
    b = synthetic.TraceBuilder()
    for _ in range(3):
        with b.step():
            b.kernel("tiny_grid_kernel", 50_000, grid=(13, 1, 1))
            b.sync("device")
    one = parse(b.write(tmp_path / "rank.json.gz"))
    ranks = merge_ranks(tmp_path, [one] * 8)
    assert sorted({r.rank for r in ranks.meta.ranks}) == list(range(8))
    seen = set()
    for _ in range(5):
        (f,) = IdleSms().check(AnalysisContext(ranks), IdleSms.Config())
        seen.add((f.evidence["worst_rank"], f.evidence["worst_sm_efficiency_busy_pct"]))
    assert seen == {(0, round(100 * 13 / 132, 2))}  # 9.85%: 13 blocks on 132 SMs


def test_full_grids_and_few_block_collectives_do_not_fire(tmp_path: Path) -> None:
    b = synthetic.TraceBuilder()
    for _ in range(3):
        with b.step():
            b.kernel("full_grid_kernel", 40_000, grid=(4 * H100_SMS, 1, 1))
            # NCCL uses a handful of blocks by design: not counted.
            b.kernel("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", 40_000, grid=(2, 1, 1), stream=20)
            b.sync("device")
    ctx, findings = _run(b.write(tmp_path / "full.json.gz"))
    assert findings == []
    kernels = kernel_efficiency(ctx.tables, ctx.options)
    assert kernels["name"].unique().to_list() == ["full_grid_kernel"]


@needs_shared
def test_undescribed_rocm_device_takes_its_ranks_cu_count() -> None:
    path = shared_trace("tracelens/mi300__gaunernst_bert-small-uncased__1016001.json.gz")
    with gzip.open(path) as fh:
        raw = json.load(fh)
    cus = raw["deviceProperties"][0]["numSms"]
    kernels = [e for e in raw["traceEvents"] if e.get("cat") == "kernel"]
    assert {k["args"]["device"] for k in kernels} == {2} and raw["deviceProperties"][0]["id"] == 0
    total = sum(float(k["dur"]) for k in kernels)
    small = sum(float(k["dur"]) for k in kernels if math.prod(k["args"]["grid"]) < cus)
    _, findings = _run(path)
    assert len(findings) == 1
    f = findings[0]
    assert f.evidence["num_sms"] == cus == 304
    assert f.evidence["small_grid_time_pct"] == pytest.approx(100 * small / total, abs=0.01)


def test_small_grids_scenario_matches_its_ground_truth(tmp_path: Path) -> None:
    built = synthetic.small_grids()
    _, findings = _run(built.write(tmp_path / "small_grids.json.gz"))
    assert len(findings) == 1
    f = findings[0]
    assert f.evidence["small_grid_time_pct"] == pytest.approx(
        built.expect["small_grid_share_pct"], abs=0.01
    )
    assert f.table is not None and f.table.rows[0][4] == 16.0  # 16 blocks on 132 SMs
    assert f.severity is Severity.WARNING


def test_healthy_scenario_is_silent(tmp_path: Path) -> None:
    _, findings = _run(synthetic.healthy().write(tmp_path / "healthy.json.gz"))
    assert findings == []
