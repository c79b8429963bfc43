"""Roofline attribution and classification, on hand-built tables and on real traces.

The hand-built trace runs on an H100 SXM (989.4 TFLOP/s BF16 tensor, 67 TFLOP/s FP32 vector,
3.35 TB/s); every expected figure below is worked out from those peaks and the shapes. The
real-trace checks recount kernels, calls and durations from the raw JSON, independently of
our parser.
"""

from __future__ import annotations

import gzip
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import pytest
from conftest import shared_trace
from gpu_trace_analyzer.context import AnalysisContext, AnalysisOptions
from gpu_trace_analyzer.devices import match
from gpu_trace_analyzer.metrics.roofline import (
    OpTree,
    Roofline,
    _with_prev_end,
    choose_roof,
    compute,
    roofline,
)
from gpu_trace_analyzer.parsers.schema import DeviceInfo, TraceMeta, TraceTables, table_from_columns
from gpu_trace_analyzer.report.chart_files import draw
from gpu_trace_analyzer.report.model import Chart, Image, Table
from gpu_trace_analyzer.sections import roofline as roofline_section
from hypothesis import given, settings
from hypothesis import strategies as st

H100_BERT = "tracelens/h100__gaunernst_bert-small-uncased__1016001.json.gz"
MI300_BERT = "tracelens/mi300__gaunernst_bert-small-uncased__1016001.json.gz"

BF16_TENSOR = 989.4e12
HBM = 3.35e12

SQUARE = "[[4096, 4096], [4096, 4096], [4096]]"
ADDMM = "[[4096], [4096, 4096], [4096, 4096], [], []]"
BF16_3 = '["c10::BFloat16", "c10::BFloat16", "c10::BFloat16"]'
BF16_ADDMM = '["c10::BFloat16", "c10::BFloat16", "c10::BFloat16", "Scalar", "Scalar"]'
ACT = "[[256, 4096], []]"
BF16_1 = '["c10::BFloat16", ""]'
LN = "[[256, 4096], [], [4096], [4096], []]"
LN_T = '["c10::BFloat16", "ScalarList", "c10::BFloat16", "c10::BFloat16", "Scalar"]'

# op_id: (name, depth, parent, external_id, input_dims, input_types)
OPS: dict[int, tuple[str, int, int | None, int, str | None, str | None]] = {
    1: ("aten::linear", 0, None, 101, SQUARE, BF16_3),
    2: ("aten::addmm", 1, 1, 102, ADDMM, BF16_ADDMM),
    3: ("aten::gelu", 0, None, 103, ACT, BF16_1),
    4: ("aten::dropout", 0, None, 104, ACT, BF16_1),
    5: ("aten::native_dropout", 1, 4, 105, ACT, BF16_1),
    6: ("aten::layer_norm", 0, None, 106, LN, LN_T),
    7: ("aten::native_layer_norm", 1, 6, 107, LN, LN_T),
    8: ("aten::empty", 1, 6, 108, None, None),
    9: ("aten::clone", 0, None, 109, ACT, BF16_1),
    10: ("aten::empty_like", 1, 9, 110, None, None),
}

# name, category, start_ns, dur_ns, external_id, correlation
KERNELS: list[tuple[str, str, int, int, int | None, int]] = [
    ("sm90_xmma_gemm_bf16bf16", "gemm", 1_000, 200_000, 102, 1),
    ("splitKreduce_kernel", "gemm", 195_000, 20_000, None, 7),  # linked via the runtime call
    ("vectorized_elementwise_kernel<GeluCUDAKernel>", "elementwise", 220_000, 1_000, 103, 2),
    ("fused_dropout_kernel", "elementwise", 222_000, 500, 105, 3),
    ("fill_kernel", "other", 223_000, 500, 108, 4),
    ("vectorized_layer_norm_kernel", "norm", 224_000, 4_000, 107, 5),
    ("direct_copy_kernel", "copy", 229_000, 2_000, 110, 6),
    ("ncclDevKernel_AllReduce", "comm", 232_000, 5_000, None, 8),
    ("ampere_sgemm_128x64_nn", "gemm", 238_000, 3_000, None, 9),
]
TOTAL_NS = 236_000


def _tables(device_name: str = "NVIDIA H100 80GB HBM3") -> TraceTables:
    ids = sorted(OPS)
    ops = table_from_columns(
        "ops",
        {
            "rank": [0] * len(ids),
            "op_id": ids,
            "pid": [1] * len(ids),
            "tid": [1] * len(ids),
            "name": [OPS[i][0] for i in ids],
            "kind": ["cpu_op"] * len(ids),
            "start_ns": [i * 10 for i in ids],
            "dur_ns": [5] * len(ids),
            "external_id": [OPS[i][3] for i in ids],
            "depth": [OPS[i][1] for i in ids],
            "parent": [OPS[i][2] for i in ids],
            "input_dims": [OPS[i][4] for i in ids],
            "input_types": [OPS[i][5] for i in ids],
        },
    )
    kernels = table_from_columns(
        "kernels",
        {
            "rank": [0] * len(KERNELS),
            "device": [0] * len(KERNELS),
            "stream": [7] * len(KERNELS),
            "name": [k[0] for k in KERNELS],
            "category": [k[1] for k in KERNELS],
            "start_ns": [k[2] for k in KERNELS],
            "dur_ns": [k[3] for k in KERNELS],
            "external_id": [k[4] for k in KERNELS],
            "correlation": [k[5] for k in KERNELS],
        },
    )
    runtime = table_from_columns(
        "runtime",
        {"rank": [0], "pid": [1], "tid": [1], "name": ["cudaLaunchKernel"], "kind": ["runtime"],
         "start_ns": [20], "dur_ns": [3], "correlation": [7], "external_id": [102]},
    )  # fmt: skip
    info = DeviceInfo(rank=0, device=0, name=device_name, num_sms=132)
    meta = TraceMeta(source="kineto", paths=("synthetic.json",), devices=(info,))
    return TraceTables(meta=meta, kernels=kernels, runtime=runtime, ops=ops).validate()


@cache
def _synthetic() -> Roofline:
    return compute(_tables(), AnalysisOptions())


def _kernel(r: Roofline, name: str) -> dict[str, Any]:
    rows = r.kernels.filter(pl.col("name") == name).to_dicts()
    assert len(rows) == 1
    return rows[0]


def _group(r: Roofline, op: str) -> dict[str, Any]:
    rows = r.ops.filter((pl.col("op_name") == op) & (pl.col("basis") == "modeled")).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


def test_gemm_kernels_go_to_the_leaf_op_once() -> None:
    r = _synthetic()
    gemm, reduce = _kernel(r, KERNELS[0][0]), _kernel(r, KERNELS[1][0])
    assert gemm["op_name"] == reduce["op_name"] == "aten::addmm"  # not aten::linear
    assert r.ops.filter(pl.col("op_name") == "aten::linear").height == 0
    flops = 2 * 4096**3 + 4096 * 4096  # 2MNK + MN bias
    assert flops == 137_455_730_688
    # Split in proportion to duration: 200 us of 220 us, and 20 us of 220 us.
    assert gemm["flops"] == pytest.approx(flops * 200 / 220)
    assert reduce["flops"] == pytest.approx(flops * 20 / 220)


def test_op_gpu_time_is_the_union_of_its_kernels() -> None:
    g = _group(_synthetic(), "aten::addmm")
    # [1000, 201000) and [195000, 215000) overlap by 6 us: union 214 us, not 220.
    assert g["gpu_time_ns"] == 215_000 - 1_000 == 214_000
    assert g["kernels"] == 2 and g["calls"] == 1
    flops, nbytes = 137_455_730_688, (3 * 4096 * 4096 + 4096) * 2
    assert g["flops"] == pytest.approx(flops) and g["bytes"] == pytest.approx(nbytes)
    assert g["intensity_flop_per_byte"] == pytest.approx(flops / nbytes)  # 1365.4 > ridge 295
    assert g["achieved_tflops"] == pytest.approx(flops / 214e-6 / 1e12)  # 642.3
    assert (g["pipe"], g["roof_dtype"], g["bound"]) == ("tensor", "bf16", "compute")
    roof_time = max(flops / BF16_TENSOR, nbytes / HBM)  # 138.9 us of compute
    assert g["pct_of_roof"] == pytest.approx(100 * roof_time / 214e-6)  # 64.9%
    assert g["peak_tflops"] == pytest.approx(989.4) and g["roof_tflops"] == pytest.approx(989.4)
    assert not g["above_roof"]


def test_a_point_above_its_roof_is_flagged_not_clipped() -> None:
    g = _group(_synthetic(), "aten::gelu")
    nbytes = 2 * 256 * 4096 * 2  # read and write 1 Mi bf16 elements
    assert g["bytes"] == nbytes == 4_194_304
    assert g["achieved_tb_per_s"] == pytest.approx(nbytes / 1e-6 / 1e12)  # 4.19 > 3.35 TB/s
    assert g["pct_of_roof"] == pytest.approx(100 * (nbytes / HBM) / 1e-6)  # 125.2%, kept
    assert g["above_roof"] and g["above_roof_calls"] == 1
    assert (g["pipe"], g["roof_dtype"], g["bound"]) == ("vector", "fp32", "memory")
    assert _synthetic().summary.above_roof_ops == 1


def test_attribution_to_an_ancestor_only_without_modeled_descendants() -> None:
    r = _synthetic()
    # empty_like's kernel goes up to aten::clone: clone has no other modeled op below it.
    copy = _kernel(r, "direct_copy_kernel")
    assert (copy["op_name"], copy["basis"]) == ("aten::clone", "modeled")
    clone = _group(r, "aten::clone")
    assert clone["flops"] == 0 and clone["bytes"] == 256 * 4096 * (2 + 2)
    # empty's kernel would go up to aten::layer_norm, whose FLOPs belong to the modeled
    # native_layer_norm below it: the kernel stays unmodeled instead of being counted twice.
    fill = _kernel(r, "fill_kernel")
    assert fill["op_id"] is None and fill["basis"] == "heuristic"
    assert (fill["launch_op_name"], fill["bound"]) == ("aten::empty", "unclassified")
    norm = _kernel(r, "vectorized_layer_norm_kernel")
    assert norm["op_name"] == "aten::native_layer_norm"
    assert norm["flops"] == 256 * 4096 * 8  # 4 stats + 2 normalize + weight + bias
    # native_dropout has no model and no modeled ancestor: heuristic, by its category.
    drop = _kernel(r, "fused_dropout_kernel")
    assert (drop["basis"], drop["bound"], drop["launch_op_name"]) == (
        "heuristic",
        "memory",
        "aten::native_dropout",
    )


def test_unlinked_kernels_are_heuristic_by_category() -> None:
    r = _synthetic()
    assert _kernel(r, "ncclDevKernel_AllReduce")["bound"] == "unclassified"
    sgemm = _kernel(r, "ampere_sgemm_128x64_nn")
    assert (sgemm["basis"], sgemm["bound"], sgemm["flops"]) == ("heuristic", "compute", None)
    heuristic = r.ops.filter(pl.col("basis") == "heuristic")
    assert heuristic.filter(pl.col("op_name") == "ampere_sgemm_128x64_nn")["calls"].item() == 1


def test_summary_shares_are_time_weighted() -> None:
    s = _synthetic().summary
    assert s.kernel_time_ns == TOTAL_NS
    # Modeled: addmm 220 us (compute), gelu 1 + layer norm 4 + clone copy 2 us (memory).
    assert s.modeled_share == pytest.approx(227_000 / TOTAL_NS)
    assert s.modeled_compute_bound_share == pytest.approx(220_000 / TOTAL_NS)
    assert s.modeled_memory_bound_share == pytest.approx(7_000 / TOTAL_NS)
    # Heuristic: sgemm 3 us compute, dropout 0.5 us memory, fill 0.5 + nccl 5 us unclassified.
    assert s.heuristic_compute_bound_share == pytest.approx(3_000 / TOTAL_NS)
    assert s.heuristic_memory_bound_share == pytest.approx(500 / TOTAL_NS)
    assert s.compute_bound_share == pytest.approx(223_000 / TOTAL_NS)
    assert s.memory_bound_share == pytest.approx(7_500 / TOTAL_NS)
    assert s.unclassified_share == pytest.approx(5_500 / TOTAL_NS)
    assert s.achieved_tensor_tflops == pytest.approx(137_455_730_688 / 214e-6 / 1e12)
    assert s.tensor_dtype == "bf16"
    assert s.tensor_peak_tflops == pytest.approx(989.4)
    assert s.tensor_pct_of_peak == pytest.approx(100 * 642.3165 / 989.4, rel=1e-5)


def test_unknown_device_classifies_by_heuristic_only() -> None:
    r = compute(_tables("Mystery GPU"), AnalysisOptions())
    assert r.summary.unknown_devices == ("Mystery GPU",)
    assert r.summary.modeled_share == 0.0
    assert set(r.kernels["basis"].to_list()) == {"heuristic"}
    assert r.kernels["pct_of_roof"].null_count() == r.kernels.height
    # The same device described on the command line gets its roofs back.
    described = compute(_tables("Mystery GPU"), AnalysisOptions(device_override="H100-SXM"))
    assert described.summary.modeled_share == pytest.approx(227_000 / TOTAL_NS)


def test_choose_roof() -> None:
    h100, mi300, v100 = (match(n) for n in ("H100 80GB HBM3", "MI300X", "V100-SXM2"))
    assert h100 is not None and mi300 is not None and v100 is not None
    assert choose_roof(h100, "gemm", "fp32", tf32_kernel=True) == ("tensor", "tf32")
    assert choose_roof(h100, "gemm", "fp32", tf32_kernel=False) == ("vector", "fp32")
    assert choose_roof(mi300, "gemm", "fp32", tf32_kernel=False) == ("tensor", "fp32")
    assert choose_roof(h100, "attention", "fp8", tf32_kernel=False) == ("tensor", "fp8")
    assert choose_roof(h100, "gemm", "fp64", tf32_kernel=False) == ("tensor", "fp64")
    assert choose_roof(h100, "elementwise", "fp64", tf32_kernel=False) == ("vector", "fp64")
    assert choose_roof(h100, "elementwise", "bf16", tf32_kernel=False) == ("vector", "fp32")
    assert choose_roof(v100, "gemm", "bf16", tf32_kernel=False) == ("vector", "fp32")


def test_trace_without_kernels() -> None:
    meta = TraceMeta(source="kineto", paths=("cpu.json",))
    r = compute(TraceTables(meta=meta), AnalysisOptions())
    assert r.kernels.height == 0 and r.ops.height == 0
    assert r.summary.kernel_time_ns == 0


# --- Real traces --------------------------------------------------------------------------


@cache
def _raw_events(rel: str) -> list[dict[str, Any]]:
    data = gzip.decompress(shared_trace(rel).read_bytes())
    events: list[dict[str, Any]] = msgspec.json.decode(data)["traceEvents"]
    return events


def _ns(us: float) -> int:
    return round(us * 1000)


@cache
def _bert() -> Roofline:
    from gpu_trace_analyzer.parsers.kineto import parse

    return compute(parse(shared_trace(H100_BERT)), AnalysisOptions())


def test_bert_every_kernel_is_modeled_on_the_h100() -> None:
    r = _bert()
    kernels = [e for e in _raw_events(H100_BERT) if e.get("cat") == "kernel"]
    assert r.kernels.height == len(kernels) == 60
    assert r.summary.kernel_time_ns == sum(_ns(e["dur"]) for e in kernels)
    assert r.summary.modeled_share == pytest.approx(1.0)
    assert set(r.ops["device_key"].to_list()) == {"H100-SXM"}


def test_bert_attention_kernels_go_to_the_flash_op() -> None:
    r = _bert()
    flash = r.kernels.filter(pl.col("name").str.contains("flash_fwd_kernel"))
    assert flash.height == 4
    assert set(flash["op_name"].to_list()) == {"aten::_flash_attention_forward"}


def test_bert_projection_gemms_against_the_raw_trace() -> None:
    events = _raw_events(H100_BERT)
    dims = [[512], [141, 512], [512, 512], [], []]
    ext = {
        e["args"]["External id"]
        for e in events
        if e.get("cat") == "cpu_op"
        and e["name"] == "aten::addmm"
        and e["args"]["Input Dims"] == dims
    }
    kernel_ns = [
        _ns(e["dur"])
        for e in events
        if e.get("cat") == "kernel" and e["args"].get("External id") in ext
    ]
    assert len(ext) == len(kernel_ns) == 17  # one kernel per addmm call
    g = _group_by_shapes(_bert(), "aten::addmm", "512, 141x512, 512x512")
    assert g["calls"] == 17
    assert g["gpu_time_ns"] == sum(kernel_ns)
    assert g["flops"] == 17 * (2 * 141 * 512 * 512 + 141 * 512)
    assert g["intensity_flop_per_byte"] == pytest.approx(73_996_800 / 814_080)
    assert g["achieved_tflops"] == pytest.approx(17 * 73_996_800 / (sum(kernel_ns) * 1e-9) / 1e12)
    # 90.9 FLOP/byte is left of the 295 FLOP/byte ridge: the memory roof applies.
    assert (g["pipe"], g["roof_dtype"], g["bound"]) == ("tensor", "bf16", "memory")


def test_bert_tensor_flops_add_up() -> None:
    s = _bert().summary
    gemms = (
        17 * (2 * 141 * 512 * 512 + 141 * 512)  # q, k, v, o and pooler projections
        + 4 * (2 * 141 * 2048 * 512 + 141 * 2048)  # FFN up
        + 4 * (2 * 141 * 512 * 2048 + 141 * 512)  # FFN down
        + (2 * 141 * 30522 * 512 + 141 * 30522)  # vocabulary projection
    )
    attention = 4 * (4 * 1 * 8 * 141 * 141 * 64)
    assert s.tensor_flops == gemms + attention == 8_199_034_098
    assert s.tensor_dtype == "bf16" and s.above_roof_ops == 0


def _group_by_shapes(r: Roofline, op: str, shapes: str) -> dict[str, Any]:
    rows = r.ops.filter((pl.col("op_name") == op) & (pl.col("shapes") == shapes)).to_dicts()
    assert len(rows) == 1
    return rows[0]


def test_mi300_kernels_on_an_undescribed_device_index() -> None:
    from gpu_trace_analyzer.parsers.kineto import parse

    raw = _raw_events(MI300_BERT)
    devices = {e["args"]["device"] for e in raw if e.get("cat") == "kernel"}
    assert devices == {2}  # ROCm numbers HSA agents; deviceProperties lists id 0 only
    r = compute(parse(shared_trace(MI300_BERT)), AnalysisOptions())
    resolved = r.devices[(0, 2)]
    assert resolved.spec is not None and resolved.spec.key == "MI300X"
    assert any("does not list" in n for n in resolved.notes)
    assert r.summary.modeled_share == pytest.approx(1.0)


def test_section_on_bert_has_modeled_ops_and_a_chart(tmp_path: Path) -> None:
    from gpu_trace_analyzer.parsers.kineto import parse

    ctx = AnalysisContext(parse(shared_trace(H100_BERT)))
    charts_dir = tmp_path / "report_files"
    section = roofline_section.build(ctx, True)
    assert section is not None and section.title == "Roofline"
    assert roofline(ctx) is roofline(ctx)  # cached on the context
    charts = [b for b in section.blocks if isinstance(b, Chart)]
    assert [(c.stem, c.formats) for c in charts] == [("roofline_h100-sxm", ("svg", "png"))]
    assert not charts_dir.exists()  # the section computes the spec; drawing is a later step
    assert roofline_section.build(ctx, False) == replace(
        section, blocks=[b for b in section.blocks if not isinstance(b, Chart)]
    )
    drawn = [b for c in charts for b in draw(c, charts_dir)]
    images = [b for b in drawn if isinstance(b, Image)]
    assert [i.path for i in images] == ["report_files/roofline_h100-sxm.svg"]
    assert (charts_dir / "roofline_h100-sxm.svg").read_text().lstrip().startswith("<svg")
    assert (charts_dir / "roofline_h100-sxm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tables = [b for b in section.blocks if isinstance(b, Table)]
    top = tables[-1]
    assert top.columns[0] == "op" and "% of roof" in top.columns
    assert all(row[-1] == "modeled" for row in top.rows)
    assert len(top.rows) == min(15, roofline(ctx).ops.height)


def test_report_markdown_shows_the_roofline(tmp_path: Path) -> None:
    from gpu_trace_analyzer.cli import main

    out = tmp_path / "report.md"
    code = main([str(shared_trace(H100_BERT)), "-o", str(out)])
    text = out.read_text(encoding="utf-8")
    assert code == 0
    assert "## Roofline" in text
    assert "](report_files/roofline_h100-sxm.svg)" in text
    assert "`aten::addmm`" in text


@pytest.mark.parametrize(
    ("ids", "parents"),
    [
        ([0, 1, 2, 3], [None, 0, 1, 1]),  # consecutive ids: row = id
        ([40, 7, 12, 3], [None, 40, 7, 999]),  # sparse, unsorted, a parent outside the table
    ],
)
def test_op_tree_lookup_by_id(ids: list[int], parents: list[int | None]) -> None:
    tree = OpTree.of(pl.DataFrame({"op_id": ids, "parent": parents}))
    wanted = pl.Series([*ids, None, 999, -1], dtype=pl.Int64)
    expected = dict(zip(ids, parents, strict=True))
    got = tree.lookup(wanted, "parent").to_list()
    assert got == [expected.get(i) if i is not None else None for i in wanted.to_list()]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 4)), st.integers(0, 50)), max_size=40)
)
def test_prev_end_is_the_running_max_of_earlier_rows_in_the_run(
    rows: list[tuple[int | None, int]],
) -> None:
    frame = pl.DataFrame(rows, schema={"op_id": pl.Int64, "_end_ns": pl.Int64}, orient="row").sort(
        "op_id"
    )
    window = pl.col("_end_ns").cum_max().shift(1).over("op_id")  # polars' own, per group
    assert _with_prev_end(frame, "op_id").equals(frame.with_columns(window.alias("_prev_end")))


def test_without_shapes_every_kernel_is_heuristic_under_its_launching_op() -> None:
    """No op records its inputs: nothing is modeled (no attribution walk), but kernels keep
    the op that launched them, and heuristic groups are named after it."""
    t = _tables()
    bare = t.ops.with_columns(
        pl.lit(None, dtype=pl.String).alias(c) for c in ("input_dims", "input_types")
    )
    r = compute(
        TraceTables(meta=t.meta, kernels=t.kernels, runtime=t.runtime, ops=bare),
        AnalysisOptions(),
    )
    assert set(r.kernels["basis"].to_list()) == {"heuristic"}
    assert r.kernels["op_id"].null_count() == r.kernels.height
    gemm = _kernel(r, "sm90_xmma_gemm_bf16bf16")
    assert (gemm["launch_op"], gemm["launch_op_name"], gemm["bound"]) == (
        2,
        "aten::addmm",
        "compute",
    )
    assert r.kernels.schema["name"] == pl.String and r.kernels.schema["launch_op_name"] == pl.String
    # The addmm group: the gemm and the split-K reduce kernel (linked through its runtime call).
    addmm = r.ops.filter(pl.col("op_name") == "aten::addmm").row(0, named=True)
    assert (addmm["kernels"], addmm["gpu_time_ns"], addmm["calls"]) == (2, 220_000, 1)
    assert r.summary.heuristic_share == 1.0
    assert r.summary.heuristic_compute_bound_share == pytest.approx(223_000 / TOTAL_NS)


def test_each_kernel_takes_its_op_calls_device_key_else_its_own() -> None:
    """The same kernels again on a second, unknown device of the rank. A modeled op's call
    has one device (its first kernel's, device 0) whose key all its kernels take; the
    others take their own device's: device 1's four unmodeled kernels are under the unknown
    device's key."""
    t = _tables()
    second = t.kernels.with_columns(pl.lit(1, dtype=pl.Int32).alias("device"))
    kernels = pl.concat([t.kernels, second]).sort("start_ns", maintain_order=True)
    devices = (*t.meta.devices, DeviceInfo(rank=0, device=1, name="Mystery GPU", num_sms=10))
    meta = TraceMeta(source="kineto", paths=("synthetic.json",), devices=devices)
    r = compute(
        TraceTables(meta=meta, kernels=kernels, runtime=t.runtime, ops=t.ops), AnalysisOptions()
    )
    on_device_1 = r.kernels.filter(pl.col("device") == 1)
    unknown = on_device_1.filter(pl.col("device_key") == "unknown: Mystery GPU")
    assert sorted(unknown["name"].to_list()) == [
        "ampere_sgemm_128x64_nn",
        "fill_kernel",
        "fused_dropout_kernel",
        "ncclDevKernel_AllReduce",
    ]
    assert set(r.kernels.filter(pl.col("device") == 0)["device_key"].to_list()) == {"H100-SXM"}
    assert on_device_1.height - unknown.height == 5  # addmm (2), gelu, layer norm, clone
    assert r.summary.unknown_devices == ("Mystery GPU",)
