"""Device database: every device name in ../shared/traces matched, datasheet figures, options.

Device names and SM counts are read here straight from each trace's ``deviceProperties``
(not through our parser). Expected peaks are the datasheet figures, written out by hand with
the sparse-to-dense halving where the datasheet prints sparse numbers.
"""

from __future__ import annotations

import gzip
import re
import sqlite3
import tomllib
from functools import cache
from importlib import resources
from typing import Any

import msgspec
import pytest
from conftest import TRACES, needs_shared
from gpu_trace_analyzer.context import AnalysisOptions
from gpu_trace_analyzer.devices import (
    DTYPES,
    PIPES,
    database,
    match,
    resolve,
    resolve_missing,
    user_spec,
)
from gpu_trace_analyzer.parsers.errors import BadConfigError
from gpu_trace_analyzer.parsers.schema import DeviceInfo, TraceMeta

TERA = 1e12
GIGA = 1e9

#: Every device name the shared traces carry -> the database key it must match (None: unknown).
EXPECTED_KEYS: dict[str, str | None] = {
    "NVIDIA H100 80GB HBM3": "H100-SXM",
    "NVIDIA B200": "B200",
    "NVIDIA A100-PG509-200": "A100-SXM4-40GB",
    "Tesla V100-SXM2-32GB": "V100-SXM2",
    "Tesla V100-DGXS-32GB": "V100-SXM2",
    "Quadro GP100": "Quadro-GP100",
    "AMD Instinct MI300X": "MI300X",
    "AMD Instinct MI300X VF": "MI300X",
    "AMD Instinct MI210": "MI210",
    "AMD Radeon Graphics": None,  # ROCm's generic name (an MI250 GCD here): not guessed
    "ARTEMIS": None,  # Meta MTIA: not a GPU in the database
    "": None,  # a vLLM trace with empty names
}


#: Device names in the shared Nsight exports (TARGET_INFO_GPU) and DCGM dumps (modelName).
OTHER_SOURCE_KEYS: dict[str, str | None] = {
    "NVIDIA GeForce RTX 3080": None,  # nsys mock.sqlite: a consumer part not in the database
    "GRID A100-10C": None,  # a 10 GB vGPU slice of an A100: not a whole device
    "NVIDIA L4": "L4",
    "Tesla T4": "T4",
    "NVIDIA L40S": "L40S",
}


class _Doc(msgspec.Struct):
    deviceProperties: list[dict[str, Any]] | None = None


@cache
def _trace_devices() -> dict[str, set[int | None]]:
    """Device name -> the numSms values the traces report for it, over every shared trace."""
    found: dict[str, set[int | None]] = {}
    for path in sorted(TRACES.rglob("*.json*")):
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        try:
            doc = msgspec.json.decode(raw, type=_Doc)
        except msgspec.DecodeError:
            continue  # DCGM JSON, execution traces: not Kineto documents
        for d in doc.deviceProperties or []:
            found.setdefault(str(d.get("name", "")), set()).add(d.get("numSms"))
    return found


@needs_shared
def test_every_trace_device_name_is_expected() -> None:
    assert set(_trace_devices()) == set(EXPECTED_KEYS)


@needs_shared
@pytest.mark.parametrize("name", sorted(EXPECTED_KEYS))
def test_trace_device_names_match(name: str) -> None:
    spec = match(name)
    assert (spec.key if spec else None) == EXPECTED_KEYS[name]


def _other_source_names() -> set[str]:
    names: set[str] = set()
    for db in sorted((TRACES / "nsys").glob("*.sqlite")):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            if "TARGET_INFO_GPU" in tables:
                names.update(r[0] for r in con.execute("SELECT name FROM TARGET_INFO_GPU"))
    for dump in sorted((TRACES / "dcgm").rglob("*")):
        if dump.is_file():
            text = dump.read_text(encoding="utf-8", errors="replace")
            names.update(re.findall(r'modelName"?[=:]"([^"]+)"', text))
    return names


@needs_shared
def test_nsys_and_dcgm_device_names_match() -> None:
    assert _other_source_names() == set(OTHER_SOURCE_KEYS)
    for name, key in OTHER_SOURCE_KEYS.items():
        assert _key(name) == key, name


@needs_shared
def test_known_devices_agree_with_the_traces_sm_counts() -> None:
    for name, sms in _trace_devices().items():
        spec = match(name)
        if spec is not None:
            assert sms == {spec.sm_count}, name


def test_issue_device_list_is_in_the_database() -> None:
    keys = {s.key for s in database()}
    required = {
        "V100-SXM2", "V100-PCIe", "A100-SXM4-40GB", "A100-SXM4-80GB", "A100-PCIe-40GB",
        "A100-PCIe-80GB", "H100-SXM", "H100-PCIe", "H200-SXM", "B200", "L4", "L40S", "T4", "A10",
        "RTX-3090", "RTX-4090", "MI210", "MI250X", "MI300X",
    }  # fmt: skip
    assert required <= keys


def test_every_row_cites_a_source_and_says_whether_confirmed() -> None:
    text = (
        resources.files(__package__ or "gpu_trace_analyzer")
        .joinpath("devices.toml")
        .read_text(encoding="utf-8")
    )
    rows = tomllib.loads(text)["device"]
    assert len(rows) == len(database())
    for row in rows:
        assert len(row["source"]) > 20, row["key"]
        assert isinstance(row["confirmed"], bool), row["key"]
        assert set(row.get("vector_tflops", {})) | set(row.get("tensor_tflops", {})) <= set(DTYPES)
    unconfirmed = {r["key"] for r in rows if not r["confirmed"]}
    assert unconfirmed == {"A10", "RTX-3090"}  # the rows FORMATS.md starred and we could not check


def test_dense_peaks_not_sparse() -> None:
    h100 = match("NVIDIA H100 80GB HBM3")
    assert h100 is not None
    # The H100 SXM datasheet prints 1,979 TFLOPS BF16 and 3,958 FP8 *with sparsity*.
    assert h100.peak("tensor", "bf16") == pytest.approx(1979 / 2 * TERA, rel=1e-3)
    assert h100.peak("tensor", "fp8") == pytest.approx(3958 / 2 * TERA, rel=1e-3)
    assert h100.peak("vector", "fp32") == 67 * TERA
    assert h100.mem_bw_bytes_per_s == 3350 * GIGA
    # Ridge of the BF16 tensor roof: 989.4e12 / 3.35e12 FLOP/byte.
    assert h100.ridge_flop_per_byte("tensor", "bf16") == pytest.approx(295.343, rel=1e-5)
    b200 = match("NVIDIA B200")
    assert b200 is not None
    assert b200.peak("tensor", "bf16") == 4500 / 2 * TERA  # HGX table: 4.5 PFLOPS sparse


def test_volta_has_no_bf16_tensor_pipe() -> None:
    v100 = match("Tesla V100-SXM2-32GB")
    assert v100 is not None
    assert v100.peak("tensor", "bf16") is None
    assert v100.peak("tensor", "fp16") == 125 * TERA


def test_mi250x_figures_are_per_gcd() -> None:
    spec = match("AMD Instinct MI250X")
    assert spec is not None
    # Package: 220 CUs, 95.7 TFLOPS FP64 matrix, 3.2768 TB/s; one GCD is half.
    assert spec.sm_count == 110
    assert spec.peak("tensor", "fp64") == pytest.approx(95.7 / 2 * TERA)
    assert spec.mem_bw_bytes_per_s == pytest.approx(1638.4 * GIGA)


def test_specific_names_win_over_general_ones() -> None:
    assert _key("NVIDIA H100 PCIe") == "H100-PCIe"
    assert _key("NVIDIA A100-SXM4-80GB") == "A100-SXM4-80GB"
    assert _key("NVIDIA A100 80GB PCIe") == "A100-PCIe-80GB"
    assert _key("NVIDIA L40S") == "L40S"
    assert _key("NVIDIA L4") == "L4"
    assert _key("NVIDIA A10") == "A10"
    assert _key("NVIDIA A10G") is None  # AWS part with other tensor rates
    assert _key("NVIDIA GeForce RTX 3090 Ti") is None
    assert _key("AMD Instinct MI250") == "MI250"
    assert _key("Tesla T4") == "T4"
    assert _key("NVIDIA H200") == "H200-SXM"
    assert _key("NVIDIA H200 NVL") is None  # lower-clocked PCIe part
    assert _key("h100-sxm") == "H100-SXM"  # a row's own key, any case (--device)


def _key(name: str) -> str | None:
    spec = match(name)
    return spec.key if spec else None


def _meta(*devices: DeviceInfo) -> TraceMeta:
    return TraceMeta(source="kineto", paths=("x.json",), devices=devices)


def test_resolve_uses_the_trace_sm_count_and_scales_compute() -> None:
    # An MI250X GCD reporting 104 CUs (the MI250's count): compute scales by 104/110.
    info = DeviceInfo(rank=0, device=0, name="AMD Instinct MI250X", num_sms=104)
    resolved = resolve(_meta(info), AnalysisOptions())[(0, 0)]
    assert resolved.spec is not None
    assert resolved.spec.sm_count == 104
    assert resolved.spec.peak("vector", "fp64") == pytest.approx(47.9 / 2 * 104 / 110 * TERA)
    assert resolved.spec.mem_bw_bytes_per_s == pytest.approx(1638.4 * GIGA)
    assert any("scaled by 0.945" in n for n in resolved.notes)


def test_unknown_device_is_named_with_a_reason() -> None:
    info = DeviceInfo(rank=1, device=3, name="AMD Radeon Graphics", num_sms=104,
                      total_mem_bytes=64 * 2**30, compute_major=9, compute_minor=0)  # fmt: skip
    resolved = resolve(_meta(info), AnalysisOptions())[(1, 3)]
    assert resolved.spec is None
    assert "'AMD Radeon Graphics' is not in the device database" in resolved.reason
    assert "104 SMs/CUs" in resolved.reason and "--device" in resolved.reason
    missing = resolve_missing(0, 5, AnalysisOptions())
    assert missing.spec is None and "no deviceProperties entry" in missing.reason


def test_device_override_and_user_peaks() -> None:
    info = DeviceInfo(rank=0, device=0, name="", num_sms=None)
    forced = resolve(_meta(info), AnalysisOptions(device_override="MI300X"))[(0, 0)]
    assert forced.spec is not None and forced.spec.key == "MI300X"
    assert forced.origin == "--device"
    user = resolve(_meta(info), AnalysisOptions(peak_tflops=100.0, mem_bw_gbs=2000.0))[(0, 0)]
    assert user.spec is not None
    assert user.spec.peak("tensor", "bf16") == user.spec.peak("vector", "fp64") == 100 * TERA
    assert user.spec.mem_bw_bytes_per_s == 2000 * GIGA
    # A known device keeps its datasheet figures even when --peak-tflops is given.
    h100 = DeviceInfo(rank=0, device=0, name="NVIDIA H100 80GB HBM3", num_sms=132)
    kept = resolve(_meta(h100), AnalysisOptions(peak_tflops=1.0, mem_bw_gbs=1.0))[(0, 0)]
    assert kept.spec is not None and kept.spec.key == "H100-SXM"


def test_bad_options_raise_bad_config() -> None:
    info = DeviceInfo(rank=0, device=0, name="NVIDIA B200")
    with pytest.raises(BadConfigError, match="matches no known device"):
        resolve(_meta(info), AnalysisOptions(device_override="TPU v5"))
    with pytest.raises(BadConfigError, match="together"):
        resolve(_meta(info), AnalysisOptions(peak_tflops=10.0))
    with pytest.raises(BadConfigError, match="positive"):
        user_spec(0.0, 100.0)


def test_unconfirmed_rows_are_flagged_on_resolve() -> None:
    info = DeviceInfo(rank=0, device=0, name="NVIDIA GeForce RTX 3090", num_sms=82)
    resolved = resolve(_meta(info), AnalysisOptions())[(0, 0)]
    assert resolved.spec is not None and not resolved.spec.confirmed
    assert any(n.startswith("unconfirmed peak") for n in resolved.notes)


def test_roofs_are_ordered_tensor_first() -> None:
    spec = match("AMD Instinct MI300X")
    assert spec is not None
    roofs = spec.roofs()
    assert roofs[0] == ("tensor", "fp64")
    assert {p for p, _ in roofs} <= set(PIPES)
    assert roofs.index(("vector", "fp64")) > roofs.index(("tensor", "int8"))
