"""memory-headroom on a Hugging Face pipeline run on a single GPU (review #11).

owlv2 on MI300X: the allocator's `[memory]` events say ``Device Id`` 0 (the process's view
under a visible-devices mask) while every kernel runs on device 2. Ground truth: the raw
JSON's kernel ``device`` args and `[memory]` ``Device Id`` args.
"""

from __future__ import annotations

import gzip
import json

from conftest import shared_trace
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.rules.memory_headroom import MemoryHeadroom, MemoryHeadroomConfig
from gpu_trace_analyzer.trace import load

_OWLV2 = "tracelens/mi300__google_owlv2-large-patch14-ensemble__1016001.json.gz"


def test_memory_device_follows_the_kernels_and_advice_speaks_pipelines() -> None:
    path = shared_trace(_OWLV2)
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    kernel_devices = {e["args"]["device"] for e in events if e.get("cat") == "kernel"}
    memory_devices = {
        e["args"]["Device Id"]
        for e in events
        if e.get("name") == "[memory]" and e["args"].get("Device Id", -1) >= 0
    }
    assert kernel_devices == {2} and memory_devices == {0}  # the mismatch under test
    ctx = AnalysisContext(load([path]))
    (finding,) = MemoryHeadroom().check(ctx, MemoryHeadroomConfig())
    assert finding.evidence["device"] == 2
    assert "rank 0 device 2" in finding.summary
    text = finding.recommendation
    assert "batch_size" in text and "pipeline" in text
    assert "gpu_memory_utilization" not in text and "mem-fraction-static" not in text
