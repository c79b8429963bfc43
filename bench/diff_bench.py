"""Benchmark `analyze diff A B` against the two single reports run in parallel.

Issue 13's target: a diff of two large traces costs at most 1.2x the two single reports
in parallel (the diff loads both sides, so that is its floor). Builds two traces from a
real one with `build_trace.py` (``--copies`` copies each; 11 copies of the default source
are 519 MB; the candidate gets one copy more so that the two differ), then times, each in
its own process (`run.measure`): the diff (Markdown comment), and a shell running the two
single reports at once. Prints wall, CPU and memory of each and the ratio diff / parallel.

    python bench/diff_bench.py --copies 11        # 2 x ~500 MB
    python bench/diff_bench.py --copies 3         # 2 x ~140 MB, quicker
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import DEFAULT_SOURCE, _analyze, build, measure_median


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def main() -> None:
    """Build, measure, print the ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=11)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "analyze-bench")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = build("single", args.out, args.copies, 0, args.source) / "trace.json"
    cand = build("single", args.out, args.copies + 1, 0, args.source) / "trace.json"
    work = args.out
    diff = measure_median(
        "diff", _analyze("diff", str(base), str(cand), "-o", "diff.md"), work, args.repeat
    )
    one = " ".join(shlex.quote(a) for a in _analyze(str(base), "-o", "base.md"))
    two = " ".join(shlex.quote(a) for a in _analyze(str(cand), "-o", "cand.md"))
    both = measure_median(
        "two reports in parallel", ["bash", "-c", f"{one} & {two} & wait"], work, args.repeat
    )
    lines = [
        f"base {_size_mb(base):.0f} MB, candidate {_size_mb(cand):.0f} MB",
        "| run | wall s | CPU s | peak RSS of tree MiB | exit |",
        "|---|---:|---:|---:|---:|",
    ]
    lines.extend(
        f"| {m.label} | {m.wall_s:.1f} | {m.cpu_s:.1f} | {m.tree_rss_mib:.0f} | {m.exit_code} |"
        for m in (diff, both)
    )
    lines.append(f"ratio diff / parallel reports: {diff.wall_s / both.wall_s:.2f}x")
    print("\n".join(lines))
    for m in (diff, both):
        if m.exit_code:
            print(f"{m.label} failed:\n{m.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
