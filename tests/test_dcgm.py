"""DCGM parser: every real dump in ../shared/traces/dcgm, the field table, bad input.

Expected values are read from the raw files inside each test with plain regular expressions
(never from the parser's own output), and the field table is checked against DCGM's own
listings (`dcgmi dmon -l` output and DCGM 4.6's field table).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import re
from pathlib import Path

import polars as pl
import pytest
from conftest import SAMPLES, shared_trace
from gpu_trace_analyzer.cli import main
from gpu_trace_analyzer.parsers import dcgm, dcgm_fields
from gpu_trace_analyzer.parsers.errors import (
    AnalyzerError,
    EmptyTraceError,
    UnreadableInputError,
    UnsupportedFormatError,
)
from hypothesis import given, settings
from hypothesis import strategies as st

EXPORTER = "dcgm/exporter"
PROM_FILES = (
    "v1.35__ericsson-ccd__accelerator_metrics__block0.prom",
    "v1.35__kops__tests__TestObservability_AcceleratorMetrics_ViaDCGM__output__block7.prom",
    "v1.35__rafay__accelator_metrics__block9.prom",
    "v1.36__vks__accelerator_metrics__block3.prom",
)
JSON_FILES = (
    "v1.35__rafay__ai_service_metrics__block3.json",
    "v1.35__upcloud__ai-service-metrics__block3.json",
)
#: Hand-written from DCGM's documentation (independent of parsers/dcgm_fields.py): exporter
#: name -> our metric name, for the fields the real scrapes carry.
KNOWN = {
    "DCGM_FI_DEV_SM_CLOCK": "sm_clock_mhz",
    "DCGM_FI_DEV_MEM_CLOCK": "mem_clock_mhz",
    "DCGM_FI_DEV_MEMORY_TEMP": "mem_temp_c",
    "DCGM_FI_DEV_GPU_TEMP": "gpu_temp_c",
    "DCGM_FI_DEV_POWER_USAGE": "power_w",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "energy_mj",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "pcie_replay_count",
    "DCGM_FI_DEV_GPU_UTIL": "gpu_util_pct",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "mem_copy_util_pct",
    "DCGM_FI_DEV_ENC_UTIL": "enc_util_pct",
    "DCGM_FI_DEV_DEC_UTIL": "dec_util_pct",
    "DCGM_FI_DEV_FB_FREE": "fb_free_mib",
    "DCGM_FI_DEV_FB_USED": "fb_used_mib",
    "DCGM_FI_DEV_FB_RESERVED": "fb_reserved_mib",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "gr_engine_active_ratio",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "tensor_active_ratio",
    "DCGM_FI_PROF_DRAM_ACTIVE": "dram_active_ratio",
    "DCGM_FI_PROF_PCIE_TX_BYTES": "pcie_tx_bytes_per_s",
    "DCGM_FI_PROF_PCIE_RX_BYTES": "pcie_rx_bytes_per_s",
}
SAMPLE_LINE = re.compile(r"^(?P<name>DCGM_\w+)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)\s*$")


def _labels(text: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


def _value(df: pl.DataFrame, metric: str, gpu: int = 0) -> list[float | None]:
    rows = df.filter((pl.col("metric") == metric) & (pl.col("gpu") == gpu)).sort("ts_ns")
    return rows["value"].to_list()


# ---------------------------------------------------------------------------------------------
# dcgm-exporter text


@pytest.mark.parametrize("name", PROM_FILES)
def test_exporter_scrape_values_hosts_models(name: str) -> None:
    path = shared_trace(f"{EXPORTER}/{name}")
    raw = path.read_text()
    samples = [m for line in raw.splitlines() if (m := SAMPLE_LINE.match(line.strip()))]
    known = [m for m in samples if m["name"] in KNOWN]
    labels = [_labels(m["labels"]) for m in samples]
    tables = dcgm.parse(path)
    df = tables.counters
    # one counters row per known sample line; every value equals the raw text's
    assert df.height == len(known)
    for m in known:
        gpu = int(_labels(m["labels"])["gpu"])
        assert _value(df, KNOWN[m["name"]], gpu) == [pytest.approx(float(m["value"]))]
    # GPU count, model names, host names straight from the labels
    assert sorted(set(df["gpu"].to_list())) == sorted({int(lb["gpu"]) for lb in labels})
    models = {lb["modelName"] for lb in labels}
    assert {d.name for d in tables.meta.devices} == models
    assert set(df["model_name"].cast(pl.String).to_list()) == models
    hosts = {lb["Hostname"] for lb in labels}
    assert {r.hostname for r in tables.meta.ranks} == hosts
    assert tables.meta.flags["hostnames"] == ", ".join(sorted(hosts))
    assert tables.meta.flags["driver_version"] == labels[0]["DCGM_FI_DRIVER_VERSION"]
    # a scrape has no timestamps: one sample per series at 0 on a relative clock
    assert tables.meta.clock == "relative"
    assert set(df["ts_ns"].to_list()) == {0}
    assert any("no timestamp" in w for w in tables.meta.warnings)


def test_exporter_curl_line_is_dropped_with_a_warning() -> None:
    path = shared_trace(f"{EXPORTER}/{PROM_FILES[0]}")
    first = path.read_text().splitlines()[0]
    assert first.startswith("curl ")  # the file as published: a pasted curl command first
    tables = dcgm.parse(path)
    warning = next(w for w in tables.meta.warnings if "not Prometheus text" in w)
    assert warning.startswith("1 line(s)") and "curl -s" in warning
    # the usable part is all there: GPU util 91 on the Tesla T4 per the raw text
    util = re.search(r"^DCGM_FI_DEV_GPU_UTIL\{.*\} (\d+)$", path.read_text(), re.M)
    assert util is not None
    assert _value(tables.counters, "gpu_util_pct") == [float(util.group(1))]


def test_exporter_unused_fields_are_reported() -> None:
    path = shared_trace(f"{EXPORTER}/{PROM_FILES[1]}")
    names = {m.group(1) for m in re.finditer(r"^(DCGM_\w+)\{", path.read_text(), re.M)}
    unused = sorted(names - set(KNOWN))
    tables = dcgm.parse(path)
    warning = next(w for w in tables.meta.warnings if "not analyzed" in w)
    assert warning.startswith(f"{len(unused)} DCGM metric(s)")
    for name in unused:
        assert name in warning


# ---------------------------------------------------------------------------------------------
# Prometheus HTTP API JSON


@pytest.mark.parametrize("name", JSON_FILES)
def test_prometheus_vector_json(name: str) -> None:
    path = shared_trace(f"{EXPORTER}/{name}")
    answer = json.loads(path.read_text())
    assert answer["data"]["resultType"] == "vector"
    tables = dcgm.parse(path)
    df = tables.counters
    assert df.height == len(answer["data"]["result"])
    assert tables.meta.clock == "epoch"
    assert df["source"].cast(pl.String).to_list() == ["prometheus-json"] * df.height
    for series in answer["data"]["result"]:
        labels, (ts_s, value) = series["metric"], series["value"]
        row = df.filter(pl.col("metric") == KNOWN[labels["__name__"]]).row(0, named=True)
        assert row["value"] == float(value)
        assert row["ts_ns"] == round(ts_s * 1000) * 1_000_000  # ms precision, exact
        assert row["gpu"] == int(labels["gpu"])
        assert row["host"] == labels["Hostname"]
        assert row["model_name"] == labels["modelName"]
        assert row["gpu_uuid"] == labels["UUID"]
        if "pod" in labels:
            assert tables.meta.flags["pods"] == labels["pod"]


def test_prometheus_matrix_nan_inf_and_errors() -> None:
    answer = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {
                        "__name__": "DCGM_FI_DEV_POWER_USAGE",
                        "gpu": "1",
                        "hostname": "h1",
                        "modelName": "NVIDIA A100-SXM4-80GB",
                    },
                    "values": [
                        [1700000000, "250.5"],
                        [1700000015.5, "NaN"],
                        [1700000030, "+Inf"],
                        [1700000045, "251"],
                    ],
                },
                {"metric": {"gpu": "1"}, "values": [[1700000000, "1"]]},
            ],
        },
    }
    tables = dcgm.parse_text(json.dumps(answer), "prom-json", "q.json")
    df = tables.counters.sort("ts_ns")
    assert df["value"].to_list() == [250.5, None, None, 251.0]
    assert df["ts_ns"].to_list() == [
        1_700_000_000 * 10**9,
        1_700_000_015_500_000_000,
        1_700_000_030 * 10**9,
        1_700_000_045 * 10**9,
    ]
    assert df["host"].cast(pl.String).unique().to_list() == ["h1"]
    assert any("without __name__" in w for w in tables.meta.warnings)
    with pytest.raises(UnsupportedFormatError, match="bad_data"):
        dcgm.parse_text(
            '{"status":"error","errorType":"bad_data","error":"bad_data: x"}', "prom-json", "e.json"
        )
    with pytest.raises(UnsupportedFormatError, match="scalar"):
        dcgm.parse_text(
            '{"status":"success","data":{"resultType":"scalar","result":[]}}', "prom-json", "s.json"
        )


# ---------------------------------------------------------------------------------------------
# dcgmi dmon


def _gpu_rows(text: str) -> list[list[str]]:
    return [ln.split() for ln in text.splitlines() if re.match(r"^GPU \d+\s", ln)]


def _is_number(token: str) -> bool:
    return re.fullmatch(r"\d+(\.\d+)?", token) is not None


def test_dmon_txt_values_and_na() -> None:
    path = shared_trace("dcgm/dmon/dmon_nvlink_pcie_gpu0_c5.txt")
    raw = path.read_text()
    header = next(ln.split()[1:] for ln in raw.splitlines() if ln.startswith("#Entity"))
    assert header == ["NVLTX", "NVLRX", "PCITX", "PCIRX"]
    rows = _gpu_rows(raw)
    tables = dcgm.parse(path)
    df = tables.counters
    cells = [tok for row in rows for tok in row[2:]]
    assert df.height == len(cells)
    assert df["value"].null_count() == cells.count("N/A")  # N/A is null, never zero
    assert (df["value"] == 0).sum() == cells.count("0")
    names = [
        "nvlink_tx_bytes_per_s",
        "nvlink_rx_bytes_per_s",
        "pcie_tx_bytes_per_s",
        "pcie_rx_bytes_per_s",
    ]
    for col, metric in enumerate(names):
        expected = [None if r[2 + col] == "N/A" else float(r[2 + col]) for r in rows]
        assert _value(df, metric) == expected
    # -c 5 in the command, default -d: rows 1 s apart on a relative clock
    assert tables.meta.clock == "relative"
    assert sorted(set(df["ts_ns"].to_list())) == [k * 10**9 for k in range(len(rows))]
    assert any("1000 ms apart" in w for w in tables.meta.warnings)
    assert tables.meta.devices == ()  # dmon names no model


def _fences(text: str) -> list[str]:
    """Markdown code fences; an unclosed last fence runs to the end of the file."""
    fences: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                fences.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        fences.append("\n".join(current))
    return fences


def test_dmon_markdown_runs() -> None:
    path = shared_trace("dcgm/dmon/dmon_nvlink_pcie_8gpu_section.md")
    fences = _fences(path.read_text())
    assert len(fences) == 3
    # fence 1: three runs (`-i 0,1,2,3 -e 1011,1012`, `-e 1011,1012`, and a run pasted without
    # its header, read through the command's `-e 1011,1012,1009,1010`)
    first = fences[0]
    rows = _gpu_rows(first)
    tables = dcgm.parse_text(first, "dmon", "fence1")
    df = tables.counters
    cells = [tok for row in rows for tok in row[2:]]
    assert df.height == len(cells)
    assert df["value"].null_count() == sum(not _is_number(c) for c in cells)
    assert sorted(set(df["gpu"].to_list())) == sorted({int(r[1]) for r in rows})
    assert tables.meta.flags["dmon_runs"] == str(first.count("dcgmi dmon"))
    # run 1 starts at 0 with GPU 3's first row
    first_row = next(r for r in rows if r[1] == "3")
    assert _value(df, "nvlink_tx_bytes_per_s", 3)[0] == float(first_row[2])
    # run 2 starts after run 1's samples: GPU 3 printed one row per second in run 1
    run1 = first.split("> dcgmi dmon  -e 1011,1012\n")[0]
    run1_slots = sum(1 for r in _gpu_rows(run1) if r[1] == "3")
    run2_first = next(
        r for r in _gpu_rows(first.split("> dcgmi dmon  -e 1011,1012\n")[1]) if r[1] == "7"
    )
    gpu7 = df.filter((pl.col("gpu") == 7) & (pl.col("metric") == "nvlink_tx_bytes_per_s"))
    assert gpu7.sort("ts_ns").row(0, named=True)["ts_ns"] == run1_slots * 10**9
    assert gpu7.sort("ts_ns")["value"][0] == float(run2_first[2])
    # run 3 has no header: PCIe columns from -e; an annotated cell reads as null
    annotated = [c for c in cells if "(" in c]
    assert len(annotated) == 4
    assert any("were not numbers" in w and w.startswith("4 ") for w in tables.meta.warnings)
    pcie = df.filter(pl.col("metric") == "pcie_rx_bytes_per_s")
    run3_rows = [r for r in rows if len(r) == 6]
    assert pcie.height == len(run3_rows)
    # fence 2 is a command with no output: one clear error
    with pytest.raises(EmptyTraceError, match="no GPU samples"):
        dcgm.parse_text(fences[1], "dmon", "fence2")
    # fence 3: `-g 18`, GPUs 7 and 0, every profiling value N/A at first
    third = dcgm.parse_text(fences[2], "dmon", "fence3").counters
    rows3 = _gpu_rows(fences[2])
    assert sorted(set(third["gpu"].to_list())) == sorted({int(r[1]) for r in rows3})
    assert third["value"].null_count() == sum(r[2:].count("N/A") for r in rows3)
    last7 = [r for r in rows3 if r[1] == "7"][-1]
    assert _value(third, "pcie_rx_bytes_per_s", 7)[-1] == float(last7[5])


def test_dmon_whole_markdown_file_parses_with_warnings() -> None:
    path = shared_trace("dcgm/dmon/dmon_nvlink_pcie_8gpu_section.md")
    tables = dcgm.parse(path)
    gpus = {int(m) for m in re.findall(r"^GPU (\d+)\s", path.read_text(), re.M)}
    assert set(tables.counters["gpu"].to_list()) == gpus
    assert any("not understood" in w for w in tables.meta.warnings)


def test_dmon_list_fields_matches_field_table() -> None:
    path = shared_trace("dcgm/dmon/dmon_list_fields.txt")
    listing: dict[int, tuple[str, str]] = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"(\S+)\s+(\S+)\s+(\d+)\s*", line)
        if m:
            listing[int(m.group(3))] = (m.group(1), m.group(2))
    assert len(listing) > 300
    for f in dcgm_fields.FIELDS:
        long_name, short = listing[f.field_id]
        assert f.short == short, f.field_id
        assert f.tag == long_name, f.field_id
    # the listing itself is not a capture
    with pytest.raises(EmptyTraceError):
        dcgm.parse(path)


def test_field_table_matches_dcgm_4_6_tsv() -> None:
    path = shared_trace("dcgm/dcgm_fields.tsv")
    left_out = set()
    for line in path.read_text().splitlines():
        if line.startswith("MISSING"):  # the TSV names these, with their id last
            _, name, alias, field_id = line.split()
            short = None
        else:
            cols = line.split("\t")
            field_id, name, alias, short = cols[0], cols[1], cols[2], cols[5]
        f = dcgm_fields.BY_ID.get(int(field_id))
        if f is None:
            left_out.add(int(field_id))
            continue
        assert (f.name, f.alias) == (name, alias)
        if short is not None:
            assert f"short={f.short}" == short
    # NVLINK_BANDWIDTH_TOTAL: its unit is undocumented, so it is not mapped (see dcgm_fields)
    assert left_out == {449}


def test_dmon_other_entities_and_repeated_headers() -> None:
    text = (
        "#Entity   SMACT   POWER   \n"
        "ID                W       \n"
        "GPU 1     0.500   100.250 \n"
        "GPU-I 3   0.400   N/A     \n"
        "GPU 1 LINK 2  0.1  2.0    \n"
        "#Entity   SMACT   POWER   \n"
        "ID                W       \n"
        "GPU 1     N/A     101.000 \n"
    )
    tables = dcgm.parse_text(text, "dmon", "x", interval_ms=250)
    df = tables.counters
    assert _value(df, "sm_active_ratio", 1) == [0.5, None]
    assert _value(df, "power_w", 1) == [100.25, 101.0]
    assert sorted(set(df["ts_ns"].to_list())) == [0, 250_000_000]
    assert any("non-GPU entities" in w and w.startswith("2 ") for w in tables.meta.warnings)


# ---------------------------------------------------------------------------------------------
# Prometheus text edge cases


def test_blank_sentinels_and_legacy_names() -> None:
    text = (
        'dcgm_gpu_info{gpu="0",uuid="GPU-1",gpu_type="Tesla V100-SXM2-16GB"} 1\n'
        'dcgm_gpu_utilization{gpu="0",uuid="GPU-1"} 42\n'
        'dcgm_fi_prof_dram_active{gpu="0",uuid="GPU-1"} 0.25\n'
        'dcgm_power_usage{gpu="0",uuid="GPU-1"} 140737488355328.0\n'
        'dcgm_total_energy_consumption{gpu="0",uuid="GPU-1"} 9223372036854775794\n'
        'DCGM_FI_DEV_SM_CLOCK{device="nvidia3"} 9223372036854775807\n'
    )
    tables = dcgm.parse_text(text, "prom", "old.prom")
    df = tables.counters
    assert _value(df, "gpu_util_pct") == [42.0]
    assert _value(df, "dram_active_ratio") == [0.25]
    assert _value(df, "power_w") == [None]  # DCGM_FP64_BLANK
    assert _value(df, "energy_mj") == [None]  # int64 blank (0x7ffffffffffffff2)
    assert _value(df, "sm_clock_mhz", 3) == [None]  # GPU from device="nvidia3"
    assert tables.meta.devices[0].name == "Tesla V100-SXM2-16GB"
    assert set(df["gpu_uuid"].drop_nulls().cast(pl.String).to_list()) == {"GPU-1"}


def test_garbage_lines_are_dropped_and_counted() -> None:
    text = (
        "$ curl localhost:9400/metrics\n"
        "# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).\n"
        "# TYPE DCGM_FI_DEV_GPU_TEMP gauge\n"
        'DCGM_FI_DEV_GPU_TEMP{gpu="0",Hostname="a"} 55\n'
        "<html>502 Bad Gateway</html>\n"
        'DCGM_FI_DEV_GPU_TEMP{gpu="1",Hostname="a"} 57 \n'
        'DCGM_FI_DEV_GPU_TEMP{gpu="2",Hostname="a" 59\n'
    )
    tables = dcgm.parse_text(text, "prom", "g.prom")
    assert sorted(tables.counters["value"].to_list()) == [55.0, 57.0]
    assert any(w.startswith("3 line(s) that are not Prometheus text") for w in tables.meta.warnings)


def test_repeated_scrapes_without_timestamps_and_with() -> None:
    scrape = 'DCGM_FI_DEV_GPU_UTIL{gpu="0",hostname="n"} %d\n'
    two = dcgm.parse_text(scrape % 10 + scrape % 20, "prom", "s.prom")
    assert two.counters.sort("ts_ns")["ts_ns"].to_list() == [0, 30 * 10**9]
    stamped = dcgm.parse_text(
        'DCGM_FI_DEV_GPU_UTIL{gpu="0"} 10 1700000000123\n'
        'DCGM_FI_DEV_GPU_UTIL{gpu="0"} 20 1700000001123\n',
        "prom",
        "t.prom",
    )
    assert stamped.meta.clock == "epoch"
    assert stamped.counters["ts_ns"].to_list() == [
        1_700_000_000_123_000_000,
        1_700_000_001_123_000_000,
    ]


def test_ambiguous_ratio_alias_is_scaled_to_percent() -> None:
    text = 'DCGM_FI_DEV_GPU_UTIL_RATIO{gpu="0"} 0.75\n'
    tables = dcgm.parse_text(text, "prom", "r.prom")
    assert _value(tables.counters, "gpu_util_pct") == [75.0]
    as_pct = dcgm.parse_text('DCGM_FI_DEV_GPU_UTIL_RATIO{gpu="0"} 75\n', "prom", "p.prom")
    assert _value(as_pct.counters, "gpu_util_pct") == [75.0]


# ---------------------------------------------------------------------------------------------
# CSV


def test_csv_wide_and_long() -> None:
    wide = (
        "timestamp,hostname,gpu,DCGM_FI_PROF_SM_ACTIVE,POWER,fb_used_mib\n"
        "2024-05-01T10:00:00Z,n1,0,0.5,300.5,1000\n"
        "2024-05-01T10:00:01Z,n1,0,N/A,301.5,1001\n"
    )
    tables = dcgm.parse_text(wide, "auto", "w.csv")
    df = tables.counters
    assert tables.meta.clock == "epoch"
    assert _value(df, "sm_active_ratio") == [0.5, None]
    assert _value(df, "power_w") == [300.5, 301.5]
    t0 = 1714557600 * 10**9  # 2024-05-01T10:00:00Z
    assert sorted(set(df["ts_ns"].to_list())) == [t0, t0 + 10**9]
    long = "time,gpu,metric,value\n1714557600,GPU 1,1002,0.25\n1714557600.5,GPU 1,GPUTL,80\n"
    df2 = dcgm.parse_text(long, "csv", "l.csv").counters
    assert _value(df2, "sm_active_ratio", 1) == [0.25]
    assert df2.filter(pl.col("metric") == "gpu_util_pct")["ts_ns"].to_list() == [t0 + 500_000_000]
    with pytest.raises(UnsupportedFormatError, match="timestamp"):
        dcgm.parse_text("gpu,POWER\n0,1\n", "csv", "n.csv")


# ---------------------------------------------------------------------------------------------
# Bad input and format detection


def test_bad_input_raises_one_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableInputError) as exc:
        dcgm.parse(empty)
    assert str(exc.value) == f"{empty}: the file is empty"
    header_only = tmp_path / "dmon.txt"
    header_only.write_text("#Entity   SMACT   TENSO\nID\n")
    with pytest.raises(EmptyTraceError) as exc2:
        dcgm.parse(header_only)
    assert "\n" not in str(exc2.value) and str(header_only) in str(exc2.value)
    binary = tmp_path / "x.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UnsupportedFormatError):
        dcgm.parse(binary)
    corrupt = tmp_path / "c.prom.gz"
    corrupt.write_bytes(gzip.compress(b"DCGM_FI_DEV_GPU_UTIL 1\n")[:15])
    with pytest.raises(UnreadableInputError, match="gzip"):
        dcgm.parse(corrupt)
    with pytest.raises(UnreadableInputError):
        dcgm.parse(tmp_path / "missing.prom")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_garbled_input_raises_only_our_errors(blob: bytes) -> None:
    text = blob.decode("utf-8", errors="replace")
    for kind in ("auto", "dmon", "prom", "prom-json", "csv"):
        _parse_or_our_error(text, kind)


def _parse_or_our_error(text: str, kind: str) -> None:
    """Parse, letting only the analyzer's own errors through (anything else fails the test)."""
    with contextlib.suppress(AnalyzerError):
        dcgm.parse_text(text, kind, "fuzz")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(KNOWN)),
            st.integers(0, 7),
            st.floats(0, 1e6, allow_nan=False).map(lambda v: round(v, 6)),
        ),
        min_size=1,
        max_size=20,
        unique_by=lambda t: (t[0], t[1]),
    )
)
def test_exporter_round_trip(rows: list[tuple[str, int, float]]) -> None:
    text = "".join(f'{n}{{gpu="{g}",Hostname="h"}} {v:.6f}\n' for n, g, v in rows)
    df = dcgm.parse_text(text, "prom", "rt.prom").counters
    assert df.height == len(rows)
    for name, gpu, value in rows:
        assert _value(df, KNOWN[name], gpu) == [pytest.approx(value)]


# ---------------------------------------------------------------------------------------------
# The project's synthetic samples: three formats, one set of numbers


@pytest.mark.parametrize("scenario", ["compute_bound", "throttled", "imbalanced_8gpu"])
def test_synthetic_formats_agree_with_truth(scenario: str) -> None:
    base = SAMPLES / "dcgm" / scenario
    truth = json.loads(base.with_name(f"{scenario}.truth.json").read_text())
    frames = {}
    for ext in ("dmon.txt", "query_range.json", "prom.gz"):
        tables = dcgm.parse(base.with_name(f"{scenario}.{ext}"))
        assert tables.meta.flags.get("hostnames", truth["host"]) == truth["host"]
        frames[ext] = (
            tables.counters.drop_nulls("value")
            .group_by("gpu", "metric")
            .agg(pl.len().alias("n"), pl.col("value").mean())
            .with_columns(pl.col("metric").cast(pl.String))
            .sort("gpu", "metric")
        )
    dmon, js, prom = frames.values()
    assert dmon.equals(js) and js.equals(prom)
    for g in truth["gpus"]:
        for metric, stats in g["metrics"].items():
            row = js.filter((pl.col("gpu") == g["gpu"]) & (pl.col("metric") == metric))
            assert row["n"][0] == stats["n"]
            assert math.isclose(row["value"][0], stats["mean"], rel_tol=1e-9, abs_tol=1e-12)
    epoch = dcgm.parse(base.with_name(f"{scenario}.query_range.json"))
    assert epoch.meta.clock == "epoch"
    assert int(epoch.counters["ts_ns"].min()) == truth["start_unix_s"] * 10**9  # type: ignore[arg-type]
    assert {d.name for d in epoch.meta.devices} == {truth["model_name"]}
    assert len(epoch.meta.devices) == truth["gpu_count"]


def test_csv_rows_with_unparseable_dates_are_dropped_counted_and_reported(
    tmp_path: Path,
) -> None:
    text = (
        "timestamp,hostname,gpu,DCGM_FI_PROF_SM_ACTIVE,POWER\n"
        "2024-05-01T10:00:00Z,n1,0,0.5,300.5\n"
        "yesterday at noon,n1,0,0.6,301.5\n"
        "2024-05-01T10:00:01Z,n1,0,0.7,302.5\n"
        "2024-13-45T99:99:99Z,n1,0,0.6,301.5\n"
    )
    tables = dcgm.parse_text(text, "csv", "d.csv")
    t0 = 1714557600 * 10**9
    assert _value(tables.counters, "power_w") == [300.5, 302.5]  # the two good rows only
    assert sorted(set(tables.counters["ts_ns"].to_list())) == [t0, t0 + 10**9]
    note = "2 CSV row(s) with a timestamp that is not a time were dropped (2 kept)"
    assert any(note in w for w in tables.meta.warnings)
    # The count reaches the report's warnings section.
    path = tmp_path / "dcgm.csv"
    path.write_text(text)
    assert main([str(path), "-o", str(tmp_path / "r.md")]) == 0
    report = (tmp_path / "r.md").read_text()
    warnings = report.split("Warnings while reading the input")[1].split("##")[0]
    assert "2 CSV row(s) with a timestamp that is not a time were dropped" in warnings
    # A file where no timestamp is a time stays a one-line error.
    with pytest.raises(
        UnreadableInputError, match=r"CSV timestamps are not times|none of the 2 CSV timestamp"
    ):
        dcgm.parse_text("timestamp,gpu,POWER\nnot a date,0,300\nnoon,0,1\n", "csv", "b.csv")
