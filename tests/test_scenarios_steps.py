"""Step accounting and the idle ledger on scenarios with recorded ground truth
(`sample_traces/scenarios_steps.py`): the ledger's rows sum to the idle time (within 1 ns)
and equal the reference ledger computed from the builder's records; each step is charged
with its own work; findings claim disjoint rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
import scenarios_steps
from gpu_trace_analyzer.config import default_config
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.engine import run_rules
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.metrics import idle_ledger, steps, timeline
from gpu_trace_analyzer.parsers import kineto
from gpu_trace_analyzer.sections import idle_ledger as ledger_section
from gpu_trace_analyzer.sections.kernels import kernel_summary


def _analyze(name: str, tmp_path: Path) -> tuple[AnalysisContext, dict[str, Any], list[Finding]]:
    builder = scenarios_steps.SCENARIOS[name]()
    ctx = AnalysisContext(kineto.parse(builder.write(tmp_path / f"{name}.json.gz")))
    return ctx, builder.expect, list(run_rules(ctx, default_config()).findings)


def _rule(findings: list[Finding], rule_id: str) -> Finding | None:
    return next((f for f in findings if f.rule_id == rule_id), None)


@pytest.mark.parametrize("name", sorted(scenarios_steps.SCENARIOS))
def test_ledger_matches_the_ground_truth(name: str, tmp_path: Path) -> None:
    ctx, expect, findings = _analyze(name, tmp_path)
    rows = idle_ledger.by_cause(ctx)
    assert rows.select("rank", "device").unique().height == 1
    got = dict(zip(rows["cause"].to_list(), rows["idle_ns"].to_list(), strict=True))
    assert got == expect["ledger"]
    idle_ns = int(timeline.breakdown(ctx.tables)["idle_ns"].sum())
    assert abs(sum(got.values()) - idle_ns) <= 1
    claimed = [f for f in findings if "idle_claimed_ns" in f.evidence]
    causes = [c for f in claimed for c in str(f.evidence["ledger_causes"]).split(",")]
    assert len(causes) == len(set(causes))  # no row claimed twice
    assert sum(int(f.evidence["idle_claimed_ns"]) for f in claimed) <= idle_ns


def test_queued_before_profiling(tmp_path: Path) -> None:
    ctx, expect, findings = _analyze("queued_before_profiling", tmp_path)
    queued = steps.queued_before_profiling(ctx.tables)
    assert queued["ops"].to_list() == [expect["queued_ops"]]
    assert queued["gpu_ns"].to_list() == [expect["queued_gpu_ns"]]
    acc = steps.step_accounting(ctx.tables)
    assert acc["gpu_busy_ns"].to_list() == expect["own_gpu_busy_ns"]
    assert acc["waited_ns"].to_list() == [expect["first_wait_ns"], 0, 0, 0, 0]
    # The builder's GPU-side step annotations hold each step's launched work: trusted.
    assert acc["basis"].unique().to_list() == ["gpu_user_annotation"]
    # The first step's CPU time includes the 14 ms wait for the queued work: not its own.
    assert acc["cpu_dur_ns"][0] > 2 * acc["cpu_dur_ns"][1]
    own = acc["step_ns"].to_list()  # 8.013 ms then 8.012 ms: the sync's 1 us return
    assert max(own) - min(own) <= 1_000
    assert _rule(findings, "cold-start") is None
    assert _rule(findings, "step-variance") is None
    # Kept out of the roofline and top-kernel tables, and warned about once.
    assert "warmup_kernel" not in kernel_summary(ctx.tables)["name"].to_list()
    section = ledger_section.build(ctx)
    assert section is not None
    text = " ".join(str(p) for b in section.blocks for p in getattr(b, "parts", ()))
    assert "queued before profiling" in text and f"{expect['queued_ops']} of" in text


def test_pipelined_equal_steps_are_neither_cold_nor_variable(tmp_path: Path) -> None:
    ctx, expect, findings = _analyze("pipelined", tmp_path)
    assert max(expect["gpu_lag_ns"]) > 3 * 3_000_000  # the GPU is steps behind the CPU
    acc = steps.step_accounting(ctx.tables)
    assert acc["gpu_busy_ns"].to_list() == expect["own_gpu_busy_ns"]
    # GPU-bound: each step's own time is its own GPU work; the last also launches (about
    # 68 us) while the GPU is still busy with earlier steps, net of the wait for them.
    assert acc["step_ns"].to_list()[:-1] == expect["own_gpu_busy_ns"][:-1]
    assert acc["step_ns"][-1] == pytest.approx(expect["own_gpu_busy_ns"][-1], rel=0.01)
    assert _rule(findings, "cold-start") is None
    assert _rule(findings, "step-variance") is None


def test_real_cold_start_is_found(tmp_path: Path) -> None:
    _, expect, findings = _analyze("real_cold_start", tmp_path)
    finding = _rule(findings, "cold-start")
    assert finding is not None
    assert finding.evidence["first_step_ns"] == expect["cpu_step_ns"][0]
    assert finding.evidence["median_step_ns"] == expect["cpu_step_ns"][1]
    assert finding.evidence["first_step_gpu_busy_ns"] == expect["own_gpu_busy_ns"][0]
    assert finding.evidence["ratio"] == pytest.approx(expect["first_ratio"], abs=1e-3)
    assert "GPU work" in finding.recommendation


def test_pageable_copies_that_freeze_the_main_thread_are_critical(tmp_path: Path) -> None:
    _, expect, findings = _analyze("pageable_stall", tmp_path)
    pageable = _rule(findings, "pageable-memcpy")
    assert pageable is not None
    assert pageable.severity is Severity.CRITICAL  # 5 x 140 ms blocked, 704-byte copies
    assert pageable.evidence["cpu_blocked_ns"] == expect["blocked_ns"]
    assert pageable.evidence["gpu_copy_ns"] == expect["copy_gpu_ns"]
    host = _rule(findings, "host-sync")
    assert host is not None
    assert host.evidence["blocking_memcpy_calls"] == expect["copies"] == 5
    assert host.evidence["blocked_ns"] == expect["blocked_ns"]
    assert host.evidence["idle_claimed_ns"] == expect["ledger"]["blocking_copy"]
    assert host.table is not None and host.table.rows[0][0] == "cudaMemcpyAsync"
    assert host.table.rows[0][2] == "aten::copy_"


def test_overlapping_causes_are_claimed_once(tmp_path: Path) -> None:
    ctx, expect, findings = _analyze("overlapping_causes", tmp_path)
    ledger = expect["ledger"]
    assert expect["loader_idle_ns"] == ledger["dataloader"] + expect["sync_idle_ns"]
    loader = _rule(findings, "dataloader-stall")
    assert loader is not None
    assert loader.evidence["idle_claimed_ns"] == ledger["dataloader"]
    assert loader.evidence["gpu_idle_during_dataloader_ns"] == ledger["dataloader"]
    host = _rule(findings, "host-sync")
    if host is not None:
        assert host.evidence["idle_claimed_ns"] == ledger["sync_wait"] == expect["sync_idle_ns"]
    rows = idle_ledger.ledger(ctx)
    assert (
        int(rows.filter(pl.col("cause") == "sync_wait")["idle_ns"].sum()) == expect["sync_idle_ns"]
    )


def test_work_held_by_an_event_wait_is_not_the_copys(tmp_path: Path) -> None:
    _, expect, findings = _analyze("held_by_event_wait", tmp_path)
    ledger = expect["ledger"]
    assert ledger["dependency_wait"] == expect["held_idle_ns"] > 0.99 * 400_000_000
    assert ledger["blocking_copy"] < 0.001 * expect["copy_blocked_ns"]
    host = _rule(findings, "host-sync")
    assert host is not None and host.severity is Severity.INFO
    assert host.evidence["idle_claimed_ns"] == ledger["sync_wait"] + ledger["blocking_copy"]
    idle = _rule(findings, "gpu-idle")
    assert idle is not None and idle.severity is Severity.WARNING
    assert "capture started mid-pipeline" in idle.summary
    assert "cudaStreamWaitEvent" in idle.recommendation or "StreamWaitEvent" in idle.recommendation
