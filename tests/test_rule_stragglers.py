"""stragglers: the rank the others wait for in collectives.

Ground truth: the synthetic ``straggler`` scenario (4 ranks, rank 2's compute 25% slower;
the generator records each rank's wait inside every all-reduce), and for the real 2-rank
``hta/trace_filter`` trace a wait computed independently from the raw JSON.
"""

from __future__ import annotations

import gzip
import statistics
from pathlib import Path
from typing import Any

import msgspec
import pytest
import synthetic
from conftest import shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers import kineto
from gpu_trace_analyzer.parsers.schema import TraceTables
from gpu_trace_analyzer.rules.stragglers import Stragglers, StragglersConfig, rank_table


def _check(tables: TraceTables, **overrides: Any) -> list[Finding]:
    return list(Stragglers().check(AnalysisContext(tables), StragglersConfig(**overrides)))


@pytest.fixture(scope="module")
def slow_rank_2(tmp_path_factory: pytest.TempPathFactory) -> tuple[TraceTables, dict[str, Any]]:
    trace = synthetic.straggler(world_size=4, slow_rank=2, slowdown=0.25)
    directory = trace.write(tmp_path_factory.mktemp("straggler") / "straggler")
    return kineto.parse(directory), trace.expect


def test_names_the_slow_rank(slow_rank_2: tuple[TraceTables, dict[str, Any]]) -> None:
    tables, expect = slow_rank_2
    (finding,) = _check(tables)
    ev = finding.evidence
    assert ev["slow_rank"] == expect["slow_rank"] == 2
    assert finding.scope.rank == 2
    waits = {int(r): w for r, w in expect["wait_ns_by_rank"].items()}
    assert ev["wait_spread_ns"] == max(waits.values()) - min(waits.values())
    assert ev["max_wait_ns"] == max(waits.values())
    assert ev["slow_rank_wait_ns"] == waits[2] == 0
    # Median of each rank's median step, as a share: spread per step / median step.
    steps = {int(r): s for r, s in expect["step_ns_by_rank"].items()}
    median_step = statistics.median(statistics.median(s) for s in steps.values())
    assert ev["median_step_ns"] == int(median_step)
    spread_pct = 100.0 * float(ev["wait_spread_ns"]) / len(steps[0]) / median_step
    assert ev["wait_spread_pct_of_step"] == pytest.approx(spread_pct, abs=0.01)
    assert finding.severity is (Severity.WARNING if spread_pct < 25 else Severity.CRITICAL)
    compute = {int(r): c for r, c in expect["compute_ns_by_rank"].items()}
    assert ev["largest_difference"] == "GPU compute time"
    assert ev["largest_difference_pct"] == pytest.approx(
        100.0 * (compute[2] - compute[0]) / compute[0], abs=0.05
    )
    assert finding.table is not None
    assert finding.table.rows[0][0] == 2  # the slow rank first
    assert "throttl" in finding.recommendation


def test_rank_table_matches_the_generator(slow_rank_2: tuple[TraceTables, Any]) -> None:
    tables, expect = slow_rank_2
    table = rank_table(AnalysisContext(tables))
    assert dict(zip(table["rank"], table["wait_ns"], strict=True)) == {
        int(r): w for r, w in expect["wait_ns_by_rank"].items()
    }
    assert dict(zip(table["rank"], table["compute_ns"], strict=True)) == {
        int(r): c for r, c in expect["compute_ns_by_rank"].items()
    }
    assert set(table["collectives"].to_list()) == {5}  # one all-reduce per step, 5 steps


def test_balanced_ranks_do_not_fire(tmp_path: Path) -> None:
    trace = synthetic.straggler(world_size=4, slow_rank=2, slowdown=0.0)
    tables = kineto.parse(trace.write(tmp_path / "balanced"))
    assert set(trace.expect["wait_ns_by_rank"].values()) == {0}
    assert _check(tables) == []


def _sendrecv_durations_us(path: Path) -> list[float]:
    with gzip.open(path, "rb") as f:
        events = msgspec.json.decode(f.read())["traceEvents"]
    kernels = [e for e in events if e.get("cat") == "kernel" and e["name"].startswith("ncclKernel")]
    return [e["dur"] for e in sorted(kernels, key=lambda e: e["ts"])]


def test_real_two_rank_trace_is_balanced() -> None:
    """hta/trace_filter (ranks 0 and 1 of a 128-rank job): the n-th SendRecv kernel of each
    rank is the same all-to-all; wait = duration - the shorter of the two. Rank 0 waits
    17 ms more than rank 1 over 2 steps of about 615 ms: 1.4% per step, under 10%."""
    rank0 = _sendrecv_durations_us(shared_trace("hta/trace_filter/sampled_rank-0.json.gz"))
    rank1 = _sendrecv_durations_us(shared_trace("hta/trace_filter/sampled_rank-1.json.gz"))
    assert len(rank0) == len(rank1) == 10
    wait0 = sum(a - min(a, b) for a, b in zip(rank0, rank1, strict=True)) * 1000
    wait1 = sum(b - min(a, b) for a, b in zip(rank0, rank1, strict=True)) * 1000
    tables = kineto.parse(shared_trace("hta/trace_filter"))
    table = rank_table(AnalysisContext(tables))
    assert dict(zip(table["rank"], table["wait_ns"], strict=True)) == {
        0: round(wait0),
        1: round(wait1),
    }
    assert _check(tables) == []
    (finding,) = _check(tables, warning_spread_pct=1.0)
    assert finding.evidence["slow_rank"] == 1  # it waits less: rank 0 waits for it
    assert finding.evidence["world_size"] == 128
    assert "only 2 of 128 ranks" in finding.summary
