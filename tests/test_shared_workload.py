"""Every shared trace: the kernel taxonomy leaves at most 5% of non-communication kernel time
uncategorized, and no inference trace's report (every section, every finding) speaks of
training (training steps, gradients, micro-batches, activation checkpointing, optimizers)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from conftest import TRACES, needs_shared
from gpu_trace_analyzer.build import build_report
from gpu_trace_analyzer.config import load_config
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.engine import run_rules
from gpu_trace_analyzer.metrics.workload import workload_profile
from gpu_trace_analyzer.parsers.categories import families
from gpu_trace_analyzer.report import markdown
from gpu_trace_analyzer.sections.registry import registry as section_registry
from gpu_trace_analyzer.trace import load

#: Largest uncategorized share (%) of non-communication kernel time.
MAX_UNCATEGORIZED_PCT = 5.0

TRAINING_VOCABULARY = re.compile(
    r"training step|gradient|micro-batch|microbatch|activation checkpointing|optimizer",
    re.IGNORECASE,
)

#: Rules whose wording belongs to issue 11 (another branch): their inference wording is
#: checked once that branch is merged. The integrator empties this set at merge time.
WORDED_ELSEWHERE: frozenset[str] = frozenset({"dataloader-stall"})

#: Not GPU kernel timelines: MTIA firmware stages (``pe_exe``, ``merge``, ``remote``) have no
#: kernel names to categorize.
NOT_GPU_KERNELS = frozenset({"hta/mtia_inference_trace/mtia_inference_rank_0.json.gz"})


def _traces() -> list[str]:
    if not TRACES.is_dir():
        return []
    found = []
    for path in sorted(TRACES.rglob("*")):
        name = path.name
        if not path.is_file() or "expected" in name or "execution_details" in name:
            continue
        if "gpu_metrics" in name or path.suffix not in (".gz", ".json", ".sqlite"):
            continue
        if "dcgm" in path.parts or name.endswith("_et.json.gz"):
            continue
        found.append(str(path.relative_to(TRACES)))
    return found


def _uncategorized(kernels: pl.DataFrame) -> tuple[float, list[tuple[str, float]]]:
    """Uncategorized share (%) of non-communication kernel time and the worst offenders."""
    k = kernels.select(pl.col("name").cast(pl.String), "dur_ns").with_columns(
        families(kernels["name"])
    )
    k = k.filter(pl.col("family") != "comm")
    total = int(k["dur_ns"].sum() or 0)
    if total == 0:
        return 0.0, []
    other = (
        k.filter(pl.col("family") == "other")
        .group_by("name")
        .agg(pl.col("dur_ns").sum())
        .sort("dur_ns", descending=True)
    )
    worst = [(n[:120], round(100.0 * d / total, 2)) for n, d in other.head(8).iter_rows()]
    return 100.0 * int(other["dur_ns"].sum() or 0) / total, worst


@needs_shared
@pytest.mark.parametrize("rel", _traces())
def test_shared_trace_taxonomy_and_wording(rel: str) -> None:
    try:
        tables = load([TRACES / rel])
    except Exception as exc:  # formats the analyzer declines (execution traces...)
        pytest.skip(f"not loadable: {type(exc).__name__}")
    if tables.kernels.height and rel not in NOT_GPU_KERNELS:
        share, worst = _uncategorized(tables.kernels)
        assert share <= MAX_UNCATEGORIZED_PCT, f"{share:.1f}% uncategorized; worst: {worst}"
    ctx = AnalysisContext(tables)
    if not workload_profile(tables).is_inference:
        return
    cfg = load_config(Path.cwd(), None)
    result = run_rules(ctx, cfg)
    findings = [f for f in result.findings if f.rule_id not in WORDED_ELSEWHERE]
    report = build_report(ctx, findings, result.skipped, False, section_registry())
    text = markdown.render(report)
    hits = sorted({m.group(0).lower() for m in TRAINING_VOCABULARY.finditer(text)})
    assert hits == [], f"inference report of {rel} says {hits}"
