"""`analyze TRACE --format json`: every figure raw, validated against report_schema.json.

Values are checked against sources the renderer does not use: the trace's own JSON events
(kernel durations, ProfilerStep ranges) and a GEMM's FLOPs by hand from its input shapes.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import REPO, SAMPLES, shared_trace
from gpu_trace_analyzer import load
from gpu_trace_analyzer.report.diff_json import to_dict as diff_to_dict
from referencing import Registry, Resource

REPORT_DIR = REPO / "analyzer" / "report"
BERT = "tracelens/h100__gaunernst_bert-small-uncased__1016001.json.gz"
RESNET = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((REPORT_DIR / "report_schema.json").read_text())
    findings = json.loads((REPORT_DIR / "findings_schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    registry: Registry[Any] = Registry().with_resource(
        findings["$id"], Resource.from_contents(findings)
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(load(path).report("json"))
    return doc


@pytest.mark.parametrize(
    "rel",
    [
        "cpu_train.pt.trace.json.gz",
        "synthetic_train.json.gz",
        "synthetic_2rank",
        "nsys_sample.sqlite",
        "dcgm/compute_bound.dmon.txt",
    ],
)
def test_sample_reports_follow_the_schema(rel: str) -> None:
    doc = _doc(SAMPLES / rel)
    _validator().validate(doc)
    assert doc["schema_version"] == 2


@pytest.mark.parametrize(
    "rel",
    [
        RESNET,
        BERT,
        "tracelens/mi300__gaunernst_bert-small-uncased__1016001.json.gz",
        "tracelens/inference__vllm_decode_full__graph_execution.json.gz",
        "hta/trace_compare/base/base.json.gz",
        "nsys/h100_2gpu_1s.sqlite",
    ],
)
def test_real_reports_follow_the_schema(rel: str) -> None:
    doc = _doc(shared_trace(rel))
    _validator().validate(doc)
    assert doc["kernels"], "a GPU trace lists its kernels"
    # The raw figures agree with each other: each device's ledger rows sum to its idle time.
    idle = doc["headline_figures"]["idle_ns"]
    assert sum(r["idle_ns"] for r in doc["idle_ledger"]) == idle


def _events(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as f:
        events: list[dict[str, Any]] = json.load(f)["traceEvents"]
    return events


def test_kernels_and_steps_match_the_trace_events() -> None:
    path = shared_trace(RESNET)
    doc = _doc(path)
    events = _events(path)
    steps = {
        int(e["name"].split("#")[1]): round(e["dur"] * 1000)
        for e in events
        if e.get("ph") == "X" and str(e.get("name", "")).startswith("ProfilerStep#")
    }
    assert {s["step"]: s["cpu_dur_ns"] for s in doc["steps"]} == steps
    total: dict[tuple[str, int], int] = defaultdict(int)
    calls: dict[tuple[str, int], int] = defaultdict(int)
    for e in events:
        if e.get("ph") == "X" and e.get("cat") == "Kernel":
            key = (e["name"], int(e["args"]["stream"]))
            total[key] += round(e["dur"] * 1000)
            calls[key] += 1
    got = {(k["name"], k["stream"]): (k["calls"], k["total_ns"]) for k in doc["kernels"]}
    assert got == {key: (calls[key], total[key]) for key in total}
    top = doc["kernels"][0]
    assert top["mean_ns"] == pytest.approx(top["total_ns"] / top["calls"])
    assert top["total_ns"] == max(total.values())
    assert {k["bound"] for k in doc["kernels"]} <= {"compute", "memory", "unclassified"}


def test_gemm_op_group_figures_by_hand() -> None:
    """aten::addmm(bias[512], x[141x512], w[512x512]) in bf16: 2*M*K*N multiply-adds plus
    M*N bias adds per call; the rates follow from the group's measured GPU time."""
    doc = _doc(shared_trace(BERT))
    group = next(
        g
        for g in doc["op_groups"]
        if g["name"] == "aten::addmm" and g["shapes"] == "512, 141x512, 512x512"
    )
    m, k, n = 141, 512, 512
    assert group["flops_per_call"] == 2 * m * k * n + m * n
    assert group["dtype"] == "bf16" and group["basis"] == "modeled"
    assert group["calls"] == 17
    seconds = group["gpu_time_ns"] / 1e9
    assert group["achieved_flop_per_s"] == pytest.approx(
        group["flops_per_call"] * group["calls"] / seconds
    )
    assert group["achieved_bytes_per_s"] == pytest.approx(
        group["bytes_per_call"] * group["calls"] / seconds
    )
    roof_s = group["flops_per_call"] * group["calls"] / group["roof_flop_per_s"]
    assert group["pct_of_roof"] == pytest.approx(100.0 * roof_s / seconds)
    assert group["bound"] in ("compute", "memory")
    # The op groups cover the GPU time the families share out.
    families = doc["op_families"]
    assert sum(f["share_pct"] for f in families) == pytest.approx(100.0)
    assert doc["headline_figures"]["tensor_dtype"] == "bf16"


def test_diff_op_groups_use_the_report_op_group_keys() -> None:
    """The diff identifies an op group by the same name/shapes/dtype keys as the report."""
    from gpu_trace_analyzer.diff import compare

    a = load(SAMPLES / "synthetic_train.json.gz")
    diff = diff_to_dict(compare(a, a))
    report = json.loads(a.report("json"))
    identity = {"name", "shapes", "dtype"}
    assert diff["op_groups"] and report["op_groups"]
    assert identity <= set(diff["op_groups"][0]) and identity <= set(report["op_groups"][0])
    pairs = {(g["name"], g["shapes"], g["dtype"]) for g in diff["op_groups"]}
    assert pairs == {(g["name"], g["shapes"], g["dtype"]) for g in report["op_groups"]}


def test_values_are_raw_not_formatted() -> None:
    doc = _doc(SAMPLES / "synthetic_train.json.gz")
    for row in doc["op_groups"] + doc["kernels"] + doc["steps"]:
        for key, value in row.items():
            if key.endswith("_ns") and key != "mean_ns":
                assert value is None or isinstance(value, int), (key, value)
            if key.endswith(("_pct", "_per_s")):
                assert value is None or isinstance(value, int | float), (key, value)
