"""Golden reports: each bundled sample runs through the whole pipeline and must produce
exactly the Markdown in tests/golden/. After an intended change, rerun with
``python -m pytest tests/test_golden.py --update-goldens`` and review the diff in the commit.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import SAMPLES
from gpu_trace_analyzer.cli import main

GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "synthetic_train": ["synthetic_train.json.gz"],
    "synthetic_2rank": ["synthetic_2rank"],
    "cpu_train": ["cpu_train.pt.trace.json.gz"],
    "nsys_sample": ["nsys_sample.sqlite"],
    "dcgm_compute_bound": ["dcgm/compute_bound.dmon.txt"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_report(
    name: str, tmp_path: Path, update_goldens: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = [SAMPLES / rel for rel in CASES[name]]
    for path in inputs:
        if not path.exists():
            pytest.fail(f"sample {path} is missing: regenerate it with its script")
    monkeypatch.chdir(tmp_path)  # no pyproject.toml config from the checkout applies
    out = tmp_path / f"{name}.md"
    # Relative paths keep the report independent of where the checkout lives.
    rel_inputs = [os.path.relpath(p, tmp_path) for p in inputs]
    code = main([*rel_inputs, "-o", str(out)])
    assert code == 0
    text = out.read_text(encoding="utf-8")
    golden = GOLDEN / f"{name}.md"
    if update_goldens:
        golden.write_text(text, encoding="utf-8")
        pytest.skip(f"rewrote {golden.name}")
    assert golden.exists(), f"no golden for {name}: run with --update-goldens"
    assert text == golden.read_text(encoding="utf-8")
