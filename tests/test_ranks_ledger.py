"""The Ranks table's idle column agrees with the per-device idle ledger (review E2).

It used to show HTA's per-stream "idle that is host wait" (SGLang decode 99.9%, trace_filter
rank 0 83.3%) beside a ledger saying the GPU was mostly waiting on a dependency (99.8% and
57.5%). The table now shows the ledger's largest cause; HTA's per-stream figure stays a
metric (`timeline.idle_breakdown`, reproduced against HTA's CSVs in test_hta_differential).
"""

from __future__ import annotations

import polars as pl
import pytest
from conftest import shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics import idle_ledger, timeline
from gpu_trace_analyzer.report.model import Table
from gpu_trace_analyzer.sections.overview import ranks_section
from gpu_trace_analyzer.trace import load

_CASES = {
    "tracelens/inference__sglang_decode__sglang_Qwen3-8B_decode.json.gz": (9, 99.8),
    "hta/trace_filter/sampled_rank-0.json.gz": (0, 57.5),
}


@pytest.mark.parametrize("rel", sorted(_CASES))
def test_ranks_table_shows_the_ledgers_largest_cause(rel: str) -> None:
    device, pct = _CASES[rel]
    tables = load([shared_trace(rel)])
    ctx = AnalysisContext(tables)
    section = ranks_section(ctx)
    assert section is not None
    table = next(b for b in section.blocks if isinstance(b, Table))
    assert table.columns[-1] == "largest idle cause (% of idle)"
    assert "host wait" not in " ".join(table.columns)
    (row,) = table.rows
    assert row[1] == device
    # Recomputed from the ledger rows: the largest cause over the device's idle total.
    rows = idle_ledger.ledger(ctx).filter(pl.col("device") == device)
    per_cause = rows.group_by("cause").agg(pl.col("idle_ns").sum()).sort("idle_ns")
    top_cause, top_ns = per_cause.row(-1)
    assert top_cause == "dependency_wait"
    share = 100.0 * top_ns / int(rows["idle_ns"].sum())
    assert share == pytest.approx(pct, abs=0.05)
    assert row[-1] == f"dependency wait {share:.1f}%"
    # HTA's per-stream measure, kept as a metric, calls most of the same idle "host wait".
    hta = timeline.idle_breakdown(tables)
    assert int(hta["host_wait_ns"].sum()) > 0.75 * int(hta["idle_ns"].sum())
