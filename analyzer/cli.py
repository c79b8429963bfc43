"""The `analyze` command: thin verbs over the library.

    analyze PATH... [options]          report on a trace (plus DCGM metrics, if given)
    analyze rules [--config FILE]      list every rule with its thresholds
    analyze export TRACE --parquet DIR write the canonical tables as Parquet
    analyze diff BASE CANDIDATE        compare two runs (analyzer.diff_cli)
    analyze sweep RUN...               compare configurations (analyzer.sweep_cli)
    analyze scaling RUN RUN...         one job at several GPU counts (analyzer.scaling_cli)

Exit codes: 0 success; 1 a finding at or above ``--fail-on``; 2 bad command line or
configuration, or an output that would touch an input or cannot be written; 3 unreadable
input; 4 unsupported format; 5 empty trace; 70 internal error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

# polars' allocator (jemalloc) keeps freed pages for 10 s by default. On the 519 MB
# benchmark trace, returning them after 1 s (a background thread does it) peaks at 720-740
# MB against 740-770 MB by default, at the same speed; after 0.2 s, 670-685 MB but 0.1 s
# slower (pages freed and faulted in again). Must be set before polars is first imported;
# a value the user set wins.
os.environ.setdefault(
    "_RJEM_MALLOC_CONF", "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
)

from gpu_trace_analyzer import __version__
from gpu_trace_analyzer.errors import AnalyzerError, BadConfigError
from gpu_trace_analyzer.executor import ExecutorOptions
from gpu_trace_analyzer.report.formats import RENDERERS
from gpu_trace_analyzer.untrusted import one_line

INTERNAL_ERROR = 70
INTERRUPTED = 130
_VERBS = ("rules", "export", "diff", "sweep", "scaling")


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises our BadConfigError (exit 2, one line) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadConfigError(f"{self.prog}: {message}")


def _report_parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(
        prog="analyze",
        description="Insight report from GPU profiler output: PyTorch profiler (Kineto) "
        "traces, Nsight Systems SQLite exports, DCGM metrics. Other verbs: "
        "`analyze rules`, `analyze export`, `analyze diff`, `analyze sweep`, `analyze scaling`.",
    )
    p.add_argument("paths", nargs="+", type=Path, help="trace file(s) or directory")
    p.add_argument("-o", "--output", type=Path, help="write the report to this file")
    p.add_argument(
        "--format",
        choices=tuple(RENDERERS),
        help="output format (default: term on a terminal, md otherwise or for -o *.md)",
    )
    p.add_argument(
        "--summary",
        action="store_true",
        help="Markdown on one screen: headline, time by op family, the top three findings; "
        "the rest collapsed, at most 65,536 characters (a pull-request comment)",
    )
    p.add_argument("--charts-dir", type=Path, help="write charts here (default: next to -o)")
    p.add_argument("--device", help="device name to assume (overrides the trace's)")
    p.add_argument("--peak-tflops", type=float, help="peak dense TFLOP/s of an unknown device")
    p.add_argument("--mem-bw-gbs", type=float, help="memory bandwidth GB/s of an unknown device")
    p.add_argument("--samples-per-step", type=int, help="samples per step, for energy/sample")
    p.add_argument(
        "--link",
        help="interconnect the collectives run over when the trace does not say "
        "(nvlink2..nvlink5, xgmi-mi300x, pcie3-x16..pcie5-x16, ib-hdr, ib-ndr)",
    )
    p.add_argument("--rules", help="comma-separated rule ids to run (default: all)")
    p.add_argument("--skip", help="comma-separated rule ids not to run")
    p.add_argument("--config", type=Path, help="TOML file with rule thresholds")
    p.add_argument(
        "--fail-on",
        choices=("info", "warning", "critical"),
        help="exit 1 when a finding of this severity or worse exists (for CI)",
    )
    add_executor_options(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"analyze {__version__}")
    return p


def add_executor_options(p: argparse.ArgumentParser) -> None:
    """Where parsing runs: ``--executor``, ``--jobs``, ``--ray-address``."""
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where a multi-rank directory's ranks are parsed: local process pool "
        "(default) or Ray tasks (pip install '.[ray]')",
    )
    p.add_argument(
        "--jobs",
        type=int,
        help="parallel processes: rank files at once, or chunks of one large file "
        "(default: one per CPU; 1 parses everything in this process)",
    )
    p.add_argument(
        "--ray-address", help="Ray cluster to join with --executor ray (default: a local Ray)"
    )


def executor_options(args: argparse.Namespace) -> ExecutorOptions:
    """The executor options, ``--jobs`` capped at the core count (see `_jobs_note`)."""
    jobs = args.jobs
    if jobs is not None and args.executor == "local":
        jobs = min(jobs, os.cpu_count() or 1) if jobs >= 1 else jobs
    return ExecutorOptions(kind=args.executor, jobs=jobs, ray_address=args.ray_address)


def _jobs_note(args: argparse.Namespace) -> str | None:
    """Why ``--jobs`` was lowered, for the report's warnings (more processes than cores
    only add memory and contention; a huge value would start that many)."""
    cores = os.cpu_count() or 1
    if args.executor == "local" and args.jobs is not None and args.jobs > cores:
        return f"--jobs {args.jobs} lowered to {cores}, the number of CPU cores"
    return None


def _ids(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    if args.output is not None:
        return "json" if args.output.suffix == ".json" else "md"
    return "term" if sys.stdout is not None and sys.stdout.isatty() else "md"


def charts_dir(args: argparse.Namespace) -> Path | None:
    """Where charts go: ``--charts-dir``, else ``<stem>_files/`` beside ``-o``, else none."""
    if args.charts_dir is not None:
        return Path(args.charts_dir)
    if args.output is not None:
        output = Path(args.output)
        return output.parent / f"{output.stem}_files"
    return None


def run_report(argv: Sequence[str]) -> int:
    """`analyze PATH...`: load through the library API, render; return the exit code."""
    from gpu_trace_analyzer.api import load
    from gpu_trace_analyzer.report.formats import render

    args = _report_parser().parse_args(argv)
    out_format = _output_format(args)
    if args.summary and out_format != "md":
        raise BadConfigError(f"--summary writes Markdown, not --format {out_format}")
    charts = charts_dir(args) if out_format != "term" else None
    _check_outputs(args.paths, args.output, charts, explicit_charts=args.charts_dir is not None)
    note = _jobs_note(args)
    analysis = load(
        args.paths,
        device=args.device,
        peak_tflops=args.peak_tflops,
        mem_bw_gbs=args.mem_bw_gbs,
        samples_per_step=args.samples_per_step,
        link=args.link,
        config=args.config,
        rules=_ids(args.rules) or None,
        skip=_ids(args.skip),
        executor=executor_options(args),
        warnings=() if note is None else (note,),
    )
    try:
        report = analysis.report_model(charts)
    except OSError as exc:  # the chart folder cannot be written
        raise BadConfigError(f"cannot write the charts: {exc.strerror or exc}", charts) from exc
    if args.summary:
        from gpu_trace_analyzer.report.markdown import render_summary

        text = render_summary(report)
    elif out_format != "term" or args.output is not None:
        text = render(report, out_format)
    else:
        from gpu_trace_analyzer.report import terminal  # rich: imported only for this format
        from rich.console import Console

        terminal.render_to(Console(), report)
        text = ""
    if args.output is not None:
        _write_output(Path(args.output), text)
    elif text:
        _write_stdout(text)
    return analysis.exit_code(args.fail_on)


def _check_outputs(
    inputs: Sequence[Path], output: Path | None, charts: Path | None, *, explicit_charts: bool
) -> None:
    """Refuse, before any work, an output path that is, holds or lies inside an input."""
    from gpu_trace_analyzer.outputs import check_output_dir, check_output_file

    if output is not None:
        check_output_file("-o", output, inputs)
    if charts is not None:
        check_output_dir("--charts-dir" if explicit_charts else "chart folder", charts, inputs)


def _write_output(path: Path, text: str) -> None:
    """Write the report atomically, creating its folder; a failure is one line."""
    from gpu_trace_analyzer.outputs import write_text_atomic

    write_text_atomic(path, text)


def _write_stdout(text: str) -> None:
    """Write to stdout; closed or full is one line (exit 2), a reader gone is exit 0."""
    stream = sys.stdout
    if stream is None:
        raise BadConfigError("stdout is closed; write the report to a file with -o FILE")
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise BadConfigError(f"cannot write to stdout: {reason}") from exc


def run_rules_listing(argv: Sequence[str]) -> int:
    """`analyze rules`: every rule with its description and thresholds."""
    from gpu_trace_analyzer.config import load_config
    from gpu_trace_analyzer.engine import rules_listing

    p = _ArgumentParser(prog="analyze rules", description="List every rule and its thresholds.")
    p.add_argument("--config", type=Path, help="TOML file with rule thresholds")
    args = p.parse_args(argv)
    cfg = load_config(Path.cwd(), args.config)
    lines: list[str] = []
    for info in rules_listing(cfg):
        state = "" if info.enabled else " (disabled)"
        lines.append(f"{info.id}{state}: {info.title}\n  {info.description}\n")
        if info.needs:
            lines.append(f"  needs: {', '.join(sorted(info.needs))}\n")
        for t in info.thresholds:
            default = "" if t.current == t.default else f" (default {t.default})"
            lines.append(f"  {t.name} = {t.current}{default}: {t.doc}\n")
    _write_stdout("".join(lines))
    return 0


def run_export(argv: Sequence[str]) -> int:
    """`analyze export TRACE --parquet DIR`: the canonical tables as Parquet files."""
    from gpu_trace_analyzer import parquet
    from gpu_trace_analyzer.api import load
    from gpu_trace_analyzer.config import default_config

    p = _ArgumentParser(prog="analyze export", description="Write the canonical tables.")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--parquet", type=Path, required=True, help="output directory")
    add_executor_options(p)
    args = p.parse_args(argv)
    from gpu_trace_analyzer.outputs import check_output_dir

    check_output_dir("--parquet", args.parquet, args.paths)
    # Thresholds play no part in the tables: the defaults, not ./pyproject.toml's.
    analysis = load(args.paths, config=default_config(), executor=executor_options(args))
    try:
        written = parquet.write(analysis.tables, args.parquet)
    except OSError as exc:
        raise BadConfigError(f"cannot write: {exc.strerror or exc}", args.parquet) from exc
    _write_stdout(f"wrote {len(written)} tables to {one_line(str(args.parquet))}\n")
    return 0


def main(argv: Sequence[str | os.PathLike[str]] | None = None) -> int:
    """Entry point of the `analyze` console script; returns the process exit code.

    ``argv`` may hold paths (`pathlib.Path`) beside strings, as a caller in Python has them.
    """
    args = [os.fspath(a) for a in (sys.argv[1:] if argv is None else argv)]
    debug = "--debug" in args or bool(os.environ.get("ANALYZE_DEBUG"))
    try:
        if args and args[0] == "rules":
            return run_rules_listing(args[1:])
        if args and args[0] == "export":
            return run_export(args[1:])
        if args and args[0] == "diff":
            from gpu_trace_analyzer.diff_cli import run_diff

            return run_diff(args[1:], _ArgumentParser)
        if args and args[0] == "sweep":
            from gpu_trace_analyzer.sweep_cli import run_sweep

            return run_sweep(args[1:], _ArgumentParser)
        if args and args[0] == "scaling":
            from gpu_trace_analyzer.scaling_cli import run_scaling

            return run_scaling(args[1:], _ArgumentParser)
        return run_report(args)
    except AnalyzerError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"analyze: error: {one_line(str(exc))}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        # A second Ctrl-C (or a signal still pending from the first) while we report the
        # first must not end in a traceback: the console script is ending anyway; a caller
        # in Python (``argv`` given) gets its own handler back.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stderr.write("analyze: interrupted\n")
        if argv is not None:
            signal.signal(signal.SIGINT, previous)
        return INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: one line, and the traceback with --debug
        if debug:
            traceback.print_exc()
        sys.stderr.write(
            f"analyze: internal error: {type(exc).__name__}: {one_line(str(exc))} (rerun with "
            "--debug and report it)\n"
        )
        return INTERNAL_ERROR


def entry() -> NoReturn:
    """The `analyze` console script: `main`, then exit without the interpreter's teardown.

    Everything the run owns is closed by then (output written, worker pools shut down,
    temporary directories removed); what remains is freeing the tables object by object,
    a tenth of a second on a large trace that the user would wait for in vain.
    """
    code = main()
    with contextlib.suppress(OSError, ValueError, AttributeError):  # reader gone, stdout
        sys.stdout.flush()  # closed (None) or full: already reported by `main`
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()
    if code == INTERRUPTED:  # an interrupted pool: let multiprocessing's exit handlers
        sys.exit(code)  # release its semaphores (its tracker would warn on stderr)
    os._exit(code)


if __name__ == "__main__":
    entry()
