"""The header says which span it means (review #11): the trace's span, and the analysis
window every share is of when the two differ.

vLLM decode: CPU events make the trace 19.1 ms long while the GPU ran from its first to its
last event over 10.74 ms (TraceLens total_time 10.743 ms), the window the shares use.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from conftest import shared_trace
from gpu_trace_analyzer.cli import main

_VLLM = "tracelens/inference__vllm_decode_full__graph_execution.json.gz"


def test_header_names_trace_span_and_analysis_window(tmp_path: Path) -> None:
    path = shared_trace(_VLLM)
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    gpu = [e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    window_ms = (max(e["ts"] + e["dur"] for e in gpu) - min(e["ts"] for e in gpu)) / 1e3
    assert round(window_ms, 1) == 10.7
    out = tmp_path / "vllm.md"
    assert main([str(path), "-o", str(out)]) == 0
    header = out.read_text(encoding="utf-8").splitlines()[3]
    assert f"analysis window {window_ms:.1f} ms (first to last GPU event)" in header
    assert header.startswith("trace span 19.1 ms")
