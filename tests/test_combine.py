"""A trace plus DCGM metrics: one report, counters cut to the profiled window when possible."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SAMPLES
from gpu_trace_analyzer.cli import main
from gpu_trace_analyzer.trace import load

TRACE = SAMPLES / "synthetic_train.json.gz"


def _query_range(path: Path, times_s: list[float], values: list[float]) -> Path:
    """A Prometheus query_range answer with one SM-active series at the given times."""
    body = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {
                        "__name__": "DCGM_FI_PROF_SM_ACTIVE",
                        "gpu": "0",
                        "modelName": "NVIDIA H100 80GB HBM3",
                        "Hostname": "node-a",
                    },
                    "values": [[t, f"{v:.3f}"] for t, v in zip(times_s, values, strict=True)],
                }
            ],
        },
    }
    path.write_text(json.dumps(body))
    return path


def test_samples_inside_the_trace_window_are_kept(tmp_path: Path) -> None:
    truth = json.loads((SAMPLES / "synthetic_train.truth.json").read_text())
    start_s = truth["gpu"]["start_ns"] / 1e9
    end_s = truth["gpu"]["end_ns"] / 1e9
    # Two samples inside the 5.4 ms GPU span, one a second before, one a second after.
    times = [start_s - 1.0, start_s + 0.001, start_s + 0.003, end_s + 1.0]
    dump = _query_range(tmp_path / "sm.json", times, [0.1, 0.8, 0.6, 0.2])
    tables = load([TRACE, dump])
    values = sorted(tables.counters["value"].to_list())
    assert values == [0.6, 0.8]
    assert not any("not matched" in w for w in tables.meta.warnings)
    out = tmp_path / "r.md"
    assert main([str(TRACE), str(dump), "-o", str(out)]) == 0
    text = out.read_text()
    assert "## GPU counters (DCGM)" in text
    assert text.index("## Findings") < text.index("## GPU counters (DCGM)")


def test_samples_without_absolute_time_are_kept_whole_with_a_warning(tmp_path: Path) -> None:
    dmon = SAMPLES / "dcgm" / "compute_bound.dmon.txt"
    alone = load([dmon])
    tables = load([TRACE, dmon])
    assert tables.counters.height == alone.counters.height > 0
    assert any("not matched to the trace" in w for w in tables.meta.warnings)
    assert tables.kernels.height == load([TRACE]).kernels.height
