"""Collectives against the link: bus bandwidth, the link it is compared against, and the wait.

Every bandwidth is recomputed here by hand from the raw trace events (message bytes from the
trace's own fields: the kernel's ``In msg nelems`` x dtype size, or the launching op's
``Input Dims`` x ``Input type`` size; durations from the kernels' ``dur``), with the
NCCL-tests definitions (https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md):
algbw = S / t; busbw = algbw x 2(n-1)/n for all-reduce, x (n-1)/n for all-gather,
reduce-scatter and all-to-all, x 1 for broadcast, reduce and send/recv. Start spreads are
checked against the kernels' raw ``ts``. The waiting / not-waiting verdicts use the synthetic
``straggler`` scenario (one rank computes slower, the others wait inside the all-reduce; its
truth records each rank's wait) and the lockstep ``comm_heavy`` one.

No oracle in ../shared/reference reports collective bandwidth (HTA's outputs are temporal,
idle and overlap breakdowns; TraceLens' sheets cover traces without collectives), so the hand
computation is the independent source.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import synthetic
from conftest import TRACES, needs_shared, shared_trace
from gpu_trace_analyzer import load
from gpu_trace_analyzer.cli import main
from gpu_trace_analyzer.context import AnalysisContext, AnalysisOptions
from gpu_trace_analyzer.devices import intra_node_link, link_by_name, links
from gpu_trace_analyzer.metrics.collective_link import (
    arrival_spread,
    bus_factor,
    collective_link_table,
    latency_floor_ns,
    link_choice,
    link_table,
)
from gpu_trace_analyzer.parsers import kineto
from gpu_trace_analyzer.parsers.errors import BadConfigError
from gpu_trace_analyzer.parsers.schema import TraceTables
from gpu_trace_analyzer.rules.comm_overhead import CommOverhead, CommOverheadConfig
from gpu_trace_analyzer.rules.copy_bound import CopyBound, CopyBoundConfig
from gpu_trace_analyzer.sections import collectives as section

_DTYPE_BYTES = {
    "signed char": 1,
    "unsigned char": 1,
    "float": 4,
    "long": 8,
    "int": 4,
    "c10::bfloat16": 2,
    "bfloat16": 2,
}


def _events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    return events


def _row(table: pl.DataFrame, collective: str, bucket: str | None = None) -> dict[str, Any]:
    rows = table.filter(pl.col("collective") == collective)
    if bucket is not None:
        rows = rows.filter(pl.col("size_bucket") == bucket)
    assert rows.height == 1, rows
    return rows.row(0, named=True)


# -- link figures ---------------------------------------------------------------------------


def test_link_figures_carry_sources_and_directions() -> None:
    """NVLink per generation, as NVIDIA prints it (bidirectional per GPU), halved for busbw."""
    expected = {"nvlink2": 300, "nvlink3": 600, "nvlink4": 900, "nvlink5": 1800}
    for key, bidir in expected.items():
        spec = link_by_name(key)
        assert spec.bidirectional_gbps == bidir
        assert spec.unidirectional_gbps == bidir / 2
    assert link_by_name("PCIe Gen5 x16").unidirectional_gbps == 63
    assert link_by_name("pcie4_x16").unidirectional_gbps == 31.5
    assert link_by_name("ib-ndr").unidirectional_gbps == 50  # 400 Gb/s per port
    assert link_by_name("ib-hdr").unidirectional_gbps == 25  # 200 Gb/s
    assert link_by_name("xgmi-mi300x").unidirectional_gbps == 7 * 64
    assert all(s.source.startswith("https://") for s in links())
    assert intra_node_link("H100-SXM") == link_by_name("nvlink4")
    assert intra_node_link("B200") == link_by_name("nvlink5")
    assert intra_node_link("H100-PCIe") == link_by_name("pcie5-x16")
    with pytest.raises(BadConfigError, match="known: nvlink2"):
        link_by_name("nvlink9")


def test_bus_factors_are_nccl_tests() -> None:
    assert bus_factor("allreduce", 8) == pytest.approx(2 * 7 / 8)
    assert bus_factor("allgather", 64) == pytest.approx(63 / 64)
    assert bus_factor("reduce_scatter", 4) == pytest.approx(3 / 4)
    assert bus_factor("all_to_all", 128) == pytest.approx(127 / 128)
    for one in ("broadcast", "reduce", "send", "recv", "sendrecv"):
        assert bus_factor(one, 8) == 1.0


# -- real traces: busbw by hand -------------------------------------------------------------


def _linked_kernels(events: list[dict[str, Any]], op_name: str) -> list[tuple[int, int, int]]:
    """(bytes, kernel ts ns, kernel dur ns) per ``op_name`` op, in order, by hand: the op's
    largest tensor argument; its kernel is the one whose correlation a runtime call inside
    the op (same thread) carries."""
    ops = [e for e in events if e.get("name") == op_name and e.get("ph") == "X"]
    ops = [e for e in ops if e.get("cat") != "gpu_user_annotation"]
    calls = [e for e in events if e.get("cat") == "cuda_runtime" and e.get("ph") == "X"]
    kernels = {
        e["args"]["correlation"]: e
        for e in events
        if e.get("cat") == "kernel" and "correlation" in e.get("args", {})
    }
    out = []
    for op in sorted(ops, key=lambda e: e["ts"]):
        args = op["args"]
        size = max(
            math.prod(d) * _DTYPE_BYTES[t.lower()]
            for d, t in zip(args["Input Dims"], args["Input type"], strict=False)
            if d and t.lower() in _DTYPE_BYTES
        )
        inside = [
            c
            for c in calls
            if c["tid"] == op["tid"]
            and op["ts"] <= c["ts"] <= op["ts"] + op["dur"]
            and c["args"].get("correlation") in kernels
        ]
        kernel = kernels[inside[-1]["args"]["correlation"]]
        out.append((size, round(kernel["ts"] * 1000), round(kernel["dur"] * 1000)))
    return out


@needs_shared
def test_trace_filter_allgather_busbw_by_hand() -> None:
    """hta/trace_filter (ranks 0 and 1 of a 128-rank job): the two 1 GiB all-gathers over 64
    ranks (group from the op's output/input shapes), matched across the two ranks in order."""
    tables = kineto.parse(shared_trace("hta/trace_filter"))
    table = collective_link_table(tables)
    raw = [
        _linked_kernels(_events(shared_trace(f"hta/trace_filter/sampled_rank-{r}.json.gz")), op)
        for r in (0, 1)
        for op in ("c10d::_allgather_base_",)
    ]
    pairs = list(zip(raw[0], raw[1], strict=True))
    assert len(pairs) == 2
    size = sum(max(a[0], b[0]) for a, b in pairs)
    mean_t = sum((a[2] + b[2]) / 2 for a, b in pairs)
    min_t = sum(min(a[2], b[2]) for a, b in pairs)
    row = _row(table, "allgather")
    assert row["group_size"] == 64 and row["count"] == 2 and row["matched"] == 2
    assert row["bytes"] == size == 2 * 2**30
    assert row["algbw_gbps"] == pytest.approx(size / mean_t, rel=1e-9)  # bytes/ns = GB/s
    assert row["busbw_gbps"] == pytest.approx(size / mean_t * 63 / 64, rel=1e-9)
    assert row["busbw_nowait_gbps"] == pytest.approx(size / min_t * 63 / 64, rel=1e-9)
    assert row["busbw_gbps"] == pytest.approx(20.03, abs=0.01)
    # Start spread: rank 1's kernel start minus rank 0's, per instance, from the raw ts.
    spreads = sorted(b[1] - a[1] for a, b in pairs)
    got = arrival_spread(tables).filter(pl.col("collective") == "allgather")
    assert sorted(got["spread_ns"].to_list()) == spreads == [84_000, 1_292_000]
    assert row["median_spread_ns"] == pytest.approx(sum(spreads) / 2)
    # No device in the trace, 128 ranks: no link figure, and the report says why.
    assert row["link"] is None and row["busbw_pct_of_link"] is None
    assert row["verdict"] == "no link figure"


@needs_shared
def test_trace_filter_allreduce_waits_for_rank_1() -> None:
    """The last all-reduce of the window: rank 0 starts 22.3 ms before rank 1 (raw kernel
    ts), so 62% of rank 0's 36.2 ms kernel is waiting: the all-reduce row is 'waiting'."""
    tables = kineto.parse(shared_trace("hta/trace_filter"))
    raw = [
        _linked_kernels(
            _events(shared_trace(f"hta/trace_filter/sampled_rank-{r}.json.gz")),
            "nccl:all_reduce",
        )
        for r in (0, 1)
    ]
    (r0_size, r0_ts, r0_dur), (r1_size, r1_ts, r1_dur) = raw[0][-1], raw[1][-1]
    assert r0_size == r1_size  # the same all-reduce on both ranks
    top = arrival_spread(tables).row(0, named=True)
    assert top["collective"] == "allreduce"
    assert top["spread_ns"] == r1_ts - r0_ts == 22_328_000
    assert (top["first_rank"], top["last_rank"]) == (0, 1)
    assert top["wait_share_pct"] == pytest.approx(100 * (r1_ts - r0_ts) / max(r0_dur, r1_dur))
    row = _row(collective_link_table(tables), "allreduce")
    assert row["verdict"] == "waiting" and row["last_rank"] == 1
    assert row["wait_share_pct"] >= 50


@needs_shared
def test_nccl_parser_config_allreduce_busbw_by_hand_against_nvlink3() -> None:
    """hta/nccl_parser_config: one rank of 2 on an A100 SXM4 (PG509-200) node of 8 GPUs; the
    NCCL kernels carry ``In msg nelems``, ``dtype`` and ``Group size`` themselves."""
    events = _events(shared_trace("hta/nccl_parser_config/nccl_data.json.gz"))
    kernels = [
        e["args"] | {"dur_ns": round(e["dur"] * 1000)}
        for e in events
        if e.get("cat") == "kernel" and e.get("args", {}).get("Collective name") == "allreduce"
    ]
    big = [k for k in kernels if k["In msg nelems"] * 4 >= 16 * 2**20]
    size = sum(k["In msg nelems"] * _DTYPE_BYTES[k["dtype"].lower()] for k in big)
    t = sum(k["dur_ns"] for k in big)
    n = big[0]["Group size"]
    assert n == 2
    busbw = size / t * 2 * (n - 1) / n
    table = collective_link_table(kineto.parse(shared_trace("hta/nccl_parser_config")))
    row = _row(table, "allreduce", "16 - 256 MiB")
    assert row["count"] == len(big) == 9
    assert row["bytes"] == size
    assert row["busbw_gbps"] == pytest.approx(busbw, rel=1e-9)
    assert row["link"] == "nvlink3" and row["link_peak_gbps"] == 300
    assert row["busbw_pct_of_link"] == pytest.approx(100 * busbw / 300, rel=1e-9)
    assert row["verdict"] == "far below link"  # 2.9% of NVLink 3, one rank: no spread
    assert row["matched"] == 0 and row["median_spread_ns"] is None


@needs_shared
def test_b200_symmetric_memory_allreduce_busbw_by_hand_against_nvlink5() -> None:
    """tracelens/b200__eager_trace: vLLM's 73 all-reduces run as PyTorch symmetric-memory
    ``multimem_all_reduce_kernel`` launched by ``symm_mem::multimem_all_reduce_`` (bf16
    tensor in its Input Dims), 8 ranks (distributedInfo) on an 8-GPU B200 node."""
    events = _events(shared_trace("tracelens/b200__eager_trace.json.gz"))
    ops = {
        e["args"]["External id"]: math.prod(e["args"]["Input Dims"][0]) * 2
        for e in events
        if e.get("name") == "symm_mem::multimem_all_reduce_"
    }
    kernels = [e for e in events if e.get("cat") == "kernel" and "multimem_all_reduce" in e["name"]]
    size = sum(ops[k["args"]["External id"]] for k in kernels)
    t = sum(round(k["dur"] * 1000) for k in kernels)
    busbw = size / t * 2 * 7 / 8
    table = collective_link_table(kineto.parse(shared_trace("tracelens/b200__eager_trace.json.gz")))
    row = _row(table, "allreduce")
    assert row["count"] == len(kernels) == 73
    assert row["bytes"] == size
    assert row["busbw_gbps"] == pytest.approx(busbw, rel=1e-6)
    assert row["link"] == "nvlink5" and row["link_peak_gbps"] == 900
    assert row["busbw_pct_of_link"] == pytest.approx(100 * busbw / 900, rel=1e-6)
    gather = _row(table, "allgather")  # one NCCL all-gather: 201,088 bf16 out, 8 ranks
    assert gather["bytes"] == 201_088 * 2
    assert gather["verdict"] == "latency-bound"


# -- the wait: synthetic ground truth --------------------------------------------------------


@pytest.fixture(scope="module")
def straggler(tmp_path_factory: pytest.TempPathFactory) -> tuple[TraceTables, dict[str, Any]]:
    trace = synthetic.straggler(world_size=4, slow_rank=2, slowdown=1.0)
    directory = trace.write(tmp_path_factory.mktemp("straggler") / "straggler")
    return kineto.parse(directory), trace.truth()


@pytest.fixture(scope="module")
def comm_heavy(tmp_path_factory: pytest.TempPathFactory) -> tuple[TraceTables, dict[str, Any]]:
    trace = synthetic.comm_heavy(world_size=2)
    directory = trace.write(tmp_path_factory.mktemp("comm") / "comm_heavy")
    return kineto.parse(directory), trace.truth()


def test_late_rank_makes_the_allreduce_waiting_not_slow(
    straggler: tuple[TraceTables, dict[str, Any]],
) -> None:
    tables, truth = straggler
    colls = truth["collectives"]
    spread = arrival_spread(tables).sort("first_start_ns")
    assert spread.height == len(colls)
    for got, want in zip(spread.iter_rows(named=True), colls, strict=True):
        # The earliest rank waits the whole spread; the slow rank (2) waits nothing.
        assert got["spread_ns"] == max(want["wait_ns_by_rank"].values())
        assert got["last_rank"] == 2 and want["wait_ns_by_rank"]["2"] == 0
        assert got["min_dur_ns"] == want["latency_ns"]
    row = _row(collective_link_table(tables), "allreduce")
    assert row["verdict"] == "waiting"
    assert row["last_rank"] == 2 and row["last_rank_times"] == len(colls)
    # Without the wait the transfer is what the generator set: bytes / latency x 2(n-1)/n.
    nowait = sum(c["bytes"] for c in colls) / sum(c["latency_ns"] for c in colls) * 1.5
    assert row["busbw_nowait_gbps"] == pytest.approx(nowait, rel=1e-9)
    ctx = AnalysisContext(tables)
    built = section.build(ctx)
    assert built is not None
    text = " ".join(str(p) for b in built.blocks for p in getattr(b, "parts", ()))
    assert "is waiting, not slow" in text and "rank 2 arrived last" in text
    (finding,) = CommOverhead().check(ctx, CommOverheadConfig(warning_comm_pct=0.0))
    assert finding.evidence["waiting_collectives"] == "allreduce"
    assert finding.evidence["last_rank_allreduce"] == 2
    assert "waiting, not slow" in finding.recommendation
    assert "rank 2" in finding.recommendation
    assert "no_sync" not in finding.recommendation  # no communication advice for a wait


def test_lockstep_ranks_are_not_waiting(comm_heavy: tuple[TraceTables, dict[str, Any]]) -> None:
    tables, truth = comm_heavy
    colls = truth["collectives"]
    table = collective_link_table(tables)
    assert set(table["verdict"].to_list()).isdisjoint({"waiting"})
    assert arrival_spread(tables)["spread_ns"].to_list() == [0] * len(colls)
    # busbw by hand from the generator's collectives, 2 ranks: x 2(n-1)/n = x 1.
    total = sum(c["bytes"] for c in colls)
    latency = sum(c["latency_ns"] for c in colls)
    assert table["bytes"].sum() == total
    assert (table["busbw_gbps"] * table["time_ns"]).sum() == pytest.approx(total, rel=1e-9)
    assert table["time_ns"].sum() == latency
    # H100 SXM ranks, a group that fits the GPUs the trace shows: NVLink 4, and said why.
    assert set(table["link"].to_list()) == {"nvlink4"}
    choice = link_choice(tables.meta, None, 2)
    assert "NVIDIA H100 SXM5 80GB's intra-node link" in choice.reason
    # A group larger than the GPUs shown on a node spans nodes: no figure without --link.
    assert link_choice(tables.meta, None, 16).link is None
    (finding,) = CommOverhead().check(AnalysisContext(tables), CommOverheadConfig())
    assert "waiting_collectives" not in finding.evidence
    assert "waiting" not in finding.recommendation


# -- --link, absent collectives, the report --------------------------------------------------


@needs_shared
def test_link_option_overrides_and_the_report_says_so(tmp_path: Path) -> None:
    tables = kineto.parse(shared_trace("hta/trace_filter"))
    row = _row(collective_link_table(tables, link="ib-hdr"), "allgather")
    assert row["link"] == "ib-hdr" and row["link_peak_gbps"] == 25
    assert row["busbw_pct_of_link"] == pytest.approx(100 * row["busbw_gbps"] / 25)
    out = tmp_path / "r.md"
    assert main([str(TRACES / "hta" / "trace_filter"), "--link", "ib-hdr", "-o", str(out)]) == 0
    text = out.read_text()
    assert "## Collectives against the link" in text
    assert "InfiniBand HDR (200 Gb/s per port): given with --link" in text
    assert main([str(TRACES / "hta" / "trace_filter"), "--link", "nvlink9"]) == 2
    default = tmp_path / "d.md"
    assert main([str(TRACES / "hta" / "trace_filter"), "-o", str(default)]) == 0
    assert "the trace names no device; pass --link NAME" in default.read_text()
    assert "is waiting, not slow" in default.read_text()


@needs_shared
def test_no_collectives_no_section() -> None:
    analysis = load(shared_trace("tracelens/h100__gaunernst_bert-small-uncased__1016001.json.gz"))
    assert analysis.tables.comms.height == 0
    assert collective_link_table(analysis.tables).height == 0
    assert section.build(analysis.context) is None
    assert "Collectives against the link" not in analysis.report("md")


def test_link_option_reaches_the_analysis() -> None:
    ctx = AnalysisContext(synthetic_tables(), AnalysisOptions(link="pcie4-x16"))
    table = link_table(ctx)
    assert set(table["link"].to_list()) == {"pcie4-x16"}


def synthetic_tables() -> TraceTables:
    """The 2-rank comm_heavy scenario, parsed (for tests without a fixture's scope)."""
    import tempfile

    trace = synthetic.comm_heavy(world_size=2)
    directory = trace.write(Path(tempfile.mkdtemp()) / "comm_heavy")
    return kineto.parse(directory)


# -- the review's defects: own stream, copy bandwidth against PCIe ---------------------------


@needs_shared
def test_allgather_already_on_its_own_stream_is_not_told_to_move() -> None:
    tables = kineto.parse(shared_trace("hta/trace_filter"))
    (finding,) = CommOverhead().check(AnalysisContext(tables), CommOverheadConfig())
    ev = finding.evidence
    assert ev["comm_streams"] == "84,203" and ev["comm_on_own_stream"] == 1
    text = finding.recommendation
    assert "on its own stream and wait" not in text


@needs_shared
def test_trace_filter_allgather_advice_follows_the_optimizer_phase() -> None:
    """Review 2, defect 4: both 1 GiB ``c10d::_allgather_base_`` calls are launched inside
    ``Optimizer.step#Shampoo.step`` (raw: the launching cudaLaunchKernel's ts lies inside the
    annotation on the same thread), and their kernels run only on stream 203: the advice is
    the optimizer's communication, not FSDP's "next gather while the layer computes"."""
    events = _events(shared_trace("hta/trace_filter/sampled_rank-0.json.gz"))
    steps = [
        e for e in events if e.get("name") == "Optimizer.step#Shampoo.step" and e.get("ph") == "X"
    ]
    kernels = {
        e["args"]["correlation"]: e
        for e in events
        if e.get("cat") == "kernel" and "correlation" in e.get("args", {})
    }
    ops = [e for e in events if e.get("name") == "c10d::_allgather_base_" and e.get("ph") == "X"]
    ops = [e for e in ops if e.get("cat") == "cpu_op"]
    runtime = [e for e in events if e.get("cat") == "cuda_runtime"]
    launches = [
        [
            c
            for c in runtime
            if c["tid"] == op["tid"]
            and op["ts"] <= c["ts"] <= op["ts"] + op["dur"]
            and c["args"].get("correlation") in kernels
        ][-1]
        for op in ops
    ]
    assert len(launches) == 2
    assert all(
        any(s["tid"] == c["tid"] and s["ts"] <= c["ts"] <= s["ts"] + s["dur"] for s in steps)
        for c in launches
    )
    assert {kernels[c["args"]["correlation"]]["args"]["stream"] for c in launches} == {203}
    tables = kineto.parse(shared_trace("hta/trace_filter"))
    (finding,) = CommOverhead().check(AnalysisContext(tables), CommOverheadConfig())
    ev = finding.evidence
    assert ev["phase_allgather"] == "optimizer"
    assert ev["phase_range_allgather"] == "Optimizer.step#Shampoo.step"
    assert ev["streams_allgather"] == "203"
    text = finding.recommendation
    assert (
        "all-gather (27% of communication time) runs inside `Optimizer.step#Shampoo.step`" in text
    )
    assert "next gather while the current layer computes" not in text
    # Not firing: the all-reduce and all-to-all are in no optimizer range.
    assert "phase_allreduce" not in ev and "phase_all_to_all" not in ev


@needs_shared
def test_copy_bound_against_pcie_and_unlinked_copies() -> None:
    analysis = load(shared_trace("nsys/h100_2gpu_1s.sqlite"))
    (finding,) = CopyBound().check(analysis.context, CopyBoundConfig())
    ev = finding.evidence
    gbps = float(ev["HtoD_bytes"]) / float(ev["HtoD_gpu_ns"])
    assert gbps == pytest.approx(27.66, abs=0.01)
    assert ev["HtoD_pct_of_pcie5_x16"] == pytest.approx(100 * gbps / 63, abs=0.05)
    assert ev["HtoD_pct_of_pcie4_x16"] == pytest.approx(100 * gbps / 31.5, abs=0.05)
    assert ev["HtoD_unlinked_copies"] == 116
    assert "116 of the 225 HtoD copies" in finding.summary
    assert "44% of PCIe Gen5 x16's 63 GB/s per direction" in finding.summary
    linked = load(shared_trace("nsys/h100_2gpu_1s.sqlite"), link="pcie5-x16").context
    (only,) = CopyBound().check(linked, CopyBoundConfig())
    assert "HtoD_pct_of_pcie4_x16" not in only.evidence


# -- review 2: latency floor, partial rank sets, one-rank bounds ----------------------------


@needs_shared
def test_trace_filter_small_all_to_all_is_waiting_not_latency() -> None:
    """Review 2, defect 1: ``c10d::alltoall_base_`` on [[384],[384]] int64 = 3,072 B, one call
    per rank (30.67 and 39.63 ms kernels). 128 ranks: the latency floor is 100 us x
    ceil(log2 128) = 700 us; a 35 ms call is waiting, not latency. The 1 - 16 MiB all-to-all
    reaches 0.36 GB/s: below any datacenter link even without a link figure."""
    tables = kineto.parse(shared_trace("hta/trace_filter"))
    raw = [
        k
        for r in (0, 1)
        for k in _linked_kernels(
            _events(shared_trace(f"hta/trace_filter/sampled_rank-{r}.json.gz")),
            "c10d::alltoall_base_",
        )
    ]
    small = [k for k in raw if k[0] < 64 * 2**10]
    assert [k[0] for k in small] == [3072, 3072]
    mean_call = sum(k[2] for k in small) / len(small)
    assert mean_call == pytest.approx(35.15e6, rel=1e-3)
    table = collective_link_table(tables)
    row = _row(table, "all_to_all", "< 64 KiB")
    assert row["latency_floor_ns"] == latency_floor_ns(128) == 700_000
    assert row["mean_call_ns"] == pytest.approx(mean_call)
    assert row["verdict"] == "small message, long time"
    mid = [k for k in raw if 2**20 <= k[0] < 16 * 2**20]
    busbw = sum(k[0] for k in mid) / sum(k[2] for k in mid) * 127 / 128
    row = _row(table, "all_to_all", "1 - 16 MiB")
    assert row["busbw_gbps"] == pytest.approx(busbw, rel=1e-9)
    assert busbw < 1.0 and row["link"] is None
    assert row["verdict"] == "below any link"
    # Not firing: the 1 GiB all-gathers at 20 GB/s stay "no link figure".
    assert _row(table, "allgather")["verdict"] == "no link figure"
    text = " ".join(str(b) for b in section.build(AnalysisContext(tables)).blocks)  # type: ignore[union-attr]
    assert "far above the latency floor of 700.0 us for 128 ranks" in text
    assert "below any datacenter link" in text
    assert "coalesce" not in text.split("small messages (median 3.1 KB)")[1].split(".")[0]


@needs_shared
def test_b200_small_all_gather_near_the_floor_stays_latency_bound() -> None:
    """Not firing: vLLM's one 402 KB all-gather over 8 ranks takes far less than twice the
    300 us floor (100 us x log2 8): latency-bound, and its sentence says coalesce."""
    events = _events(shared_trace("tracelens/b200__eager_trace.json.gz"))
    kernels = [e for e in events if e.get("cat") == "kernel" and "AllGather" in e["name"]]
    dur = sum(round(k["dur"] * 1000) for k in kernels) / len(kernels)
    table = collective_link_table(kineto.parse(shared_trace("tracelens/b200__eager_trace.json.gz")))
    row = _row(table, "allgather")
    assert row["latency_floor_ns"] == 300_000 and dur <= 2 * 300_000
    assert row["verdict"] == "latency-bound"


@needs_shared
def test_trace_filter_names_no_straggler_with_2_of_128_ranks() -> None:
    """Review 2, defect 4: only ranks 0 and 1 of 128 are traced, so rank 1 is only the later
    of the two: the section and comm-overhead say so and do not send the user to rank 1."""
    tables = kineto.parse(shared_trace("hta/trace_filter"))
    ranks = sorted(tables.kernels["rank"].unique().to_list())
    assert ranks == [0, 1]
    row = _row(collective_link_table(tables), "allreduce")
    assert row["verdict"] == "waiting" and row["ranks_traced"] == 2 and row["group_size"] == 128
    ctx = AnalysisContext(tables)
    text = " ".join(str(b) for b in section.build(ctx).blocks)  # type: ignore[union-attr]
    assert "rank 1 was the later of the 2 ranks traced, out of 128" in text
    assert "look at the late rank's work" not in text
    (finding,) = CommOverhead().check(ctx, CommOverheadConfig())
    assert "rank 1 is the later of the 2 ranks traced, out of 128" in finding.recommendation
    assert "on rank 1 (" not in finding.recommendation


@needs_shared
def test_nccl_parser_config_one_rank_uses_the_fastest_call_as_the_bound() -> None:
    """Review 2, defect 5: one rank of 2 traced; the 9 all-reduces of 16 - 256 MiB. The
    fastest call's busbw (by hand: max of S / t) is the transfer bound; it is still 4% of
    NVLink 3, so the topology advice stays, worded as from one rank's view."""
    events = _events(shared_trace("hta/nccl_parser_config/nccl_data.json.gz"))
    big = [
        (e["args"]["In msg nelems"] * 4, round(e["dur"] * 1000))
        for e in events
        if e.get("cat") == "kernel"
        and e.get("args", {}).get("Collective name") == "allreduce"
        and e["args"]["In msg nelems"] * 4 >= 16 * 2**20
    ]
    best = max(s / t for s, t in big)  # x 2(n-1)/n = 1 for n = 2
    tables = kineto.parse(shared_trace("hta/nccl_parser_config"))
    row = _row(collective_link_table(tables), "allreduce", "16 - 256 MiB")
    assert row["busbw_best_gbps"] == pytest.approx(best, rel=1e-9)
    assert row["busbw_best_pct_of_link"] == pytest.approx(100 * best / 300, rel=1e-9)
    assert best == pytest.approx(13.0, abs=0.05)
    text = " ".join(str(b) for b in section.build(AnalysisContext(tables)).blocks)  # type: ignore[union-attr]
    assert "cannot separate waiting for other ranks from the transfer" in text
    assert "its fastest call reaches 13.0 GB/s (4.3% of the link)" in text
    assert "may include waiting for other ranks)" not in text  # the old contradiction
    assert "'time ms' is the total over the calls" in text  # 13(a)


@needs_shared
def test_verdict_quotes_exposed_communication_beside_kernel_share() -> None:
    """Review 2, 13(f): nccl_parser_config's 28.4% of summed kernel time is communication,
    but only 5.9% of the window is exposed; trace_filter 60.8% vs 27.4% (rank 0). The
    verdict's first sentence says both; b200 names communication second, with its exposed
    share beside it. Not firing: a trace without communication (nsys h100_2gpu)."""
    from gpu_trace_analyzer.metrics import timeline
    from gpu_trace_analyzer.sections.overview import family_sentence

    for trace, share, exposed, where in (
        ("hta/nccl_parser_config", "28.4%", 5.9, "the"),
        ("hta/trace_filter", "60.8%", 27.4, "rank 0's"),
    ):
        ctx = AnalysisContext(kineto.parse(shared_trace(trace)))
        b = timeline.breakdown(ctx.tables)
        worst = b.sort("exposed_comm_ns", descending=True).row(0, named=True)
        assert worst["exposed_comm_pct"] == pytest.approx(exposed, abs=0.05)
        assert worst["exposed_comm_pct"] == pytest.approx(
            100 * worst["exposed_comm_ns"] / worst["span_ns"]
        )
        text = family_sentence(ctx)
        assert text is not None
        assert text.startswith(
            f"{share} of summed GPU kernel time is communication, but only {exposed:.1f}% of "
            f"{where} window is exposed communication"
        )
    ctx = AnalysisContext(kineto.parse(shared_trace("tracelens/b200__eager_trace.json.gz")))
    b200 = timeline.breakdown(ctx.tables).row(0, named=True)
    text = family_sentence(ctx)
    assert text is not None and "of GPU time is MoE" in text
    assert f"communication 18.4% (exposed: {b200['exposed_comm_pct']:.1f}% of the window)" in text
    ctx = AnalysisContext(load([shared_trace("nsys/h100_2gpu_1s.sqlite")]).tables)
    text = family_sentence(ctx)
    assert text is not None and "exposed" not in text and "of GPU time is" in text
