"""The Kineto parser against the real traces in ../shared/traces.

Expected values are derived inside each test from the raw file with the plain ``json``
module (``parse_float=Decimal`` where exact times matter), or written out by hand from the
file's text. Nothing is copied from the parser's own output.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import zlib
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import TRACES, needs_shared, shared_trace
from gpu_trace_analyzer.parsers.errors import (
    AnalyzerError,
    EmptyTraceError,
    UnreadableInputError,
    UnsupportedFormatError,
)
from gpu_trace_analyzer.parsers.kineto import parse
from gpu_trace_analyzer.parsers.kineto_link import collective_from_kernel, normalize_collective
from gpu_trace_analyzer.parsers.schema import TABLE_NAMES, TraceTables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Every Kineto trace under ../shared/traces (the Chakra execution trace and the memory
# timeline are not Kineto traces; they are error cases below).
KINETO_FILES = (
    "hta/amd_trace/mi250_minitoy_train_ROCm6_2_kineto.json.gz",
    "hta/call_stack/backward_thread.json",
    "hta/cpu_only/rank-34.Jul_15_10_52_41.1074.pt.trace.json.gz",
    "hta/critical_path/alexnet/benchmark_result_2869224_1695835535_trace.json.gz",
    "hta/critical_path/cuda_event_sync/event_sync_trace.json.gz",
    "hta/critical_path/cuda_event_sync_multi_stream/event_sync_trace.json.gz",
    "hta/critical_path/end_to_end/simple_add/input/trace.json.gz",
    "hta/critical_path/end_to_end/simple_add/output/overlaid_critical_path_trace.json.gz",
    "hta/critical_path/simple_add/benchmark_result_493459_1694039959_trace.json.gz",
    "hta/cupti_profiler/benchmark_result_924719_1679055439_trace.json.gz",
    "hta/df_index_resolver/df_index_resolver.json.gz",
    "hta/distributed_info_unavailable/distributed_info_not_found.json.gz",
    "hta/execution_trace/benchmark_simple_add_trace.json.gz",
    "hta/large_integer_trace/rank-70.Mar_25_20_48_12.2861.pt.trace.json.gz",
    "hta/mixed_files/rank_non_gpu.json.gz",
    "hta/mtia_inference_trace/mtia_inference_rank_0.json.gz",
    "hta/mtia_trace_single_rank/mtia_rank_0.json.gz",
    "hta/nccl_parser_config/nccl_data.json.gz",
    "hta/ns_resolution_trace/rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz",
    "hta/rank_non_gpu/rank_non_gpu.json.gz",
    "hta/rank_unavailable/rank_not_found.json.gz",
    "hta/timeline_analysis/sampled_rank-0.json.gz",
    "hta/trace_compare/base/base.json.gz",
    "hta/trace_compare/test/test.json.gz",
    "hta/trace_diff/control/control.json.gz",
    "hta/trace_file_list/inference_rank_1.json.gz",
    "hta/trace_filter/sampled_rank-0.json.gz",
    "hta/trace_filter/sampled_rank-1.json.gz",
    "hta/triton_example/triton_example.json.gz",
    "hta/with_gpu_user_annotation/step_based_trace_2543932.json.gz",
    "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz",
    "tb_plugin/resnet50_num_workers_4__worker0.1623212756351.pt.trace.json.gz",
    "tb_plugin/test__gpu_metrics_expected.json",
    "tb_plugin/test__gpu_metrics_input.json",
    "tracelens/b200__eager_trace.json.gz",
    "tracelens/h100__Falconsai_nsfw_image_detection__1016002.json.gz",
    "tracelens/h100__gaunernst_bert-small-uncased__1016001.json.gz",
    "tracelens/inference__sglang_decode__sglang_Qwen3-8B_decode.json.gz",
    "tracelens/inference__vllm_decode_full__graph_execution.json.gz",
    "tracelens/mi210__gpu_only_trace__gpu_only_trace.json.gz",
    "tracelens/mi300__Falconsai_nsfw_image_detection__1016002.json.gz",
    "tracelens/mi300__gaunernst_bert-small-uncased__1016001.json.gz",
    "tracelens/perf_model__normalization__normalization_layer_test.json.gz",
    "tracelens/torch_compile_triton__trace.json.gz",
)

# Which raw ``cat`` of a complete (ph X) event lands in which table, per the Kineto docs
# (2021 capitalized names, MTIA categories, current lowercase names). MTIA CCP events are
# kernels, except ``dma_request`` ones, which are copies (HTA counts ``dma`` as memory).
RAW_CATS = {
    "kernels": {"kernel", "Kernel"},
    "memops": {"gpu_memcpy", "Memcpy", "gpu_memset", "Memset"},
    "runtime": {"cuda_runtime", "Runtime", "cuda_driver", "mtia_runtime"},
    "syncs": {"cuda_sync"},
    "ops": {"cpu_op", "Operator", "user_annotation", "python_function", "gpu_user_annotation"},
}
STEP = re.compile(r"^ProfilerStep#\d+$")


@cache
def raw_trace(rel: str) -> dict[str, Any]:
    """The trace decoded by the standard library, floats left as their exact text."""
    data = (TRACES / rel).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    doc: dict[str, Any] = json.loads(data, parse_float=str)  # floats kept as their text
    return doc


@cache
def parsed(rel: str) -> TraceTables:
    """Our parse of a shared trace (bundles are immutable, so tests may share them)."""
    return parse(TRACES / rel)


def raw_counts(doc: dict[str, Any]) -> dict[str, int]:
    """Rows each table should hold, counted from the raw events."""
    events = doc["traceEvents"]
    counts = {
        table: sum(1 for e in events if e.get("ph") == "X" and e.get("cat") in cats)
        for table, cats in RAW_CATS.items()
    }
    mtia = [e["name"] for e in events if e.get("ph") == "X" and e.get("cat") == "mtia_ccp_events"]
    dma = sum(1 for name in mtia if name.startswith("dma"))
    counts["kernels"] += len(mtia) - dma
    counts["memops"] += dma
    counts["memory"] = sum(1 for e in events if e.get("ph") == "i" and e.get("name") == "[memory]")
    counts["steps"] = sum(
        1
        for e in events
        if e.get("ph") == "X"
        and e.get("cat") in {"cpu_op", "Operator", "user_annotation"}
        and STEP.match(e.get("name", ""))
    )
    return counts


def us_to_ns(value: Any) -> int:
    """Exact microseconds (int or Decimal from the raw file) to integer nanoseconds."""
    return int(Decimal(value) * 1000)


@needs_shared
@pytest.mark.parametrize("rel", KINETO_FILES)
def test_row_counts_times_rank_and_device_match_the_raw_file(rel: str) -> None:
    shared_trace(rel)
    doc = raw_trace(rel)
    tables = parsed(rel)
    counts = {name: tables.table(name).height for name in raw_counts(doc)}
    assert counts == raw_counts(doc)
    for name in TABLE_NAMES:
        frame = tables.table(name)
        if "dur_ns" in frame.columns and frame.height:
            assert (frame["dur_ns"] >= 0).all(), name
    # Kernel time, summed exactly from the raw durations.
    kernel_durs = [
        us_to_ns(e["dur"])
        for e in doc["traceEvents"]
        if e.get("ph") == "X"
        and (
            e.get("cat") in RAW_CATS["kernels"]
            or (e.get("cat") == "mtia_ccp_events" and not e["name"].startswith("dma"))
        )
    ]
    assert int(tables.kernels["dur_ns"].sum()) == sum(kernel_durs)
    rank = (doc.get("distributedInfo") or {}).get("rank")
    if rank is not None:
        assert [r.rank for r in tables.meta.ranks] == [rank]
        assert tables.meta.ranks[0].rank_from_trace
    devices = doc.get("deviceProperties") or doc.get("computeProperties") or []
    if devices:
        assert tables.meta.devices[0].name == devices[0]["name"]
        assert len(tables.meta.devices) == len(devices)


@needs_shared
@pytest.mark.parametrize("rel", ["hta/triton_example/triton_example.json.gz"])
def test_base_relative_times_become_epoch_ns(rel: str) -> None:
    shared_trace(rel)
    doc = raw_trace(rel)
    tables = parsed(rel)
    base = doc["baseTimeNanoseconds"]
    kernel = next(e for e in doc["traceEvents"] if e.get("cat") == "kernel")
    assert tables.meta.clock == "epoch"
    assert tables.kernels["start_ns"].to_list() == [base + us_to_ns(kernel["ts"])]


@needs_shared
def test_ns_resolution_epoch_timestamps_are_exact() -> None:
    rel = "hta/ns_resolution_trace/rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz"
    shared_trace(rel)
    tables = parsed(rel)
    # From the file's text: the kernel with correlation 135071 is written as
    #   "ts": 1712195495505582.988, "dur": 4.928
    # A float64 cannot hold the start (it reads back as ...505583.0 us).
    row = tables.kernels.filter(pl.col("correlation") == 135071)
    assert row["start_ns"].to_list() == [1_712_195_495_505_582_988]
    assert row["dur_ns"].to_list() == [4_928]
    assert float("1712195495505582.988") * 1000 != 1_712_195_495_505_582_988
    # Every kernel, exactly, against the standard library's decimal reading.
    doc = raw_trace(rel)
    expected = sorted(
        (us_to_ns(e["ts"]), us_to_ns(e["dur"]))
        for e in doc["traceEvents"]
        if e.get("ph") == "X" and e.get("cat") == "kernel"
    )
    got = sorted(zip(tables.kernels["start_ns"], tables.kernels["dur_ns"], strict=True))
    assert got == expected
    assert tables.meta.clock == "epoch"
    assert tables.meta.ranks[0].hostname == "twshared39868.02.pnb3.facebook.com"


@needs_shared
def test_2021_schema_tb_plugin() -> None:
    rel = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"
    shared_trace(rel)
    tables = parsed(rel)
    # Steps are 2021 "Operator" events named ProfilerStep#5 .. #10 in this file.
    assert tables.steps["step"].to_list() == [5, 6, 7, 8, 9, 10]
    # First step in the text: "ts": 1623142623460172, "dur": 176078 (integer microseconds).
    first = tables.steps.row(0, named=True)
    assert first["start_ns"] == 1_623_142_623_460_172_000
    assert first["end_ns"] == (1_623_142_623_460_172 + 176_078) * 1000
    # tid "stream 7", lowercase "external id": the Memcpy with correlation 34417.
    memcpy = tables.memops.filter(pl.col("correlation") == 34417).row(0, named=True)
    assert memcpy["stream"] == 7
    assert memcpy["external_id"] == 537
    assert (memcpy["kind"], memcpy["src_mem"], memcpy["dst_mem"]) == ("HtoD", "pageable", "device")
    assert memcpy["bytes"] == 19_267_584
    # Operators on thread "25738" (a string in the file).
    assert set(tables.ops["tid"].unique().to_list()) <= {25738, 25772}
    assert tables.meta.devices[0].num_sms == 80


@needs_shared
def test_2021_compute_properties_devices() -> None:
    rel = "tb_plugin/test__gpu_metrics_input.json"
    shared_trace(rel)
    device = parsed(rel).meta.devices[0]
    # computeProperties[0]: "major": 7, "minor": 0, "multiProcessorCount": 80,
    # "maxThreadsPerMultiProcessor": 2048, "totalGlobalMem": 34084028416.
    assert (device.compute_major, device.compute_minor, device.num_sms) == (7, 0, 80)
    assert device.max_threads_per_sm == 2048
    assert device.total_mem_bytes == 34_084_028_416


@needs_shared
def test_rocm_trace() -> None:
    rel = "hta/amd_trace/mi250_minitoy_train_ROCm6_2_kineto.json.gz"
    shared_trace(rel)
    tables = parsed(rel)
    assert {d.warp_size for d in tables.meta.devices} == {64}
    # ROCm kernels carry no occupancy or register counts.
    assert tables.kernels["occupancy_pct"].null_count() == tables.kernels.height
    assert tables.kernels["registers_per_thread"].null_count() == tables.kernels.height
    # The two copies have no "bytes"; their hipMemcpyWithStream calls (correlation 117 and
    # 123 in the file) carry "size": "2560".
    assert tables.memops["bytes"].to_list() == [2560, 2560]
    assert tables.memops["src_mem"].to_list() == ["unknown", "unknown"]  # "Host ->"
    assert any(n.startswith("hip") for n in tables.runtime["name"].to_list())
    assert any(w.endswith("assumed rank 0") for w in tables.meta.warnings)


@needs_shared
def test_mtia_ccp_events_are_kernels_and_mtia_runtime_is_runtime() -> None:
    rel = "hta/mtia_trace_single_rank/mtia_rank_0.json.gz"
    shared_trace(rel)
    doc = raw_trace(rel)
    tables = parsed(rel)
    dma = [e for e in doc["traceEvents"] if e.get("name") == "dma_request"]
    to_device = [e for e in dma if e["args"]["direction"] == "HOST_TO_DEVICE"]
    to_host = [e for e in dma if e["args"]["direction"] == "DEVICE_TO_HOST"]
    kinds = dict(tables.memops.group_by("kind").len().iter_rows())
    assert kinds == {"HtoD": len(to_device), "DtoH": len(to_host)}
    assert int(tables.memops["bytes"].sum()) == sum(e["args"]["size"] for e in dma)
    # 137 DMA records carry no "stream": HTA leaves those off every stream; so do we.
    assert tables.memops["stream"].null_count() == sum(1 for e in dma if "stream" not in e["args"])
    assert tables.kernels.filter(pl.col("name") == "dma_request").height == 0
    # MTIA events have no "device" arg: the device is the process id ("MTIA 9").
    assert set(tables.kernels["device"].to_list()) == {9}
    launches = tables.runtime.filter(
        pl.col("name") == "runFunction - job_prep_and_submit_for_execution"
    )
    assert launches.height == 3453


@needs_shared
def test_cpu_only_trace_is_a_valid_bundle() -> None:
    rel = "hta/cpu_only/rank-34.Jul_15_10_52_41.1074.pt.trace.json.gz"
    shared_trace(rel)
    tables = parsed(rel)
    assert tables.kernels.height == tables.memops.height == tables.runtime.height == 0
    assert tables.meta.ranks[0].rank == 34
    assert tables.meta.ranks[0].world_size == 300
    assert tables.meta.devices == ()


@needs_shared
def test_rank_from_file_name_and_large_integers() -> None:
    rel = "hta/large_integer_trace/rank-70.Mar_25_20_48_12.2861.pt.trace.json.gz"
    shared_trace(rel)
    tables = parsed(rel)
    assert tables.meta.ranks[0].rank == 70
    assert not tables.meta.ranks[0].rank_from_trace
    assert any("file name" in w for w in tables.meta.warnings)
    # "Comms Id": 10159970886766084423 (> int64) sits on the op: the op is kept.
    assert tables.ops["name"].to_list() == ["record_param_comms"]
    assert tables.meta.clock == "relative"  # "ts": 100 and 200, no baseTimeNanoseconds
    assert tables.kernels["start_ns"].to_list() == [100_000]
    assert tables.kernels["correlation"].to_list() == [None]  # the kernel has no args


@needs_shared
def test_missing_rank_is_assumed_zero_with_a_warning() -> None:
    rel = "hta/rank_unavailable/rank_not_found.json.gz"
    shared_trace(rel)
    tables = parsed(rel)
    assert tables.meta.ranks[0].rank == 0
    assert not tables.meta.ranks[0].rank_from_trace
    assert any("assumed rank 0" in w for w in tables.meta.warnings)


@needs_shared
def test_directory_of_ranks() -> None:
    path = shared_trace("hta/trace_filter")
    tables = parse(path)
    zero = raw_counts(raw_trace("hta/trace_filter/sampled_rank-0.json.gz"))
    one = raw_counts(raw_trace("hta/trace_filter/sampled_rank-1.json.gz"))
    assert tables.kernels.height == zero["kernels"] + one["kernels"]
    assert tables.ops.height == zero["ops"] + one["ops"]
    assert sorted(tables.kernels["rank"].unique().to_list()) == [0, 1]
    assert [r.rank for r in tables.meta.ranks] == [0, 1]
    assert tables.meta.world_size == 128
    assert tables.ops["op_id"].n_unique() == tables.ops.height
    # Parents point at an op of the same rank and thread that starts no later.
    parents = tables.ops.join(
        tables.ops.select(
            pl.col("op_id").alias("parent"),
            pl.col("rank").alias("p_rank"),
            pl.col("tid").alias("p_tid"),
            pl.col("start_ns").alias("p_start"),
        ),
        on="parent",
    )
    assert parents.height == tables.ops["parent"].drop_nulls().len()
    assert (parents["rank"] == parents["p_rank"]).all()
    assert (parents["tid"] == parents["p_tid"]).all()
    assert (parents["p_start"] <= parents["start_ns"]).all()


@needs_shared
def test_sync_kinds_from_names() -> None:
    rel = "hta/critical_path/alexnet/benchmark_result_2869224_1695835535_trace.json.gz"
    shared_trace(rel)
    doc = raw_trace(rel)
    names: dict[str, int] = {}
    for e in doc["traceEvents"]:
        if e.get("cat") == "cuda_sync":
            names[e["name"]] = names.get(e["name"], 0) + 1
    kinds = dict(parsed(rel).syncs.group_by("kind").len().iter_rows())
    assert kinds == {
        "stream_wait_event": names["Stream Wait Event"],
        "stream_sync": names["Stream Sync"],
        "context_sync": names["Context Sync"],
    }


@needs_shared
def test_collectives_from_kernels_and_record_param_comms() -> None:
    rel = "hta/nccl_parser_config/nccl_data.json.gz"
    shared_trace(rel)
    doc = raw_trace(rel)
    events = doc["traceEvents"]
    nccl = [e for e in events if e.get("cat") == "kernel" and e["name"].startswith("nccl")]
    launched = {e["args"]["External id"] for e in nccl}
    cpu_only = [
        e
        for e in events
        if e.get("name") == "record_param_comms"
        and "Collective name" in e["args"]
        and e["args"]["External id"] not in launched
    ]
    comms = parsed(rel).comms
    assert comms.height == len(nccl) + len(cpu_only)
    # The kernel with correlation 60047: "Collective name": "allreduce", "dtype": "Float",
    # "In msg nelems": 6637568 -> 6637568 x 4 bytes.
    row = comms.filter(pl.col("correlation") == 60047).row(0, named=True)
    assert (row["collective"], row["dtype"], row["group_size"]) == ("allreduce", "Float", 2)
    assert row["bytes"] == 6_637_568 * 4
    assert row["start_ns"] == 1_711_964_646_000_000_000 + 4_458_677_009_853_422
    assert set(comms.filter(pl.col("correlation").is_null())["collective"]) == {"wait"}


@needs_shared
def test_allgather_message_bytes_use_the_larger_side() -> None:
    rel = "tracelens/b200__eager_trace.json.gz"
    shared_trace(rel)
    comms = parsed(rel).comms.filter(pl.col("collective") == "allgather")
    # The NCCL kernel's args: "Collective name": "_allgather_base", "In msg nelems": 25136,
    # "Out msg nelems": 201088, "Group size": 8, "dtype": "BFloat16" (2 bytes).
    assert comms.select("in_nelems", "out_nelems", "group_size", "bytes").rows() == [
        (25_136, 201_088, 8, 201_088 * 2)
    ]


def test_collective_names_are_normalized() -> None:
    assert normalize_collective("_allgather_base") == "allgather"
    assert normalize_collective("all_gather_into_tensor_coalesced") == "allgather"
    assert normalize_collective("reduce_scatter_tensor_coalesced") == "reduce_scatter"
    assert normalize_collective("all_to_all") == "all_to_all"
    assert normalize_collective("allreduce") == "allreduce"
    assert collective_from_kernel("ncclDevKernel_ReduceScatter_RING_LL(x)") == "reduce_scatter"
    assert collective_from_kernel("ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t(x)") == "sendrecv"
    assert collective_from_kernel("void at::native::reduce_kernel<1>") is None


@needs_shared
def test_collectives_named_from_kernels_without_args() -> None:
    rel = "hta/df_index_resolver/df_index_resolver.json.gz"
    shared_trace(rel)
    tables = parsed(rel)
    # 2020 "ncclKernel_AllReduce_RING_LL_Sum_float(ncclWorkElem)" kernels, no comm args.
    assert tables.comms.height == 2020
    assert set(tables.comms["collective"]) == {"allreduce"}
    assert tables.comms["bytes"].null_count() == 2020


@needs_shared
def test_memory_events() -> None:
    rel = "hta/df_index_resolver/df_index_resolver.json.gz"
    shared_trace(rel)
    doc = raw_trace(rel)
    mem = [e["args"] for e in doc["traceEvents"] if e.get("name") == "[memory]"]
    memory = parsed(rel).memory
    assert int(memory["bytes"].sum()) == sum(a["Bytes"] for a in mem)
    host = sum(1 for a in mem if a["Device Type"] == 0)
    assert memory.filter(pl.col("device") == -1).height == host
    assert memory["total_reserved_bytes"].max() == max(a["Total Reserved"] for a in mem)


@needs_shared
def test_versions_flags_and_pytorch_version() -> None:
    b200 = shared_trace("tracelens/b200__eager_trace.json.gz")
    meta = parse(b200).meta
    # Top of the file: "cupti_version": 28, "cuda_runtime_version": 12090,
    # "cuda_driver_version": 13000, "record_shapes": 1, "with_stack": 1, nccl 2.27.5.
    assert meta.versions["cupti_version"] == "28"
    assert meta.versions["cuda_runtime_version"] == "12090"
    assert meta.versions["nccl_version"] == "2.27.5"
    assert meta.flags == {
        "record_shapes": "1",
        "with_stack": "1",
        "base_time_ns": "1767189312000000000",  # "baseTimeNanoseconds" in the file
    }
    h100 = shared_trace("tracelens/h100__gaunernst_bert-small-uncased__1016001.json.gz")
    # metadata.system.torch_env_info.torch_version in that file.
    assert parse(h100).meta.versions["pytorch_version"] == "2.6.0+cu124"
    mi300 = shared_trace("tracelens/mi300__gaunernst_bert-small-uncased__1016001.json.gz")
    assert parse(mi300).meta.versions["roctracer_version"] == "4.1"


@needs_shared
def test_ops_keep_shapes_as_raw_json_text() -> None:
    rel = "tracelens/h100__gaunernst_bert-small-uncased__1016001.json.gz"
    shared_trace(rel)
    doc = raw_trace(rel)
    first = next(
        e for e in doc["traceEvents"] if e.get("cat") == "cpu_op" and "Input Dims" in e["args"]
    )
    ops = parsed(rel).ops
    row = ops.filter(
        (pl.col("external_id") == first["args"]["External id"]) & (pl.col("kind") == "cpu_op")
    ).row(0, named=True)
    assert json.loads(row["input_dims"]) == first["args"]["Input Dims"]
    assert json.loads(row["input_types"]) == first["args"]["Input type"]


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_nesting_hand_example(tmp_path: Path) -> None:
    # Thread 1: A [0, 100) encloses B [10, 50) which encloses C [20, 30); D [60, 70) in A.
    # Thread 2: E [15, 25) is alone at depth 0.
    def op(name: str, tid: int, ts: int, dur: int) -> dict[str, Any]:
        return {"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": tid, "ts": ts,
                "dur": dur, "args": {}}  # fmt: skip

    events = [op("C", 1, 20, 10), op("A", 1, 0, 100), op("E", 2, 15, 10), op("B", 1, 10, 40),
              op("D", 1, 60, 10)]  # fmt: skip
    ops = parse(_write(tmp_path / "t.json", {"traceEvents": events})).ops
    by_name = {r["name"]: r for r in ops.iter_rows(named=True)}
    ids = {name: row["op_id"] for name, row in by_name.items()}
    assert {n: r["depth"] for n, r in by_name.items()} == {"A": 0, "B": 1, "C": 2, "D": 1, "E": 0}
    assert by_name["B"]["parent"] == ids["A"]
    assert by_name["C"]["parent"] == ids["B"]
    assert by_name["D"]["parent"] == ids["A"]
    assert by_name["A"]["parent"] is None and by_name["E"]["parent"] is None


def test_collective_comm_events_become_comms(tmp_path: Path) -> None:
    # Kineto's NCCL profiler records collectives as their own "collective_comm" events.
    event = {"ph": "X", "cat": "collective_comm", "name": "nccl:all_reduce", "pid": 0,
             "tid": 7, "ts": 10, "dur": 5,
             "args": {"Collective name": "allreduce", "dtype": "Half", "In msg nelems": 1024,
                      "Out msg nelems": 1024, "Group size": 4, "Process Group Name": "0",
                      "Seq": 17}}  # fmt: skip
    comms = parse(_write(tmp_path / "t.json", {"traceEvents": [event]})).comms
    assert comms.select(
        "collective", "bytes", "group_size", "pg_name", "seq", "start_ns", "dur_ns"
    ).rows() == [("allreduce", 1024 * 2, 4, "0", 17, 10_000, 5_000)]


# --- truncated traces -------------------------------------------------------------------


def _complete_events(text: str) -> tuple[int, int]:
    """(complete events, offset just after the last one) of a cut JSON trace, found with
    the standard library's incremental decoder."""
    decoder = json.JSONDecoder()
    position = re.search(r'"traceEvents"\s*:\s*\[', text)
    assert position is not None
    index = position.end()
    count = 0
    end = index
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        try:
            _, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            return count, end
        count += 1
        end = index


@needs_shared
@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.777, 0.999])
def test_truncated_trace_keeps_complete_events(tmp_path: Path, fraction: float) -> None:
    rel = "hta/timeline_analysis/sampled_rank-0.json.gz"
    text = gzip.decompress(shared_trace(rel).read_bytes()).decode()
    cut = text[: int(len(text) * fraction)]
    complete, end = _complete_events(cut)
    path = tmp_path / "cut.json"
    path.write_text(cut)
    tables = parse(path)
    kept = json.loads(cut[:end] + "]}")["traceEvents"]
    assert complete == len(kept)
    expected = raw_counts({"traceEvents": kept})
    assert {name: tables.table(name).height for name in expected} == expected
    warning = next(w for w in tables.meta.warnings if "truncated" in w)
    assert f"dropped the last {len(cut) - end} bytes" in warning


@needs_shared
def test_truncated_gzip_stream(tmp_path: Path) -> None:
    rel = "hta/timeline_analysis/sampled_rank-0.json.gz"
    data = shared_trace(rel).read_bytes()
    path = tmp_path / "cut.json.gz"
    path.write_bytes(data[: len(data) // 2])
    tables = parse(path)
    prefix = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[: len(data) // 2])
    text = prefix.decode("utf-8", "ignore")
    _, end = _complete_events(text)
    expected = raw_counts(json.loads(text[:end] + "]}"))
    assert {name: tables.table(name).height for name in expected} == expected
    assert sum(expected.values()) < sum(raw_counts(raw_trace(rel)).values())
    assert any("gzip stream ends early" in w for w in tables.meta.warnings)


def test_truncated_after_the_events_keeps_every_event(tmp_path: Path) -> None:
    events = [{"ph": "X", "cat": "kernel", "name": f"k{i}", "pid": 0, "tid": 7, "ts": i,
               "dur": 1, "args": {}} for i in range(3)]  # fmt: skip
    text = json.dumps({"traceEvents": events, "traceName": "x" * 50})
    path = tmp_path / "cut.json"
    path.write_text(text[:-20])
    tables = parse(path)
    assert tables.kernels["name"].to_list() == ["k0", "k1", "k2"]
    assert any("truncated" in w for w in tables.meta.warnings)


def test_truncated_before_any_event(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{"schemaVersion": 1, "traceEvents": [{"ph": "X", "na')
    with pytest.raises(UnreadableInputError, match="truncated"):
        parse(path)


# --- errors -----------------------------------------------------------------------------


def _one_line(error: AnalyzerError, path: Path) -> str:
    message = str(error)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_error_cases(tmp_path: Path) -> None:
    cases: list[tuple[str, bytes, type[AnalyzerError], str]] = [
        ("empty.json", b"", UnreadableInputError, "empty file"),
        ("text.json", b"hello world\n", UnsupportedFormatError, "text starting with"),
        ("obj.json", b'{"foo": 1, "bar": [1]}', UnsupportedFormatError, "no traceEvents"),
        ("array.json", b"[1, 2, 3]", UnsupportedFormatError, "JSON array"),
        ("bad.json", b'{"traceEvents": [}', UnreadableInputError, "malformed JSON"),
        ("none.json", b'{"traceEvents": []}', EmptyTraceError, "no events"),
        ("gz.json.gz", b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"garbage!" * 8,
         UnreadableInputError, "corrupt gzip"),
    ]  # fmt: skip
    for name, content, error, words in cases:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(error) as info:
            parse(path)
        assert words in _one_line(info.value, path), name
    with pytest.raises(UnreadableInputError):
        parse(tmp_path / "missing.json")


@needs_shared
@pytest.mark.parametrize(
    ("rel", "words"),
    [
        ("hta/execution_trace/benchmark_simple_add_et.json.gz", "Chakra execution trace"),
        ("hta/memory_analysis/memory_timeline.raw.gz", "memory timeline"),
        ("dcgm/exporter/v1.35__upcloud__ai-service-metrics__block3.json", "keys: status"),
        ("dcgm/exporter/v1.36__vks__accelerator_metrics__block3.prom", "# HELP DCGM_FI_"),
        ("nsys/mock.sqlite", "SQLite"),
    ],
)
def test_files_that_are_not_kineto_traces(rel: str, words: str) -> None:
    path = shared_trace(rel)
    with pytest.raises(UnsupportedFormatError) as info:
        parse(path)
    assert words in _one_line(info.value, path)


@needs_shared
def test_directory_with_other_files_ignores_them(tmp_path: Path) -> None:
    trace = shared_trace("hta/trace_compare/base/base.json.gz")
    shutil.copy(trace, tmp_path / "rank_1.json.gz")
    shutil.copy(shared_trace("dcgm/exporter/v1.36__vks__accelerator_metrics__block3.prom"),
                tmp_path / "gpu.prom")  # fmt: skip
    tables = parse(tmp_path)
    assert [r.rank for r in tables.meta.ranks] == [1]
    assert any("ignored 1 files" in w for w in tables.meta.warnings)


@needs_shared
def test_directory_with_a_repeated_rank_moves_it(tmp_path: Path) -> None:
    trace = shared_trace("hta/trace_compare/base/base.json.gz")  # distributedInfo.rank = 1
    shutil.copy(trace, tmp_path / "a.json.gz")
    shutil.copy(trace, tmp_path / "b.json.gz")
    tables = parse(tmp_path)
    assert [r.rank for r in tables.meta.ranks] == [1, 2]
    assert sorted(tables.kernels["rank"].unique().to_list()) == [1, 2]
    assert any("already taken" in w for w in tables.meta.warnings)


# --- property tests ---------------------------------------------------------------------

_names = st.text(alphabet="abcdefgh_:<>() ", min_size=1, max_size=20)
_us = st.decimals(min_value=0, max_value=10**10, places=3, allow_nan=False)
_epoch_us = st.decimals(
    min_value=1_600_000_000_000_000, max_value=1_800_000_000_000_000, places=3, allow_nan=False
)


@st.composite
def _kernel(draw: st.DrawFn, ts: st.SearchStrategy[Decimal]) -> dict[str, Any]:
    return {
        "ph": "X", "cat": "kernel", "name": draw(_names), "pid": 0,
        "tid": draw(st.integers(0, 100)), "ts": draw(ts), "dur": draw(_us),
        "args": {
            "device": draw(st.integers(0, 7)), "stream": draw(st.integers(0, 100)),
            "correlation": draw(st.integers(1, 2**40)),
            "External id": draw(st.integers(1, 2**40)),
            "grid": draw(st.lists(st.integers(1, 65535), min_size=3, max_size=3)),
            "block": draw(st.lists(st.integers(1, 1024), min_size=3, max_size=3)),
        },
    }  # fmt: skip


@st.composite
def _cpu_op(draw: st.DrawFn, ts: st.SearchStrategy[Decimal]) -> dict[str, Any]:
    return {
        "ph": "X", "cat": "cpu_op", "name": draw(_names), "pid": 1,
        "tid": draw(st.integers(1, 3)), "ts": draw(ts), "dur": draw(_us),
        "args": {"External id": draw(st.integers(1, 2**40)),
                 "Input Dims": draw(st.lists(st.lists(st.integers(0, 9), max_size=3),
                                             max_size=3))},
    }  # fmt: skip


def _kineto_json(doc: dict[str, Any]) -> str:
    """JSON with Decimal values written as plain numbers, exactly, as Kineto writes them."""

    def mark(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"@@{format(value, 'f')}@@"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    return re.sub(r'"@@(-?[0-9.]+)@@"', r"\1", json.dumps(mark(doc)))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=st.one_of(st.none(), st.integers(1_600_000_000 * 10**9, 1_800_000_000 * 10**9)),
    data=st.data(),
)
def test_generated_events_round_trip(tmp_path: Path, base: int | None, data: st.DataObject) -> None:
    ts = _us if base is not None else _epoch_us
    kernels = data.draw(st.lists(_kernel(ts), min_size=1, max_size=8))
    cpu_ops = data.draw(st.lists(_cpu_op(ts), max_size=8))
    doc: dict[str, Any] = {"schemaVersion": 1, "traceEvents": kernels + cpu_ops}
    if base is not None:
        doc["baseTimeNanoseconds"] = base
    path = tmp_path / "gen.json"
    path.write_text(_kineto_json(doc))
    tables = parse(path)
    offset = base or 0
    expected = sorted(
        (offset + int(k["ts"] * 1000), int(k["dur"] * 1000), k["name"], k["args"]["correlation"],
         k["args"]["grid"][1], k["args"]["block"][2])
        for k in kernels
    )  # fmt: skip
    got = sorted(
        tables.kernels.select(
            "start_ns", "dur_ns", pl.col("name").cast(pl.String), "correlation", "grid_y",
            "block_z",
        ).iter_rows()
    )  # fmt: skip
    assert got == expected
    expected_ops = sorted(
        (
            offset + int(o["ts"] * 1000),
            o["args"]["External id"],
            json.dumps(o["args"]["Input Dims"]),
        )
        for o in cpu_ops
    )
    got_ops = sorted(
        (s, x, json.dumps(json.loads(d)))
        for s, x, d in tables.ops.select("start_ns", "external_id", "input_dims").iter_rows()
    )
    assert got_ops == expected_ops


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400), position=st.integers(0, 400), gz=st.booleans())
def test_garbled_bytes_raise_only_analyzer_errors(
    tmp_path: Path, data: bytes, position: int, gz: bool
) -> None:
    valid = json.dumps(
        {"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "pid": 0, "tid": 7,
                          "ts": 1.5, "dur": 2, "args": {"stream": 7}}]}
    ).encode()  # fmt: skip
    garbled = valid[:position] + data + valid[position + len(data) :]
    content = gzip.compress(garbled) if gz else garbled
    path = tmp_path / "garbled.json"
    path.write_bytes(content)
    try:
        tables = parse(path)
    except AnalyzerError:
        return
    tables.validate()
