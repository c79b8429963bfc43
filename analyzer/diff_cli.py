"""`analyze diff BASE CANDIDATE`: compare two runs for a pull request, gate CI on it.

    analyze diff BASE CANDIDATE [-o FILE] [--format md|json]
                 [--fail-on-regression PCT [--metric NAME]] [--fail-on warning|critical]

Each side is loaded once through `analyzer.api.load` (a file, a per-rank directory, a
Parquet export) and compared with `analyzer.diff.compare`. Exit codes: 0; 1 when
``--fail-on-regression`` or ``--fail-on`` trips; otherwise those of `analyze`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from gpu_trace_analyzer.errors import BadConfigError
from gpu_trace_analyzer.findings import Severity


def parser(base: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``analyze diff`` command line (``base``: the CLI's raising parser class)."""
    p = base(
        prog="analyze diff",
        description="Compare two runs (base, then candidate) and write a pull-request "
        "comment: verdict with its noise, headline table, what explains the change, findings "
        "that appeared or disappeared.",
    )
    p.add_argument("base", type=Path, help="the base run: trace file, directory or export")
    p.add_argument("candidate", type=Path, help="the candidate run")
    p.add_argument("-o", "--output", type=Path, help="write the comparison to this file")
    p.add_argument(
        "--format", choices=("md", "json"), help="output format (default: md; json for -o *.json)"
    )
    p.add_argument(
        "--fail-on-regression",
        type=float,
        metavar="PCT",
        help="exit 1 when the step time (or --metric) got worse by more than PCT percent "
        "(percentage points for shares) and the change is outside the noise",
    )
    p.add_argument(
        "--metric",
        default="step_time_ns",
        help="metric key that --fail-on-regression checks (default: step_time_ns; the keys "
        "are those of --format json's metrics)",
    )
    p.add_argument(
        "--fail-on",
        choices=("info", "warning", "critical"),
        help="exit 1 when a finding of this severity or worse appeared (or got this severe)",
    )
    p.add_argument("--device", help="device name to assume on both sides")
    p.add_argument("--config", type=Path, help="TOML file with rule thresholds")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    from gpu_trace_analyzer.cli import add_executor_options  # the CLI imports us lazily

    add_executor_options(p)  # a large side parses in chunks on every core, as a report does
    return p


def run_diff(argv: Sequence[str], base_parser: type[argparse.ArgumentParser]) -> int:
    """Load both sides, compare, write the comment; return the exit code."""
    from gpu_trace_analyzer.api import load
    from gpu_trace_analyzer.cli import executor_options
    from gpu_trace_analyzer.diff import compare, new_findings_at, regression
    from gpu_trace_analyzer.outputs import check_output_file, write_text_atomic
    from gpu_trace_analyzer.report import diff_json, diff_markdown

    args = parser(base_parser).parse_args(argv)
    if args.fail_on_regression is not None and args.fail_on_regression < 0:
        raise BadConfigError("--fail-on-regression must be a percentage >= 0")
    inputs = [args.base, args.candidate]
    if args.output is not None:
        check_output_file("-o", args.output, inputs)
    fmt = args.format or (
        "json" if args.output is not None and args.output.suffix == ".json" else "md"
    )
    executor = executor_options(args)
    base = load(args.base, device=args.device, config=args.config, executor=executor)
    cand = load(args.candidate, device=args.device, config=args.config, executor=executor)
    d = compare(base, cand)
    if args.fail_on_regression is not None and d.metric(args.metric) is None:
        keys = ", ".join(m.key for m in d.metrics)
        raise BadConfigError(f"--metric {args.metric!r} is not one of: {keys}")
    text = diff_json.render(d) if fmt == "json" else diff_markdown.render(d)
    if args.output is not None:
        write_text_atomic(Path(args.output), text)
    else:
        from gpu_trace_analyzer.cli import _write_stdout

        _write_stdout(text)
    code = 0
    if args.fail_on_regression is not None and regression(d, args.metric, args.fail_on_regression):
        code = 1
    if args.fail_on is not None and new_findings_at(d, Severity.parse(args.fail_on)):
        code = 1
    return code
