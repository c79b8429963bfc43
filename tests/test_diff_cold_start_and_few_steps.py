"""analyze diff: one-time first-step idle on its own row, and no interval from 2-4 steps
(review 3, defect 12).

tb_plugin ResNet-50 num_workers_0 -> num_workers_4: the candidate's first step makes a 40.0 ms
pageable input copy with the GPU idle 36.44 ms inside it (a cold start). The diff read "idle:
CPU in a blocking copy 0.1% -> 4.4%", a steady-state regression caused by num_workers; that
part now sits on its own row (0.0% -> 4.3%) and the blocking-copy row stays at 0.1% -> 0.1%.
HTA trace_compare base -> test has 2 vs 2 steps: the bootstrap "interval" (-19.6% to +19.6%)
only re-read the range, so none is printed, and a change counts only when the sides' step
times do not overlap.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import shared_trace
from gpu_trace_analyzer.api import load
from gpu_trace_analyzer.diff import (
    MIN_SAMPLES_FOR_INTERVAL,
    bootstrap_change,
    compare,
    regression,
)
from gpu_trace_analyzer.report import diff_markdown
from gpu_trace_analyzer.sections import overview

TB0 = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"
TB4 = "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz"


def _gpu_idle_in_longest_copy_us(path: Path) -> float:
    """GPU idle inside the trace's longest cudaMemcpyAsync, from the raw events."""
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    copy = max((e for e in events if e.get("name") == "cudaMemcpyAsync"), key=lambda e: e["dur"])
    s, t = float(copy["ts"]), float(copy["ts"]) + float(copy["dur"])
    spans = sorted(
        (max(float(e["ts"]), s), min(float(e["ts"]) + float(e["dur"]), t))
        for e in events
        if str(e.get("cat", "")).lower() in ("kernel", "memcpy", "memset")
        and float(e["ts"]) < t
        and float(e["ts"]) + float(e["dur"]) > s
    )
    busy, cur = 0.0, None
    for a, b in spans:
        if cur is None or a > cur[1]:
            busy += cur[1] - cur[0] if cur else 0.0
            cur = (a, b)
        else:
            cur = (cur[0], max(cur[1], b))
    busy += cur[1] - cur[0] if cur else 0.0
    return (t - s) - busy


def test_cold_start_copy_is_not_a_steady_state_regression() -> None:
    p0, p4 = shared_trace(TB0), shared_trace(TB4)
    a0, a4 = load(p0), load(p4)
    d = compare(a0, a4)
    idle_us = _gpu_idle_in_longest_copy_us(p4)
    assert idle_us == pytest.approx(36_436, abs=1)
    span_ns = float(overview.breakdown(a4.context)["span_ns"].sum())
    cold = d.metric("idle_blocking_copy_cold_start_pct")
    assert cold is not None and cold.base == 0.0
    assert cold.candidate == pytest.approx(100 * idle_us * 1e3 / span_ns, rel=1e-3)  # 4.3%
    steady = d.metric("idle_blocking_copy_pct")
    assert steady is not None and steady.base is not None and steady.candidate is not None
    assert steady.candidate < 0.5 and abs(steady.candidate - steady.base) < 0.2  # was 0.1 -> 4.4
    assert not regression(d, "idle_blocking_copy_pct", 1.0)
    text = diff_markdown.render(d)
    assert "one-time first-step cost (cold start) | 0.0% | 4.3% |" in text
    assert "Largest idle-ledger change: CPU in the DataLoader" in text


def test_no_cold_start_row_without_a_cold_start() -> None:
    d = compare(load(shared_trace(TB0)), load(shared_trace(TB0)))
    assert not any(m.key.endswith("_cold_start_pct") for m in d.metrics)
    assert "one-time first-step" not in diff_markdown.render(d)


def test_two_steps_a_side_print_no_interval() -> None:
    base = shared_trace("hta/trace_compare/base")
    test = shared_trace("hta/trace_compare/test")
    d = compare(load(base), load(test))
    assert (d.step.n_base, d.step.n_candidate) == (2, 2)
    assert not d.step.has_noise_estimate and d.step.too_few_samples
    assert d.verdict == "unchanged" and not regression(d, "step_time_ns", 0.0)
    line = diff_markdown.verdict_line(d)
    assert "too few steps for a noise interval (2 vs 2" in line
    assert "interval of the change" not in line  # was "-19.6% to +19.6%"


def test_few_steps_rule_and_enough_steps_keep_the_bootstrap() -> None:
    assert MIN_SAMPLES_FOR_INTERVAL == 5
    apart = bootstrap_change([100.0, 101.0, 102.0], [130.0, 131.0, 132.0])
    assert apart.too_few_samples and apart.separated and apart.outside_noise
    overlap = bootstrap_change([100.0, 110.0], [105.0, 108.0])
    assert overlap.too_few_samples and not overlap.outside_noise
    five = bootstrap_change([100.0, 103.0, 98.0, 101.0, 99.0], [130.0, 133.0, 128.0, 131.0, 129.0])
    assert five.has_noise_estimate and not five.too_few_samples and five.outside_noise
