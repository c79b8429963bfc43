"""`analyze scaling RUN...`: one job at several GPU counts, where the efficiency went.

    analyze scaling RUN RUN... [--gpus RUN=N ...] [--weak] [-o FILE] [--format md|json]
                    [--charts-dir DIR] [--device NAME] [--config FILE]

Each run (a trace file, a per-rank directory, a Parquet export) is loaded once through
`analyzer.api.load` and compared with `analyzer.scaling.scale`. Charts (speedup against GPU
count with ideal drawn, per-rank step-time distribution) are written beside ``-o`` as
``<stem>_files/`` (or into ``--charts-dir``) and linked from the Markdown. Exit codes: those
of `analyze` (2 for a bad command line: fewer than two runs, two runs at one GPU count, a
malformed ``--gpus``; 3 unreadable input; 4 unsupported format; 5 empty trace).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from gpu_trace_analyzer.errors import BadConfigError


def parser(base: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``analyze scaling`` command line (``base``: the CLI's raising parser class)."""
    p = base(
        prog="analyze scaling",
        description="Compare runs of one job at different GPU counts: speedup and parallel "
        "efficiency against the smallest run, communication against GPU count, per-rank and "
        "per-node symmetry with a status per row, step-time distributions, cold starts, "
        "failed ranks.",
    )
    p.add_argument("runs", nargs="+", type=Path, help="runs: trace files, directories, exports")
    p.add_argument(
        "--gpus",
        action="append",
        default=[],
        metavar="RUN=N",
        help="GPU count of a run (its label, the file or directory name, or its path as "
        "given) when the trace does not record its world size; repeatable",
    )
    p.add_argument(
        "--weak",
        action="store_true",
        help="weak scaling (same work per GPU); default: strong scaling (same global work)",
    )
    p.add_argument("-o", "--output", type=Path, help="write the report to this file")
    p.add_argument(
        "--format", choices=("md", "json"), help="output format (default: md; json for -o *.json)"
    )
    p.add_argument("--charts-dir", type=Path, help="write charts here (default: next to -o)")
    p.add_argument("--device", help="device name to assume for every run")
    p.add_argument("--config", type=Path, help="TOML file with rule thresholds")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run_scaling(argv: Sequence[str], base_parser: type[argparse.ArgumentParser]) -> int:
    """Load every run, compare, write the report (and charts); return the exit code."""
    from gpu_trace_analyzer.cli import charts_dir
    from gpu_trace_analyzer.outputs import check_output_dir, check_output_file, write_text_atomic
    from gpu_trace_analyzer.report import scaling_charts, scaling_json, scaling_markdown
    from gpu_trace_analyzer.scaling import load_runs, parse_gpus, scale

    args = parser(base_parser).parse_args(argv)
    if len(args.runs) < 2:
        raise BadConfigError("analyze scaling needs at least two runs (one per GPU count)")
    gpus = parse_gpus(args.gpus)
    fmt = args.format or (
        "json" if args.output is not None and args.output.suffix == ".json" else "md"
    )
    charts = charts_dir(args) if fmt == "md" else None
    if args.output is not None:
        check_output_file("-o", args.output, args.runs)
    if charts is not None:
        label = "--charts-dir" if args.charts_dir is not None else "chart folder"
        check_output_dir(label, charts, args.runs)
    runs = load_runs(args.runs, gpus, device=args.device, config=args.config)
    report = scale(runs, "weak" if args.weak else "strong")
    if fmt == "json":
        text = scaling_json.render(report)
    else:
        images: list[tuple[str, str]] = []
        if charts is not None:
            try:
                images = scaling_charts.write(report, charts)
            except OSError as exc:
                raise BadConfigError(
                    f"cannot write the charts: {exc.strerror or exc}", charts
                ) from exc
        text = scaling_markdown.render(report, images)
    if args.output is not None:
        write_text_atomic(Path(args.output), text)
    else:
        from gpu_trace_analyzer.cli import _write_stdout

        _write_stdout(text)
    return 0
