"""Counter metrics (analyzer.metrics.counters) and the DCGM report section.

Ground truth comes from the synthetic generator's truth files (computed there in plain Python
from the emitted values), from hand calculations written out below, and from the raw text of
the real exporter scrapes in ../shared.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import SAMPLES, shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics import counters as c
from gpu_trace_analyzer.parsers import dcgm
from gpu_trace_analyzer.parsers.schema import RankInfo, TraceMeta, TraceTables, table_from_columns
from gpu_trace_analyzer.report.chart_files import write_charts
from gpu_trace_analyzer.report.model import Chart, Image, Paragraph, Report, Section, Table
from gpu_trace_analyzer.sections import counters as section

SCENARIOS = ("compute_bound", "memory_bound", "host_bound", "throttled", "imbalanced_8gpu")


def _sample(scenario: str, ext: str = "query_range.json") -> TraceTables:
    return dcgm.parse(SAMPLES / "dcgm" / f"{scenario}.{ext}")


def _truth(scenario: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / "dcgm" / f"{scenario}.truth.json").read_text())
    return data


def _counters(rows: list[tuple[int, str, int, float | None]], host: str = "h") -> pl.DataFrame:
    """A counters table from (gpu, metric, ts_ns, value) rows."""
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


# ---------------------------------------------------------------------------------------------
# Against the synthetic ground truth


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_summary_matches_truth(scenario: str) -> None:
    truth = _truth(scenario)
    summary = c.gpu_summary(_sample(scenario).counters)
    assert summary.height == truth["gpu_count"]
    for g in truth["gpus"]:
        row = summary.filter(pl.col("gpu") == g["gpu"]).row(0, named=True)
        assert row["host"] == truth["host"]
        assert row["model_name"] == truth["model_name"]
        assert row["sample_times"] == truth["samples"]
        for metric in c.KEY_METRICS:
            for stat in c.STATS:
                assert row[f"{metric}_{stat}"] == pytest.approx(g["metrics"][metric][stat]), (
                    metric,
                    stat,
                )
        assert row["energy_j"] == pytest.approx(g["energy_j_from_counter"])
        assert row["energy_source"] == "counter"
        assert row["fb_used_pct_max"] == pytest.approx(g["fb_used_pct_max"])
        assert row["busy_samples"] == g["busy_samples"]
        assert row["bound"] == g["bound"]


@pytest.mark.parametrize("scenario", ["throttled", "compute_bound"])
def test_energy_from_power_when_counter_absent(scenario: str) -> None:
    truth = _truth(scenario)["gpus"][0]
    table = _sample(scenario).counters.filter(pl.col("metric") != "energy_mj")
    energy = c.energy(table)
    assert energy["energy_source"].to_list() == ["power"]
    assert energy["energy_j"][0] == pytest.approx(truth["energy_j_from_power"])
    assert energy["span_ns"][0] == truth["span_s"] * 10**9


def test_throttle_shares_match_truth() -> None:
    truth = _truth("throttled")["gpus"][0]
    shares = c.throttle_shares(_sample("throttled", "dmon.txt").counters)
    by_reason = {r["reason"]: r for r in shares.iter_rows(named=True)}
    assert by_reason["power"]["share_of_busy"] == pytest.approx(
        truth["power_throttle_share_of_busy"]
    )
    assert by_reason["thermal"]["share_of_busy"] == pytest.approx(
        truth["thermal_throttle_share_of_busy"]
    )
    assert by_reason["power"]["busy_samples"] == truth["busy_samples"]
    # only the bits that were set appear individually: SW power cap (0x4), SW thermal (0x20)
    assert {"sw_power_cap", "sw_thermal_slowdown"} <= set(by_reason)
    assert "hw_thermal_slowdown" not in by_reason
    # the generator drops the SM clock to 1500 MHz in every throttled sample
    assert by_reason["sw_power_cap"]["sm_clock_mhz_throttled_mean"] == 1500.0


def test_window_selects_samples() -> None:
    truth = _truth("compute_bound")
    t0 = truth["start_unix_s"] * 10**9
    start, end = t0 + 10 * 10**9, t0 + 19 * 10**9  # samples 10..19 inclusive: 10 samples
    stats = c.gpu_stats(_sample("compute_bound").counters, start, end)
    n = dict(zip(stats["metric"].to_list(), stats["n"].to_list(), strict=True))
    assert n["sm_active_ratio"] == 10 and n["power_w"] == 10
    energy = c.energy(_sample("compute_bound").counters, start, end)
    # generator: energy counter grows by the power trapezoid each second; 9 intervals here
    power = (
        _sample("compute_bound")
        .counters.filter((pl.col("metric") == "power_w") & pl.col("ts_ns").is_between(start, end))[
            "value"
        ]
        .to_list()
    )
    expected_j = sum((a + b) / 2 for a, b in itertools.pairwise(power))
    # the counter is printed in whole mJ: two roundings of 0.5 mJ at most
    assert energy["energy_j"][0] == pytest.approx(expected_j, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# Hand calculations


def test_energy_counter_reset_and_power_trapezoid() -> None:
    s = 10**9
    # counter 1000 -> 3000 -> 500 (driver reload) -> 1500 mJ: increments 2000 + 1000 = 3 J
    reset = _counters(
        [
            (0, "energy_mj", 0, 1000.0),
            (0, "energy_mj", s, 3000.0),
            (0, "energy_mj", 2 * s, 500.0),
            (0, "energy_mj", 3 * s, 1500.0),
        ]
    )
    assert c.energy(reset)["energy_j"].to_list() == [3.0]
    # power 100, 200, 300 W at 0, 0.5, 2 s: 150 W x 0.5 s + 250 W x 1.5 s = 450 J
    power = _counters(
        [(1, "power_w", 0, 100.0), (1, "power_w", s // 2, 200.0), (1, "power_w", 2 * s, 300.0)]
    )
    out = c.energy(power)
    assert out["energy_j"].to_list() == [pytest.approx(450.0)]
    assert out["energy_source"].to_list() == ["power"]
    single = _counters([(2, "power_w", 0, 100.0)])
    assert c.energy(single)["energy_source"].to_list() == ["none"]


def test_energy_helpers() -> None:
    assert c.energy_per_step_j(1200.0, 4) == 300.0
    assert c.energy_per_sample_j(1200.0, 4, 32) == 300.0 / 32
    assert c.energy_from_power_j(250.0, 2 * 10**9) == 500.0
    with pytest.raises(ValueError, match="steps"):
        c.energy_per_step_j(1.0, 0)
    with pytest.raises(ValueError, match="samples_per_step"):
        c.energy_per_sample_j(1.0, 1, 0)


@pytest.mark.parametrize(
    ("sm", "dram", "pipes", "expected"),
    [
        (0.9, 0.3, [0.7, 0.0, 0.05, 0.02], "compute-bound"),
        (0.8, 0.3, [0.0, 0.0, 0.5, 0.0], "compute-bound"),  # both thresholds inclusive
        (0.79, 0.3, [0.7], "mixed"),  # pipes high but SM active under 0.8
        (0.85, 0.85, [0.1, 0.0, 0.15, 0.03], "memory-bound"),
        (0.4, 0.6, [0.49], "memory-bound"),
        (0.2, 0.1, [0.05], "under-utilized"),
        (0.2, None, [], "under-utilized"),
        (0.6, 0.4, [0.3], "mixed"),
        (None, 0.9, [0.1], "unknown"),
    ],
)
def test_classify_bound(
    sm: float | None, dram: float | None, pipes: list[float | None], expected: str
) -> None:
    assert c.classify_bound(sm, dram, pipes) == expected


def test_busy_flags_precedence() -> None:
    s = 10**9
    w = c.wide(
        _counters(
            [
                (0, "gpu_util_pct", 0, 0.0),  # util 0 wins over SM active 0.5: idle
                (0, "sm_active_ratio", 0, 0.5),
                (0, "sm_active_ratio", s, 0.3),  # no util: SM active decides: busy
                (0, "throttle_reasons_bitmask", 2 * s, 1.0),  # only bits: idle bit set
                (0, "throttle_reasons_bitmask", 3 * s, 4.0),  # only bits: no idle bit: busy
            ]
        )
    )
    assert c.busy_flags(w).sort("ts_ns")["busy"].to_list() == [False, True, False, True]


def test_memory_use_on_real_scrapes() -> None:
    for name in (
        "v1.35__kops__tests__TestObservability_AcceleratorMetrics_ViaDCGM__output__block7.prom",
        "v1.35__ericsson-ccd__accelerator_metrics__block0.prom",
    ):
        path = shared_trace(f"dcgm/exporter/{name}")
        raw = path.read_text()

        def value(metric: str, text: str = raw) -> float:
            m = re.search(rf"^{metric}\{{.*\}} (\S+)$", text, re.M)
            assert m is not None
            return float(m.group(1))

        used = value("DCGM_FI_DEV_FB_USED")
        total = used + value("DCGM_FI_DEV_FB_FREE") + value("DCGM_FI_DEV_FB_RESERVED")
        mem = c.memory_use(dcgm.parse(path).counters).row(0, named=True)
        assert mem["fb_total_mib"] == total
        assert mem["fb_used_pct_max"] == pytest.approx(100.0 * used / total)
    # L4: 22,563 free + 0 used + 470 reserved = 23,033 MiB, the card's 24 GB less the ECC
    # and firmware share nvidia-smi also reports (23,034 MiB).


# ---------------------------------------------------------------------------------------------
# Combining with a trace


def test_window_for_trace_and_align() -> None:
    t0 = _truth("compute_bound")["start_unix_s"] * 10**9
    ranks = (
        RankInfo(0, "r0", span_start_ns=t0 + 3 * 10**9, span_end_ns=t0 + 7 * 10**9),
        RankInfo(1, "r1", span_start_ns=t0 + 4 * 10**9, span_end_ns=t0 + 8 * 10**9),
    )
    meta = TraceMeta(source="kineto", paths=("t",), clock="epoch", ranks=ranks)
    window = c.window_for_trace(meta)
    assert window == (t0 + 3 * 10**9, t0 + 8 * 10**9)
    relative = TraceMeta(source="kineto", paths=("t",), clock="relative", ranks=ranks)
    assert c.window_for_trace(relative) is None
    samples = _sample("compute_bound")
    inside, reason = c.align(samples.counters, *window, counters_clock=samples.meta.clock)
    assert reason == "" and inside is not None
    # samples at t0 + 3..8 s: 6 sample times; the JSON holds one point per field and time
    raw = json.loads((SAMPLES / "dcgm" / "compute_bound.query_range.json").read_text())
    expected = sum(
        1
        for series in raw["data"]["result"]
        for ts, _ in series["values"]
        if 3 <= ts - t0 / 1e9 <= 8
    )
    assert inside.height == expected
    dmon = _sample("compute_bound", "dmon.txt")
    none, why = c.align(dmon.counters, *window, counters_clock=dmon.meta.clock)
    assert none is None and "dmon" in why
    outside, why2 = c.align(samples.counters, 0, 10, counters_clock="epoch")
    assert outside is None and "no DCGM sample" in why2


# ---------------------------------------------------------------------------------------------
# The report section


def _report_of(*sections: Section) -> Report:
    """A minimal report holding ``sections``, for drawing their charts."""
    return Report("t", [], Table([], []), None, [], [], list(sections))


def test_section_table_and_chart(tmp_path: Path) -> None:
    truth = _truth("imbalanced_8gpu")
    ctx = AnalysisContext(_sample("imbalanced_8gpu", "dmon.txt"))
    built = section.build(ctx, True)
    assert built is not None and built.key == "counters"
    chart = next(b for b in built.blocks if isinstance(b, Chart))
    assert chart.stem == "dcgm_counters" and chart.formats == ("svg",)
    assert chart.spec["facet"]["row"]["field"] == "metric"  # a Vega-Lite spec, not a file
    assert list(tmp_path.iterdir()) == []  # computing the section writes nothing
    built = write_charts(_report_of(built), tmp_path).sections[0]
    table = next(b for b in built.blocks if isinstance(b, Table))
    assert len(table.rows) == truth["gpu_count"]
    cols = list(table.columns)
    row5 = next(r for r in table.rows if r[cols.index("GPU")] == 5)
    g5 = truth["gpus"][5]
    assert row5[cols.index("SM active mean")] == f"{g5['metrics']['sm_active_ratio']['mean']:.2f}"
    assert row5[cols.index("energy J")] == f"{g5['energy_j_from_counter']:.0f}"
    assert row5[cols.index("bound")] == g5["bound"]
    assert "host" not in cols and "model" not in cols  # dmon names neither: columns left out
    assert "NVLink TX GB/s" in cols
    image = next(b for b in built.blocks if isinstance(b, Image))
    assert image.path == f"{tmp_path.name}/dcgm_counters.svg"  # relative to the report file
    svg = tmp_path.parent / image.path
    assert svg.is_file() and svg.read_text().startswith("<svg")
    points = section.chart_points(ctx.tables.counters)
    assert set(points["gpu"].to_list()) == {f"GPU {i}" for i in range(8)}
    # 10 charted metrics per GPU; 7 of them are profiling fields, N/A in the first samples
    n, na = truth["samples"], truth["profiling_na_samples"]
    assert points.height == 8 * (10 * n - 7 * na)
    nvlink = points.filter(pl.col("metric") == "NVLink TX (GB/s)")["value"]
    assert nvlink.max() == pytest.approx(5.2)  # 5.0e9 B/s + 2 x 1e8 jitter, shown in GB/s


def test_section_without_chart_and_without_counters(tmp_path: Path) -> None:
    path = shared_trace("dcgm/exporter/v1.35__ericsson-ccd__accelerator_metrics__block0.prom")
    built = section.build(AnalysisContext(dcgm.parse(path)), True)
    assert built is not None
    assert not any(isinstance(b, Chart) for b in built.blocks)  # one scrape: no time series
    assert list(tmp_path.iterdir()) == []
    table = next(b for b in built.blocks if isinstance(b, Table))
    cols = list(table.columns)
    assert table.rows[0][cols.index("model")] == "Tesla T4"
    assert table.rows[0][cols.index("bound")] == "unknown"  # no SM active in this scrape
    assert "SM active mean" not in cols
    texts = [" ".join(str(p) for p in b.parts) for b in built.blocks if isinstance(b, Paragraph)]
    assert any("Not collected: SM active (1002)" in t for t in texts)
    assert any("a single scrape" in t for t in texts)
    empty = TraceTables(meta=TraceMeta(source="kineto", paths=("x",)))
    assert section.build(AnalysisContext(empty), True) is None
