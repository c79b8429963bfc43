"""Markdown for `analyze scaling`: tables, the interpretation under each, recommendations.

Every trace-derived string (run labels from file names, host names, paths) goes through
`analyzer.report.markdown.escape_text` (built on `analyzer.untrusted`); sentences computed
by `analyzer.scaling` are escaped whole, since they quote labels. Charts are drawn by
`analyzer.report.scaling_charts` and linked here as images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.markdown import escape_text, table_header, table_row
from gpu_trace_analyzer.scaling import (
    NodeRow,
    RankRow,
    ScalingReport,
    ideal_step_ns,
    unit_word,
)


def _ms(ns: float | None) -> str:
    return "n/a" if ns is None else f"{ns / 1e6:.3f}"


def _num(v: float | None, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if v is None else f"{v:.{digits}f}{suffix}"


def _pct(v: float | None) -> str:
    return fmt.pct(v) if v is not None else "n/a"


def _bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {escape_text(t)}" for t in lines)


def _ranks(ranks: Sequence[int]) -> str:
    return ", ".join(str(r) for r in ranks) or "none"


def _image(images: Mapping[str, str], key: str, alt: str) -> str:
    link = images.get(key)
    return "" if link is None else f"\n\n![{escape_text(alt)}]({link})"


def _run_table(d: ScalingReport) -> str:
    base = d.runs[0]
    units = unit_word(d.runs)
    cols = [
        "run",
        units,
        f"{units} from",
        "steps",
        "median step ms",
        "ideal step ms",
        "steps/s",
        "speedup",
        "ideal",
        "efficiency",
        "comm",
        "exposed comm",
        "comm ms/step/rank",
        "transfer ms/step/rank",
        "wait ms/step/rank",
        "all-reduce GB/s",
        "rank CV",
        "failed ranks",
        "slow ranks",
    ]
    rows = [
        table_row(
            [
                escape_text(r.label),
                str(r.gpus),
                escape_text(r.gpus_source),
                str(r.steps),
                _ms(r.step_median_ns),
                _ms(ideal_step_ns(r, base, d.mode)),
                _num(r.throughput_steps_per_s, 1),
                _num(r.speedup, 2, "x"),
                _num(r.ideal_speedup, 2, "x"),
                _pct(r.efficiency_pct),
                _pct(r.comm_pct),
                _pct(r.exposed_comm_pct),
                _ms(r.comm_per_step_ns),
                _ms(r.transfer_per_step_ns),
                _ms(r.wait_per_step_ns),
                _num(r.comm_gbs, 2),
                _pct(r.rank_cv_pct),
                _ranks(r.failed_ranks),
                _ranks(r.slow_ranks),
            ]
        )
        for r in d.runs
    ]
    numeric = [False, True, False] + [True] * 14 + [False, False]
    return table_header(cols, numeric) + "\n" + "\n".join(rows)


def _rank_row(r: RankRow) -> str:
    why = "; ".join(r.reasons)
    return table_row(
        [
            escape_text(r.run),
            str(r.rank),
            escape_text(r.node),
            str(r.steps),
            _ms(r.step_median_ns),
            _num(r.throughput_steps_per_s, 1),
            _ms(r.compute_per_step_ns),
            _pct(r.idle_pct),
            _pct(r.comm_pct),
            _ms(r.wait_per_step_ns),
            fmt.size(r.memory_peak_bytes) if r.memory_peak_bytes is not None else "n/a",
            f"**{r.status}**" if r.status != "ok" else "ok",
            escape_text(why),
        ]
    )


def _rank_table(d: ScalingReport) -> str:
    cols = [
        "run",
        "rank",
        "node",
        "steps",
        "median step ms",
        "steps/s",
        "GPU compute ms/step",
        "GPU idle",
        "comm",
        "collective wait ms/step",
        "peak memory",
        "status",
        "why",
    ]
    numeric = [False, True, False] + [True] * 8 + [False, False]
    return table_header(cols, numeric) + "\n" + "\n".join(_rank_row(r) for r in d.ranks)


def _node_row(n: NodeRow) -> str:
    steps = str(n.steps_min) if n.steps_min == n.steps_max else f"{n.steps_min}-{n.steps_max}"
    return table_row(
        [
            escape_text(n.run),
            escape_text(n.node),
            ", ".join(str(r) for r in n.ranks),
            steps,
            _ms(n.step_median_ns),
            _num(n.throughput_steps_per_s, 1),
            _pct(n.rank_cv_pct),
            _pct(n.idle_pct),
            fmt.size(n.memory_peak_bytes) if n.memory_peak_bytes is not None else "n/a",
            f"**{n.status}**" if n.status != "ok" else "ok",
        ]
    )


def _node_table(d: ScalingReport) -> str:
    cols = [
        "run",
        "node",
        "ranks",
        "steps",
        "median step ms",
        "steps/s",
        "rank CV",
        "GPU idle",
        "peak memory",
        "status",
    ]
    numeric = [False, False, False] + [True] * 6 + [False]
    return table_header(cols, numeric) + "\n" + "\n".join(_node_row(n) for n in d.nodes)


def _latency_table(d: ScalingReport) -> str:
    w = d.thresholds.within_pct
    cols = ["run", "rank", "steps", "min ms", "max ms", "mean ms", "std ms", "CV", f"within {w:g}%"]
    rows = []
    for r in d.ranks:
        lat = r.latency
        if lat is None:
            rows.append(table_row([escape_text(r.run), str(r.rank), "0", *(["n/a"] * 6)]))
            continue
        rows.append(
            table_row(
                [
                    escape_text(r.run),
                    str(r.rank),
                    str(lat.steps),
                    _ms(lat.min_ns),
                    _ms(lat.max_ns),
                    _ms(lat.mean_ns),
                    _ms(lat.std_ns),
                    fmt.pct(lat.cv_pct),
                    fmt.pct(lat.within_pct, 0),
                ]
            )
        )
    return table_header(cols, [False] + [True] * 8) + "\n" + "\n".join(rows)


def _cold_table(d: ScalingReport) -> str:
    rows = [
        table_row(
            [
                escape_text(r.run),
                str(r.rank),
                str(c.first_step),
                _ms(c.first_ns),
                _ms(c.median_ns),
                f"{c.ratio:.2f}x",
                _ms(c.excess_ns),
            ]
        )
        for r in d.ranks
        if (c := r.cold_start) is not None
    ]
    if not rows:
        return ""
    cols = ["run", "rank", "first step", "first step ms", "median of the others ms", "ratio",
            "extra ms"]  # fmt: skip
    return table_header(cols, [False] + [True] * 6) + "\n" + "\n".join(rows) + "\n\n"


def _recommendations(d: ScalingReport) -> str:
    if not d.recommendations:
        return "Nothing to recommend: no failed, slow or cold rank, and no communication cost."
    out = []
    for i, rec in enumerate(d.recommendations, 1):
        gain = (
            f"comes first: {rec.first_because}"
            if rec.gain_ns_per_step is None
            else f"up to {_ms(rec.gain_ns_per_step)} ms per step"
        )
        out.append(f"{i}. **{escape_text(rec.title)}** ({gain}). {escape_text(rec.text)}")
    return "\n".join(out)


def _title(d: ScalingReport) -> str:
    units = unit_word(d.runs)
    counts = ", ".join(str(r.gpus) for r in d.runs)
    return f"# Scaling report: {d.mode} scaling over {len(d.runs)} runs ({counts} {units})"


def _how(d: ScalingReport) -> str:
    th = d.thresholds
    definition = (
        "Strong scaling (the same global work per step): speedup = T0 / TN, efficiency = "
        "N0 x T0 / (N x TN)"
        if d.mode == "strong"
        else "Weak scaling (the same work per GPU): speedup = (N x T0) / (N0 x TN), efficiency = "
        "T0 / TN (per-GPU throughput ratio)"
    )
    return (
        "## How to read this\n\n"
        f"Baseline: {escape_text(d.baseline)}, the run with the fewest {unit_word(d.runs)} (N0, "
        f"median step T0). {definition}. Step times are each step's own work (CPU time net of "
        "waiting on other steps, or the GPU busy time of the work it launched, the longer), "
        "the slowest rank per step, median over steps. Status: **failed** when a rank "
        "completed fewer steps than the rank with the most (a rank with no file given is not "
        "judged: the notes say so); **slow** when its "
        f"median step or GPU compute per step is at least {th.slow_pct:g}% above the run's "
        "median over ranks (the stragglers rule's threshold); rank CV is the population "
        "coefficient of variation of the ranks' median step times. Cold start: the first "
        f"profiled step at least {th.cold_ratio:g}x the median of the rank's other steps and "
        f"{th.cold_min_excess_ms:g} ms above it (the cold-start rule, {th.cold_min_steps}+ "
        "steps), in step time and in the rank's own work (the step less its collectives on "
        "a GPU, its non-collective CPU ops on the CPU): a long first step spent waiting in a "
        "collective is not a cold start. Transfer is each collective's duration on the rank "
        "that arrived last, wait the rest. Comm and GPU idle are shares of the analysis "
        "window."
    )


def render(d: ScalingReport, images: Mapping[str, str] | Sequence[tuple[str, str]] = ()) -> str:
    """The scaling report as Markdown; ``images`` maps chart keys (``speedup``,
    ``rank_steps``) to the links the charts were written at."""
    links = dict(images)
    units = unit_word(d.runs)
    parts = [_title(d)]
    if d.notes:
        parts.append("\n".join(f"> {escape_text(n)}" for n in d.notes))
    parts.append(
        "## Speedup and efficiency\n\n"
        + _run_table(d)
        + "\n\n"
        + _bullets(d.scaling_text)
        + _image(links, "speedup", f"speedup against {units} with ideal scaling")
    )
    parts.append(
        "## Rank symmetry\n\n"
        + _rank_table(d)
        + ("\n\n" + _bullets(d.symmetry_text) if d.symmetry_text else "")
    )
    parts.append("## Node symmetry\n\n" + _node_table(d))
    parts.append(
        "## Step-time distribution per rank\n\n"
        + _latency_table(d)
        + "\n\n"
        + _bullets(d.latency_text)
        + _image(links, "rank_steps", "step time per rank, every profiled step")
    )
    parts.append("## Cold-start outliers\n\n" + _cold_table(d) + _bullets(d.cold_text))
    parts.append("## Recommendations (ranked by expected gain)\n\n" + _recommendations(d))
    parts.append(_how(d))
    return "\n\n".join(parts).rstrip() + "\n"
