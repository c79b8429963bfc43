"""`analyze sweep RUN...`: compare configurations of one workload (batch size, sequence
length, device) and say where utilization and throughput stop improving.

    analyze sweep RUN... [-o FILE] [--format md|json|term]
                  [--label RUN=key=value,...] [--labels FILE.csv] [--label-from REGEX]
                  [--sweep KEY] [--batch-dim-op NAME] [--plateau-pct PCT]
                  [--latency-budget MS] [--dcgm RUN=FILE] [--charts-dir DIR]

Each RUN (a trace, a per-rank directory, a Parquet export) is one configuration, loaded
through `analyzer.api.load` and summarized by `analyzer.runs.summarize`; `analyzer.sweep`
compares them. Exit codes: 0; otherwise those of `analyze` (2: bad labels or options).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from gpu_trace_analyzer.errors import BadConfigError
from gpu_trace_analyzer.sweep import PLATEAU_PCT
from gpu_trace_analyzer.untrusted import one_line


def parser(base: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``analyze sweep`` command line (``base``: the CLI's raising parser class)."""
    p = base(
        prog="analyze sweep",
        description="Compare configurations of one workload (each RUN one configuration): "
        "latency, throughput, utilization and MFU per configuration, scaling against ideal, "
        "the point of diminishing returns, the best configuration per goal, what caps "
        "utilization at the largest one.",
    )
    p.add_argument("runs", nargs="+", type=Path, help="trace files, directories or exports")
    p.add_argument("-o", "--output", type=Path, help="write the report to this file")
    p.add_argument(
        "--format",
        choices=("md", "json", "term"),
        help="output format (default: md; json for -o *.json; term prints a terminal table)",
    )
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="RUN=key=value,...",
        help="labels of one run (RUN: its path, file name or name without suffixes)",
    )
    p.add_argument(
        "--labels", type=Path, metavar="FILE.csv", help="CSV: run,key,... one row per run"
    )
    p.add_argument(
        "--label-from",
        metavar="REGEX",
        help=r"named groups of this expression applied to file names, e.g. "
        r"'bs(?P<batch>\d+)_seq(?P<seq>\d+)'",
    )
    p.add_argument("--sweep", metavar="KEY", help="the swept label (default: batch, if given)")
    p.add_argument(
        "--batch-dim-op",
        metavar="NAME",
        help="op whose first input's leading dimension is the batch (when no batch label)",
    )
    p.add_argument(
        "--plateau-pct",
        type=float,
        default=PLATEAU_PCT,
        metavar="PCT",
        help="diminishing returns: throughput growth per doubling below PCT %% (default 10)",
    )
    p.add_argument(
        "--latency-budget",
        type=float,
        metavar="MS",
        help="best throughput among configurations whose median step latency is within MS",
    )
    p.add_argument(
        "--dcgm",
        action="append",
        default=[],
        metavar="RUN=FILE",
        help="DCGM counters of one run (energy per sample, average power)",
    )
    p.add_argument("--charts-dir", type=Path, help="write charts here (default: next to -o)")
    p.add_argument("--device", help="device name to assume for every run")
    p.add_argument("--config", type=Path, help="TOML file with rule thresholds")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _dcgm(items: Sequence[str], runs: Sequence[Path]) -> dict[int, list[Path]]:
    from gpu_trace_analyzer.runs import run_name

    out: dict[int, list[Path]] = {}
    for item in items:
        run, sep, file = item.partition("=")
        if not sep or not run or not file:
            raise BadConfigError(f"--dcgm {one_line(item)!r}: expected RUN=FILE")
        hits = [i for i, p in enumerate(runs) if run in (str(p), p.name, run_name(p))]
        if not hits:
            raise BadConfigError(f"--dcgm: {one_line(run)!r} names none of the runs given")
        for i in hits:
            out.setdefault(i, []).append(Path(file))
    return out


def _check_numbers(args: argparse.Namespace) -> None:
    if not math.isfinite(args.plateau_pct) or args.plateau_pct <= 0:
        raise BadConfigError("--plateau-pct must be a percentage > 0")
    if args.latency_budget is not None and (
        not math.isfinite(args.latency_budget) or args.latency_budget <= 0
    ):
        raise BadConfigError("--latency-budget must be a positive number of milliseconds")


def run_sweep(argv: Sequence[str], base_parser: type[argparse.ArgumentParser]) -> int:
    """Load every run, compare, write the report; return the exit code."""
    from gpu_trace_analyzer.cli import charts_dir
    from gpu_trace_analyzer.outputs import check_output_dir, check_output_file, write_text_atomic
    from gpu_trace_analyzer.report import sweep_json, sweep_markdown
    from gpu_trace_analyzer.runs import assign_labels, load_runs, summarize
    from gpu_trace_analyzer.sweep import sweep

    args = parser(base_parser).parse_args(argv)
    _check_numbers(args)
    fmt = args.format or (
        "json" if args.output is not None and args.output.suffix == ".json" else "md"
    )
    dcgm = _dcgm(args.dcgm, args.runs)
    inputs = [*args.runs, *(p for ps in dcgm.values() for p in ps)]
    if args.labels is not None:
        inputs.append(args.labels)
    if args.output is not None:
        check_output_file("-o", args.output, inputs)
    charts = charts_dir(args) if fmt == "md" or args.charts_dir is not None else None
    if charts is not None:
        check_output_dir("--charts-dir" if args.charts_dir else "chart folder", charts, inputs)
    labels = assign_labels(
        args.runs, label_args=args.label, labels_csv=args.labels, label_from=args.label_from
    )
    runs = load_runs(args.runs, labels, dcgm=dcgm, device=args.device, config=args.config)
    summaries = [summarize(r, args.batch_dim_op) for r in runs]
    budget = None if args.latency_budget is None else args.latency_budget * 1e6
    s = sweep(summaries, swept=args.sweep, plateau_pct=args.plateau_pct, latency_budget_ns=budget)
    if fmt == "json":
        text = sweep_json.render(s)
    elif fmt == "term":
        text = sweep_markdown.render_terminal(s)
    else:
        try:
            images = sweep_markdown.write_charts(s, charts) if charts is not None else []
        except OSError as exc:
            raise BadConfigError(f"cannot write the charts: {exc.strerror or exc}") from exc
        text = sweep_markdown.render(s, images)
    if args.output is not None:
        write_text_atomic(Path(args.output), text)
    else:
        from gpu_trace_analyzer.cli import _write_stdout

        _write_stdout(text)
    return 0
