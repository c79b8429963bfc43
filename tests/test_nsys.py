"""Nsight Systems parser against the Nsight Systems CLI's own summaries and the raw files.

Oracles: ``nsys stats`` reports (gpukernsum, cudaapisum, gpumemsizesum, gpumemtimesum) that
Nsight Systems 2022.4 printed for these files (../shared/reference/nsys), SQL aggregates run
by the test itself straight on the export, a plain-Python stack walk for NVTX nesting, and
the ground truth the sample generator writes beside ``nsys_sample.sqlite``.

Known difference, documented where it is compared: nsys 2022.4's cudaapisum strips a
version suffix only when it has exactly four digits (its SQL tests
``substr(name, -6, 2) = '_v'``), so it prints ``cudaLaunchKernelExC_v11060`` but
``cudaLaunchKernel``; the parser strips every ``_v<digits>`` suffix (Kineto's names carry
none), so reference names are normalized the same way before comparing.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib
import json
import os
import re
import shutil
import sqlite3
import stat
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import REFERENCE, SAMPLES, shared_trace
from gpu_trace_analyzer.parsers.errors import (
    AnalyzerError,
    EmptyTraceError,
    UnreadableInputError,
    UnsupportedFormatError,
)
from gpu_trace_analyzer.parsers.nsys import parse
from gpu_trace_analyzer.parsers.nsys_counters import metric_name
from gpu_trace_analyzer.parsers.nsys_cpu import enclosing_ops, find_steps
from gpu_trace_analyzer.parsers.nsys_meta import assign_ranks, with_cpu_rank, with_gpu_rank
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NSYS_DIR = "nsys"
WITH_REFERENCE = ("h100_2gpu_1s", "mock")
ALL_FILES = ("h100_2gpu_1s", "mfu_2gpu_before", "mock")


@functools.cache
def _parsed(stem: str) -> Any:
    return parse(shared_trace(f"{NSYS_DIR}/{stem}.sqlite"))


def _sql(stem: str, query: str) -> list[tuple[Any, ...]]:
    """Run a query straight on the real export (read-only), independent of the parser."""
    path = shared_trace(f"{NSYS_DIR}/{stem}.sqlite")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def _reference(stem: str, report: str) -> list[dict[str, str]]:
    path = REFERENCE / "nsys" / f"{stem}_{report}.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _stats(
    frame: pl.DataFrame, keys: list[str | pl.Expr]
) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """total, count, min, max of dur_ns per key, as the nsys stats reports give them."""
    grouped = frame.group_by(keys).agg(
        total=pl.col("dur_ns").sum(),
        count=pl.len(),
        low=pl.col("dur_ns").min(),
        high=pl.col("dur_ns").max(),
    )
    width = len(keys)
    return {tuple(r[:width]): tuple(int(v) for v in r[width:]) for r in grouped.iter_rows()}


# --- against the Nsight Systems CLI's reports ------------------------------------------------


@pytest.mark.parametrize("stem", WITH_REFERENCE)
def test_gpukernsum_per_kernel_and_launch_shape(stem: str) -> None:
    """Total time, instances, min and max per (name, grid, block) equal gpukernsum exactly."""
    expected = {
        (
            row["Name"],
            *map(int, row["GridXYZ"].split()),
            *map(int, row["BlockXYZ"].split()),
        ): (
            int(row["Total Time (ns)"]),
            int(row["Instances"]),
            int(row["Min (ns)"]),
            int(row["Max (ns)"]),
        )
        for row in _reference(stem, "gpukernsum")
    }
    keys: list[str | pl.Expr] = [pl.col("name").cast(pl.String)]
    keys += ["grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z"]
    assert _stats(_parsed(stem).kernels, keys) == expected


@pytest.mark.parametrize("stem", WITH_REFERENCE)
def test_kernel_count_equals_gpukernsum_instances(stem: str) -> None:
    instances = sum(int(row["Instances"]) for row in _reference(stem, "gpukernsum"))
    assert _parsed(stem).kernels.height == instances


@pytest.mark.parametrize("stem", WITH_REFERENCE)
def test_cudaapisum_calls_and_times(stem: str) -> None:
    """Calls, total, min and max per API equal cudaapisum, which covers the whole
    CUPTI_ACTIVITY_KIND_RUNTIME table: runtime and driver calls (mock's cuModuleGetLoadingMode).

    Reference names are normalized with the parser's suffix rule: see the module docstring.
    """
    expected: dict[tuple[Any, ...], tuple[int, ...]] = {}
    for row in _reference(stem, "cudaapisum"):
        name = re.sub(r"_v\d+$", "", row["Name"])
        assert (name,) not in expected, "normalization merged two reference rows"
        expected[(name,)] = (
            int(row["Total Time (ns)"]),
            int(row["Num Calls"]),
            int(row["Min (ns)"]),
            int(row["Max (ns)"]),
        )
    assert _stats(_parsed(stem).runtime, [pl.col("name").cast(pl.String)]) == expected


def _operation(kind: str) -> str:
    return "[CUDA memset]" if kind == "memset" else f"[CUDA memcpy {kind}]"


@pytest.mark.parametrize("stem", WITH_REFERENCE)
def test_gpumemtimesum_per_operation(stem: str) -> None:
    expected = {
        (row["Operation"],): (
            int(row["Total Time (ns)"]),
            int(row["Count"]),
            int(row["Min (ns)"]),
            int(row["Max (ns)"]),
        )
        for row in _reference(stem, "gpumemtimesum")
    }
    memops = _parsed(stem).memops.with_columns(
        op=pl.col("kind").cast(pl.String).map_elements(_operation, return_dtype=pl.String)
    )
    assert _stats(memops, ["op"]) == expected


@pytest.mark.parametrize("stem", WITH_REFERENCE)
def test_gpumemsizesum_bytes_per_operation(stem: str) -> None:
    """Count exact; bytes equal the report's MB (10^6 B) at its printed 3 decimals."""
    memops = _parsed(stem).memops
    for row in _reference(stem, "gpumemsizesum"):
        kind = row["Operation"].removeprefix("[CUDA ").removesuffix("]").split()[-1]
        kind = "memset" if kind == "memset" else kind
        rows = memops.filter(pl.col("kind") == kind)
        assert rows.height == int(row["Count"]), row["Operation"]
        assert f"{int(rows['bytes'].sum()) / 1e6:.3f}" == row["Total (MB)"], row["Operation"]


def test_pageable_copies_match_cuda_async_memcpy_rule() -> None:
    """The 4 pageable HtoD copies nsys analyze's cuda-async-memcpy rule lists, by start."""
    rows = _reference("h100_2gpu_1s", "cuda-async-memcpy")
    shift = _sql("h100_2gpu_1s", "SELECT utcEpochNs FROM TARGET_INFO_SESSION_START_TIME")[0][0]
    pageable = _parsed("h100_2gpu_1s").memops.filter(pl.col("src_mem") == "pageable")
    got = sorted((s - shift, d) for s, d in pageable.select("start_ns", "dur_ns").iter_rows())
    want = sorted((int(r["Start (ns)"]), int(r["Duration (ns)"])) for r in rows)
    assert got == want
    assert set(pageable["name"].cast(pl.String)) == {"Memcpy HtoD (Pageable -> Device)"}


# --- against SQL run on the raw files ---------------------------------------------------------


@pytest.mark.parametrize("stem", ALL_FILES)
def test_row_counts_equal_raw_tables(stem: str) -> None:
    tables = {name for (name,) in _sql(stem, "SELECT name FROM sqlite_master")}

    def count(table: str) -> int:
        return _sql(stem, f"SELECT count(*) FROM {table}")[0][0] if table in tables else 0

    parsed = _parsed(stem)
    assert parsed.kernels.height == count("CUPTI_ACTIVITY_KIND_KERNEL")
    assert parsed.memops.height == count("CUPTI_ACTIVITY_KIND_MEMCPY") + count(
        "CUPTI_ACTIVITY_KIND_MEMSET"
    )
    assert parsed.runtime.height == count("CUPTI_ACTIVITY_KIND_RUNTIME")
    assert parsed.syncs.height == count("CUPTI_ACTIVITY_KIND_SYNCHRONIZATION")
    assert parsed.ops.height == count("NVTX_EVENTS")  # only push/pop ranges in these files


@pytest.mark.parametrize("stem", ALL_FILES)
def test_kernel_time_per_name_equals_sql(stem: str) -> None:
    rows = _sql(
        stem,
        "SELECT s.value, count(*), sum(k.end - k.start) FROM CUPTI_ACTIVITY_KIND_KERNEL k "
        "JOIN StringIds s ON s.id = k.demangledName GROUP BY 1",
    )
    expected = {name: (int(total), n) for name, n, total in rows}
    grouped = (
        _parsed(stem)
        .kernels.group_by(pl.col("name").cast(pl.String))
        .agg(pl.col("dur_ns").sum(), pl.len())
    )
    assert {n: (int(t), int(c)) for n, t, c in grouped.iter_rows()} == expected


@pytest.mark.parametrize("stem", ALL_FILES)
def test_memcpy_bytes_per_copy_kind_equal_sql(stem: str) -> None:
    copy_kind = {1: "HtoD", 2: "DtoH", 8: "DtoD", 10: "PtoP"}  # ENUM_CUDA_MEMCPY_OPER ids
    rows = _sql(
        stem,
        "SELECT copyKind, count(*), sum(bytes) FROM CUPTI_ACTIVITY_KIND_MEMCPY GROUP BY 1",
    )
    expected = {copy_kind[k]: (n, b) for k, n, b in rows}
    grouped = (
        _parsed(stem)
        .memops.filter(pl.col("kind") != "memset")
        .group_by(pl.col("kind").cast(pl.String))
        .agg(pl.len(), pl.col("bytes").sum())
    )
    assert {k: (n, b) for k, n, b in grouped.iter_rows()} == expected


@pytest.mark.parametrize("stem", ALL_FILES)
def test_api_calls_per_stripped_name_equal_sql(stem: str) -> None:
    raw = _sql(
        stem,
        "SELECT s.value, r.eventClass FROM CUPTI_ACTIVITY_KIND_RUNTIME r "
        "JOIN StringIds s ON s.id = r.nameId",
    )
    expected: Counter[tuple[str, str]] = Counter()
    for name, event_class in raw:
        expected[(re.sub(r"_v\d+$", "", name), "driver" if event_class == 1 else "runtime")] += 1
    runtime = _parsed(stem).runtime
    got = Counter(
        zip(runtime["name"].cast(pl.String), runtime["kind"].cast(pl.String), strict=True)
    )
    assert got == expected


@pytest.mark.parametrize("stem", ALL_FILES)
def test_times_are_epoch_ns_from_the_session_start(stem: str) -> None:
    (shift,) = _sql(stem, "SELECT utcEpochNs FROM TARGET_INFO_SESSION_START_TIME")[0]
    (first,) = _sql(stem, "SELECT min(start) FROM CUPTI_ACTIVITY_KIND_KERNEL")[0]
    parsed = _parsed(stem)
    assert parsed.meta.clock == "epoch"
    assert parsed.kernels["start_ns"].min() == first + shift


@pytest.mark.parametrize("stem", ("h100_2gpu_1s", "mfu_2gpu_before"))
def test_one_rank_per_process_and_gpu(stem: str) -> None:
    """Ranks follow the device order; each rank's kernels are its device's kernels."""
    rows = _sql(
        stem,
        "SELECT deviceId, (globalPid >> 24) & 16777215, count(*) "
        "FROM CUPTI_ACTIVITY_KIND_KERNEL GROUP BY 1, 2 ORDER BY 1, 2",
    )
    parsed = _parsed(stem)
    assert [r.rank for r in parsed.meta.ranks] == list(range(len(rows)))
    assert parsed.meta.world_size == len(rows) == 2
    for rank, (device, pid, n) in enumerate(rows):
        mine = parsed.kernels.filter(pl.col("rank") == rank)
        assert mine.height == n
        assert set(mine["device"]) == {device}
        assert set(parsed.runtime.filter(pl.col("rank") == rank)["pid"]) == {pid}


@pytest.mark.parametrize("stem", ALL_FILES)
def test_kernels_without_launching_call_left_join(stem: str) -> None:
    """Kernels keep their row when no API call matches (pid, correlation); the count warns."""
    (missing,) = _sql(
        stem,
        "SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL k LEFT JOIN CUPTI_ACTIVITY_KIND_RUNTIME"
        " r ON r.correlationId = k.correlationId AND "
        "((r.globalTid >> 24) & 16777215) = ((k.globalPid >> 24) & 16777215) "
        "WHERE r.correlationId IS NULL",
    )[0]
    parsed = _parsed(stem)
    total = parsed.kernels.height
    notes = [w for w in parsed.meta.warnings if "launching CUDA API call" in w]
    assert notes == (
        [f"{missing} of {total} kernels have no launching CUDA API call in the capture"]
        if missing
        else []
    )


def test_h100_numbers_from_the_readme() -> None:
    """The counts traces/README.md gives for h100_2gpu_1s."""
    parsed = _parsed("h100_2gpu_1s")
    assert parsed.kernels.height == 3442
    assert parsed.memops.filter(pl.col("kind") != "memset").height == 904
    assert parsed.runtime.height == 5796
    assert parsed.syncs.height == 244


def test_sync_kinds_equal_sql() -> None:
    names = {1: "event_sync", 2: "stream_wait_event", 3: "stream_sync", 4: "context_sync"}
    rows = _sql(
        "h100_2gpu_1s",
        "SELECT syncType, count(*) FROM CUPTI_ACTIVITY_KIND_SYNCHRONIZATION GROUP BY 1",
    )
    syncs = _parsed("h100_2gpu_1s").syncs
    got = dict(syncs.group_by(pl.col("kind").cast(pl.String)).len().iter_rows())
    assert got == {names[k]: n for k, n in rows}


def test_mock_device_from_target_info_gpu() -> None:
    (name, sms, mem, major, minor) = _sql(
        "mock",
        "SELECT name, smCount, totalMemory, computeMajor, computeMinor FROM TARGET_INFO_GPU",
    )[0]
    (device,) = _parsed("mock").meta.devices
    assert (device.name, device.num_sms, device.total_mem_bytes) == (name, sms, mem)
    assert (device.compute_major, device.compute_minor) == (major, minor)
    assert device.name == "NVIDIA GeForce RTX 3080"


def test_missing_target_info_gpu_is_a_warning() -> None:
    parsed = _parsed("h100_2gpu_1s")
    assert parsed.meta.devices == ()
    assert any("TARGET_INFO_GPU" in w for w in parsed.meta.warnings)


@pytest.mark.parametrize("stem", ALL_FILES)
def test_versions_from_export_meta(stem: str) -> None:
    rows = dict(_sql(stem, "SELECT name, value FROM META_DATA_EXPORT"))
    versions = _parsed(stem).meta.versions
    assert versions["nsys"] == rows["EXPORT_PRODUCT_VERSION"]
    assert versions["nsys_export_schema"] == rows["EXPORT_SCHEMA_VERSION"]


# --- NVTX nesting and the op link, against a plain-Python stack walk ----------------------------


def _nvtx_rows(stem: str) -> dict[int, list[tuple[int, int, str]]]:
    """Push/pop ranges per globalTid as (start, end, name), sorted outer-first."""
    rows = _sql(
        stem,
        "SELECT n.globalTid, n.start, n.end, coalesce(n.text, s.value) FROM NVTX_EVENTS n "
        "LEFT JOIN StringIds s ON s.id = n.textId WHERE n.eventType = 59",
    )
    by_thread: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for gtid, start, end, text in rows:
        by_thread[gtid].append((start, end, text))
    for ranges in by_thread.values():
        ranges.sort(key=lambda r: (r[0], -r[1]))
    return by_thread


def _walk(ranges: list[tuple[int, int, str]]) -> list[tuple[int, int, int, int | None]]:
    """(start, end, depth, parent start) for properly nested ranges, by an explicit stack."""
    out = []
    stack: list[tuple[int, int, str]] = []
    for start, end, text in ranges:
        while stack and stack[-1][1] <= start:
            stack.pop()
        out.append((start, end, len(stack), stack[-1][0] if stack else None))
        if end > start:
            stack.append((start, end, text))
    return out


@pytest.mark.parametrize("stem", ("h100_2gpu_1s", "mfu_2gpu_before"))
def test_nvtx_depth_and_parent_equal_a_stack_walk(stem: str) -> None:
    (shift,) = _sql(stem, "SELECT utcEpochNs FROM TARGET_INFO_SESSION_START_TIME")[0]
    expected: Counter[tuple[Any, ...]] = Counter()
    for gtid, ranges in _nvtx_rows(stem).items():
        for start, end, depth, parent in _walk(ranges):
            expected[(gtid & 0xFFFFFF, start, end - start, depth, parent)] += 1
    ops = _parsed(stem).ops
    starts = dict(zip(ops["op_id"], ops["start_ns"], strict=True))
    got: Counter[tuple[Any, ...]] = Counter()
    for tid, start, dur, depth, parent in ops.select(
        "tid", "start_ns", "dur_ns", "depth", "parent"
    ).iter_rows():
        parent_start = None if parent is None else starts[parent] - shift
        got[(tid, start - shift, dur, depth, parent_start)] += 1
    assert got == expected
    assert max(d for (_, _, _, d, _) in expected) >= 3  # real nesting, not a flat list


def test_api_calls_link_to_the_innermost_enclosing_range() -> None:
    stem = "h100_2gpu_1s"
    (shift,) = _sql(stem, "SELECT utcEpochNs FROM TARGET_INFO_SESSION_START_TIME")[0]
    calls: dict[int, list[int]] = defaultdict(list)
    for gtid, start in _sql(stem, "SELECT globalTid, start FROM CUPTI_ACTIVITY_KIND_RUNTIME"):
        calls[gtid].append(start)
    expected: Counter[tuple[int, int | None]] = Counter()
    for gtid, ranges in _nvtx_rows(stem).items():
        stack: list[tuple[int, int, str]] = []
        i = 0
        for t in sorted(calls.pop(gtid, [])):
            while i < len(ranges) and ranges[i][0] <= t:
                while stack and stack[-1][1] <= ranges[i][0]:
                    stack.pop()
                if ranges[i][1] > ranges[i][0]:
                    stack.append(ranges[i])
                i += 1
            while stack and stack[-1][1] <= t:
                stack.pop()
            expected[(t, stack[-1][0] if stack else None)] += 1
    for starts in calls.values():  # threads without NVTX ranges
        expected.update((t, None) for t in starts)
    ops = _parsed(stem).ops
    op_start = dict(zip(ops["op_id"], ops["start_ns"], strict=True))
    runtime = _parsed(stem).runtime
    got = Counter(
        (s - shift, None if e is None else op_start[e] - shift)
        for s, e in runtime.select("start_ns", "external_id").iter_rows()
    )
    assert got == expected


def test_emit_nvtx_names_are_split() -> None:
    """``aten::mul, seq = N, op_id = M`` becomes name aten::mul and sequence number N."""
    rows = _sql(
        "mfu_2gpu_before",
        "SELECT text FROM NVTX_EVENTS WHERE text LIKE 'aten::mul, seq = %, op_id = %'",
    )
    seqs = Counter(int(re.search(r"seq = (\d+)", t).group(1)) for (t,) in rows)  # type: ignore[union-attr]
    ops = _parsed("mfu_2gpu_before").ops.filter(
        (pl.col("name") == "aten::mul") & pl.col("sequence_number").is_not_null()
    )
    assert Counter(ops["sequence_number"].to_list()) == seqs
    assert len(seqs) > 0


def test_call_at_the_same_ns_as_a_range_start_is_inside_it() -> None:
    """Ties by hand: ranges [100, 150) and [100, 120) on thread 5; calls at 100, 130, 150."""
    ops = pl.DataFrame(
        {
            "op_id": [0, 1],
            "gtid": [5, 5],
            "start_ns": [100, 100],
            "dur_ns": [50, 20],
            "nests": [True, True],
        }
    )
    calls = pl.DataFrame({"gtid": [5, 5, 5, 6], "start_ns": [100, 130, 150, 100]})
    # 100: both ranges have just opened, [100, 120) is innermost; 130: only [100, 150);
    # 150: that range closes at 150; thread 6 has no ranges.
    assert enclosing_ops(calls, ops).to_list() == [1, 0, None, None]


def test_sm_count_from_target_info_cuda_device(tmp_path: Path) -> None:
    """Without TARGET_INFO_GPU, blocks per SM use TARGET_INFO_CUDA_DEVICE.numMultiprocessors."""
    path = _mock_copy(tmp_path)
    path.chmod(0o644)
    conn = sqlite3.connect(path)
    (sms,) = conn.execute("SELECT numMultiprocessors FROM TARGET_INFO_CUDA_DEVICE").fetchone()
    grids = sorted(
        x * y * z
        for x, y, z in conn.execute("SELECT gridX, gridY, gridZ FROM CUPTI_ACTIVITY_KIND_KERNEL")
    )
    conn.execute("DROP TABLE TARGET_INFO_GPU")
    conn.commit()
    conn.close()
    parsed = parse(path)
    assert sorted(parsed.kernels["blocks_per_sm"].to_list()) == [g / sms for g in grids]
    assert parsed.meta.devices == ()
    notes = [w for w in parsed.meta.warnings if "TARGET_INFO_GPU" in w]
    assert notes == ["no TARGET_INFO_GPU table: GPU names and specifications are unknown"]


def test_ranks_by_hand() -> None:
    """pid 10 drives GPUs 1 and 0, pid 11 GPU 2, pid 12 only calls CUDA; pid 10 also has a
    copy on GPU 3 (a peer copy) and pid 13 only copies on GPU 4."""
    kernels = pl.DataFrame({"pid": [10, 10, 11], "device": [1, 0, 2]})
    memops = pl.DataFrame({"pid": [10, 13], "device": [3, 4]})
    ranks = assign_ranks(kernels, memops, pl.Series([12, 10, 12, None]))
    expected = [(0, 10, 0), (1, 10, 1), (2, 11, 2), (3, 13, 4), (4, 12, None)]
    assert ranks.select("rank", "pid", "device").rows() == expected
    copies = with_gpu_rank(memops, ranks)
    assert copies["rank"].to_list() == [0, 3]  # the peer copy goes to pid 10's first rank
    calls = with_cpu_rank(pl.DataFrame({"pid": [10, 12, 99]}), ranks)
    assert calls["rank"].to_list() == [0, 4, 0]


# --- the synthetic sample: every recovered value against the generator's ground truth ----------


@functools.cache
def _sample() -> tuple[Any, dict[str, Any]]:
    truth = json.loads((SAMPLES / "nsys_sample.truth.json").read_text())
    return parse(SAMPLES / "nsys_sample.sqlite"), truth


def test_sample_row_counts() -> None:
    parsed, truth = _sample()
    for table, rows in truth["rows"].items():
        assert parsed.table(table).height == rows, table


def test_sample_kernels_names_and_links() -> None:
    parsed, truth = _sample()
    kernels = parsed.kernels.with_columns(pl.col("name").cast(pl.String))
    per_name = dict(kernels.group_by("name").agg(pl.col("dur_ns").sum()).iter_rows())
    assert per_name == truth["kernel_ns_by_name"]
    ops = dict(zip(parsed.ops["op_id"], parsed.ops["name"].cast(pl.String), strict=True))
    for name, op_name in truth["launching_op"].items():
        ids = kernels.filter(pl.col("name") == name)["external_id"]
        assert {ops[i] for i in ids} == {op_name}
    assert kernels.filter(pl.col("external_id").is_null()).height == truth["kernels_without_launch"]
    gemm = kernels.filter(pl.col("category") == "gemm")
    assert gemm["blocks_per_sm"].to_list() == [truth["gemm_blocks_per_sm"]] * gemm.height


def test_sample_memops_and_syncs() -> None:
    parsed, truth = _sample()
    copies = parsed.memops.filter(pl.col("kind") != "memset")
    by_kind = dict(
        copies.group_by(pl.col("kind").cast(pl.String)).agg(pl.col("bytes").sum()).iter_rows()
    )
    assert by_kind == truth["memcpy_bytes_by_kind"]
    pageable = copies.filter((pl.col("src_mem") == "pageable") & (pl.col("kind") == "HtoD"))
    assert pageable.height == truth["pageable_htod"]["count"]
    assert pageable["bytes"].sum() == truth["pageable_htod"]["bytes"]
    syncs = dict(parsed.syncs.group_by(pl.col("kind").cast(pl.String)).len().iter_rows())
    assert syncs == truth["syncs_by_kind"]


def test_sample_runtime_names_and_kinds() -> None:
    parsed, truth = _sample()
    names = Counter(parsed.runtime["name"].cast(pl.String).to_list())
    assert dict(names) == truth["api_calls_by_name"]
    assert parsed.runtime.filter(pl.col("kind") == "driver").height == truth["driver_calls"]


def test_sample_steps_ranks_and_devices() -> None:
    parsed, truth = _sample()
    assert parsed.steps.sort("rank", "start_ns").to_dicts() == sorted(
        truth["steps"], key=lambda s: (s["rank"], s["start_ns"])
    )
    ranks = dict(parsed.runtime.select("pid", "rank").unique().iter_rows())
    assert {str(p): r for p, r in ranks.items()} == truth["ranks"]
    assert parsed.meta.clock == "epoch"
    for device in parsed.meta.devices:
        assert device.name == truth["device"]["name"]
        assert device.num_sms == truth["device"]["num_sms"]
        assert [device.compute_major, device.compute_minor] == truth["device"]["compute"]
    assert len(parsed.meta.devices) == 2


def test_sample_op_depths() -> None:
    parsed, truth = _sample()
    depth = truth["op_depth"]
    for name, d in parsed.ops.select(pl.col("name").cast(pl.String), "depth").iter_rows():
        key = "step" if "step" in name else name
        if key in depth:
            assert d == depth[key], name


def test_sample_counters() -> None:
    parsed, truth = _sample()
    counters = parsed.counters
    assert sorted(set(counters["metric"].cast(pl.String))) == truth["counter_metrics"]
    sm = counters.filter((pl.col("metric") == "sm_active_pct") & (pl.col("gpu") == 0))
    assert sm["value"].mean() == truth["sm_active_pct_mean"]
    assert set(counters["source"].cast(pl.String)) == {"nsys"}
    assert counters["ts_ns"].min() >= truth["session_start_ns"]


def test_sample_file_is_small_and_regenerates_identically(tmp_path: Path) -> None:
    make_nsys_sample = importlib.import_module("make_nsys_sample")  # sample_traces/ on sys.path
    assert (SAMPLES / "nsys_sample.sqlite").stat().st_size < 200_000
    fresh = make_nsys_sample.truth(make_nsys_sample.build())
    assert json.loads(json.dumps(fresh)) == _sample()[1]


# --- the 2022.4 schema (3.0.0) ----------------------------------------------------------------


def _old_export(tmp_path: Path) -> Path:
    """An export built from Nsight Systems 2022.4's own DDL, with a few hand-made rows."""
    ddl = shared_trace(f"{NSYS_DIR}/nsys_2022.4_schema_3.0.0.sql").read_text()
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(ddl)
    gpid = (1 << 48) | (77 << 24)
    conn.executemany("INSERT INTO StringIds VALUES (?, ?)", [
        (1, "cudaLaunchKernel_v7000"), (2, "void gemm_kernel<float>(float*)"),
        (3, "gemm_kernel"), (4, "cudaMemcpyAsync_v3020"), (5, "cudaStreamSynchronize_v3020"),
    ])  # fmt: skip
    conn.execute(
        "INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL (start, end, deviceId, contextId, streamId, "
        "correlationId, globalPid, demangledName, shortName, registersPerThread, gridX, gridY, "
        "gridZ, blockX, blockY, blockZ, staticSharedMemory, dynamicSharedMemory, "
        "localMemoryPerThread, localMemoryTotal, gridId) "
        "VALUES (1000, 3500, 0, 1, 7, 11, ?, 2, 3, 64, 2, 3, 1, 256, 1, 1, 1024, 2048, 0, 0, 1)",
        (gpid,),
    )
    conn.execute(
        "INSERT INTO CUPTI_ACTIVITY_KIND_MEMCPY (start, end, deviceId, contextId, streamId, "
        "correlationId, globalPid, bytes, copyKind, srcKind, dstKind) "
        "VALUES (4000, 4600, 0, 1, 7, 12, ?, 4096, 1, 1, 2)",
        (gpid,),
    )
    conn.execute(
        "INSERT INTO CUPTI_ACTIVITY_KIND_SYNCHRONIZATION (start, end, deviceId, contextId, "
        "streamId, correlationId, globalPid, syncType, eventId) "
        "VALUES (5000, 5900, 0, 1, 7, 13, ?, 3, 0)",
        (gpid,),
    )
    gtid = gpid | 78
    conn.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME (start, end, eventClass, globalTid, "
        "correlationId, nameId, returnValue) VALUES (?, ?, 0, ?, ?, ?, 0)",
        [(500, 900, gtid, 11, 1), (3800, 3900, gtid, 12, 4), (4990, 6000, gtid, 13, 5)],
    )
    conn.execute(
        "INSERT INTO NVTX_EVENTS (start, end, eventType, text, globalTid) "
        "VALUES (100, 7000, 59, 'iteration 4', ?)",
        (gtid,),
    )
    conn.execute("INSERT INTO TARGET_INFO_SESSION_START_TIME VALUES (1600000000000000000, '', '')")
    conn.execute("INSERT INTO EXPORT_META_DATA VALUES ('EXPORT_PRODUCT_VERSION', '2022.4.1')")
    conn.commit()
    conn.close()
    return path


def test_schema_3_0_0_export_parses(tmp_path: Path) -> None:
    parsed = parse(_old_export(tmp_path))
    epoch = 1_600_000_000_000_000_000
    kernel = parsed.kernels.row(0, named=True)
    assert kernel["name"] == "void gemm_kernel<float>(float*)"
    assert (kernel["start_ns"], kernel["dur_ns"]) == (epoch + 1000, 2500)
    assert (kernel["grid_x"], kernel["grid_y"], kernel["block_x"]) == (2, 3, 256)
    assert kernel["shared_mem_bytes"] == 1024 + 2048
    assert kernel["external_id"] == parsed.ops["op_id"][0]  # launched inside "iteration 4"
    copy = parsed.memops.row(0, named=True)
    assert (copy["kind"], copy["src_mem"], copy["dst_mem"]) == ("HtoD", "pinned", "device")
    assert copy["name"] == "Memcpy HtoD (Pinned -> Device)"  # ENUM tables empty: built-in ids
    assert parsed.syncs["kind"].to_list() == ["stream_sync"]
    assert parsed.runtime["name"].cast(pl.String).to_list() == [
        "cudaLaunchKernel", "cudaMemcpyAsync", "cudaStreamSynchronize"
    ]  # fmt: skip
    assert parsed.runtime["pid"].to_list() == [77] * 3
    assert parsed.runtime["tid"].to_list() == [78] * 3
    assert parsed.steps.to_dicts() == [
        {"rank": 0, "step": 4, "start_ns": epoch + 100, "end_ns": epoch + 7000}
    ]
    assert parsed.meta.versions == {"nsys": "2022.4.1"}
    assert parsed.meta.clock == "epoch"


# --- steps and metric names, by hand ------------------------------------------------------------


def _ops(names: list[str], depths: list[int] | None = None) -> pl.DataFrame:
    n = len(names)
    return pl.DataFrame(
        {
            "rank": [0] * n,
            "name": names,
            "start_ns": [i * 100 for i in range(n)],
            "dur_ns": [50] * n,
            "depth": depths or [0] * n,
        }
    )


def test_step_names_and_preference() -> None:
    assert find_steps(_ops(["ProfilerStep#7", "step 3", "Step_9"]))["step"].to_list() == [7]
    assert find_steps(_ops(["Step_3", "step#4", "iteration 5"]))["step"].to_list() == [3, 4]
    assert find_steps(_ops(["iteration 5", "iter_6", "train_step"]))["step"].to_list() == [5, 6]
    assert find_steps(_ops(["train_step", "forward", "train_step"]))["step"].to_list() == [0, 1]
    assert find_steps(_ops(["stepper", "steps", "forward"])).height == 0
    nested = find_steps(_ops(["step 1", "step 2", "step 3"], depths=[0, 1, 0]))
    assert nested["step"].to_list() == [1, 3]


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("SM Active [Throughput %]", "sm_active_pct"),
        ("SMs Active [Throughput %]", "sms_active_pct"),
        ("GPC Clock Frequency [MHz]", "gpc_clock_frequency_mhz"),
        ("DRAM Read Bandwidth [Throughput %]", "dram_read_bandwidth_pct"),
        ("PCIe Read Requests to BAR1 [Requests]", "pcie_read_requests_to_bar1_requests"),
        ("Compute Warps in Flight", "compute_warps_in_flight"),
    ],
)
def test_metric_names_carry_units(raw: str, name: str) -> None:
    assert metric_name(raw) == name


# --- bad input: one AnalyzerError, one line, naming the file -------------------------------


def _one_line(err: AnalyzerError, path: Path) -> None:
    text = str(err)
    assert "\n" not in text
    assert text.startswith(str(path))


def _mock_copy(tmp_path: Path) -> Path:
    target = tmp_path / "mock.sqlite"
    shutil.copyfile(shared_trace(f"{NSYS_DIR}/mock.sqlite"), target)
    return target


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    path.write_bytes(b"")
    with pytest.raises(UnreadableInputError, match="empty file") as err:
        parse(path)
    _one_line(err.value, path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="no such file"):
        parse(tmp_path / "absent.sqlite")


def test_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "trace.sqlite"
    path.write_text('{"traceEvents": []}')
    with pytest.raises(UnsupportedFormatError, match="not an SQLite database") as err:
        parse(path)
    _one_line(err.value, path)


def test_sqlite_that_is_not_an_nsight_export(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    conn.execute("INSERT INTO users VALUES (1, 'a')")
    conn.commit()
    conn.close()
    with pytest.raises(UnsupportedFormatError, match="not an Nsight Systems export") as err:
        parse(path)
    _one_line(err.value, path)


def test_export_without_events(tmp_path: Path) -> None:
    path = tmp_path / "idle.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE StringIds (id INTEGER NOT NULL PRIMARY KEY, value TEXT NOT NULL)")
    conn.commit()
    conn.close()
    with pytest.raises(EmptyTraceError, match="no kernel"):
        parse(path)


@pytest.mark.parametrize("keep", [50, 4096, 0.5])
def test_truncated_export(tmp_path: Path, keep: float) -> None:
    path = _mock_copy(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else int(keep)])
    with pytest.raises(UnreadableInputError, match="truncated") as err:
        parse(path)
    _one_line(err.value, path)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cut=st.floats(0.0, 1.0), garble_at=st.floats(0.0, 1.0), noise=st.binary(min_size=1, max_size=64)
)
def test_damaged_files_raise_only_our_errors(
    tmp_path: Path, cut: float, garble_at: float, noise: bytes
) -> None:
    """Truncated or garbled exports parse or raise an AnalyzerError, never anything else."""
    source = shared_trace(f"{NSYS_DIR}/mock.sqlite").read_bytes()
    data = bytearray(source[: max(1, int(len(source) * cut))] if cut < 1 else source)
    at = int(len(data) * garble_at)
    data[at : at + len(noise)] = noise
    path = tmp_path / "damaged.sqlite"
    path.write_bytes(bytes(data))
    with contextlib.suppress(AnalyzerError):
        parse(path).validate()


def test_input_is_never_written(tmp_path: Path) -> None:
    path = _mock_copy(tmp_path)
    path.chmod(stat.S_IRUSR)  # read-only, as the shared traces are
    before = (path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(tmp_path)))
    parse(path)
    after = (path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(tmp_path)))
    assert before == after  # no journal, WAL or shm file beside it either


# --- .nsys-rep ----------------------------------------------------------------------------------


def _fake_nsys(bin_dir: Path, body: str) -> None:
    bin_dir.mkdir()
    script = bin_dir / "nsys"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)


def test_report_without_nsys_says_how_to_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "run.nsys-rep"
    report.write_bytes(b"not parsed")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(UnsupportedFormatError, match="is an Nsight Systems report") as err:
        parse(report)
    assert "nsys export --type sqlite" in str(err.value)
    assert "analyze the .sqlite" in str(err.value)
    _one_line(err.value, report)


def test_report_is_exported_to_a_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock = shared_trace(f"{NSYS_DIR}/mock.sqlite")
    log = tmp_path / "args.txt"
    _fake_nsys(tmp_path / "bin", f'echo "$@" > "{log}"\ncp "{mock}" "$5"\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    report = tmp_path / "run.nsys-rep"
    report.write_bytes(b"report bytes")
    parsed = parse(report)
    args = log.read_text().split()
    assert args[:4] == ["export", "--type", "sqlite", "--output"]
    assert args[5] == str(report)
    out = Path(args[4])
    assert out.parent != tmp_path and not out.parent.exists()  # temp dir, removed after
    assert parsed.kernels.height == 2
    assert parsed.meta.paths == (str(report),)
    assert report.read_bytes() == b"report bytes"
    assert sorted(os.listdir(tmp_path)) == ["args.txt", "bin", "run.nsys-rep"]


def test_failed_export_is_an_unreadable_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_nsys(tmp_path / "bin", 'echo "ERROR: the report is damaged" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    report = tmp_path / "bad.nsys-rep"
    report.write_bytes(b"x")
    with pytest.raises(UnreadableInputError, match="the report is damaged") as err:
        parse(report)
    _one_line(err.value, report)


@pytest.mark.parametrize("stem", ALL_FILES)
def test_every_table_is_canonical(stem: str) -> None:
    assert _parsed(stem).validate() is _parsed(stem)


def test_gpu_metrics_also_feed_the_dcgm_counter_names() -> None:
    """SM Active [Throughput %] is also stored as DCGM's sm_active_ratio (percent / 100)."""
    parsed, truth = _sample()
    counters = parsed.counters
    ratio = counters.filter((pl.col("metric") == "sm_active_ratio") & (pl.col("gpu") == 0))
    pct = counters.filter((pl.col("metric") == "sm_active_pct") & (pl.col("gpu") == 0))
    assert ratio.height == pct.height > 0
    assert ratio["value"].mean() == pytest.approx(truth["sm_active_pct_mean"] / 100)
