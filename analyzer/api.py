"""The library API: `load` a trace, get an `Analysis` (tables, findings, steps, reports).

    from gpu_trace_analyzer import load
    a = load("trace.json.gz")            # a file, a directory of rank traces, or several paths
    a.findings_frame                       # one row per finding, worst first
    a.kernels                              # a canonical table as a polars frame
    print(a.report("md"))                  # the report with every section

The `analyze` command is a thin layer over this module, and so are the verbs that compare
runs. Everything derived from one trace (metric frames, rule results, the report model)
is cached on its `Analysis` and its tables, never in module-level caches: dropping the
last reference to an `Analysis` frees the trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl
from gpu_trace_analyzer.build import build_report
from gpu_trace_analyzer.config import AnalyzerConfig, load_config
from gpu_trace_analyzer.context import AnalysisContext, AnalysisOptions
from gpu_trace_analyzer.engine import EngineResult, exit_code_for, run_rules
from gpu_trace_analyzer.executor import ExecutorOptions
from gpu_trace_analyzer.findings import Finding, Severity, SkippedRule, order_findings
from gpu_trace_analyzer.parsers.errors import BadConfigError
from gpu_trace_analyzer.parsers.schema import TABLE_NAMES, TraceMeta, TraceTables
from gpu_trace_analyzer.report.chart_files import write_charts
from gpu_trace_analyzer.report.formats import RENDERERS, render
from gpu_trace_analyzer.report.model import Report
from gpu_trace_analyzer.sections import overview

__all__ = ["Analysis", "load"]

PathLike = str | Path

#: Columns of `Analysis.findings_frame`, in order.
FINDING_COLUMNS = (
    "rule_id",
    "severity",
    "title",
    "summary",
    "recommendation",
    "impact_ns",
    "rank",
    "device",
    "stream",
    "start_ns",
    "end_ns",
)


def _paths(paths: PathLike | Sequence[PathLike] | None) -> list[Path]:
    if paths is None:
        return []
    if isinstance(paths, str | Path):
        return [Path(paths)]
    return [Path(p) for p in paths]


def load(
    paths: PathLike | Sequence[PathLike],
    *,
    dcgm: PathLike | Sequence[PathLike] | None = None,
    device: str | None = None,
    peak_tflops: float | None = None,
    mem_bw_gbs: float | None = None,
    samples_per_step: int | None = None,
    link: str | None = None,
    config: AnalyzerConfig | PathLike | None = None,
    rules: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    executor: ExecutorOptions | None = None,
    warnings: Sequence[str] = (),
) -> Analysis:
    """Parse a trace (plus DCGM metrics) into an `Analysis`.

    ``paths``: one path (``str`` or `Path`) or several: a Kineto trace file, a directory of
    per-rank traces, an Nsight Systems export, DCGM dumps, a Parquet export; ``dcgm``: more
    DCGM inputs, the same as listing them in ``paths``. ``device`` (and ``peak_tflops``,
    ``mem_bw_gbs`` for a device the database lacks) override the trace's device;
    ``samples_per_step`` enables per-sample figures; ``link`` names the interconnect the
    collectives run over (``nvlink4``, ``ib-ndr``: `devices.links`) when the trace does not
    say. ``config`` is an `AnalyzerConfig` or a TOML file of rule thresholds (None:
    ``[tool.analyzer]`` of ``./pyproject.toml``, if any, as the CLI does); ``rules``/``skip``
    choose rules by id; ``executor`` says where Kineto parsing runs (None: in this process);
    ``warnings`` are added to the report's warnings (the CLI's note on a lowered ``--jobs``).

    Raises `parsers.errors.AnalyzerError` subclasses (bad input, unsupported format, bad
    configuration), each with the CLI's exit code in ``exit_code``.
    """
    from gpu_trace_analyzer import trace

    inputs = [*_paths(paths), *_paths(dcgm)]
    if not inputs:
        raise BadConfigError("no input given")
    if not isinstance(config, AnalyzerConfig):
        config = load_config(Path.cwd(), None if config is None else Path(config))
    if link:
        from gpu_trace_analyzer.devices import link_by_name

        link_by_name(link)  # an unknown --link is a configuration error, before parsing
    options = AnalysisOptions(
        device_override=device,
        peak_tflops=peak_tflops,
        mem_bw_gbs=mem_bw_gbs,
        samples_per_step=samples_per_step,
        link=link,
    )
    tables = trace.load(inputs, executor)
    if warnings:
        tables = replace(tables, meta=tables.meta.with_warnings(*warnings))
    return Analysis(
        AnalysisContext(tables=tables, options=options),
        config,
        None if rules is None else tuple(rules),
        tuple(skip),
    )


@dataclass(slots=True, eq=False, weakref_slot=True)
class Analysis:
    """One loaded trace: its canonical tables, metadata, findings and reports.

    Rules run on first use of `findings` (or anything built on them); results are kept.
    """

    context: AnalysisContext
    config: AnalyzerConfig
    rules: tuple[str, ...] | None = None
    skip: tuple[str, ...] = ()
    _result: EngineResult | None = field(default=None, init=False, repr=False)

    # -- the trace ----------------------------------------------------------------------

    @property
    def tables(self) -> TraceTables:
        """The canonical tables bundle (every table below, plus `meta`)."""
        return self.context.tables

    @property
    def meta(self) -> TraceMeta:
        """Workload metadata: source, paths, ranks, devices, versions, warnings."""
        return self.context.tables.meta

    def table(self, name: str) -> pl.DataFrame:
        """A canonical table by name (see `TABLE_NAMES`)."""
        return self.context.tables.table(name)

    @property
    def table_names(self) -> tuple[str, ...]:
        """Names of the canonical tables."""
        return tuple(TABLE_NAMES)

    @property
    def kernels(self) -> pl.DataFrame:
        """One row per GPU kernel."""
        return self.context.tables.kernels

    @property
    def memops(self) -> pl.DataFrame:
        """One row per GPU memory copy or set."""
        return self.context.tables.memops

    @property
    def runtime(self) -> pl.DataFrame:
        """One row per CUDA/HIP runtime call."""
        return self.context.tables.runtime

    @property
    def ops(self) -> pl.DataFrame:
        """One row per CPU operator."""
        return self.context.tables.ops

    @property
    def comms(self) -> pl.DataFrame:
        """One row per collective."""
        return self.context.tables.comms

    @property
    def counters(self) -> pl.DataFrame:
        """DCGM counter samples."""
        return self.context.tables.counters

    @property
    def steps(self) -> pl.DataFrame:
        """The step table: each profiled step's times per rank (device-aware: a step lasts
        until the GPU work it launched ends); no rows without step annotations."""
        return overview.step_times(self.context)

    # -- the diagnosis ------------------------------------------------------------------

    @property
    def result(self) -> EngineResult:
        """The rule engine's run (findings, skipped rules, errors), computed once."""
        if self._result is None:
            self._result = run_rules(self.context, self.config, self.rules, self.skip)
        return self._result

    @property
    def findings(self) -> list[Finding]:
        """The findings, worst first (severity, then time at stake)."""
        return order_findings(self.result.findings)

    @property
    def skipped(self) -> list[SkippedRule]:
        """Rules that gave no verdict, with the reason."""
        return list(self.result.skipped)

    @property
    def findings_frame(self) -> pl.DataFrame:
        """`findings` as a frame: `FINDING_COLUMNS`, severity as its label."""
        rows = [
            (
                f.rule_id,
                f.severity.label,
                f.title,
                f.summary,
                f.recommendation,
                int(f.impact_ns),
                f.scope.rank,
                f.scope.device,
                f.scope.stream,
                f.scope.start_ns,
                f.scope.end_ns,
            )
            for f in self.findings
        ]
        schema: dict[str, pl.DataType] = dict.fromkeys(FINDING_COLUMNS, pl.String())
        for name in ("impact_ns", "stream", "start_ns", "end_ns"):
            schema[name] = pl.Int64()
        schema["rank"] = schema["device"] = pl.Int32()
        return pl.DataFrame(rows, schema=schema, orient="row")

    @property
    def skipped_frame(self) -> pl.DataFrame:
        """`skipped` as a frame: rule_id, reason."""
        rows = [(s.rule_id, s.reason) for s in self.skipped]
        return pl.DataFrame(
            rows, schema={"rule_id": pl.String(), "reason": pl.String()}, orient="row"
        )

    def exit_code(self, fail_on: Severity | str | None) -> int:
        """The CLI's ``--fail-on`` code: 1 when a finding at or above ``fail_on`` exists."""
        level = Severity.parse(fail_on) if isinstance(fail_on, str) else fail_on
        return exit_code_for(self.result.findings, level)

    # -- reports ------------------------------------------------------------------------

    def report_model(self, charts_dir: PathLike | None = None) -> Report:
        """The `Report` with every section whose inputs are present. With ``charts_dir``,
        the charts are drawn there and linked as ``<charts_dir name>/<file>`` (so put it
        beside the report file); without, they are left out."""
        out_dir = None if charts_dir is None else Path(charts_dir)
        result = self.result
        model = build_report(self.context, result.findings, result.skipped, out_dir is not None)
        return write_charts(model, out_dir)

    def report(self, format: str = "md", *, charts_dir: PathLike | None = None) -> str:
        """The report as text: ``"md"`` (Markdown), ``"json"`` or ``"term"`` (plain text as
        a 120-column terminal shows it). See `report_model` for ``charts_dir``."""
        if format not in RENDERERS:
            raise BadConfigError(f"unknown format {format!r} (choose: {', '.join(RENDERERS)})")
        return render(self.report_model(charts_dir), format)
