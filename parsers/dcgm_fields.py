"""The one mapping table from DCGM fields to our counter metric names.

Each row says how a DCGM field is spelled in every place it shows up: its numeric id, its
``DCGM_FI_*`` name (what dcgm-exporter 2.x+ prints), the newer alias DCGM 4.x introduced, the
short name ``dcgmi dmon`` prints as a column header, the long tag ``dcgmi dmon -l`` lists, and
the lowercase metric name of the 1.x dcgm-exporter (``dcgm_gpu_utilization``). ``metric`` is
our name for it, with its unit in the name; ``scale`` converts the DCGM value to that unit.

Facts come from DCGM 4.6's field table (``traces/dcgm/dcgm_fields.tsv``: id, name, alias,
short name, tag), the ``dcgmi dmon -l`` listing of DCGM 3.1.8 (short names and tags of the
fields the TSV marks MISSING: 150, 155, 156, and of 200, 201, 242-245), and NVIDIA's 1.x
exporter script (gpu-monitoring-tools ``exporters/prometheus-dcgm/dcgm-exporter``), which
named each metric ``dcgm_`` + the dmon tag and the profiling ones ``dcgm_fi_prof_*``.

Units: profiling fields 1001-1008 and 1013-1016 are ratios 0..1; 1009-1012 bytes per second;
GPU/memory-copy utilization is percent; power W; energy mJ since boot (a counter); FB_* MiB;
violation times microseconds (the exporter's help text: "Throttling duration ... (in us)").
Fields we do not analyze (ECC, retired pages, vGPU licence, ...) are left out on purpose: the
parser reports them as unused instead of guessing units for them. So is 449
(NVLINK_BANDWIDTH_TOTAL, in the TSV): DCGM documents no unit for it; 1011/1012 give NVLink
traffic in bytes/s instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class DcgmField:
    """One DCGM field and its spellings in dmon, dcgm-exporter and our counters table."""

    field_id: int
    name: str  # DCGM_FI_* as in dcgm_fields.h and dcgm-exporter 2.x+
    alias: str  # DCGM 4.x alias (equal to name when there is none)
    short: str  # dcgmi dmon column header
    tag: str  # dcgmi dmon -l long name (DCGM 3.1.8 spelling)
    metric: str  # our counter metric name, unit in the name
    scale: float = 1.0  # multiply the DCGM value by this to get `metric`'s unit
    legacy: str = ""  # dcgm-exporter 1.x metric name, when it exported the field


def _prof_legacy(name: str) -> str:
    """The 1.x exporter's spelling of a profiling field: ``dcgm_fi_prof_...``."""
    return "dcgm_" + name.lower().removeprefix("dcgm_")


_F = DcgmField

#: Every field we read, by id. Ratios stay 0..1; percent stays 0..100.
FIELDS: Final[tuple[DcgmField, ...]] = (
    _F(100, "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_SM_CLOCK", "SMCLK", "sm_clock",
       "sm_clock_mhz", legacy="dcgm_sm_clock"),
    _F(101, "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "MMCLK", "memory_clock",
       "mem_clock_mhz", legacy="dcgm_memory_clock"),
    _F(112, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "DVCCTR",
       "current_clock_throttle_reasons", "throttle_reasons_bitmask"),
    _F(140, "DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_MEMORY_TEMP_CELSIUS", "MMTMP", "memory_temp",
       "mem_temp_c", legacy="dcgm_memory_temp"),
    _F(150, "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_GPU_TEMP_CELSIUS", "TMPTR", "gpu_temp",
       "gpu_temp_c", legacy="dcgm_gpu_temp"),
    _F(155, "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_BOARD_POWER_WATTS", "POWER", "power_usage",
       "power_w", legacy="dcgm_power_usage"),
    _F(156, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
       "TOTEC", "total_energy_consumption", "energy_mj",
       legacy="dcgm_total_energy_consumption"),
    _F(190, "DCGM_FI_DEV_PSTATE", "DCGM_FI_DEV_GPU_PSTATE", "PSTAT", "pstate", "pstate_index"),
    _F(200, "DCGM_FI_DEV_PCIE_TX_THROUGHPUT", "DCGM_FI_DEV_PCIE_TX_THROUGHPUT", "TXTPT",
       "pcie_tx_throughput", "pcie_tx_nvml_bytes_per_s", 1024.0,
       legacy="dcgm_pcie_tx_throughput"),
    _F(201, "DCGM_FI_DEV_PCIE_RX_THROUGHPUT", "DCGM_FI_DEV_PCIE_RX_THROUGHPUT", "RXTPT",
       "pcie_rx_throughput", "pcie_rx_nvml_bytes_per_s", 1024.0,
       legacy="dcgm_pcie_rx_throughput"),
    _F(202, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "DCGM_FI_DEV_PCIE_REPLAY_TOTAL", "RPCTR",
       "pcie_replay_counter", "pcie_replay_count", legacy="dcgm_pcie_replay_counter"),
    _F(203, "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_UTIL_RATIO", "GPUTL", "gpu_utilization",
       "gpu_util_pct", legacy="dcgm_gpu_utilization"),
    _F(204, "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "MCUTL",
       "mem_copy_utilization", "mem_copy_util_pct", legacy="dcgm_mem_copy_utilization"),
    _F(206, "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_ENC_UTIL", "ECUTL", "enc_utilization",
       "enc_util_pct", legacy="dcgm_enc_utilization"),
    _F(207, "DCGM_FI_DEV_DEC_UTIL", "DCGM_FI_DEV_DEC_UTIL", "DCUTL", "dec_utilization",
       "dec_util_pct", legacy="dcgm_dec_utilization"),
    _F(230, "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_XID_ERROR", "XIDER", "xid_errors",
       "xid_last_code", legacy="dcgm_xid_errors"),
    _F(240, "DCGM_FI_DEV_POWER_VIOLATION", "DCGM_FI_DEV_POWER_VIOLATION", "PVIOL",
       "power_violation", "power_violation_us", legacy="dcgm_power_violation"),
    _F(241, "DCGM_FI_DEV_THERMAL_VIOLATION", "DCGM_FI_DEV_THERMAL_VIOLATION", "TVIOL",
       "thermal_violation", "thermal_violation_us", legacy="dcgm_thermal_violation"),
    _F(242, "DCGM_FI_DEV_SYNC_BOOST_VIOLATION", "DCGM_FI_DEV_SYNC_BOOST_VIOLATION", "SBVIO",
       "sync_boost_violation", "sync_boost_violation_us", legacy="dcgm_sync_boost_violation"),
    _F(243, "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION", "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION", "BLVIO",
       "board_limit_violation", "board_limit_violation_us",
       legacy="dcgm_board_limit_violation"),
    _F(244, "DCGM_FI_DEV_LOW_UTIL_VIOLATION", "DCGM_FI_DEV_LOW_UTIL_VIOLATION", "LUVIO",
       "low_util_violation", "low_util_violation_us", legacy="dcgm_low_util_violation"),
    _F(245, "DCGM_FI_DEV_RELIABILITY_VIOLATION", "DCGM_FI_DEV_RELIABILITY_VIOLATION", "RVIOL",
       "reliability_violation", "reliability_violation_us",
       legacy="dcgm_reliability_violation"),
    _F(250, "DCGM_FI_DEV_FB_TOTAL", "DCGM_FI_DEV_FB_TOTAL", "FBTTL", "fb_total",
       "fb_total_mib", legacy="dcgm_fb_total"),
    _F(251, "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_FREE", "FBFRE", "fb_free", "fb_free_mib",
       legacy="dcgm_fb_free"),
    _F(252, "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_USED", "FBUSD", "fb_used", "fb_used_mib",
       legacy="dcgm_fb_used"),
    _F(253, "DCGM_FI_DEV_FB_RESERVED", "DCGM_FI_DEV_FB_RESERVED", "FBRSV", "fb_resv",
       "fb_reserved_mib"),
    _F(254, "DCGM_FI_DEV_FB_USED_PERCENT", "DCGM_FI_DEV_FB_USED_RATIO", "FBUSP", "fb_USDP",
       "fb_used_ratio"),
    _F(1001, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO", "GRACT",
       "gr_engine_active", "gr_engine_active_ratio",
       legacy=_prof_legacy("DCGM_FI_PROF_GR_ENGINE_ACTIVE")),
    _F(1002, "DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_SM_UTIL_RATIO", "SMACT", "sm_active",
       "sm_active_ratio", legacy=_prof_legacy("DCGM_FI_PROF_SM_ACTIVE")),
    _F(1003, "DCGM_FI_PROF_SM_OCCUPANCY", "DCGM_FI_PROF_SM_OCCUPANCY_RATIO", "SMOCC",
       "sm_occupancy", "sm_occupancy_ratio", legacy=_prof_legacy("DCGM_FI_PROF_SM_OCCUPANCY")),
    _F(1004, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_PROF_TENSOR_UTIL_RATIO", "TENSO",
       "tensor_active", "tensor_active_ratio",
       legacy=_prof_legacy("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE")),
    _F(1005, "DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_PROF_DRAM_UTIL_RATIO", "DRAMA", "dram_active",
       "dram_active_ratio", legacy=_prof_legacy("DCGM_FI_PROF_DRAM_ACTIVE")),
    _F(1006, "DCGM_FI_PROF_PIPE_FP64_ACTIVE", "DCGM_FI_PROF_FP64_UTIL_RATIO", "FP64A",
       "fp64_active", "fp64_active_ratio"),
    _F(1007, "DCGM_FI_PROF_PIPE_FP32_ACTIVE", "DCGM_FI_PROF_FP32_UTIL_RATIO", "FP32A",
       "fp32_active", "fp32_active_ratio"),
    _F(1008, "DCGM_FI_PROF_PIPE_FP16_ACTIVE", "DCGM_FI_PROF_FP16_UTIL_RATIO", "FP16A",
       "fp16_active", "fp16_active_ratio"),
    _F(1009, "DCGM_FI_PROF_PCIE_TX_BYTES", "DCGM_FI_PROF_PCIE_TX_BYTES", "PCITX",
       "pcie_tx_bytes", "pcie_tx_bytes_per_s",
       legacy=_prof_legacy("DCGM_FI_PROF_PCIE_TX_BYTES")),
    _F(1010, "DCGM_FI_PROF_PCIE_RX_BYTES", "DCGM_FI_PROF_PCIE_RX_BYTES", "PCIRX",
       "pcie_rx_bytes", "pcie_rx_bytes_per_s",
       legacy=_prof_legacy("DCGM_FI_PROF_PCIE_RX_BYTES")),
    _F(1011, "DCGM_FI_PROF_NVLINK_TX_BYTES", "DCGM_FI_PROF_NVLINK_TX_BYTES", "NVLTX",
       "nvlink_tx_bytes", "nvlink_tx_bytes_per_s"),
    _F(1012, "DCGM_FI_PROF_NVLINK_RX_BYTES", "DCGM_FI_PROF_NVLINK_RX_BYTES", "NVLRX",
       "nvlink_rx_bytes", "nvlink_rx_bytes_per_s"),
    _F(1013, "DCGM_FI_PROF_PIPE_TENSOR_IMMA_ACTIVE", "DCGM_FI_PROF_IMMA_UTIL_RATIO", "TIMMA",
       "tensor_imma_active", "tensor_imma_active_ratio"),
    _F(1014, "DCGM_FI_PROF_PIPE_TENSOR_HMMA_ACTIVE", "DCGM_FI_PROF_HMMA_UTIL_RATIO", "THMMA",
       "tensor_hmma_active", "tensor_hmma_active_ratio"),
    _F(1015, "DCGM_FI_PROF_PIPE_TENSOR_DFMA_ACTIVE", "DCGM_FI_PROF_DFMA_UTIL_RATIO", "TDFMA",
       "tensor_dfma_active", "tensor_dfma_active_ratio"),
    _F(1016, "DCGM_FI_PROF_PIPE_INT_ACTIVE", "DCGM_FI_PROF_INT_UTIL_RATIO", "INTAC",
       "integer_active", "int_active_ratio"),
)  # fmt: skip

#: Field id -> field.
BY_ID: Final[Mapping[int, DcgmField]] = {f.field_id: f for f in FIELDS}

#: dmon column header -> field.
BY_SHORT: Final[Mapping[str, DcgmField]] = {f.short: f for f in FIELDS}


def _names() -> dict[str, DcgmField]:
    """Every Prometheus spelling (name, 4.x alias, 1.x legacy) -> field."""
    table: dict[str, DcgmField] = {}
    for f in FIELDS:
        for spelling in (f.name, f.alias, f.legacy):
            if spelling:
                table[spelling] = f
    return table


#: Prometheus metric name (any era) -> field.
BY_PROM_NAME: Final[Mapping[str, DcgmField]] = _names()

#: Our metric name -> field.
BY_METRIC: Final[Mapping[str, DcgmField]] = {f.metric: f for f in FIELDS}

#: Names that DCGM 4.6 uses as an alias of an integer-percent field but a later DCGM gives to a
#: new ratio field (DCGM_FI_DEV_GPU_UTIL_RATIO: alias of 203 in 4.6, a 0..1 double later). A
#: series under such a name whose values never exceed 1 is read as a ratio and scaled to %.
AMBIGUOUS_RATIO_ALIASES: Final[frozenset[str]] = frozenset({"DCGM_FI_DEV_GPU_UTIL_RATIO"})

#: Clock throttle (clocks event) reason bits of field 112 (nvml ``nvmlClocksThrottleReason*``).
THROTTLE_REASONS: Final[Mapping[int, str]] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
