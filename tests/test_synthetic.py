"""The synthetic trace generator: valid Kineto JSON, and ground truth that the events bear out.

Every check recomputes its number from the emitted JSON with plain Python (json + gzip,
decimal timestamps, an interval union written here), never from the generator's own helpers;
scenario-specific numbers are also worked out by hand in the tests. Field spellings are
compared with real traces under ../shared/traces. When `parsers.kineto` is importable, the
committed samples and every scenario are parsed and must give back the same truth.
"""

from __future__ import annotations

import gzip
import json
import statistics
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import synthetic
from conftest import SAMPLES, shared_trace
from gpu_trace_analyzer.parsers import kineto

ALLOWED_CATS = {
    "cpu_op",
    "user_annotation",
    "gpu_user_annotation",
    "cuda_runtime",
    "kernel",
    "gpu_memcpy",
    "gpu_memset",
    "cpu_instant_event",
    "ac2g",
    "Trace",
    None,  # metadata ("M") and the profiler's global instants
}
GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
MIB = 1 << 20

Doc = dict[str, Any]


# ----------------------------------------------------------------------------- helpers


def load(path: Path) -> Doc:
    """A trace as plain JSON, floats kept as exact decimals."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        doc: Doc = json.load(f, parse_float=Decimal)
    return doc


def ns(doc: Doc, us: Decimal | int) -> int:
    """Absolute epoch ns of a base-relative microsecond value (must be exact to the ns)."""
    scaled = Decimal(us) * 1000
    assert scaled == scaled.to_integral_value(), f"{us} us is not a whole number of ns"
    return int(doc["baseTimeNanoseconds"]) + int(scaled)


def dur(us: Decimal | int) -> int:
    """A duration in ns."""
    scaled = Decimal(us) * 1000
    assert scaled == scaled.to_integral_value()
    return int(scaled)


def events(doc: Doc, cat: str | None = None, ph: str | None = None) -> list[Doc]:
    """Events of one category and/or phase."""
    return [
        e
        for e in doc["traceEvents"]
        if (cat is None or e.get("cat") == cat) and (ph is None or e.get("ph") == ph)
    ]


def interval(doc: Doc, e: Doc) -> tuple[int, int]:
    """[start, end) in absolute ns."""
    start = ns(doc, e["ts"])
    return start, start + dur(e["dur"])


def union_len(intervals: Iterable[tuple[int, int]]) -> int:
    """Length of a union of intervals (a plain sweep, independent of the generator's)."""
    total = 0
    cur: list[int] | None = None
    for start, end in sorted(intervals):
        if cur is None or start > cur[1]:
            if cur is not None:
                total += cur[1] - cur[0]
            cur = [start, end]
        else:
            cur[1] = max(cur[1], end)
    if cur is not None:
        total += cur[1] - cur[0]
    return total


def gpu_intervals(doc: Doc) -> list[tuple[int, int]]:
    """Every kernel, memcpy and memset interval."""
    return [interval(doc, e) for e in doc["traceEvents"] if e.get("cat") in GPU_CATS]


def steps_of(doc: Doc) -> list[tuple[int, int, int]]:
    """(N, start, end) of each CPU-side ProfilerStep#N."""
    out = []
    for e in events(doc, "user_annotation"):
        if e["name"].startswith("ProfilerStep#"):
            start, end = interval(doc, e)
            out.append((int(e["name"].split("#")[1]), start, end))
    return sorted(out)


@cache
def built(name: str) -> synthetic.TraceBuilder | synthetic.RankedTrace:
    """Each scenario with its defaults, built once per test session."""
    return synthetic.SCENARIOS[name]()


def ranks_of(obj: synthetic.TraceBuilder | synthetic.RankedTrace) -> list[synthetic.TraceBuilder]:
    """The per-rank builders of a scenario."""
    return obj.ranks if isinstance(obj, synthetic.RankedTrace) else [obj]


@cache
def written(name: str) -> tuple[tuple[Doc, dict[str, Any]], ...]:
    """Each rank of a scenario as (its JSON text read back, that rank's truth)."""
    obj = built(name)
    out = []
    for b in ranks_of(obj):
        doc = json.loads(json.dumps(b.to_json()), parse_float=Decimal)
        out.append((doc, b.truth()))
    return tuple(out)


SCENARIO_NAMES = sorted(synthetic.SCENARIOS)


# ----------------------------------------------------------------------------- validity


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_scenario_is_valid_kineto(name: str) -> None:
    for doc, truth in written(name):
        assert doc["schemaVersion"] == 1
        assert isinstance(doc["baseTimeNanoseconds"], int)
        assert doc["displayTimeUnit"] == "ms"
        props = doc["deviceProperties"]
        assert props and all(p["numSms"] > 0 and p["name"] for p in props)
        assert doc["distributedInfo"]["rank"] == truth["rank"]
        assert doc["distributedInfo"]["world_size"] == truth["world_size"]
        cats = {e.get("cat") for e in doc["traceEvents"]}
        assert cats <= ALLOWED_CATS
        for e in doc["traceEvents"]:
            if e["ph"] == "X":
                assert dur(e["dur"]) >= 0
                ns(doc, e["ts"])  # exact to the ns


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_flows_link_each_launch_to_its_gpu_work(name: str) -> None:
    for doc, _ in written(name):
        starts = {e["id"]: e for e in events(doc, "ac2g", "s")}
        finishes = {e["id"]: e for e in events(doc, "ac2g", "f")}
        assert starts.keys() == finishes.keys()
        assert all(f["bp"] == "e" for f in finishes.values())
        runtime = {e["args"]["correlation"]: e for e in events(doc, "cuda_runtime")}
        gpu = [e for e in doc["traceEvents"] if e.get("cat") in GPU_CATS]
        assert {e["args"]["correlation"] for e in gpu} == finishes.keys()
        for e in gpu:
            corr = e["args"]["correlation"]
            assert finishes[corr]["ts"] == e["ts"]
            assert finishes[corr]["tid"] == e["tid"] == e["args"]["stream"]
            call = runtime[corr]
            assert starts[corr]["ts"] == call["ts"]
            assert ns(doc, call["ts"]) <= ns(doc, e["ts"])
            assert call["args"].get("External id") == e["args"]["External id"]


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_cpu_ops_nest_and_kernels_point_at_the_innermost_op(name: str) -> None:
    doc, _ = written(name)[0]
    ops = events(doc, "cpu_op") + events(doc, "user_annotation")
    by_ext = {e["args"]["External id"]: e for e in ops}
    assert len(by_ext) == len(ops)  # External ids are unique
    spans = sorted(interval(doc, e) for e in ops)
    stack: list[tuple[int, int]] = []
    for start, end in sorted(spans, key=lambda se: (se[0], -se[1])):  # parents first
        while stack and stack[-1][1] <= start:
            stack.pop()
        assert not stack or end <= stack[-1][1], "ops overlap without nesting"
        stack.append((start, end))
    runtime = {r["args"]["correlation"]: r for r in events(doc, "cuda_runtime")}
    for e in events(doc, "kernel"):
        launcher = by_ext[e["args"]["External id"]]
        call = runtime[e["args"]["correlation"]]
        lo, hi = interval(doc, launcher)
        assert lo <= ns(doc, call["ts"]) < hi


def test_field_spellings_match_real_traces() -> None:
    h100 = load(shared_trace("tracelens/h100__gaunernst_bert-small-uncased__1016001.json.gz"))
    nccl = load(shared_trace("hta/nccl_parser_config/nccl_data.json.gz"))
    doc, _ = written("train_idle30")[0]
    comm_doc, _ = written("comm_heavy")[0]

    def keys(d: Doc, cat: str, ph: str = "X", pred: Any = lambda e: True) -> set[str]:
        return set().union(*(e.get("args", {}).keys() for e in events(d, cat, ph) if pred(e)))

    def not_nccl(e: Doc) -> bool:
        return "Collective name" not in e["args"]

    def is_nccl(e: Doc) -> bool:
        return "Collective name" in e["args"]

    def shaped(e: Doc) -> bool:
        return "Input Dims" in e["args"]

    def is_rpc(e: Doc) -> bool:
        return bool(e["name"] == "record_param_comms")

    assert keys(doc, "kernel", pred=not_nccl) == keys(h100, "kernel")
    assert keys(doc, "gpu_memcpy") == keys(h100, "gpu_memcpy")
    assert keys(doc, "gpu_memset") == keys(nccl, "gpu_memset")
    assert keys(doc, "cpu_instant_event", "i") == keys(h100, "cpu_instant_event", "i")
    assert keys(doc, "cuda_runtime") == keys(h100, "cuda_runtime")
    real_op = keys(h100, "cpu_op", pred=shaped) | {"Sequence number", "Fwd thread id"}
    assert keys(doc, "cpu_op", pred=shaped) == real_op
    assert keys(nccl, "cpu_op", pred=shaped) <= real_op  # the same spellings in another era
    # NCCL kernels and record_param_comms: the real fields, plus Seq (and Rank on the op,
    # as the B200 trace has it).
    assert keys(comm_doc, "kernel", pred=is_nccl) == keys(nccl, "kernel", pred=is_nccl) | {"Seq"}
    assert keys(comm_doc, "cpu_op", pred=is_rpc) == keys(nccl, "cpu_op", pred=is_rpc) | {
        "Seq",
        "Rank",
    }
    assert doc["deviceProperties"][0].keys() == h100["deviceProperties"][0].keys()
    assert comm_doc["distributedInfo"].keys() == nccl["distributedInfo"].keys()
    for flow in ("s", "f"):
        assert events(doc, "ac2g", flow)[0].keys() == events(h100, "ac2g", flow)[0].keys()
    real_top = (h100.keys() | nccl.keys()) - {"metadata", "INFO"}
    assert doc.keys() == real_top
    real_names = {e["name"] for e in events(h100, "gpu_memcpy") + events(nccl, "gpu_memcpy")}
    real_names |= {e["name"] for e in events(nccl, "gpu_memset")}
    b = synthetic.TraceBuilder()
    ours = {b.memcpy("DtoD", 4096).name, b.memset(4096).name}
    for name in SCENARIO_NAMES:
        for d, _ in written(name):
            ours |= {e["name"] for e in d["traceEvents"] if e.get("cat") in GPU_CATS[1:]}
    assert real_names <= ours


# ----------------------------------------------------------------------------- truth


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_truth_counts_match_the_events(name: str) -> None:
    for doc, truth in written(name):
        counts = truth["counts"]
        assert counts["kernels"] == len(events(doc, "kernel"))
        assert counts["memcpy"] == len(events(doc, "gpu_memcpy"))
        assert counts["memset"] == len(events(doc, "gpu_memset"))
        assert counts["cpu_ops"] == len(events(doc, "cpu_op"))
        assert counts["user_annotations"] == len(events(doc, "user_annotation"))
        assert counts["runtime_calls"] == len(events(doc, "cuda_runtime"))
        assert counts["memory_events"] == len(events(doc, "cpu_instant_event", "i"))
        assert counts["flows"] == len(events(doc, "ac2g", "s"))
        names = Counter(e["name"] for e in events(doc, "cuda_runtime"))
        assert {k: v["count"] for k, v in truth["runtime"].items()} == dict(names)
        rpc = [e for e in events(doc, "cpu_op") if e["name"] == "record_param_comms"]
        assert counts["collectives"] == len(rpc)


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_truth_busy_idle_and_steps_match_the_events(name: str) -> None:
    for doc, truth in written(name):
        gpu = gpu_intervals(doc)
        first, last = min(s for s, _ in gpu), max(e for _, e in gpu)
        busy = union_len(gpu)
        assert truth["gpu"]["first_start_ns"] == first
        assert truth["gpu"]["last_end_ns"] == last
        assert truth["gpu"]["busy_ns"] == busy
        assert truth["gpu"]["idle_ns"] == last - first - busy
        kernels = [interval(doc, e) for e in events(doc, "kernel")]
        assert truth["gpu"]["kernel_busy_ns"] == union_len(kernels)
        assert truth["gpu"]["kernel_sum_ns"] == sum(e - s for s, e in kernels)
        steps = steps_of(doc)
        assert [(s["step"], s["start_ns"], s["end_ns"]) for s in truth["steps"]] == steps
        lo, hi = steps[0][1], steps[-1][2]
        clipped = [(max(s, lo), min(e, hi)) for s, e in gpu if min(e, hi) > max(s, lo)]
        assert truth["steps_window"]["busy_ns"] == union_len(clipped)
        assert truth["steps_window"]["idle_ns"] == hi - lo - union_len(clipped)


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_truth_memcpy_memory_dataloader_comm_match_the_events(name: str) -> None:
    for doc, truth in written(name):
        by_name: dict[str, list[int]] = {}
        for e in events(doc, "gpu_memcpy") + events(doc, "gpu_memset"):
            row = by_name.setdefault(e["name"], [0, 0, 0])
            row[0] += 1
            row[1] += e["args"]["bytes"]
            row[2] += dur(e["dur"])
        expected = {k: {"count": c, "bytes": b, "dur_ns": d} for k, (c, b, d) in by_name.items()}
        assert truth["memcpy"]["by_name"] == expected
        mem = events(doc, "cpu_instant_event", "i")
        if mem:
            peak = max(e["args"]["Total Allocated"] for e in mem)
            assert truth["memory"]["devices"]["0"]["peak_allocated_bytes"] == peak
            running = 0
            for e in sorted(mem, key=lambda e: e["args"]["Ev Idx"]):
                running += e["args"]["Bytes"]
                assert e["args"]["Total Allocated"] == running
                assert e["args"]["Total Reserved"] >= running
        loader = [
            e
            for e in events(doc, "user_annotation")
            if e["name"].startswith("enumerate(DataLoader)")
        ]
        assert truth["dataloader"]["dur_ns"] == sum(dur(e["dur"]) for e in loader)
        comm = [interval(doc, e) for e in events(doc, "kernel") if e["name"].startswith("nccl")]
        compute = [
            interval(doc, e) for e in events(doc, "kernel") if not e["name"].startswith("nccl")
        ]
        overlapped = sum(
            union_len((max(s, cs), min(e, ce)) for s, e in compute if min(e, ce) > max(s, cs))
            for cs, ce in comm
        )
        assert truth["comm"]["kernel_ns"] == sum(e - s for s, e in comm)
        assert truth["comm"]["exposed_ns"] == union_len(comm) - overlapped


# ----------------------------------------------------------------------------- scenarios


def test_train_idle30_is_exactly_30_percent_idle() -> None:
    doc, truth = written("train_idle30")[0]
    gpu = gpu_intervals(doc)
    first, last = min(s for s, _ in gpu), max(e for _, e in gpu)
    idle = last - first - union_len(gpu)
    assert idle * 10 == (last - first) * 3
    steps = steps_of(doc)
    assert [n for n, _, _ in steps] == [0, 1, 2, 3, 4]
    assert steps[0][1] <= first and last <= steps[-1][2]  # the span lies in the steps window
    # Per step: a fill kernel; forward: layer norm, fc1, gelu, fc2, add, mul, logits, softmax
    # (8); backward: softmax, 2 logits mm, mul, 2 fc2 mm + bias sum (7); gelu, 2 fc1 mm + bias
    # sum, layer norm (5); fused AdamW (1): 22 kernels, one HtoD copy, and one memset overall.
    assert len(events(doc, "kernel")) == 22 * 5
    copies = events(doc, "gpu_memcpy")
    assert [e["name"] for e in copies] == ["Memcpy HtoD (Pinned -> Device)"] * 5
    assert all(e["args"]["bytes"] == 4096 * 256 * 2 for e in copies)
    assert len(events(doc, "gpu_memset")) == 1
    kernel_names = " ".join(e["name"] for e in events(doc, "kernel"))
    for needle in (
        "nvjet_tst",
        "sm90_xmma_gemm_bf16bf16",
        "layer_norm",
        "softmax",
        "CUDAFunctor_add",
        "MulFunctor",
    ):
        assert needle in kernel_names
    ops = {e["name"] for e in events(doc, "cpu_op")}
    assert {"aten::mm", "aten::addmm", "aten::linear", "aten::add", "aten::mul"} <= ops
    addmm = next(e for e in events(doc, "cpu_op") if e["name"] == "aten::addmm")
    assert addmm["args"]["Input Dims"] == [[4096], [4096, 1024], [1024, 4096], [], []]
    assert addmm["args"]["Input type"][:3] == ["c10::BFloat16"] * 3
    assert truth["expect"]["idle_fraction"] == "3/10"


def test_gpu_idle_fraction_is_exact_and_too_small_fractions_are_refused() -> None:
    for frac in (Fraction(1, 50), Fraction(1, 2)):
        b = synthetic.gpu_idle(float(frac))
        doc = json.loads(json.dumps(b.to_json()), parse_float=Decimal)
        gpu = gpu_intervals(doc)
        span = max(e for _, e in gpu) - min(s for s, _ in gpu)
        assert Fraction(span - union_len(gpu), span) == frac
    with pytest.raises(ValueError, match="too small"):
        synthetic.gpu_idle(0.001)


def test_healthy_has_nothing_to_flag() -> None:
    doc, truth = written("healthy")[0]
    gpu = gpu_intervals(doc)
    span = max(e for _, e in gpu) - min(s for s, _ in gpu)
    assert (span - union_len(gpu)) / span < 0.01
    names = Counter(e["name"] for e in events(doc, "cuda_runtime"))
    assert names.keys() == {"cudaLaunchKernel", "cudaMemcpyAsync", "cudaMemsetAsync"}
    assert all("Pageable" not in e["name"] for e in events(doc, "gpu_memcpy"))
    assert min(e["args"]["bytes"] for e in events(doc, "gpu_memcpy")) == 2 * MIB
    peak = max(e["args"]["Total Allocated"] for e in events(doc, "cpu_instant_event", "i"))
    assert 0.69 < peak / doc["deviceProperties"][0]["totalGlobalMem"] <= 0.70
    steps = steps_of(doc)
    durations = [end - start for _, start, end in steps]
    loader = sum(dur(e["dur"]) for e in events(doc, "user_annotation") if "DataLoader" in e["name"])
    assert loader / sum(durations) < 0.01
    assert max(durations) / min(durations) < 1.01
    assert truth["world_size"] == 1 and truth["expect"]["fires"] == []


def test_small_grids_fire_and_large_grids_do_not() -> None:
    doc, _ = written("small_grids")[0]
    sms = doc["deviceProperties"][0]["numSms"]
    small = [e for e in events(doc, "kernel") if e["args"]["grid"][0] < sms]
    assert len(small) == 3 * 5 and all(e["args"]["grid"] == [16, 1, 1] for e in small)
    assert small[0]["args"]["blocks per SM"] == Decimal("0.121212")  # 16 / 132
    total = sum(dur(e["dur"]) for e in events(doc, "kernel"))
    assert sum(dur(e["dur"]) for e in small) / total > 0.5
    wide = synthetic.small_grids(grid_x=1056).to_json()
    assert all(e["args"]["grid"][0] >= sms for e in wide["traceEvents"] if e.get("cat") == "kernel")


def test_low_occupancy_value_follows_the_register_limit() -> None:
    doc, truth = written("low_occupancy")[0]
    norm = [e for e in events(doc, "kernel") if "GammaBeta" in e["name"]]
    # 255 registers -> 8192 per warp (256-register granularity) -> 8 warps per SM -> one
    # 8-warp block of 256 threads: 256 / 2048 = 12.5%, which Kineto rounds to 13.
    assert {e["args"]["est. achieved occupancy %"] for e in norm} == {13}
    assert {e["args"]["registers per thread"] for e in norm} == {255}
    assert truth["expect"]["kernel_occupancy_pct"] == 13
    # 32 registers -> 1024 per warp -> 64 warps; the 2048-thread limit allows 8 blocks: 100%.
    high = synthetic.low_occupancy(registers=32).to_json()
    occ = {
        e["args"]["est. achieved occupancy %"]
        for e in high["traceEvents"]
        if e.get("cat") == "kernel" and "GammaBeta" in e["name"]
    }
    assert occ == {100}


def test_occupancy_matches_what_kineto_reported_on_real_h100_kernels() -> None:
    h100 = load(shared_trace("tracelens/h100__Falconsai_nsfw_image_detection__1016002.json.gz"))
    props = synthetic.H100
    seen = 0
    for e in events(h100, "kernel"):
        a = e["args"]
        shape = synthetic.KernelShape(
            tuple(a["grid"]), tuple(a["block"]), a["registers per thread"], a["shared memory"]
        )
        blocks_per_sm, _, occ = synthetic.occupancy(props, shape)
        assert occ == a["est. achieved occupancy %"], e["name"][:80]
        assert abs(Decimal(str(blocks_per_sm)) - a["blocks per SM"]) < Decimal("1e-5")
        seen += 1
    assert seen > 100


def test_small_batch_gemm_shapes_and_model() -> None:
    doc, truth = written("small_batch_gemm")[0]
    mms = [e for e in events(doc, "cpu_op") if e["name"] == "aten::mm"]
    assert len(mms) == 8 * 5
    assert {json.dumps(e["args"]["Input Dims"]) for e in mms} == {"[[8, 4096], [4096, 4096]]"}
    flops = 2 * 8 * 4096 * 4096  # 268,435,456
    nbytes = (8 * 4096 + 4096 * 4096 + 8 * 4096) * 2  # 33,685,504
    assert truth["expect"]["gemm_flops"] == flops == 268_435_456
    assert truth["expect"]["gemm_bytes"] == nbytes == 33_685_504
    assert truth["expect"]["bound"] == "memory"
    # Duration is the memory time at 80% of 3.35 TB/s: ceil(33,685,504 / 2680) ns.
    assert {dur(e["dur"]) for e in events(doc, "kernel")} == {12_570}
    big = synthetic.small_batch_gemm(m=4096).truth()
    assert big["expect"]["bound"] == "compute"


def test_launch_bound_spends_more_time_launching_than_computing() -> None:
    doc, _ = written("launch_bound")[0]
    launches = [e for e in events(doc, "cuda_runtime") if e["name"] == "cudaLaunchKernel"]
    kernels = events(doc, "kernel")
    assert len(kernels) == len(launches) == 2000
    assert sum(dur(e["dur"]) for e in launches) == 2000 * 7_000
    # 2000 kernels cycling 3, 4, 5 us: 667 x 3 + 667 x 4 + 666 x 5 = 7999 us.
    assert sum(dur(e["dur"]) for e in kernels) == 7_999_000
    assert union_len(gpu_intervals(doc)) < 2000 * 7_000


def test_comm_heavy_directory_and_exposed_communication(tmp_path: Path) -> None:
    trace = built("comm_heavy")
    assert isinstance(trace, synthetic.RankedTrace)
    out = trace.write(tmp_path / "job")
    assert sorted(p.name for p in out.iterdir()) == ["rank-0.json.gz", "rank-1.json.gz"]
    assert (tmp_path / "job.truth.json").exists()
    bucket1 = 1024 * 1024 + 1024 * 4096 + 1024  # logits + fc2 weights + fc2 bias
    bucket2 = 4096 * 1024 + 4096 + 2 * 1024  # fc1 weights + bias + layer norm
    ends: list[list[int]] = []
    for rank in (0, 1):
        doc = load(out / f"rank-{rank}.json.gz")
        assert doc["distributedInfo"]["rank"] == rank
        nccl = [e for e in events(doc, "kernel") if e["name"].startswith("ncclDevKernel_AllReduce")]
        assert [e["args"]["In msg nelems"] for e in nccl] == [bucket1, bucket2] * 5
        assert {e["args"]["dtype"] for e in nccl} == {"BFloat16"}
        assert {e["args"]["stream"] for e in nccl} == {20}
        assert sum(dur(e["dur"]) for e in nccl) == 5 * (200_000 + 120_000)
        ends.append([interval(doc, e)[1] for e in nccl])
        comm = [interval(doc, e) for e in nccl]
        compute = [interval(doc, e) for e in events(doc, "kernel") if e not in nccl]
        exposed = union_len(comm) - sum(
            union_len((max(s, cs), min(e, ce)) for s, e in compute if min(e, ce) > max(s, cs))
            for cs, ce in comm
        )
        step_ns = sum(end - start for _, start, end in steps_of(doc))
        assert 0 < exposed < union_len(comm)
        assert union_len(comm) / step_ns > 0.10
    assert ends[0] == ends[1]  # each collective ends together on both ranks


def test_host_sync_calls_by_kind() -> None:
    doc, truth = written("host_sync")[0]
    calls = Counter(e["name"] for e in events(doc, "cuda_runtime"))
    # Per step, syncs in turn: stream, item (memcpy + stream sync), device, blocking item,
    # stream, item: 4 cudaStreamSynchronize, 1 cudaDeviceSynchronize, 1 cudaMemcpy.
    assert calls["cudaStreamSynchronize"] == 4 * 5
    assert calls["cudaDeviceSynchronize"] == 5
    assert calls["cudaMemcpy"] == 5
    items = [e for e in events(doc, "cpu_op") if e["name"] == "aten::_local_scalar_dense"]
    assert len(items) == 3 * 5
    blocking = [
        e for e in events(doc, "gpu_memcpy") if e["name"] == "Memcpy DtoH (Device -> Pageable)"
    ]
    assert len(blocking) == 5
    assert truth["syncs"]["gpu_idle_after_sync_ns"] > 0
    none = synthetic.host_sync(syncs_per_step=0).truth()
    assert none["syncs"]["count"] == 0


def test_pageable_copies_block_the_host() -> None:
    doc, _ = written("pageable_memcpy")[0]
    pageable = [
        e for e in events(doc, "gpu_memcpy") if e["name"] == "Memcpy HtoD (Pageable -> Device)"
    ]
    assert len(pageable) == 5 and {e["args"]["bytes"] for e in pageable} == {8 * MIB}
    runtime = {e["args"]["correlation"]: e for e in events(doc, "cuda_runtime")}
    for e in pageable:
        call = runtime[e["args"]["correlation"]]
        assert call["name"] == "cudaMemcpyAsync"
        assert interval(doc, call)[1] >= interval(doc, e)[1]  # the call returns after the copy
    pinned = synthetic.pageable_memcpy(pageable=False).to_json()
    assert not [e for e in pinned["traceEvents"] if "Pageable" in e["name"]]


def test_small_memcpy_copies() -> None:
    doc, _ = written("small_memcpy")[0]
    tiny = [e for e in events(doc, "gpu_memcpy") if e["args"]["bytes"] == 64]
    assert len(tiny) == 100 * 5
    assert {e["name"] for e in tiny} == {"Memcpy HtoD (Pinned -> Device)"}


def test_fp32_gemm_on_a100() -> None:
    doc, _ = written("fp32_gemm")[0]
    assert doc["deviceProperties"][0]["name"] == "NVIDIA A100-SXM4-80GB"
    assert doc["deviceProperties"][0]["numSms"] == 108
    gemm = [e["name"] for e in events(doc, "kernel") if "gemm" in e["name"]]
    assert len(gemm) == 6 * 5
    assert {n.split("<")[-1][:20] if "<" in n else n for n in gemm} == {
        "ampere_sgemm_128x64_tn",
        "ampere_sgemm_32x32_sliced1x4_tn",
        "cutlass_80_simt_sgem",
    }
    mms = [e for e in events(doc, "cpu_op") if e["name"] == "aten::mm"]
    assert {tuple(e["args"]["Input type"]) for e in mms} == {("float", "float")}
    bf16 = synthetic.fp32_gemm(dtype="bf16").to_json()
    names = {e["name"] for e in bf16["traceEvents"] if e.get("cat") == "kernel"}
    assert any("bf16_s16816gemm" in n for n in names) and not any("sgemm" in n for n in names)


def test_dataloader_stall_share_is_exact() -> None:
    doc, _ = written("dataloader_stall")[0]
    steps = steps_of(doc)
    loaders = [
        interval(doc, e)
        for e in events(doc, "user_annotation")
        if e["name"] == "enumerate(DataLoader)#_MultiProcessingDataLoaderIter.__next__"
    ]
    assert len(loaders) == len(steps) == 5
    for (_, start, end), (ls, le) in zip(steps, loaders, strict=True):
        assert start <= ls and le <= end
        assert (le - ls) * 10 == (end - start) * 3


def test_straggler_compute_and_wait() -> None:
    trace = built("straggler")
    assert isinstance(trace, synthetic.RankedTrace)
    docs = [json.loads(json.dumps(b.to_json()), parse_float=Decimal) for b in trace.ranks]
    assert len({d["baseTimeNanoseconds"] for d in docs}) == 4  # each rank has its own base

    def compute(doc: Doc) -> list[int]:
        return [dur(e["dur"]) for e in events(doc, "kernel") if not e["name"].startswith("nccl")]

    fast, slow = compute(docs[0]), compute(docs[2])
    assert len(fast) == len(slow)
    # Every compute kernel of rank 2 lasts 1.25x its rank-0 twin, rounded half up to the ns.
    assert all(s == (f * 5 + 2) // 4 for f, s in zip(fast, slow, strict=True))
    nccl = [
        [interval(d, e) for e in events(d, "kernel") if e["name"].startswith("nccl")] for d in docs
    ]
    for i in range(5):
        ends = {n[i][1] for n in nccl}
        assert len(ends) == 1  # the collective ends together on every rank
        durations = [n[i][1] - n[i][0] for n in nccl]
        assert min(durations) == durations[2] == 150_000  # the slow rank does not wait
    truth = trace.truth()
    assert truth["expect"]["slow_rank"] == 2
    assert truth["collectives"][0]["wait_ns_by_rank"]["2"] == 0


def test_memory_pressure_peak() -> None:
    doc, truth = written("memory_pressure")[0]
    total = doc["deviceProperties"][0]["totalGlobalMem"]
    mem = events(doc, "cpu_instant_event", "i")
    peak = max(e["args"]["Total Allocated"] for e in mem)
    assert truth["expect"]["peak_allocated_bytes"] == peak
    assert 0.95 * total - 512 < peak <= 0.95 * total
    assert max(e["args"]["Total Reserved"] for e in mem) <= total
    low = synthetic.memory_pressure(0.6).truth()
    assert 59.9 < low["memory"]["devices"]["0"]["peak_allocated_pct"] <= 60.0


def test_cold_start_first_step_is_three_times_the_median() -> None:
    doc, _ = written("cold_start")[0]
    durations = [end - start for _, start, end in steps_of(doc)]
    assert len(durations) == 6
    assert durations[0] == 3 * statistics.median(durations)
    mallocs = [e for e in events(doc, "cuda_runtime") if e["name"] == "cudaMalloc"]
    assert len(mallocs) == 8 and ns(doc, mallocs[-1]["ts"]) < steps_of(doc)[1][1]
    flat = synthetic.cold_start(1.0)
    flat_durations = [s["dur_ns"] for s in flat.truth()["steps"]]
    assert len(set(flat_durations)) == 1


def test_step_variance_cv_is_exact() -> None:
    doc, _ = written("step_variance")[0]
    durations = [Fraction(end - start) for _, start, end in steps_of(doc)]
    assert len(durations) == 8
    mean = sum(durations) / 8
    variance = sum((d - mean) ** 2 for d in durations) / 8
    assert variance == (mean / 4) ** 2  # population CV exactly 0.25


def test_memory_bound_elementwise_share_and_bandwidth() -> None:
    doc, _ = written("memory_bound_elementwise")[0]
    kernels = events(doc, "kernel")
    elementwise = [e for e in kernels if "vectorized_elementwise_kernel" in e["name"]]
    total = sum(dur(e["dur"]) for e in kernels)
    assert sum(dur(e["dur"]) for e in elementwise) / total > 0.75
    nbytes = 3 * 4096 * 4096 * 2  # two inputs and one output of 16 Mi bf16 elements
    for e in elementwise:
        achieved_gbs = nbytes / dur(e["dur"])
        assert 0.199 < achieved_gbs / 3350 <= 0.2


def _doc(obj: synthetic.TraceBuilder) -> Doc:
    doc: Doc = json.loads(json.dumps(obj.to_json()), parse_float=Decimal)
    return doc


def _kernel_ns(doc: Doc, pred: Any = lambda e: True) -> int:
    return sum(dur(e["dur"]) for e in events(doc, "kernel") if pred(e))


def test_non_firing_variants_turn_their_condition_off() -> None:
    doc = _doc(synthetic.gpu_idle(0.05))
    gpu = gpu_intervals(doc)
    span = max(e for _, e in gpu) - min(s for s, _ in gpu)
    assert Fraction(span - union_len(gpu), span) == Fraction(1, 20)
    doc = _doc(synthetic.launch_bound(kernel_dur_ns=(60_000,)))
    launch = sum(
        dur(e["dur"]) for e in events(doc, "cuda_runtime") if e["name"] == "cudaLaunchKernel"
    )
    assert launch == 2000 * 7_000 < union_len(gpu_intervals(doc)) == 2000 * 60_000 + 5 * 1_500
    heavy = synthetic.comm_heavy(bucket_ns=(20_000, 10_000))
    doc = _doc(heavy.ranks[0])
    nccl = _kernel_ns(doc, lambda e: e["name"].startswith("nccl"))
    assert nccl == 5 * 30_000
    assert nccl / sum(end - start for _, start, end in steps_of(doc)) < 0.10
    doc = _doc(synthetic.small_memcpy(copies_per_step=1, nbytes=8 * MIB))
    htod = [e["args"]["bytes"] for e in events(doc, "gpu_memcpy") if "HtoD" in e["name"]]
    assert sorted(set(htod)) == [2 * MIB, 8 * MIB]  # the batch, and the one large copy
    doc = _doc(synthetic.dataloader_stall(0.02))
    loader = [dur(e["dur"]) for e in events(doc, "user_annotation") if "DataLoader" in e["name"]]
    steps = [end - start for _, start, end in steps_of(doc)]
    assert [d * 50 for d in loader] == steps
    even = synthetic.straggler(slowdown=0)
    assert {
        len({dur(e["dur"]) for e in events(_doc(b), "kernel") if "nccl" in e["name"]})
        for b in even.ranks
    } == {1}
    doc = _doc(synthetic.step_variance(0.02))
    durations = [Fraction(end - start) for _, start, end in steps_of(doc)]
    mean = sum(durations) / len(durations)
    assert sum((d - mean) ** 2 for d in durations) / len(durations) == (mean / 50) ** 2
    doc = _doc(synthetic.memory_bound_elementwise(elementwise_share=0.3))
    share = _kernel_ns(doc, lambda e: "elementwise" in e["name"]) / _kernel_ns(doc)
    assert 0.2 < share < 0.3


def test_idle_overrun_and_misuse_are_refused() -> None:
    b = synthetic.TraceBuilder()
    with b.step():
        b.gemm(128, 128, 128)
        b.idle(1_000)
        b.dataloader(50_000)
        with pytest.raises(ValueError, match="overran"):
            b.gemm(128, 128, 128)
    with pytest.raises(ValueError, match="nest"), b.step(), b.step():
        pass
    open_scope = synthetic.TraceBuilder()
    with open_scope.op("aten::mm"), pytest.raises(ValueError, match="open"):
        open_scope.to_json()


# ----------------------------------------------------------------------------- samples


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a = synthetic.train_idle30().write(tmp_path / "a.json.gz")
    b = synthetic.train_idle30().write(tmp_path / "b.json.gz")
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a.truth.json").read_bytes() == (tmp_path / "b.truth.json").read_bytes()


def test_committed_samples_are_current(tmp_path: Path) -> None:
    synthetic.write_committed_samples(tmp_path)
    for rel in (
        "synthetic_train.json.gz",
        "synthetic_train.truth.json",
        "synthetic_2rank/rank-0.json.gz",
        "synthetic_2rank/rank-1.json.gz",
        "synthetic_2rank.truth.json",
    ):
        committed = SAMPLES / rel
        assert committed.read_bytes() == (tmp_path / rel).read_bytes(), (
            f"{rel} is stale: run python sample_traces/synthetic.py"
        )
        assert committed.stat().st_size < 200_000


def test_recorded_cpu_trace_is_a_real_profile() -> None:
    path = SAMPLES / "cpu_train.pt.trace.json.gz"
    assert path.stat().st_size < 300_000
    doc = load(path)
    assert doc["schemaVersion"] == 1 and doc["record_shapes"] == 1 and doc["profile_memory"] == 1
    assert [n for n, _, _ in steps_of(doc)] == [2, 3, 4]  # wait=1, warmup=1, active=3
    names = Counter(e["name"] for e in events(doc, "user_annotation"))
    assert names["enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__"] == 3
    assert names["Optimizer.step#SGD.step"] == 3
    ops = {e["name"] for e in events(doc, "cpu_op")}
    assert {"aten::addmm", "aten::layer_norm", "aten::relu"} <= ops
    assert events(doc, "cpu_instant_event", "i")
    assert not events(doc, "kernel")


# ----------------------------------------------------------------------------- parser


def _check_parsed(tables: Any, doc: Doc, truth: dict[str, Any], rank: int) -> None:
    kernels = tables.kernels.filter(tables.kernels["rank"] == rank)
    memops = tables.memops.filter(tables.memops["rank"] == rank)
    assert kernels.height == len(events(doc, "kernel"))
    assert memops.height == len(events(doc, "gpu_memcpy")) + len(events(doc, "gpu_memset"))
    starts = kernels["start_ns"].to_list() + memops["start_ns"].to_list()
    ends = [
        s + d
        for s, d in zip(
            starts, kernels["dur_ns"].to_list() + memops["dur_ns"].to_list(), strict=True
        )
    ]
    assert min(starts) == truth["gpu"]["first_start_ns"]
    assert union_len(zip(starts, ends, strict=True)) == truth["gpu"]["busy_ns"]
    steps = tables.steps.filter(tables.steps["rank"] == rank).sort("step")
    assert list(steps.iter_rows()) == [(rank, n, s, e) for n, s, e in steps_of(doc)]
    assert memops["bytes"].sum() == sum(
        e["args"]["bytes"] for e in events(doc, "gpu_memcpy") + events(doc, "gpu_memset")
    )
    memory = tables.memory.filter(tables.memory["rank"] == rank)
    assert memory.height == len(events(doc, "cpu_instant_event", "i"))


def test_parser_recovers_the_committed_sample() -> None:
    path = SAMPLES / "synthetic_train.json.gz"
    tables = kineto.parse(path)
    truth = json.loads((SAMPLES / "synthetic_train.truth.json").read_text())
    _check_parsed(tables, load(path), truth, 0)
    assert tables.meta.clock == "epoch"
    assert tables.meta.devices[0].name == "NVIDIA H100 80GB HBM3"
    assert tables.meta.devices[0].num_sms == 132
    assert not tables.meta.warnings


def test_parser_recovers_the_two_rank_sample() -> None:
    directory = SAMPLES / "synthetic_2rank"
    tables = kineto.parse(directory)
    truth = json.loads((SAMPLES / "synthetic_2rank.truth.json").read_text())
    assert tables.ranks() == [0, 1]
    for rank in (0, 1):
        doc = load(directory / f"rank-{rank}.json.gz")
        _check_parsed(tables, doc, truth["ranks"][rank], rank)
        comms = tables.comms.filter(tables.comms["rank"] == rank)
        rpc = [e for e in events(doc, "cpu_op") if e["name"] == "record_param_comms"]
        assert comms.height == len(rpc) == 10
        assert sorted(comms["in_nelems"].to_list()) == sorted(
            e["args"]["In msg nelems"] for e in rpc
        )


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_parser_recovers_every_scenario(name: str, tmp_path: Path) -> None:
    obj = built(name)
    path = obj.write(
        tmp_path / (name if isinstance(obj, synthetic.RankedTrace) else f"{name}.json.gz")
    )
    tables = kineto.parse(path)
    for (doc, truth), b in zip(written(name), ranks_of(obj), strict=True):
        _check_parsed(tables, doc, truth, b.rank)
