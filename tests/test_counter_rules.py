"""Counter rules on synthetic DCGM series with known ground truth, plus hand-built cases.

Each rule must fire on its scenario and stay silent on the others (the truth files list which
rule fires where); evidence values are checked against the generator's truth or against values
read here from the raw sample files.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import SAMPLES, shared_trace
from gpu_trace_analyzer.config import default_config
from gpu_trace_analyzer.context import AnalysisContext, AnalysisOptions
from gpu_trace_analyzer.engine import run_rules
from gpu_trace_analyzer.findings import Finding, Severity
from gpu_trace_analyzer.parsers import dcgm
from gpu_trace_analyzer.parsers.schema import DeviceInfo, TraceMeta, TraceTables, table_from_columns
from gpu_trace_analyzer.rules.all import load_builtin_rules
from gpu_trace_analyzer.rules.energy import Energy
from gpu_trace_analyzer.rules.gpu_imbalance import GpuImbalance
from gpu_trace_analyzer.rules.low_sm_activity import LowSmActivity
from gpu_trace_analyzer.rules.memory_bound_counters import MemoryBoundCounters
from gpu_trace_analyzer.rules.memory_headroom import MemoryHeadroom
from gpu_trace_analyzer.rules.throttling import Throttling

SCENARIOS = ("compute_bound", "memory_bound", "host_bound", "throttled", "imbalanced_8gpu")
RULES: dict[str, Any] = {
    r.id: r for r in (LowSmActivity, MemoryBoundCounters, Throttling, MemoryHeadroom, GpuImbalance)
}
GIB = 1024**3


def _tables(scenario: str, ext: str = "query_range.json") -> TraceTables:
    return dcgm.parse(SAMPLES / "dcgm" / f"{scenario}.{ext}")


def _truth(scenario: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / "dcgm" / f"{scenario}.truth.json").read_text())
    return data


def _run(rule: Any, tables: TraceTables, **options: Any) -> list[Finding]:
    ctx = AnalysisContext(tables, AnalysisOptions(**options))
    return list(rule().check(ctx, rule.Config()))


def test_rules_are_registered() -> None:
    registry = load_builtin_rules()
    for rule_id in (*RULES, "energy"):
        assert rule_id in registry


@pytest.mark.parametrize("ext", ["query_range.json", "dmon.txt"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_rule_fires_only_on_its_scenarios(scenario: str, ext: str) -> None:
    tables = _tables(scenario, ext)
    for rule_id, expected in _truth(scenario)["fires"].items():
        found = _run(RULES[rule_id], tables)
        assert bool(found) is expected, (scenario, rule_id)
        assert len(found) <= 1
        for f in found:
            assert f.rule_id == rule_id and f.summary and f.recommendation and f.table


def test_low_sm_activity_evidence() -> None:
    truth = _truth("host_bound")["gpus"][0]["metrics"]
    (f,) = _run(LowSmActivity, _tables("host_bound"))
    assert f.severity is Severity.CRITICAL  # 0.20 < 0.25
    assert f.evidence["sm_active_ratio"] == pytest.approx(truth["sm_active_ratio"]["mean"], 1e-3)
    assert f.evidence["gpu_util_pct_busy"] == pytest.approx(truth["gpu_util_pct"]["mean"], 1e-3)
    assert f.evidence["activity_basis"] == "sm_active_ratio"
    assert "0.20" in f.summary and "node-a" in f.summary
    assert "host" in f.recommendation  # GPU util 35%: the GPU waits on the host
    imb = _truth("imbalanced_8gpu")["gpus"][5]["metrics"]
    (g,) = _run(LowSmActivity, _tables("imbalanced_8gpu"))
    assert g.severity is Severity.WARNING and g.evidence["gpu"] == 5
    assert g.evidence["sm_active_ratio"] == pytest.approx(imb["sm_active_ratio"]["mean"], 1e-3)
    assert g.scope.device == 5


def test_low_sm_activity_small_kernels_and_gr_engine_fallback() -> None:
    s = 10**9
    rows = [(0, "gpu_util_pct", k * s, 97.0) for k in range(4)] + [
        (0, "gr_engine_active_ratio", k * s, 0.3) for k in range(4)
    ]
    (f,) = _run(LowSmActivity, TraceTables(meta=_meta(), counters=_counters(rows)))
    assert f.evidence["activity_basis"] == "gr_engine_active_ratio"
    assert f.evidence["sm_active_ratio"] == pytest.approx(0.3)
    assert "fewer blocks than SMs" in f.recommendation  # util 97%: small kernels, not the host
    # one sample is not a trend: nothing on a single scrape
    one = TraceTables(meta=_meta(), counters=_counters(rows[:1] + rows[4:5]))
    assert _run(LowSmActivity, one) == []


def test_memory_bound_evidence() -> None:
    truth = _truth("memory_bound")["gpus"][0]["metrics"]
    (f,) = _run(MemoryBoundCounters, _tables("memory_bound"))
    assert f.evidence["dram_active_ratio"] == pytest.approx(
        truth["dram_active_ratio"]["mean"], 1e-3
    )
    pipes = ("tensor_active_ratio", "fp64_active_ratio", "fp32_active_ratio", "fp16_active_ratio")
    top = max(pipes, key=lambda p: truth[p]["mean"])
    assert f.evidence["top_pipe"] == top
    assert f.evidence["top_pipe_active_ratio"] == pytest.approx(truth[top]["mean"], 1e-3)
    assert f.severity is Severity.WARNING


def test_throttling_evidence() -> None:
    truth = _truth("throttled")["gpus"][0]
    (f,) = _run(Throttling, _tables("throttled"))
    assert f.evidence["dominant_reason"] == "power"
    assert f.evidence["power_share_of_busy_pct"] == pytest.approx(
        100 * truth["power_throttle_share_of_busy"]
    )
    assert f.evidence["thermal_share_of_busy_pct"] == pytest.approx(
        100 * truth["thermal_throttle_share_of_busy"]
    )
    # clocks with and without the power bits, read from the raw query_range JSON
    raw = json.loads((SAMPLES / "dcgm" / "throttled.query_range.json").read_text())
    series = {s["metric"]["__name__"]: dict(s["values"]) for s in raw["data"]["result"]}
    bits = series["DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"]
    clock = series["DCGM_FI_DEV_SM_CLOCK"]
    on = [float(clock[t]) for t in clock if int(bits[t]) & 0x84]
    off = [float(clock[t]) for t in clock if not int(bits[t]) & 0x84]
    assert f.evidence["sm_clock_throttled_mhz"] == pytest.approx(statistics.mean(on), abs=0.05)
    assert f.evidence["sm_clock_unthrottled_mhz"] == pytest.approx(statistics.mean(off), abs=0.05)
    assert f.severity is Severity.WARNING  # 40% < 50%


def test_memory_headroom_from_counters() -> None:
    high = _truth("throttled")["gpus"][0]
    (f,) = _run(MemoryHeadroom, _tables("throttled"))
    assert f.severity is Severity.WARNING and f.title == MemoryHeadroom.title
    assert f.evidence["used_pct"] == pytest.approx(high["fb_used_pct_max"], abs=0.01)
    assert f.evidence["source"] == "dcgm"
    low = _truth("host_bound")["gpus"][0]
    (g,) = _run(MemoryHeadroom, _tables("host_bound"))
    assert g.severity is Severity.INFO and g.title == MemoryHeadroom.low_title
    assert f"{low['fb_used_pct_max']:.1f}% memory utilization" in g.summary
    assert "room for a larger batch" in g.summary


def test_memory_headroom_on_a_real_single_scrape() -> None:
    path = shared_trace("dcgm/exporter/v1.35__ericsson-ccd__accelerator_metrics__block0.prom")
    tables = dcgm.parse(path)
    ctx = AnalysisContext(tables)
    assert MemoryHeadroom.skip_reason(ctx) is None
    # 5,120 of 15,358 MiB = 33%: low, but one snapshot can miss the peak, so no info
    assert list(MemoryHeadroom().check(ctx, MemoryHeadroom.Config())) == []


def _memory_tables(peaks_gib: dict[int, float], total_gib: float) -> TraceTables:
    """A trace with `[memory]` events peaking at the given reserved GiB per device."""
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "rank",
            "device",
            "ts_ns",
            "bytes",
            "total_allocated_bytes",
            "total_reserved_bytes",
        )
    }
    for device, peak in peaks_gib.items():
        for k, frac in enumerate((0.25, 1.0, 0.5)):
            rows["rank"].append(0)
            rows["device"].append(device)
            rows["ts_ns"].append(1000 * k + device)
            rows["bytes"].append(1)
            rows["total_allocated_bytes"].append(int(peak * frac * GIB * 0.9))
            rows["total_reserved_bytes"].append(int(peak * frac * GIB))
    rows["device"].append(-1)  # host memory never counts
    for key, value in (
        ("rank", 0),
        ("ts_ns", 5000),
        ("bytes", 1),
        ("total_allocated_bytes", 10**15),
        ("total_reserved_bytes", 10**15),
    ):
        rows[key].append(value)
    memory = table_from_columns("memory", rows).sort("ts_ns")
    devices = tuple(
        DeviceInfo(rank=0, device=d, name="NVIDIA H100", total_mem_bytes=int(total_gib * GIB))
        for d in peaks_gib
    )
    meta = TraceMeta(source="kineto", paths=("t",), devices=devices)
    return TraceTables(meta=meta, memory=memory)


def test_memory_headroom_from_trace_memory_events() -> None:
    (f,) = _run(MemoryHeadroom, _memory_tables({0: 40.0, 1: 76.0}, 80.0))
    assert f.severity is Severity.WARNING
    assert f.evidence["source"] == "trace" and f.evidence["device"] == 1
    assert f.evidence["used_pct"] == pytest.approx(100 * 76 / 80, abs=0.01)  # 95.0%
    assert f.evidence["allocated_bytes"] == int(76 * GIB * 0.9)
    (g,) = _run(MemoryHeadroom, _memory_tables({0: 39.84}, 80.0))
    assert g.severity is Severity.INFO
    assert "49.8% memory utilization" in g.summary  # 39.84 / 80 GiB
    assert _run(MemoryHeadroom, _memory_tables({0: 60.0}, 80.0)) == []  # 75%: in between


def test_memory_headroom_lists_equal_peaks_in_device_order_every_time() -> None:
    """16 devices at the same 95% peak: the evidence rows follow the device number (a hash
    aggregation leaves them in a random order, which made reports differ run to run)."""
    tables = _memory_tables(dict.fromkeys(range(16), 76.0), 80.0)
    for _ in range(5):
        (f,) = _run(MemoryHeadroom, tables)
        assert f.evidence["device"] == 0 and f.evidence["devices"] == 16
        assert f.table is not None
        assert [row[1] for row in f.table.rows] == [f"rank 0 device {d}" for d in range(16)]


def test_memory_headroom_old_traces_without_totals_give_a_lower_bound() -> None:
    """2021 traces carry only each event's Bytes: the running sum is a lower bound."""
    gib_steps = [4.0, 70.0, -10.0, 5.0]  # running sum 4, 74, 64, 69: peak 74 GiB
    memory = table_from_columns(
        "memory",
        {
            "rank": [0] * 4,
            "device": [0] * 4,
            "ts_ns": [10, 20, 30, 40],
            "bytes": [int(g * GIB) for g in gib_steps],
        },
    )
    device = DeviceInfo(rank=0, device=0, name="V100", total_mem_bytes=80 * GIB)
    meta = TraceMeta(source="kineto", paths=("t",), devices=(device,))
    (f,) = _run(MemoryHeadroom, TraceTables(meta=meta, memory=memory))
    assert f.evidence["used_pct"] == pytest.approx(100 * 74 / 80)  # 92.5%
    assert "at least" in f.summary
    low = memory.with_columns(pl.lit(GIB).alias("bytes"))  # 4 GiB by the end: 5%
    assert _run(MemoryHeadroom, TraceTables(meta=meta, memory=low)) == []  # no info from a bound


def test_memory_headroom_skip_reason_without_sources() -> None:
    ctx = AnalysisContext(TraceTables(meta=_meta()))
    reason = MemoryHeadroom.skip_reason(ctx)
    assert reason is not None and "profile_memory=True" in reason
    assert list(MemoryHeadroom().check(ctx, MemoryHeadroom.Config())) == []


def test_gpu_imbalance_evidence() -> None:
    truth = _truth("imbalanced_8gpu")
    (f,) = _run(GpuImbalance, _tables("imbalanced_8gpu"))
    means = {g["gpu"]: g["metrics"]["sm_active_ratio"]["mean"] for g in truth["gpus"]}
    peers = statistics.median(v for k, v in means.items() if k != 5)
    assert f.evidence["gpu"] == 5 and f.evidence["peers"] == 7
    assert f.evidence["metric"] == "sm_active_ratio"
    assert f.evidence["sm_active_ratio_gpu"] == pytest.approx(means[5], abs=1e-4)
    assert f.evidence["sm_active_ratio_peer_median"] == pytest.approx(peers, abs=1e-4)
    assert f.evidence["gap_pct"] == pytest.approx(100 * (peers - means[5]) / peers, abs=0.01)


def test_gpu_imbalance_on_gpu_util_when_sm_active_is_missing() -> None:
    s = 10**9
    util = {0: 90.0, 1: 92.0, 2: 91.0, 3: 60.0}
    rows = [(g, "gpu_util_pct", k * s, u) for g, u in util.items() for k in range(3)]
    (f,) = _run(GpuImbalance, TraceTables(meta=_meta(), counters=_counters(rows)))
    # GPU 3 at 60% vs its peers' median 91%: 31 points, 34.07% below
    assert f.evidence["gpu"] == 3 and f.evidence["metric"] == "gpu_util_pct"
    assert f.evidence["gap_pct"] == pytest.approx(100 * 31 / 91, abs=0.01)
    # another host's GPUs are not its peers
    other = [(0, "gpu_util_pct", k * s, 30.0) for k in range(3)]
    both = pl.concat([_counters(rows), _counters(other, host="h2")]).sort("ts_ns")
    (g,) = _run(GpuImbalance, TraceTables(meta=_meta(), counters=both))
    assert g.evidence["gpus_lagging"] == 1


# ---------------------------------------------------------------------------------------------
# energy


def _steps(t0: int, bounds_s: list[tuple[float, float]]) -> pl.DataFrame:
    return table_from_columns(
        "steps",
        {
            "rank": [0] * len(bounds_s),
            "step": list(range(len(bounds_s))),
            "start_ns": [t0 + int(a * 1e9) for a, _ in bounds_s],
            "end_ns": [t0 + int(b * 1e9) for _, b in bounds_s],
        },
    )


def test_energy_per_step_and_per_sample() -> None:
    truth = _truth("compute_bound")
    t0 = truth["start_unix_s"] * 10**9
    counters = _tables("compute_bound").counters
    steps = _steps(t0, [(5, 10), (10, 15), (15, 20), (20, 25)])
    tables = TraceTables(meta=_meta(), counters=counters, steps=steps)
    (f,) = _run(Energy, tables, samples_per_step=64)
    raw = json.loads((SAMPLES / "dcgm" / "compute_bound.query_range.json").read_text())
    energy = next(
        dict(s["values"])
        for s in raw["data"]["result"]
        if s["metric"]["__name__"] == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
    )
    start_s = truth["start_unix_s"]
    expected_j = (float(energy[start_s + 25]) - float(energy[start_s + 5])) / 1000
    assert f.severity is Severity.INFO
    assert f.evidence["energy_j"] == pytest.approx(expected_j)
    assert f.evidence["steps"] == 4
    assert f.evidence["energy_per_step_j"] == pytest.approx(expected_j / 4, abs=1e-4)
    assert f.evidence["energy_per_sample_j"] == pytest.approx(expected_j / 4 / 64, abs=1e-6)
    assert f.evidence["energy_sources"] == "counter"
    without = _run(Energy, tables)
    assert "energy_per_sample_j" not in without[0].evidence


def test_energy_short_window_and_unaligned_clock() -> None:
    t0 = _truth("compute_bound")["start_unix_s"] * 10**9
    counters = _tables("compute_bound").counters
    # 0.5 s window holding one sample (t0 + 5 s): mean power x window
    short = TraceTables(meta=_meta(), counters=counters, steps=_steps(t0, [(4.9, 5.4)]))
    (f,) = _run(Energy, short)
    power = counters.filter((pl.col("metric") == "power_w") & (pl.col("ts_ns") == t0 + 5 * 10**9))
    assert f.evidence["energy_j"] == pytest.approx(float(power["value"][0]) * 0.5)
    assert f.evidence["energy_sources"] == "mean power x window"
    # dmon samples sit on a relative clock: nothing inside an epoch steps window
    dmon = _tables("compute_bound", "dmon.txt").counters
    unaligned = TraceTables(meta=_meta(), counters=dmon, steps=_steps(t0, [(5, 10)]))
    assert _run(Energy, unaligned) == []
    # a relative trace merged with a relative dmon dump: both start near 0 and overlap by
    # accident; the rule must not pair them (the merge records the dump's clock)
    merged = TraceMeta(
        source="kineto+dcgm", paths=("t", "d"), clock="relative", flags={"dcgm_clock": "relative"}
    )
    overlapping = TraceTables(meta=merged, counters=dmon, steps=_steps(0, [(5, 10)]))
    assert _run(Energy, overlapping) == []
    same_axis = TraceTables(meta=_meta(), counters=dmon, steps=_steps(0, [(5, 10)]))
    assert len(_run(Energy, same_axis)) == 1  # counters recorded on the trace's own clock


def test_engine_runs_counter_rules_and_skips_energy_without_steps() -> None:
    ctx = AnalysisContext(_tables("throttled"))
    result = run_rules(ctx, default_config())
    fired = {f.rule_id for f in result.findings}
    assert {"throttling", "memory-headroom"} <= fired
    assert "low-sm-activity" not in fired
    skipped = {s.rule_id: s.reason for s in result.skipped}
    assert "steps" in skipped["energy"] or "ProfilerStep" in skipped["energy"]
    assert not [e for e in result.errors if e.rule_id in {*RULES, "energy"}]


# ---------------------------------------------------------------------------------------------
# helpers


def _meta() -> TraceMeta:
    return TraceMeta(source="test", paths=("t",))


def _counters(rows: list[tuple[int, str, int, float]], host: str = "h") -> pl.DataFrame:
    return table_from_columns(
        "counters",
        {
            "source": ["test"] * len(rows),
            "host": [host] * len(rows),
            "gpu": [r[0] for r in rows],
            "metric": [r[1] for r in rows],
            "ts_ns": [r[2] for r in rows],
            "value": [r[3] for r in rows],
        },
    ).sort("ts_ns")


def test_rules_on_every_real_dump_do_not_crash(tmp_path: Path) -> None:
    """Every real file: the counter rules run without error and say nothing misleading."""
    paths = sorted(shared_trace("dcgm").rglob("*"))
    for path in paths:
        if not path.is_file() or path.suffix == ".tsv" or "list_fields" in path.name:
            continue
        ctx = AnalysisContext(dcgm.parse(path))
        for rule in (*RULES.values(), Energy):
            if rule is Energy:
                continue  # needs steps
            found = list(rule().check(ctx, rule.Config()))
            # single scrapes and the mostly idle dumps carry no trend to warn about
            assert [f.rule_id for f in found] == [], (path.name, rule.id)
