"""Workload profile, op families, unfused attention, graph replay and serving phases: on the
synthetic scenarios of `scenarios_workload` (ground truth from the durations they chose) and on
the real traces the issue names (numbers checked against the raw JSON and TraceLens's CSVs)."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import pytest
import scenarios_workload as sc
from conftest import REFERENCE, needs_shared, shared_trace
from gpu_trace_analyzer.build import hip_version, version_labels
from gpu_trace_analyzer.cli import main
from gpu_trace_analyzer.context import AnalysisContext, AnalysisOptions
from gpu_trace_analyzer.devices import identify, resolve_one
from gpu_trace_analyzer.metrics.attention import unfused_attention
from gpu_trace_analyzer.metrics.graphs import graph_replay
from gpu_trace_analyzer.metrics.op_families import family_time
from gpu_trace_analyzer.metrics.serving import phase_breakdown
from gpu_trace_analyzer.metrics.workload import workload_profile
from gpu_trace_analyzer.parsers.schema import DeviceInfo
from gpu_trace_analyzer.rules import _advice
from gpu_trace_analyzer.trace import load

#: Words no inference report may use (issue 12).
TRAINING_VOCABULARY = re.compile(
    r"training step|gradient|micro-batch|microbatch|activation checkpointing|optimizer",
    re.IGNORECASE,
)


def _report(path: Path, tmp_path: Path) -> str:
    out = tmp_path / f"{path.name}.md"
    assert main([str(path), "-o", str(out), "--format", "md"]) in (0, 1, 2)
    return out.read_text(encoding="utf-8")


# --- synthetic scenarios ---------------------------------------------------------------


def test_inference_scenario_report_has_no_training_vocabulary(tmp_path: Path) -> None:
    s = sc.inference(tmp_path)
    t = load([s.path])
    assert workload_profile(t).mode == "inference"
    text = _report(s.path, tmp_path)
    # Rules that used to speak of training fire here, worded for inference.
    assert "(`small-batch`)" in text and "(`memory-headroom`)" in text
    assert "**Workload:** inference" in text
    assert TRAINING_VOCABULARY.findall(text) == []


def test_unfused_attention_scenario_detected_with_its_share(tmp_path: Path) -> None:
    s = sc.unfused_attention(tmp_path)
    t = load([s.path])
    found = unfused_attention(t)
    assert found.chains.height == s.truth["chains"] == 2
    first = found.chains.row(0, named=True)
    assert (first["q_len"], first["k_len"], first["head_dim"]) == (sc.SEQ, sc.SEQ, sc.HEAD_DIM)
    fam = family_time(t)
    assert fam.ns("attention_unfused") == s.truth["unfused_attention_ns"]
    assert fam.share("attention_unfused") == pytest.approx(s.truth["unfused_attention_share_pct"])
    assert fam.top == "attention_unfused"


def test_sdpa_scenario_has_no_unfused_attention(tmp_path: Path) -> None:
    s = sc.unfused_attention(tmp_path, sdpa=True)
    t = load([s.path])
    assert unfused_attention(t).chains.height == 0
    assert family_time(t).share("attention_unfused") == 0.0
    assert workload_profile(t).fused_attention  # the flash kernel is seen as running


def test_graph_replay_scenario(tmp_path: Path) -> None:
    s = sc.graph_replay(tmp_path)
    t = load([s.path])
    g = graph_replay(t)
    assert g.launches == s.truth["graph_launches"]
    assert g.replayed_kernels == s.truth["replayed_kernels"]
    assert g.replayed_ns == s.truth["replayed_ns"]
    assert g.share_pct == pytest.approx(s.truth["replayed_share_pct"])
    p = workload_profile(t)
    assert p.uses_graphs and p.graph_api == "CUDA graphs"
    ctx = AnalysisContext(t)
    assert _advice.launch_overhead_fix(ctx) == ""  # graphs already run: never advised
    assert "replayed from graphs" in _report(s.path, tmp_path)


def test_serving_scenario_phases(tmp_path: Path) -> None:
    s = sc.serving(tmp_path)
    t = load([s.path])
    assert workload_profile(t).serving_engine == "SGLang"
    phases = {r["phase"]: r for r in phase_breakdown(t).iter_rows(named=True)}
    assert set(phases) == {"prefill", "decode"}
    assert phases["prefill"]["gpu_ns"] == s.truth["prefill_ns"]
    assert phases["decode"]["gpu_ns"] == s.truth["decode_ns"]
    assert phases["prefill"]["windows"] == s.truth["prefill_steps"]
    assert phases["decode"]["windows"] == s.truth["decode_steps"]
    assert (phases["prefill"]["batch_sizes"], phases["decode"]["batch_sizes"]) == ("4", "32")


def test_inductor_scenario_profile_and_advice(tmp_path: Path) -> None:
    s = sc.inductor_launch_overhead(tmp_path)
    t = load([s.path])
    p = workload_profile(t)
    assert p.compiled and p.triton_kernels == s.truth["kernels"]
    fam = family_time(t)
    assert fam.ns("elementwise") == s.truth["kernel_ns"]
    fix = _advice.launch_overhead_fix(AnalysisContext(t))
    assert "reduce-overhead" in fix and "capture the compiled model" in fix


# --- devices and versions ----------------------------------------------------------------


def test_hip_versions_decoded_and_rccl_named() -> None:
    assert hip_version("60443483") == "6.4.43483"
    assert hip_version("70051831") == "7.0.51831"
    labels = version_labels({"hip_runtime_version": "60443483", "nccl_version": "2.26.6"})
    assert labels == ["HIP runtime 6.4.43483", "RCCL 2.26.6"]
    assert version_labels({"nccl_version": "2.21.5"}) == ["NCCL 2.21.5"]


def test_devices_identified_from_properties_or_ambiguous() -> None:
    mi300x = DeviceInfo(0, 0, "", 206141652992, 9, 4, 304, warp_size=64)
    found = resolve_one(mi300x, AnalysisOptions())
    assert found.spec is not None and found.spec.key == "MI300X"
    assert found.label == "AMD Instinct MI300X (identified from properties)"
    assert "304 CUs, 192 GiB, gfx 9.4" in found.notes[0]
    h100 = DeviceInfo(0, 0, "", 85018279936, 9, 0, 132)
    assert [s.key for s in identify(h100)] == ["H100-SXM"]
    # An MI210 and one MI250 GCD have the same CUs, memory and gfx arch: ask for --device.
    ambiguous = DeviceInfo(0, 0, "AMD Radeon Graphics", 68702699520, 9, 0, 104, warp_size=64)
    assert sorted(s.key for s in identify(ambiguous)) == ["MI210", "MI250"]
    unresolved = resolve_one(ambiguous, AnalysisOptions())
    assert unresolved.spec is None and "--device" in unresolved.reason
    assert "MI210, MI250" in unresolved.reason


# --- real traces ----------------------------------------------------------------------------

OWLV2 = "tracelens/mi300__google_owlv2-large-patch14-ensemble__1016001.json.gz"
TIMESFORMER = "tracelens/mi300__facebook_timesformer-base-finetuned-k400__1016002.json.gz"
VLLM = "tracelens/inference__vllm_decode_full__graph_execution.json.gz"
SGLANG = "tracelens/inference__sglang_decode__sglang_Qwen3-8B_decode.json.gz"


def _tracelens_ms(report_dir: str, ops: tuple[str, ...]) -> float:
    """Sum of TraceLens's direct kernel time (ms) of ``ops`` in its ops summary."""
    path = REFERENCE / "tracelens" / report_dir / "ops_summary.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with path.open() as f:
        return sum(
            float(r["total_direct_kernel_time_ms"]) for r in csv.DictReader(f) if r["name"] in ops
        )


@needs_shared
def test_owlv2_unfused_attention_matches_tracelens() -> None:
    t = load([shared_trace(OWLV2)])
    p = workload_profile(t)
    assert p.mode == "inference" and p.uses("Hugging Face pipelines")
    fam = family_time(t)
    assert fam.top == "attention_unfused"
    # TraceLens: aten::_softmax 153.99 ms + aten::bmm 96.30 ms (5 of its 365 bmm calls are
    # outside attention; our chains also hold the scale multiplies): within 1%.
    reference = _tracelens_ms(
        "mi300__google_owlv2-large-patch14-ensemble__1016001_perf_report_csvs",
        ("aten::_softmax", "aten::bmm"),
    )
    assert fam.ns("attention_unfused") / 1e6 == pytest.approx(reference, rel=0.01)
    chains = unfused_attention(t).chains
    assert chains.height == 180
    assert set(chains.select("q_len", "k_len", "head_dim").unique().rows()) == {
        (5185, 5185, 64),
        (5, 5, 64),
    }


@needs_shared
def test_timesformer_unfused_attention_against_tracelens() -> None:
    t = load([shared_trace(TIMESFORMER)])
    fam = family_time(t)
    assert fam.top == "attention_unfused"
    # TraceLens: softmax + bmm + the scaling mul (one per chain) = 94.2 ms; the chains' windows
    # also hold aten::matmul's reshape copies, a few percent more.
    reference = _tracelens_ms(
        "mi300__facebook_timesformer-base-finetuned-k400__1016002_perf_report_csvs",
        ("aten::_softmax", "aten::bmm", "aten::mul"),
    )
    assert reference <= fam.ns("attention_unfused") / 1e6 <= 1.05 * reference
    assert unfused_attention(t).chains.height == 24


@needs_shared
def test_vllm_graph_launch_replays_kernels_by_correlation() -> None:
    path = shared_trace(VLLM)
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    launches = [e for e in events if e.get("name") == "hipGraphLaunch"]
    corr = {e["args"]["correlation"] for e in launches}
    replayed = [e for e in events if e.get("cat") == "kernel" and e["args"]["correlation"] in corr]
    t = load([path])
    p = workload_profile(t)
    # The trace holds one hipGraphLaunch (not 25): it replays 421 of the 425 kernels.
    assert p.graph_launches == len(launches) == 1
    g = graph_replay(t)
    assert g.replayed_kernels == len(replayed) == 421
    dur_ns = sum(round(e["dur"] * 1000) for e in replayed)
    assert g.replayed_ns == pytest.approx(dur_ns, rel=1e-4)
    assert p.serving_engine == "vLLM" and p.graph_api == "HIP graphs"
    fam = family_time(t)
    assert fam.top == "moe"


@needs_shared
def test_sglang_decode_phase() -> None:
    t = load([shared_trace(SGLANG)])
    phases = phase_breakdown(t)
    assert phases["phase"].to_list() == ["decode"]
    row = phases.row(0, named=True)
    assert row["batch_sizes"] == "32" and row["windows"] == 1
    assert row["share_pct"] > 95.0


def test_json_data_carries_workload_and_families(tmp_path: Path) -> None:
    s = sc.graph_replay(tmp_path)
    out = tmp_path / "r.json"
    main([str(s.path), "-o", str(out), "--format", "json"])
    data = json.loads(out.read_text())["data"]
    assert data["workload"]["graph_launches"] == 1
    assert data["workload"]["graph_replayed_pct"] == pytest.approx(s.truth["replayed_share_pct"])
    assert data["families"][0]["family"] == "gemm"
    assert data["families"][0]["gpu_ns"] == s.truth["replayed_ns"]


@needs_shared
def test_vllm_report_header_and_section_order(tmp_path: Path) -> None:
    text = _report(shared_trace(VLLM), tmp_path)
    assert "`AMD Instinct MI300X (identified from properties)`" in text
    assert "HIP runtime 7.0.51831" in text and "RCCL 2.26.6" in text and "NCCL 2" not in text
    assert "**Workload:** inference · vLLM" in text and "HIP graphs (1 launch)" in text
    assert text.index("## Headline") < text.index("## Where the time goes")
    assert text.index("## Where the time goes") < text.index("## Findings")
    verdict = text.split("**Verdict:** ")[1].split("\n")[0]
    assert verdict.startswith("69.3% of GPU time is MoE routing and expert GEMMs")


@needs_shared
def test_sglang_families_match_tracelens_categories() -> None:
    path = REFERENCE / "tracelens" / "inference__sglang_decode__perf_csvs"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    with (path / "ops_summary_by_category.csv").open() as f:
        rows = list(csv.DictReader(f))
    total = sum(float(r["total_direct_kernel_time_ms"]) for r in rows)

    def pct(category: str) -> float:
        ms = sum(
            float(r["total_direct_kernel_time_ms"]) for r in rows if r["op category"] == category
        )
        return 100.0 * ms / total

    fam = family_time(load([shared_trace(SGLANG)]))
    # TraceLens maps the graph-replayed kernels to the captured ops; we read kernel names.
    assert fam.share("gemm") == pytest.approx(pct("GEMM"), abs=0.5)
    assert fam.share("attention") + fam.share("kv_cache") == pytest.approx(
        pct("InferenceAttention"), abs=0.5
    )
    assert fam.share("norm") == pytest.approx(pct("RMSNorm"), abs=0.5)


@needs_shared
def test_graph_capture_runs_are_not_serving_phases() -> None:
    rel = "tracelens/inference__sglang_decode__capture_traces__bs_32_rank0.json.gz"
    phases = phase_breakdown(load([shared_trace(rel)]))
    assert phases["phase"].to_list() == ["graph capture"]
    assert phases["batch_sizes"].to_list() == ["32"]
