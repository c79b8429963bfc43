"""`analyze TRACE --summary`: one screen, the rest in <details>, within GitHub's limit, kernel
names shortened but distinguishable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES, shared_trace
from gpu_trace_analyzer import load
from gpu_trace_analyzer.cli import main
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.markdown import COMMENT_LIMIT, render_summary

GOLDEN = REPO / "tests" / "golden"
OWLV2 = "tracelens/mi300__google_owlv2-large-patch14-ensemble__1016001.json.gz"


def test_golden_summary(tmp_path: Path, update_goldens: bool) -> None:
    out = tmp_path / "summary.md"
    assert main([str(SAMPLES / "synthetic_train.json.gz"), "--summary", "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    golden = GOLDEN / "summary_synthetic_train.md"
    if update_goldens:
        golden.write_text(text, encoding="utf-8")
        pytest.skip(f"rewrote {golden.name}")
    assert text == golden.read_text(encoding="utf-8")
    a = load(SAMPLES / "synthetic_train.json.gz")
    findings = a.findings
    # Outside <details>: headline, the family line, exactly the top three findings' advice.
    visible = text.split("<details>")[0]
    assert "## Headline" in visible and "**Time by op family:** GEMM 51.6%" in visible
    assert visible.count("**Do this:**") == min(3, len(findings)) == 3
    assert visible.count("### ") == 3
    # Everything else collapsed: one block per section plus findings, warnings, how-to-read.
    sections = a.report_model().sections
    assert text.count("<details>") == text.count("</details>") >= len(sections) + 1
    assert text.count("#### ") == len(findings)  # every finding, with evidence, collapsed


def test_summary_is_shorter_than_the_report_and_cut_by_whole_rows() -> None:
    a = load(SAMPLES / "synthetic_2rank")
    report = a.report_model()
    full = render_summary(report)
    assert len(full) <= COMMENT_LIMIT
    limit = len(full) - 1000
    cut = render_summary(report, limit=limit)
    assert len(cut) <= limit
    assert re.search(r"\*\d+ more rows cut to fit GitHub's 65,536-character", cut)
    for line in cut.splitlines():  # every table row is whole (starts and ends with a pipe)
        if line.startswith("|"):
            assert line.endswith("|"), line


def test_summary_writes_markdown_only() -> None:
    assert main([str(SAMPLES / "synthetic_train.json.gz"), "--summary", "--format", "json"]) == 2


def test_elementwise_kernel_rows_stay_distinguishable_on_a_real_trace() -> None:
    """The MI300 OWLv2 trace has 30 distinct elementwise kernels; shortened, each keeps the
    functor or lambda that tells it apart, and no two rows read the same."""
    path = shared_trace(OWLV2)
    names = load(path).tables.kernels["name"].cast(str).unique().to_list()
    elementwise = [n for n in names if "elementwise_kernel" in n]
    assert len(elementwise) >= 20
    short = fmt.short_names(names)
    assert len(set(short.values())) == len(names)
    assert all(len(s) <= fmt.MAX_NAME_CHARS for n, s in short.items() if n in elementwise)
    add = next(
        n for n in elementwise if "vectorized" in n and "CUDAFunctor_add<c10::BFloat16>" in n
    )
    assert short[add] == "vectorized_elementwise_kernel<8, CUDAFunctor_add<BFloat16> >"
    text = render_summary(load(path).report_model())
    assert "void at::native::" not in text
    assert len(text) <= COMMENT_LIMIT
