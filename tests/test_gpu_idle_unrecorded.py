"""gpu-idle asks for Python stacks where host work is unrecorded (review E5).

HTA trace_filter rank 0 (TorchRec, 2 steps, no ``with_stack``): the ledger charges 222.1 ms
of idle to host work the trace does not record, 154.8 ms of it inside ``## backward ##``;
the lead cause is a dependency wait, so the finding's advice used to say nothing about it.
The trace does show ``Optimizer.step#Shampoo.step`` (389.8 ms of CPU time over the 2 steps),
but it runs under ``## optimizer ##``, whose unrecorded idle is 28.8 ms (13%): the trace does
not show Shampoo dominating the unrecorded time, so the advice must not name it.
"""

from __future__ import annotations

import polars as pl
import pytest
from conftest import shared_trace
from gpu_trace_analyzer import load as analyze
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics import idle_ledger, pystacks
from gpu_trace_analyzer.rules import gpu_idle
from gpu_trace_analyzer.trace import load

_TF0 = "hta/trace_filter/sampled_rank-0.json.gz"
_NW4 = "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz"


def _other_by_phase(ctx: AnalysisContext) -> dict[str | None, int]:
    rows = idle_ledger.ledger(ctx).filter(pl.col("cause") == "other")
    return {p: int(n) for p, n in rows.group_by("phase").agg(pl.col("idle_ns").sum()).iter_rows()}


def test_trace_filter_asks_for_with_stack_and_names_the_region() -> None:
    analysis = analyze(shared_trace(_TF0))
    (finding,) = [f for f in analysis.findings if f.rule_id == "gpu-idle"]
    assert finding.evidence["dominant_cause"] == "dependency_wait"
    assert finding.evidence["python_stacks"] == 0
    by_phase = _other_by_phase(AnalysisContext(load([shared_trace(_TF0)])))
    assert by_phase["## backward ##"] == 154_777_000
    assert by_phase["## optimizer ##"] == 28_849_000
    total = sum(by_phase.values())
    assert total == pytest.approx(222.1e6, abs=0.05e6)
    rec = finding.recommendation
    assert f"{total / 1e6:.1f} ms (33% of the idle time) is host work the trace" in rec
    assert "inside `## backward ##` (154.8 ms)" in rec
    assert "with_stack=True" in rec and "no Python stacks" in rec
    assert "Shampoo" not in rec  # present in the trace, but not where the time is


def test_shampoo_is_in_the_trace_but_under_the_optimizer_annotation() -> None:
    tables = load([shared_trace(_TF0)])
    ops = tables.ops.with_columns(pl.col("name").cast(pl.String))
    shampoo = ops.filter(pl.col("name") == "Optimizer.step#Shampoo.step")
    assert shampoo.height == 2 and int(shampoo["dur_ns"].sum()) == 389_819_000
    opt = ops.filter(pl.col("name") == "## optimizer ##")
    for s, d in shampoo.select("start_ns", "dur_ns").iter_rows():
        assert any(o <= s and s + d <= o + od for o, od in opt.select("start_ns", "dur_ns").rows())


def test_no_with_stack_request_when_the_trace_has_stacks(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = AnalysisContext(load([shared_trace(_TF0)]))
    rows = idle_ledger.by_cause(ctx).filter(pl.col("device") == 0)
    monkeypatch.setattr(pystacks, "has_stacks", lambda _ctx: True)
    text = gpu_idle._unrecorded_advice(ctx, rows)
    assert "with_stack=True" not in text and "the trace has Python stacks" in text


def test_no_unrecorded_advice_under_the_threshold() -> None:
    ctx = AnalysisContext(load([shared_trace(_TF0)]))
    rows = idle_ledger.by_cause(ctx).filter(pl.col("device") == 0)
    small = rows.with_columns(
        pl.when(pl.col("cause") == "other")
        .then(gpu_idle.UNRECORDED_ADVICE_PCT - 0.1)
        .otherwise(pl.col("idle_pct"))
        .alias("idle_pct")
    )
    assert gpu_idle._unrecorded_advice(ctx, small) == ""
    assert gpu_idle._unrecorded_advice(ctx, rows) != ""


def test_resnet_unrecorded_share_gets_the_request_too() -> None:
    # num_workers_4: 'other' is 17.0% of the idle, lead cause CPU work; no Python stacks.
    (finding,) = [f for f in analyze(shared_trace(_NW4)).findings if f.rule_id == "gpu-idle"]
    assert finding.evidence["dominant_cause"] == "cpu_work"
    assert "with_stack=True" in finding.recommendation
