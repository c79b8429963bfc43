"""Format sniffing on the real files of ../shared/traces and on crafted edge cases.

The expected kind of each shared file was decided by reading the file (its first lines and
the README describing where it comes from), independently of the sniffer.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import polars as pl
import pytest
from conftest import needs_shared, shared_trace
from gpu_trace_analyzer.parsers import registry
from gpu_trace_analyzer.parsers.detect import KINDS, UNKNOWN, classify_dir, describe, sniff
from gpu_trace_analyzer.parsers.errors import UnreadableInputError, UnsupportedFormatError

REAL_FILES = (
    ("hta/amd_trace/mi250_minitoy_train_ROCm6_2_kineto.json.gz", "kineto"),
    ("hta/call_stack/backward_thread.json", "kineto"),  # plain JSON, no gzip
    ("hta/cpu_only/rank-34.Jul_15_10_52_41.1074.pt.trace.json.gz", "kineto"),
    ("hta/trace_file_list/inference_rank_1.json.gz", "kineto"),  # traceEvents is the 1st key
    ("tb_plugin/test__gpu_metrics_input.json", "kineto"),  # 2021 computeProperties
    ("tracelens/b200__eager_trace.json.gz", "kineto"),
    ("nsys/mock.sqlite", "nsys-sqlite"),
    ("nsys/h100_2gpu_1s.sqlite", "nsys-sqlite"),
    ("dcgm/dmon/dmon_nvlink_pcie_gpu0_c5.txt", "dcgm-dmon"),  # code fence + command first
    ("dcgm/exporter/v1.36__vks__accelerator_metrics__block3.prom", "dcgm-prometheus"),
    # No HELP/TYPE lines; the first line is the curl command.
    ("dcgm/exporter/v1.35__ericsson-ccd__accelerator_metrics__block0.prom", "dcgm-prometheus"),
    ("dcgm/exporter/v1.35__upcloud__ai-service-metrics__block3.json", "dcgm-promjson"),
    ("dcgm/exporter/v1.35__rafay__ai_service_metrics__block3.json", "dcgm-promjson"),
)

NOT_SUPPORTED = (
    ("hta/execution_trace/benchmark_simple_add_et.json.gz", "Chakra execution trace"),
    ("hta/memory_analysis/memory_timeline.raw.gz", "PyTorch memory timeline"),
    ("dcgm/dmon/dmon_list_fields.txt", "dcgmi dmon field listing"),
    ("nsys/nsys_2022.4_schema_3.0.0.sql", "text starting with 'CREATE TABLE"),
)


@needs_shared
@pytest.mark.parametrize(("rel", "kind"), REAL_FILES)
def test_real_files(rel: str, kind: str) -> None:
    assert sniff(shared_trace(rel)) == kind


@needs_shared
@pytest.mark.parametrize(("rel", "words"), NOT_SUPPORTED)
def test_real_files_that_are_not_supported(rel: str, words: str) -> None:
    path = shared_trace(rel)
    with pytest.raises(UnsupportedFormatError) as info:
        sniff(path)
    message = str(info.value)
    assert words in message
    assert str(path) in message
    assert "\n" not in message


def test_never_from_the_extension_alone(tmp_path: Path) -> None:
    # A Kineto trace with a misleading name, and text with a trace-like name.
    trace = tmp_path / "metrics.prom"
    trace.write_text('{"schemaVersion": 1, "traceEvents": []}')
    assert sniff(trace) == "kineto"
    fake = tmp_path / "trace.json.gz"
    fake.write_text('DCGM_FI_DEV_GPU_UTIL{gpu="0"} 12\n')
    assert sniff(fake) == "dcgm-prometheus"


def test_gzip_head_is_decompressed(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(gzip.compress(b'{"deviceProperties": [], "traceEvents": []}'))
    assert sniff(path) == "kineto"


def test_kineto_with_a_long_header(tmp_path: Path) -> None:
    # distributedInfo of a large job can push traceEvents far beyond the sniffed head.
    ranks = ", ".join(str(i) for i in range(40_000))
    path = tmp_path / "big.json"
    path.write_text('{"schemaVersion": 1, "distributedInfo": {"ranks": [' + ranks + "]}}")
    assert sniff(path) == "kineto"


def test_kineto_after_a_huge_first_key(tmp_path: Path) -> None:
    # TraceLens traces start with a free-form "metadata" object (pip lists, environment).
    filler = ", ".join(f'"pkg{i}==1.0"' for i in range(20_000))
    path = tmp_path / "t.json"
    path.write_text('{"metadata": {"pip": [' + filler + ']}, "traceEvents": []}')
    assert path.stat().st_size > 64 * 1024
    assert sniff(path) == "kineto"


def test_nsys_rep_is_binary_with_its_suffix(tmp_path: Path) -> None:
    binary = bytes(range(256)) * 4
    rep = tmp_path / "report1.nsys-rep"
    rep.write_bytes(binary)
    assert sniff(rep) == "nsys-rep"
    other = tmp_path / "report1.bin"
    other.write_bytes(binary)
    with pytest.raises(UnsupportedFormatError, match="binary data"):
        sniff(other)
    text = tmp_path / "report2.nsys-rep"
    text.write_text("not a report\n")
    with pytest.raises(UnsupportedFormatError):
        sniff(text)


def test_dcgm_csv(tmp_path: Path) -> None:
    path = tmp_path / "dcgm.csv"
    path.write_text("timestamp,gpu,DCGM_FI_PROF_SM_ACTIVE\n2024-01-01T00:00:00,0,0.5\n")
    assert sniff(path) == "dcgm-csv"
    plain = tmp_path / "other.csv"
    plain.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(UnsupportedFormatError):
        sniff(plain)


def test_empty_and_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    with pytest.raises(UnsupportedFormatError, match="empty file"):
        sniff(empty)
    with pytest.raises(UnreadableInputError):
        sniff(tmp_path / "missing")
    corrupt = tmp_path / "bad.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"garbage!" * 8)
    with pytest.raises(UnreadableInputError, match="corrupt gzip"):
        sniff(corrupt)


def test_describe() -> None:
    assert describe(b"") == "empty file"
    assert describe(b"  \n") == "only whitespace"
    assert describe(b"[1, 2]") == "a JSON array"
    assert describe(b'{"foo": 1, "bar": 2}') == "a JSON object without traceEvents (keys: foo)"
    assert describe(b"SQLite format 3\x00rest") == "an SQLite database"


@needs_shared
def test_directory_of_ranks() -> None:
    path = shared_trace("hta/trace_filter")
    assert sniff(path) == "kineto-dir"
    assert classify_dir(path) == {
        "kineto": [path / "sampled_rank-0.json.gz", path / "sampled_rank-1.json.gz"]
    }


@needs_shared
def test_mixed_directory(tmp_path: Path) -> None:
    trace = shared_trace("hta/trace_compare/base/base.json.gz")
    prom = shared_trace("dcgm/exporter/v1.36__vks__accelerator_metrics__block3.prom")
    shutil.copy(trace, tmp_path / "rank0.json.gz")
    shutil.copy(prom, tmp_path / "gpu.prom")
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / ".hidden").write_text("{}")
    assert sniff(tmp_path) == "mixed"
    assert classify_dir(tmp_path) == {
        "kineto": [tmp_path / "rank0.json.gz"],
        "dcgm-prometheus": [tmp_path / "gpu.prom"],
        UNKNOWN: [tmp_path / "notes.txt"],
    }


def test_parquet_directory(tmp_path: Path) -> None:
    frame = pl.DataFrame({"start_ns": [1, 2], "dur_ns": [3, 4]})
    frame.write_parquet(tmp_path / "kernels.parquet")
    frame.write_parquet(tmp_path / "ops.parquet")
    assert sniff(tmp_path) == "parquet-dir"
    with pytest.raises(UnsupportedFormatError, match="single Parquet file"):
        sniff(tmp_path / "kernels.parquet")


def test_parquet_export_with_its_meta_json(tmp_path: Path) -> None:
    # The Parquet export writes meta.json beside the tables: it is not a Kineto trace, even
    # though the trace's versions inside it mention "schemaVersion".
    pl.DataFrame({"start_ns": [1]}).write_parquet(tmp_path / "kernels.parquet")
    (tmp_path / "meta.json").write_text(
        '{"format_version": 1, "source": "kineto", "devices": [], '
        '"versions": {"schemaVersion": "1"}, "ranks": [{"rank": 0}]}'
    )
    assert sniff(tmp_path) == "parquet-dir"
    assert classify_dir(tmp_path)[UNKNOWN] == [tmp_path / "meta.json"]


def test_directory_with_nothing_readable(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(UnsupportedFormatError, match="no trace or metrics file"):
        sniff(tmp_path)


def test_every_format_has_a_parser_or_a_reason() -> None:
    """The registry is what `sniff` and `load` use: each readable kind resolves to a parse
    function of a path; each recognized-but-unread one says why in a sentence."""
    for fmt in registry.FORMATS:
        assert (fmt.parser is None) != (fmt.unsupported == ""), fmt.kind
        if fmt.parser is not None:
            assert fmt.kind in KINDS
            assert callable(registry.parser_for(fmt.kind))
        else:
            assert fmt.kind not in KINDS
            with pytest.raises(UnsupportedFormatError, match="no parser"):
                registry.parser_for(fmt.kind)
    assert len({f.kind for f in registry.FORMATS}) == len(registry.FORMATS)


ROCPROF_V1 = (
    '"Index","KernelName","gpu-id","queue-id","queue-index","pid","tid","grd","wgr","lds",'
    '"scr","arch_vgpr","accum_vgpr","sgpr","wave_size","sig","obj","DispatchNs","BeginNs",'
    '"EndNs","CompleteNs"\n'
    '0,"Cijk_Alik_Bljk_HHS_BH_MT128x128x32 [clone .kd]",2,0,0,4242,4242,262144,256,0,0,'
    "128,0,96,64,0x0,0x7f,1000,2000,5000,5100\n"
)
ROCPROF_V3 = (
    '"Kind","Agent_Id","Queue_Id","Kernel_Id","Kernel_Name","Correlation_Id",'
    '"Start_Timestamp","End_Timestamp"\n'
    '"KERNEL_DISPATCH",1,1,7,"void at::native::vectorized_elementwise_kernel",3,100,200\n'
)


@pytest.mark.parametrize("text", [ROCPROF_V1, ROCPROF_V3], ids=["v1-results", "v3-kernel-trace"])
def test_rocprof_csv_is_named_not_taken_for_dcgm(tmp_path: Path, text: str) -> None:
    """rocprof's results.csv has a ``gpu-id`` column, which the DCGM CSV sniffer (a "gpu"
    word in the header) used to accept; the DCGM parser then rejected it with a message
    about DCGM fields. Now the file is named for what it is, with what to do instead."""
    path = tmp_path / "results.csv"
    path.write_text(text)
    with pytest.raises(UnsupportedFormatError) as info:
        sniff(path)
    assert "a rocprof kernel trace (CSV)" in str(info.value)
    assert "torch.profiler" in str(info.value)
    assert info.value.exit_code == 4
    assert classify_dir(tmp_path) == {UNKNOWN: [path]}


def test_rocprof_csv_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpu_trace_analyzer.cli import main

    path = tmp_path / "results.csv"
    path.write_text(ROCPROF_V1)
    assert main([str(path), "-o", str(tmp_path / "r.md")]) == 4
    err = capsys.readouterr().err
    assert "unsupported content: a rocprof kernel trace (CSV)" in err
    assert "DCGM" not in err
