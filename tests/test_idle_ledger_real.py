"""The idle ledger on every real trace in ../shared/traces (Kineto and Nsight): each
device's rows sum to its idle time exactly, no two findings claim the same ledger rows, and
the idle claimed by findings never exceeds the idle time; rules run without internal
errors on all of them."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import TRACES, needs_shared
from gpu_trace_analyzer.config import default_config
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.engine import run_rules
from gpu_trace_analyzer.metrics import idle_ledger, timeline
from gpu_trace_analyzer.parsers.errors import AnalyzerError
from gpu_trace_analyzer.trace import load


def _real_traces() -> list[Path]:
    """Every Kineto (.json / .json.gz) and Nsight (.sqlite) file under ../shared/traces,
    less the non-trace JSON (execution details, tb_plugin's GPU-metrics fixtures), and one
    multi-rank directory."""
    if not TRACES.is_dir():
        return []
    found = [
        p
        for p in sorted(TRACES.rglob("*"))
        if p.is_file()
        and (p.name.endswith((".json", ".json.gz", ".sqlite")))
        and "/dcgm/" not in str(p)
        and "execution_details" not in p.name
        and "gpu_metrics" not in p.name
    ]
    multi_rank = TRACES / "hta" / "trace_filter"  # two ranks of a 128-rank job, as one trace
    return [*found, multi_rank] if multi_rank.is_dir() else found


TRACE_FILES = _real_traces()


@needs_shared
@pytest.mark.parametrize("path", TRACE_FILES, ids=[str(p.relative_to(TRACES)) for p in TRACE_FILES])
def test_ledger_and_claims_on_real_trace(path: Path) -> None:
    try:
        tables = load([path])
    except AnalyzerError as exc:  # e.g. a Chakra execution trace: not a profiler trace
        pytest.skip(f"not analyzable: {exc}")
    ctx = AnalysisContext(tables)
    ledger = idle_ledger.ledger(ctx)
    breakdown = timeline.breakdown(tables).select("rank", "device", "idle_ns")
    sums = ledger.group_by("rank", "device").agg(pl.col("idle_ns").sum().alias("ledger_ns"))
    both = breakdown.join(sums, on=["rank", "device"], how="full", coalesce=True).fill_null(0)
    assert both.filter(pl.col("idle_ns") != pl.col("ledger_ns")).height == 0, both
    assert ledger.filter(pl.col("idle_ns") < 0).height == 0
    assert set(ledger["cause"].to_list()) <= set(idle_ledger.CAUSES)

    result = run_rules(ctx, default_config())
    assert result.errors == []
    claims = [
        (f.rule_id, str(f.evidence["ledger_causes"]).split(","), int(f.evidence["idle_claimed_ns"]))
        for f in result.findings
        if "idle_claimed_ns" in f.evidence
    ]
    seen: dict[str, str] = {}
    for rule_id, causes, claimed_ns in claims:
        for cause in causes:
            assert cause not in seen, f"{rule_id} and {seen.get(cause)} both claim {cause}"
            seen[cause] = rule_id
        rows = ledger.filter(pl.col("cause").is_in(causes))
        assert claimed_ns <= int(rows["idle_ns"].sum())
    total_idle = int(breakdown["idle_ns"].sum())
    assert sum(c for _, _, c in claims) <= total_idle
