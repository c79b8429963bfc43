"""Markdown for `analyze sweep`: tables with a computed interpretation under each (every
sentence quotes the numbers it rests on), recommendations ranked by the figure they rest on,
charts linked from ``<stem>_files/``.

Every trace- or user-derived string (run names, label values, device names) is escaped
(`analyzer.report.markdown.escape_text` / `code_span`, built on `analyzer.untrusted`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.markdown import (
    code_cell,
    escape_text,
    table_header,
    table_row,
)
from gpu_trace_analyzer.sweep import HOST_BOUND_BUSY_PCT, KNEE_PCT, Series, Sweep, rate_range


def _e(text: str) -> str:
    return escape_text(text).replace("|", "\\|")


def _ms(ns: float | None) -> str:
    return "n/a" if ns is None else f"{ns / 1e6:.3f}"


def _num(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def _g(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _x(v: float) -> str:
    return f"{v:g}"


def _range(rng: tuple[float, float] | None, scale: float = 1e6, digits: int = 3) -> str:
    return "n/a" if rng is None else f"{rng[0] / scale:,.{digits}f}-{rng[1] / scale:,.{digits}f}"


def _table(cols: Sequence[str], numeric: Sequence[bool], rows: Sequence[str]) -> str:
    """A pipe table, or nothing when it has no rows (a header alone says nothing)."""
    return table_header(list(cols), list(numeric)) + "\n" + "\n".join(rows) if rows else ""


def _has(s: Sweep, attr: str) -> bool:
    return any(getattr(r, attr) is not None for r in s.runs)


# -- sections ----------------------------------------------------------------------------------


def _title(s: Sweep) -> str:
    second = s.second
    over = f"`{s.swept}`" + (f" x `{second}`" if second else "")
    return f"# Sweep: {len(s.runs)} configurations over {over}"


def _sources(s: Sweep) -> str:
    srcs = sorted({r.samples_source for r in s.runs if r.samples_source})
    tok = sorted({r.tokens_source for r in s.runs if r.tokens_source})
    text = (
        f"Samples per step from: {', '.join(_e(x) for x in srcs)}."
        if srcs
        else "No samples per step: throughput is not computable."
    )
    if tok:
        text += f" Tokens per step from: {', '.join(_e(x) for x in tok)}."
    steps = sorted({r.steps for r in s.runs})
    plural = "s" if steps != [1] else ""
    text += (
        f" Step latency: per profiled step, the slowest rank's time of its own work "
        f"(CPU time or its own GPU work, longer); {'/'.join(str(n) for n in steps)} "
        f"step{plural} per configuration."
    )
    return text


def _notes(s: Sweep) -> str:
    items = list(s.notes)
    for r in s.runs:
        items += [f"{r.name}: {n}" for n in r.notes]
    if not items:
        return ""
    return "> **Notes**\n>\n" + "\n".join(f"> - {_e(n)}" for n in items)


def _config_table(s: Sweep) -> str:
    keys = [k for k in s.label_keys if k != "world_size"]
    cols: list[tuple[str, bool]] = [("run", False)] + [(k, False) for k in keys]
    cols += [("steps", True), ("latency median ms", True), ("step min-max ms", True)]
    cols += [("latency p90 ms", True)]
    cols += [("samples/s", True)]
    tokens = _has(s, "tokens_per_s")
    if tokens:
        cols.append(("tokens/s", True))
    gpu = not s.cpu_only
    if gpu:
        cols += [
            ("GPU busy %", True),
            ("MFU %", True),
            ("TFLOP/s (modeled ops)", True),
            ("FLOP/byte", True),
            ("memory-bound % of kernel time", True),
        ]
    mem = _has(s, "peak_memory_bytes")
    if mem:
        cols.append(("peak memory", True))
    energy = _has(s, "energy_per_sample_j") or _has(s, "avg_power_w")
    if energy:
        cols += [("J/sample", True), ("avg W", True)]
    rows = []
    ordered = sorted(
        s.runs,
        key=lambda r: tuple(
            (float(r.labels[k]) if _isnum(r.labels.get(k)) else 0.0, r.labels.get(k, ""))
            for k in [x for x in keys if x != s.swept] + [s.swept]
        ),
    )
    for r in ordered:
        cells = [code_cell(r.name)] + [_e(r.labels.get(k, "")) for k in keys]
        cells += [str(r.steps), _ms(r.latency_median_ns), _range(r.step_ns_range)]
        cells.append(_ms(r.latency_p90_ns))
        cells.append(_num(r.samples_per_s))
        if tokens:
            cells.append(_num(r.tokens_per_s, 0))
        if gpu:
            cells += [
                _num(r.gpu_busy_pct),
                _num(r.mfu_pct, 2),
                _num(r.achieved_tflops),
                _g(r.intensity_flop_per_byte),
                _num(r.memory_bound_pct),
            ]
        if mem:
            cells.append(fmt.size(r.peak_memory_bytes) if r.peak_memory_bytes else "n/a")
        if energy:
            cells += [_g(r.energy_per_sample_j), _num(r.avg_power_w)]
        rows.append(table_row(cells))
    table = table_header([c for c, _ in cols], [n for _, n in cols]) + "\n" + "\n".join(rows)
    return f"## Configurations\n\n{table}\n\n{_config_sentence(s)}"


def _isnum(v: str | None) -> bool:
    try:
        float(v or "")
    except ValueError:
        return False
    return True


def _config_sentence(s: Sweep) -> str:
    fast = min(s.runs, key=lambda r: r.latency_median_ns)
    slow = max(s.runs, key=lambda r: r.latency_median_ns)
    text = (
        f"Median step latency ranges from {_ms(fast.latency_median_ns)} ms "
        f"({code_cell(fast.name)}) to {_ms(slow.latency_median_ns)} ms ({code_cell(slow.name)})"
    )
    rated = [r for r in s.runs if r.samples_per_s is not None]
    if rated:
        lo = min(rated, key=lambda r: r.samples_per_s or 0.0)
        hi = max(rated, key=lambda r: r.samples_per_s or 0.0)
        text += (
            f"; throughput from {_num(lo.samples_per_s)} samples/s ({code_cell(lo.name)}) to "
            f"{_num(hi.samples_per_s)} ({code_cell(hi.name)})"
        )
    text += "."
    if s.cpu_only:
        text += (
            " These are CPU-only traces: there is no GPU and no device peak, so no GPU busy "
            "share, MFU, TFLOP/s or memory-bound figure is shown (none is invented)."
        )
    else:
        mfu = [r for r in s.runs if r.mfu_pct is not None]
        if mfu:
            top = max(mfu, key=lambda r: r.mfu_pct or 0.0)
            text += (
                f" The highest MFU is {_num(top.mfu_pct, 2)}% ({code_cell(top.name)}: "
                f"{_g(top.flops_per_step)} modeled FLOPs per step over a "
                f"{_ms(top.latency_median_ns)} ms step against the "
                f"{_e(top.peak_dtype or '')} peak of {_g(top.peak_tflops)} TFLOP/s)."
            )
    return text


def _scaling_table(s: Sweep, series: Series) -> str:
    cols = [
        (s.swept, True),
        ("samples/s", True),
        ("samples/s min-max (steps)", True),
        ("ideal samples/s", True),
        ("efficiency %", True),
        ("growth per doubling %", True),
        ("latency median ms", True),
        ("latency x of smallest", True),
    ]
    rows = []
    for p in series.points:
        grow = p.growth_per_doubling_pct
        rows.append(
            table_row(
                [
                    _e(p.label),
                    _num(p.run.samples_per_s),
                    _range(rate_range(p.run), 1.0, 0),
                    _num(p.ideal_samples_per_s),
                    _num(p.efficiency_pct),
                    "" if grow is None else f"{grow:+.1f}",
                    _ms(p.run.latency_median_ns),
                    _num(p.run.latency_median_ns / series.first.run.latency_median_ns, 2)
                    if series.first.run.latency_median_ns
                    else "n/a",
                ]
            )
        )
    return _table([c for c, _ in cols], [n for _, n in cols], rows)


def _scaling_sentence(s: Sweep, series: Series) -> str:
    first, last = series.first, series.last
    parts = []
    if series.throughput_gain_x is not None and last.efficiency_pct is not None:
        parts.append(
            f"From {s.swept}={_x(first.x)} to {_x(last.x)} ({last.x / first.x:g}x the work per "
            f"step) throughput grows {series.throughput_gain_x:.2f}x "
            f"({_num(first.run.samples_per_s)} -> {_num(last.run.samples_per_s)} samples/s), "
            f"{last.efficiency_pct:.1f}% of ideal linear scaling"
        )
    if series.latency_growth_x is not None:
        parts.append(
            f"median latency grows {series.latency_growth_x:.2f}x "
            f"({_ms(first.run.latency_median_ns)} -> {_ms(last.run.latency_median_ns)} ms)"
        )
    text = "; ".join(parts) + "." if parts else ""
    if series.noise is not None:
        return (
            f"{text} This series reads as noise, not scaling: {_e(series.noise)}; no plateau "
            "is claimed from it (profile more steps per configuration)."
        ).strip()
    if series.knee_x is not None and series.knee_x < series.last.x:
        text += (
            f" Knee: {s.swept}={_x(series.knee_x)} is the smallest within {KNEE_PCT:g}% of the "
            "series' highest throughput (or whose step interval reaches it)."
        )
    if series.plateau_x is not None:
        p = next(pt for pt in series.points if pt.x == series.plateau_x)
        after = [pt.growth_per_doubling_pct for pt in series.points if pt.x > series.plateau_x]
        shown = ", ".join(f"{g:+.1f}%" for g in after if g is not None)
        text += (
            f" Diminishing returns from {s.swept}={_x(series.plateau_x)} "
            f"({_num(p.run.samples_per_s)} samples/s): every further doubling adds less than "
            f"{s.plateau_pct:g}% throughput ({shown})."
        )
    elif len(series.points) > 1 and last.growth_per_doubling_pct is not None:
        text += (
            f" No plateau within the sweep: the last doubling still adds "
            f"{last.growth_per_doubling_pct:+.1f}% throughput (threshold {s.plateau_pct:g}%)."
        )
    return text


def _across_table(s: Sweep, series: Series) -> str:
    """A categorical sweep: each value against the first (no ideal to scale to)."""
    first = series.first.run
    cols = [s.swept, "samples/s", "x of first", "latency median ms", "x of first"]
    cols += ["GPU ms/step", "GPU busy %", "MFU %"]
    rows = []
    for p in series.points:
        r = p.run
        rows.append(
            table_row(
                [
                    _e(p.label),
                    _num(r.samples_per_s),
                    _num(r.samples_per_s / first.samples_per_s, 2)
                    if r.samples_per_s is not None and first.samples_per_s
                    else "n/a",
                    _ms(r.latency_median_ns),
                    _num(r.latency_median_ns / first.latency_median_ns, 2)
                    if first.latency_median_ns
                    else "n/a",
                    _ms(r.gpu_ns_per_step),
                    _num(r.gpu_busy_pct),
                    _num(r.mfu_pct, 2),
                ]
            )
        )
    table = _table(cols, [False] + [True] * 7, rows)
    fast = max(series.points, key=lambda p: p.run.samples_per_s or 0.0)
    slow = min(series.points, key=lambda p: p.run.samples_per_s or 0.0)
    text = ""
    if fast is not slow and fast.run.samples_per_s and slow.run.samples_per_s:
        text = (
            f"{_e(fast.label)} delivers {fast.run.samples_per_s / slow.run.samples_per_s:.2f}x "
            f"the throughput of {_e(slow.label)} ({_num(fast.run.samples_per_s)} vs "
            f"{_num(slow.run.samples_per_s)} samples/s; median step "
            f"{_ms(fast.run.latency_median_ns)} vs {_ms(slow.run.latency_median_ns)} ms)."
        )
    text = (text + " " + _device_figure(series)).strip()
    return f"{table}\n\n{text}".rstrip()


def _device_figure(series: Series) -> str:
    """GPU time per step (the device figure) and whether the latency measures the host."""
    gpu = [p for p in series.points if p.run.gpu_ns_per_step]
    if len(gpu) < 2:
        return ""
    lo = min(gpu, key=lambda p: p.run.gpu_ns_per_step or 0.0)
    hi = max(gpu, key=lambda p: p.run.gpu_ns_per_step or 0.0)
    text = (
        f"GPU time per step (the device figure): {_e(lo.label)} {_ms(lo.run.gpu_ns_per_step)} ms "
        f"vs {_e(hi.label)} {_ms(hi.run.gpu_ns_per_step)} ms "
        f"({(hi.run.gpu_ns_per_step or 0.0) / (lo.run.gpu_ns_per_step or 1.0):.2f}x)."
    )
    host = [p for p in gpu if (p.run.gpu_busy_pct or 0.0) < HOST_BOUND_BUSY_PCT]
    if host:
        shown = ", ".join(f"{_e(p.label)} {100.0 - (p.run.gpu_busy_pct or 0.0):.1f}%" for p in host)
        text += (
            f" The GPU is busy less than {HOST_BOUND_BUSY_PCT:g}% of the step (host share: "
            f"{shown}): the median latency difference measures the host, not the device."
        )
    text += " GPU busy share is not a device ranking: a slower kernel raises it."
    return text


def _scaling(s: Sweep) -> str:
    if not s.numeric:
        out = [
            f"## Comparison across `{s.swept}`\n\n`{s.swept}` has no order, so there is no "
            "ideal scaling or point of diminishing returns; each value is compared with the "
            "first."
        ]
        for series in s.series:
            head = f"### {_e(series.title)}\n\n" if len(s.series) > 1 else ""
            out.append(f"{head}{_across_table(s, series)}")
        return "\n\n".join(out)
    out = [
        f"## Scaling against ideal\n\nIdeal: throughput proportional to `{s.swept}` from the "
        f"smallest configuration of each series; growth per doubling between neighbours; "
        f"diminishing returns where every further doubling adds less than {s.plateau_pct:g}%."
    ]
    for series in s.series:
        head = f"### {_e(series.title)}\n\n" if len(s.series) > 1 else ""
        out.append(f"{head}{_scaling_table(s, series)}\n\n{_scaling_sentence(s, series)}".rstrip())
    return "\n\n".join(out)


def _utilization(s: Sweep) -> str:
    head = "## Utilization"
    if s.cpu_only:
        return (
            f"{head}\n\nNot computable: the traces record no GPU activity (CPU-only runs), so "
            "there is no GPU busy share or MFU to compare."
        )
    ends = "smallest -> largest" if s.numeric else "first -> last"
    cols = ["series", f"{s.swept} {ends}", "GPU busy %", "gain (points)", "gain x"]
    cols += ["MFU %"]
    rows = []
    sentences = []
    for series in s.series:
        a, b = series.first.run, series.last.run
        rows.append(
            table_row(
                [
                    _e(series.title),
                    f"{_e(series.first.label)} -> {_e(series.last.label)}",
                    f"{_num(a.gpu_busy_pct)} -> {_num(b.gpu_busy_pct)}",
                    "n/a" if series.util_gain_pp is None else f"{series.util_gain_pp:+.1f}",
                    "n/a" if series.util_gain_x is None else f"{series.util_gain_x:.2f}x",
                    f"{_num(a.mfu_pct, 2)} -> {_num(b.mfu_pct, 2)}",
                ]
            )
        )
        if series.util_gain_pp is not None and series.util_gain_x is not None:
            verb = "rises" if series.util_gain_pp >= 0 else "falls"
            sentences.append(
                f"{_e(series.title)}: GPU busy {verb} from {_num(a.gpu_busy_pct)}% to "
                f"{_num(b.gpu_busy_pct)}% of the step ({series.util_gain_pp:+.1f} points, "
                f"{series.util_gain_x:.2f}x) from {s.swept}={_e(series.first.label)} to "
                f"{_e(series.last.label)}."
            )
    table = _table(cols, [False, False, True, True, True, True], rows)
    if not table:
        return ""
    if not s.numeric:
        sentences.append(
            "Across devices the busy share is not a ranking: a slower kernel raises it."
        )
    return f"{head}\n\n{table}\n\n" + " ".join(sentences)


def _best(s: Sweep) -> str:
    rows = []
    for b in s.best:
        if b.run is None or b.value is None:
            rows.append(table_row([_e(b.goal), "n/a", "n/a", _e(b.why)]))
            continue
        value = (
            f"{b.value / 1e6:.3f} ms"
            if b.unit == "ns"
            else f"{b.value:.1f}%"
            if b.unit == "pct"
            else f"{b.value:.4g} J"
            if b.unit == "J"
            else f"{b.value:,.1f} {b.unit}"
        )
        labels = ", ".join(
            f"{k}={v}" for k, v in b.run.labels.items() if k not in ("world_size", "device")
        )
        rows.append(
            table_row([_e(b.goal), f"{code_cell(b.run.name)} ({_e(labels)})", value, _e(b.why)])
        )
    table = table_header(["goal", "configuration", "value", "basis"], [False] * 4) + "\n"
    table += "\n".join(rows)
    by_goal = {b.goal: b for b in s.best}
    texts = []
    for b in s.best:
        if not b.goal.startswith("lowest latency"):
            continue
        low, high = b, by_goal.get("highest throughput" + b.goal[len("lowest latency") :])
        if low.run and high and high.run and low.run is not high.run and high.value:
            texts.append(
                f"Lowest latency and highest throughput{_e(b.goal[len('lowest latency') :])} are "
                f"different configurations: {code_cell(low.run.name)} answers in "
                f"{_ms(low.run.latency_median_ns)} ms at {_num(low.run.samples_per_s)} "
                f"samples/s, {code_cell(high.run.name)} delivers {_num(high.value)} samples/s "
                f"at {_ms(high.run.latency_median_ns)} ms."
            )
        elif low.run and high and high.run:
            texts.append(
                f"{code_cell(low.run.name)} is both the fastest step and the best throughput."
            )
    text = " ".join(texts)
    if s.latency_budget_ns is not None:
        budget = by_goal.get("highest throughput within the latency budget")
        if budget is not None and budget.run is None:
            text += (
                f" No configuration meets the {s.latency_budget_ns / 1e6:.3g} ms budget "
                f"(fastest: {_ms(min(r.latency_median_ns for r in s.runs))} ms)."
            )
    return f"## Best configuration per goal\n\n{table}\n\n{text}".rstrip()


def _ceiling(s: Sweep) -> str:
    r = s.ceiling_run
    head = f"## What caps utilization at {s.ceiling_why}"
    if r is None:
        return ""
    if not r.has_gpu:
        return (
            f"{head}\n\n{code_cell(r.name)} is a CPU-only trace: no GPU idle, roofline or grid "
            "figures exist. Its step latency is "
            f"{_ms(r.latency_median_ns)} ms (p90 {_ms(r.latency_p90_ns)} ms)."
        )
    if not s.ceiling:
        return f"{head}\n\nNothing measured at {code_cell(r.name)}."
    rows = [
        table_row([_e(c.what), f"{c.share_pct:.1f}", _e(c.of), _e(c.detail)]) for c in s.ceiling
    ]
    table = table_header(["what", "share %", "of", "evidence"], [False, True, False, False])
    table += "\n" + "\n".join(rows)
    top = max(s.ceiling, key=lambda c: c.share_pct)
    text = (
        f"At {code_cell(r.name)} (median step {_ms(r.latency_median_ns)} ms) the largest "
        f"figure is {_e(top.what)}: {top.share_pct:.1f}% of {_e(top.of)}."
    )
    if r.intensity_flop_per_byte is not None and r.memory_bound_pct is not None:
        text += (
            f" All its modeled ops together run at {r.intensity_flop_per_byte:.3g} FLOP/byte; "
            f"{_num(r.memory_bound_pct)}% of its kernel time is memory-bound."
        )
    return f"{head}\n\n{table}\n\n{text}"


def _recommendations(s: Sweep) -> str:
    head = "## Recommendations\n\nRanked by the figure each rests on (share of step time at "
    head += "stake, latency saved or throughput growth); each is an upper bound, not a forecast."
    if not s.recommendations:
        return f"{head}\n\nNone: nothing in the sweep points to a change."
    items = [
        f"{i}. {_e(rec.text)} *({_e(rec.basis)}: {rec.gain_pct:.1f}%)*"
        for i, rec in enumerate(s.recommendations, start=1)
    ]
    return head + "\n\n" + "\n".join(items)


def _charts(images: Sequence[tuple[str, str]]) -> str:
    if not images:
        return ""
    lines = [f"![{_e(alt)}]({link})" for link, alt in images]
    return "## Charts\n\n" + "\n\n".join(lines)


def render(s: Sweep, images: Sequence[tuple[str, str]] = ()) -> str:
    """The sweep as Markdown; ``images``: (link, alt text) of charts already written."""
    parts = [_title(s), _sources(s), _notes(s), _config_table(s), _scaling(s)]
    parts += [_utilization(s), _best(s), _ceiling(s), _recommendations(s), _charts(images)]
    return "\n\n".join(p for p in parts if p).rstrip() + "\n"


def write_charts(s: Sweep, out_dir: Path) -> list[tuple[str, str]]:
    """Draw the charts into ``out_dir`` (see `analyzer.report.sweep_charts`)."""
    from gpu_trace_analyzer.report import sweep_charts

    return sweep_charts.write(s, out_dir)


def render_terminal(s: Sweep, width: int = 120) -> str:
    """The Markdown rendered by rich as a terminal shows it (plain text)."""
    from rich.console import Console
    from rich.markdown import Markdown

    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(Markdown(render(s)))
    return console.export_text()
