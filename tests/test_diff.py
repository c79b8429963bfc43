"""`analyze diff`: verdict and noise, op matching, findings, CI gating, size, JSON schema.

Real pairs come from ../shared/traces (skipped when absent); step times are checked against
the traces' own ``ProfilerStep#N`` durations read with the standard library.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import statistics
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import synthetic
from conftest import REPO, shared_trace
from gpu_trace_analyzer.api import Analysis, load
from gpu_trace_analyzer.cli import main
from gpu_trace_analyzer.config import default_config
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.diff import bootstrap_change, compare, new_findings_at, regression
from gpu_trace_analyzer.findings import Severity
from gpu_trace_analyzer.report import diff_json, diff_markdown

TB0 = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"
TB4 = "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz"
H100 = "tracelens/h100__gaunernst_bert-small-uncased__1016001.json.gz"
MI300 = "tracelens/mi300__gaunernst_bert-small-uncased__1016001.json.gz"
SCHEMA = REPO / "analyzer" / "report" / "diff_schema.json"
GOLDEN = Path(__file__).parent / "golden"


def _load(path: Path) -> Analysis:
    return load(path, config=default_config())


def _raw_step_ns(path: Path) -> list[int]:
    """CPU ``ProfilerStep#N`` durations straight from the JSON (ns, rounded from us)."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        doc = json.load(fh)
    return [
        round(float(e["dur"]) * 1000)
        for e in doc["traceEvents"]
        if e.get("cat") in ("cpu_op", "user_annotation", "Operator")
        and str(e.get("name", "")).startswith("ProfilerStep#")
    ]


def _validate(doc: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


# -- noise ---------------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_separates_shift_from_noise() -> None:
    base = [100.0, 103.0, 98.0, 101.0, 99.0, 102.0, 100.0, 97.0]
    shifted = [v * 1.3 for v in base]
    a, b = bootstrap_change(base, shifted), bootstrap_change(base, shifted)
    assert a == b  # deterministic
    assert a.delta_pct == pytest.approx(30.0)
    assert a.ci_low_pct is not None and a.ci_low_pct > 0  # outside the noise
    same = bootstrap_change(base, list(reversed(base)))
    assert same.delta == 0 and same.ci_low_pct is not None and same.ci_high_pct is not None
    assert same.ci_low_pct < 0 < same.ci_high_pct and not same.outside_noise
    one = bootstrap_change([100.0], [130.0])
    assert not one.has_noise_estimate and one.outside_noise and one.delta_pct == 30.0


# -- real pairs ------------------------------------------------------------------------------


def test_tb_plugin_num_workers_0_to_4_is_faster_and_the_dataloader_stall_goes() -> None:
    p0, p4 = shared_trace(TB0), shared_trace(TB4)
    d = compare(_load(p0), _load(p4))
    # CPU step time of each side: the median of the trace's own ProfilerStep durations.
    cpu = d.metric("cpu_step_time_ns")
    assert cpu is not None and cpu.base is not None and cpu.candidate is not None
    assert cpu.base == pytest.approx(statistics.median(_raw_step_ns(p0)), abs=1_000)
    assert cpu.candidate == pytest.approx(statistics.median(_raw_step_ns(p4)), abs=1_000)
    # The step's own time nets out waiting on earlier steps' work (42 us in step 7 of the
    # candidate), so it is at most the CPU step time and within 0.1% of it here.
    assert d.step.base == cpu.base
    assert cpu.candidate - 50_000 < d.step.candidate <= cpu.candidate
    assert d.step.candidate < 0.8 * d.step.base
    assert d.verdict == "faster"
    assert d.step.ci_high_pct is not None and d.step.ci_high_pct < 0
    gone = {(f.rule_id, f.kind) for f in d.findings}
    assert ("dataloader-stall", "disappeared") in gone
    loader = d.metric("idle_dataloader_pct")
    assert loader is not None and loader.base is not None and loader.candidate is not None
    assert loader.base > 30 and loader.candidate < 1  # the ledger's DataLoader row
    assert d.kernels_matched and not d.notes  # same V100, same software
    text = diff_markdown.render(d)
    assert text.startswith("# Run comparison")
    assert "**Verdict: faster.**" in text and "bootstrap" in text
    assert "| disappeared | `dataloader-stall` |" in text
    _validate(diff_json.to_dict(d))


def test_hta_trace_compare_base_to_test() -> None:
    base, test = shared_trace("hta/trace_compare/base"), shared_trace("hta/trace_compare/test")
    d = compare(_load(base), _load(test))
    raw_b = _raw_step_ns(next(base.glob("*.json.gz")))
    raw_t = _raw_step_ns(next(test.glob("*.json.gz")))
    assert d.base.steps == len(set(raw_b)) or d.base.steps == 2
    assert d.step.base == pytest.approx(statistics.median(raw_b), abs=1_000)
    assert d.step.candidate == pytest.approx(statistics.median(raw_t), abs=1_000)
    assert d.verdict == "unchanged"  # two steps each, same length: within the noise
    # HTA's own reading of the two runs says the candidate's workload is training.
    assert any("workload profile differs" in n for n in d.notes)
    _validate(diff_json.to_dict(d))


def test_control_against_itself_is_unchanged_and_lists_nothing(tmp_path: Path) -> None:
    ctl = shared_trace("hta/trace_diff/control")
    out = tmp_path / "same.md"
    gates = ["--fail-on-regression", "0", "--fail-on", "info"]
    code = main(["diff", str(ctl), str(ctl), "-o", str(out), *gates])
    assert code == 0
    text = out.read_text(encoding="utf-8")
    assert "**Verdict: unchanged within noise.**" in text
    assert "No op group changed its GPU time per step." in text
    assert "No finding appeared, disappeared or changed severity" in text
    d = compare(_load(ctl), _load(ctl))
    assert d.changed_ops == () and d.changed_kernels == () and d.findings == ()
    assert all(m.delta in (0, None) for m in d.metrics)
    assert d.op_groups and all(g.side == "both" for g in d.op_groups)


def test_h100_to_mi300x_matches_gemms_by_shape_not_kernel_names() -> None:
    d = compare(_load(shared_trace(H100)), _load(shared_trace(MI300)))
    assert not d.kernels_matched and d.kernels == ()
    assert any(n.startswith("devices differ") for n in d.notes)
    assert any("kernel names are not matched" in n for n in d.notes)
    gemms = [g for g in d.op_groups if g.name == "aten::addmm" and g.side == "both"]
    # BERT-small: the QKV/output projections (512x512), the MLP (512x2048, 2048x512) and the
    # vocabulary head, each matched by its shapes on both devices.
    shapes = {g.shapes for g in gemms}
    assert "512, 141x512, 512x512" in shapes and "30522, 141x512, 512x30522" in shapes
    for g in gemms:
        assert g.base_calls_per_step == g.candidate_calls_per_step > 0
        assert g.base_ns_per_step > 0 and g.candidate_ns_per_step > 0
        assert g.dtype == "bf16"
    assert d.base.steps == d.candidate.steps == 1
    text = diff_markdown.render(d)
    assert "no noise estimate is possible" in text
    assert "Kernel names are not compared" in text
    _validate(diff_json.to_dict(d))


# -- CI gating -------------------------------------------------------------------------------


def test_fail_on_regression_exit_codes_both_ways(tmp_path: Path) -> None:
    p0, p4 = str(shared_trace(TB0)), str(shared_trace(TB4))
    out = str(tmp_path / "d.md")
    # 4 -> 0 workers: ~39% slower, outside the noise.
    assert main(["diff", p4, p0, "-o", out, "--fail-on-regression", "10"]) == 1
    assert main(["diff", p4, p0, "-o", out, "--fail-on-regression", "60"]) == 0
    # 0 -> 4 workers got faster: no regression at any threshold.
    assert main(["diff", p0, p4, "-o", out, "--fail-on-regression", "0"]) == 0
    # --metric: the DataLoader idle share grows by ~32.5 points from 4 to 0 workers.
    args = ["diff", p4, p0, "-o", out, "--metric", "idle_dataloader_pct"]
    assert main([*args, "--fail-on-regression", "30"]) == 1
    assert main([*args, "--fail-on-regression", "35"]) == 0
    assert main(["diff", p4, p0, "-o", out, "--fail-on-regression", "1", "--metric", "x"]) == 2


def test_fail_on_new_findings_both_ways(tmp_path: Path) -> None:
    p0, p4 = str(shared_trace(TB0)), str(shared_trace(TB4))
    out = str(tmp_path / "d.md")
    # 4 -> 0 workers: the critical dataloader-stall appears.
    assert main(["diff", p4, p0, "-o", out, "--fail-on", "critical"]) == 1
    # 0 -> 4: only an info and a warning finding appear (host-sync, step-variance).
    assert main(["diff", p0, p4, "-o", out, "--fail-on", "critical"]) == 0
    assert main(["diff", p0, p4, "-o", out, "--fail-on", "warning"]) == 1
    d = compare(_load(Path(p0)), _load(Path(p4)))
    # pageable-memcpy is only INFO on num_workers_4: its blocked time is mostly the first
    # step's one-time copy, which cold-start owns.
    assert {f.rule_id for f in new_findings_at(d, Severity.WARNING)} == {
        "step-variance",
        "gpu-idle",
    }


def _half(a: Analysis, keep: int) -> Analysis:
    """``a`` with only every other profiled step (``keep``: 0 even, 1 odd ones)."""
    t = a.tables
    steps = t.steps.filter(t.steps["step"] % 2 == keep)
    return Analysis(AnalysisContext(tables=dataclasses.replace(t, steps=steps)), default_config())


def test_two_halves_of_one_trace_are_unchanged_within_noise() -> None:
    a = _load(shared_trace("hta/trace_diff/control"))
    even, odd = _half(a, 0), _half(a, 1)
    d = compare(even, odd)
    assert d.base.steps == d.candidate.steps == 3
    # 3 a side: too few for a bootstrap interval; the step times overlap, so within noise.
    assert d.step.too_few_samples and not d.step.outside_noise
    assert d.verdict == "unchanged"
    assert not regression(d, "step_time_ns", 0.0)  # inside the noise: never a regression


# -- the comment: golden, size, untrusted text -----------------------------------------------


def _synthetic(
    path: Path, *, kernel_ns: int, loader_ns: int, ops: int = 4, prefix: str = "model"
) -> Path:
    """Five steps of ``ops`` ops, each launching one kernel, then a DataLoader fetch."""
    b = synthetic.TraceBuilder()
    for _ in range(5):
        with b.step():
            for i in range(ops):
                with b.op(f"{prefix}::op_{i}", dims=[[8, 64 + i]], types=["float"]):
                    b.kernel(f"void {prefix}_kernel_{i}<float, {i}>(float*, int)", kernel_ns)
            if loader_ns:
                b.dataloader(loader_ns, workers=False)
            b.sync("device")
    return b.write(path, with_truth=False)


def test_golden_diff_markdown(tmp_path: Path, update_goldens: bool) -> None:
    base = _synthetic(tmp_path / "base.json.gz", kernel_ns=2_000_000, loader_ns=0)
    cand = _synthetic(tmp_path / "candidate.json.gz", kernel_ns=2_400_000, loader_ns=3_000_000)
    out = tmp_path / "diff.md"
    assert main(["diff", str(base), str(cand), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    golden = GOLDEN / "diff_synthetic.md"
    if update_goldens:
        golden.write_text(text, encoding="utf-8")
        pytest.skip(f"rewrote {golden.name}")
    assert text == golden.read_text(encoding="utf-8")
    # What the golden must say, independent of its wording elsewhere: 4 x 0.4 ms more GPU
    # work per step (the fetch runs while the GPU is busy, so it costs no step time).
    assert "**Verdict: slower.** Step time 8.0 ms -> 9.6 ms" in text
    assert "+20.0%" in text
    assert "| appeared | `dataloader-stall` |" in text


def test_diff_of_two_large_traces_fits_a_github_comment(tmp_path: Path) -> None:
    base = _synthetic(tmp_path / "b.json.gz", kernel_ns=20_000, loader_ns=0, ops=900, prefix="a")
    cand = _synthetic(tmp_path / "c.json.gz", kernel_ns=25_000, loader_ns=0, ops=900, prefix="b")
    d = compare(_load(base), _load(cand))
    assert len(d.op_groups) == 1800  # every op on one side only
    full = diff_markdown.fit(diff_markdown.pieces(d), limit=10**9)
    assert len(full) > diff_markdown.COMMENT_LIMIT  # the test exercises the cut
    text = diff_markdown.render(d)
    assert len(text) <= diff_markdown.COMMENT_LIMIT
    assert "more rows cut to fit GitHub's 65,536-character comment limit" in text
    for line in text.splitlines():  # never a partial row
        if line.startswith("| "):
            assert line.endswith(" |")
    assert text.count("<details>") == text.count("</details>")


def test_trace_strings_are_sanitized(tmp_path: Path) -> None:
    hostile = "evil\x1b]52;c;AAAA\x07@octocat<img src=x>"
    base = _synthetic(tmp_path / "b.json.gz", kernel_ns=100_000, loader_ns=0, ops=1)
    cand = _synthetic(tmp_path / "c.json.gz", kernel_ns=100_000, loader_ns=0, ops=1, prefix=hostile)
    d = compare(_load(base), _load(cand))
    text = diff_markdown.render(d)
    assert "\x1b" not in text and "\x07" not in text
    # Inside a code span nothing is live (no mention, no HTML); the name is shown whole.
    assert "`evil@octocat<img src=x>::op_0`" in text
    outside = re.sub(r"`[^`]*`", "", text)
    assert "<img" not in outside and "@octocat" not in outside
    doc = diff_json.render(d)
    assert "\\u001b" not in doc and "\x1b" not in doc


def test_json_output_follows_the_schema_and_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _synthetic(tmp_path / "b.json.gz", kernel_ns=1_000_000, loader_ns=0)
    cand = _synthetic(tmp_path / "c.json.gz", kernel_ns=1_500_000, loader_ns=0)
    out = tmp_path / "d.json"
    assert main(["diff", str(base), str(cand), "-o", str(out), "--fail-on-regression", "40"]) == 1
    doc = json.loads(out.read_text(encoding="utf-8"))
    _validate(doc)
    assert doc["schema_version"] == 1 and doc["verdict"] == "slower"
    # 4 kernels of 1.0 ms -> 1.5 ms per step: the step grows by 2 ms, +50%.
    assert doc["step_time"]["delta_pct"] == pytest.approx(50.0, abs=0.5)
    ops = {g["name"]: g for g in doc["op_groups"]}
    assert ops["model::op_0"]["delta_gpu_ns_per_step"] == pytest.approx(500_000)
    assert ops["model::op_0"]["base_calls_per_step"] == 1.0
    assert main(["diff", str(base), str(tmp_path / "missing.json"), "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("analyze: error:") and "Traceback" not in err


def test_kernel_names_are_cut_only_where_rows_stay_distinguishable() -> None:
    head = "void at::native::elementwise_kernel<128, 4, " + "x" * 60
    a, b = head + "<AddFunctor>>(int)", head + "<MulFunctor>>(int)"
    other = "void cudnn::ops::scalePackedTensor_kernel<float, float>(" + "y" * 80 + ")"
    # Cut in the middle, the tail (the functor) tells them apart; the parameter list goes.
    mid = "elementwise_kernel<128, 4, " + "x" * 40
    c, d = mid + "A" + "z" * 60 + ">(int)", mid + "B" + "z" * 60 + ">(int)"
    short = diff_markdown._short_names([a, b, other, c, d])
    assert short[a] != short[b] and "AddFunctor" in short[a] and "MulFunctor" in short[b]
    assert all(len(short[n]) == 90 and "…" in short[n] for n in (a, b))
    assert short[other] == "cudnn::ops::scalePackedTensor_kernel<float, float>"
    assert short[c] == c.removesuffix("(int)") and short[d] == d.removesuffix("(int)")


def _gemm_run(path: Path, m: int) -> Path:
    b = synthetic.TraceBuilder()
    for _ in range(3):
        with b.step():
            b.gemm(m, 1024, 1024, op="aten::addmm")
            b.gemm(m, 4096, 1024, op="aten::addmm")
            b.sync("device")
    return b.write(path, with_truth=False)


def test_changed_batch_is_noted_and_gemms_are_paired_by_shape(tmp_path: Path) -> None:
    d = compare(
        _load(_gemm_run(tmp_path / "b.json.gz", 256)), _load(_gemm_run(tmp_path / "c.json.gz", 512))
    )
    assert "input shapes of aten::addmm differ (batch or sequence length changed?)" in d.notes
    sides = sorted((g.shapes, g.side) for g in d.op_groups)
    # The M=256 GEMMs ran only in the base, the M=512 ones only in the candidate.
    assert [s for _, s in sides].count("base") == 2
    assert [s for _, s in sides].count("candidate") == 2
    assert all("256x1024" in (sh or "") for sh, s in sides if s == "base")
    assert all("512x1024" in (sh or "") for sh, s in sides if s == "candidate")
    assert d.verdict == "slower"  # twice the rows: about twice the GEMM time


def test_github_workflow_uses_only_existing_flags_and_the_renderer_marker() -> None:
    import argparse
    import shlex

    import yaml  # type: ignore[import-untyped]
    from gpu_trace_analyzer.diff_cli import parser

    path = REPO / "examples" / "github-actions" / "profile-diff.yml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    steps = doc["jobs"]["diff"]["steps"]
    runs = [s["run"] for s in steps if "analyze diff" in s.get("run", "")]
    assert len(runs) == 1
    words = shlex.split(runs[0].split("analyze diff", 1)[1].replace("\\\n", " ").split("\n")[0])
    flags = [w for w in words if w.startswith("-")]
    known = {o for a in parser(argparse.ArgumentParser)._actions for o in a.option_strings}
    assert flags and set(flags) <= known, set(flags) - known
    parser(argparse.ArgumentParser).parse_args(words)  # and they parse as written
    script = next(s["with"]["script"] for s in steps if "github-script" in s.get("uses", ""))
    assert diff_markdown.MARKER in script
    assert "updateComment" in script and "createComment" in script
