"""unfused-attention lists and claims only the shape groups whose cost matters (review E4).

OWLv2 on MI300X (Hugging Face eager): 180 chains were listed, 60 of them 5 x 5 text-query
attention (12 heads of 64) whose kernels take 1.59 ms in all (26.5 us per chain, launch
latency), next to 120 image chains of 5,185 x 5,185 taking 249.22 ms. A group is now listed
and claimed only when it holds at least `min_group_share_pct` (5%) of the unfused attention
time; the rest is one line of the summary.
"""

from __future__ import annotations

import polars as pl
from conftest import shared_trace
from gpu_trace_analyzer import load as analyze
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics.op_families import attention_of, op_families
from gpu_trace_analyzer.trace import load

_OWL = "tracelens/mi300__google_owlv2-large-patch14-ensemble__1016001.json.gz"
_TIMESFORMER = "tracelens/mi300__facebook_timesformer-base-finetuned-k400__1016002.json.gz"


def test_chain_gpu_time_adds_up_to_the_family() -> None:
    ctx = AnalysisContext(load([shared_trace(_OWL)]))
    chains = attention_of(ctx).chains
    assert int(chains["gpu_ns"].sum()) == op_families(ctx).ns("attention_unfused") == 250_805_191
    small = chains.filter((pl.col("q_len") == 5) & (pl.col("k_len") == 5))
    assert small.height == 60 and int(small["gpu_ns"].sum()) == 1_590_140
    assert 100.0 * int(small["gpu_ns"].sum()) / int(chains["gpu_ns"].sum()) < 5.0  # 0.63%


def test_owl_lists_only_the_large_chains() -> None:
    (f,) = [x for x in analyze(shared_trace(_OWL)).findings if x.rule_id == "unfused-attention"]
    assert f.evidence["chains"] == 180
    assert f.evidence["chains_listed"] == 120 and f.evidence["chains_negligible"] == 60
    assert f.impact_ns == 250_805_191 - 1_590_140
    assert f.table is not None and len(f.table.rows) == 1
    assert f.table.rows[0][:5] == [5185, 5185, 64, 16, 120]
    assert "60 more chain(s) in 1 small shape group(s) (5 x 5) take 1.59 ms" in f.summary
    assert "180 chains" not in f.summary


def test_timesformer_keeps_every_group() -> None:
    (f,) = [
        x for x in analyze(shared_trace(_TIMESFORMER)).findings if x.rule_id == "unfused-attention"
    ]
    assert f.evidence["chains_negligible"] == 0
    assert f.evidence["chains_listed"] == f.evidence["chains"] == 24
    assert "not listed" not in f.summary
