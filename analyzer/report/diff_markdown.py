"""Markdown for `analyze diff`: one pull-request comment, at most 65,536 characters.

Every trace-derived string (file, op, kernel names, shapes, device names, versions,
finding titles) goes through the single-report renderer's escaping
(`analyzer.report.markdown.escape_text` / `code_span`, both built on
`analyzer.untrusted`). Long tables sit in ``<details>`` blocks; when the whole comment would
pass GitHub's limit, tables are cut by whole rows, last tables first, each with a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import Final

from gpu_trace_analyzer.diff import (
    CONFIDENCE,
    MIN_SAMPLES_FOR_INTERVAL,
    NOISE_METHOD,
    Change,
    FindingChange,
    GroupDelta,
    Metric,
    RunDiff,
)
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.markdown import (
    COMMENT_LIMIT,
    CutTable,
    Piece,
    code_cell,
    escape_text,
    fit,
    table_header,
    table_row,
)

#: Last line of every comment: a CI job finds its earlier comment by it and updates it
#: instead of adding another (see examples/github-actions/profile-diff.yml).
MARKER: Final = "<!-- analyze-diff -->"
#: Rows shown outside a <details> block in the explanation table.
TOP_ROWS: Final = 10
#: An idle-ledger row is named as the largest change only when it moved this many points.
LEDGER_NOTE_PP: Final = 0.5
CONFIDENCE_PCT: Final = round(100 * CONFIDENCE)


_Table = CutTable  # the single report's size discipline, shared (markdown.fit)
__all__ = ["COMMENT_LIMIT", "MARKER", "fit", "pieces", "render", "verdict_line"]


def _cell(text: str) -> str:
    return escape_text(text)


def _name(paths: Sequence[str]) -> str:
    if not paths:
        return "?"
    first = PurePath(paths[0]).name or paths[0]
    return first + (f" (+{len(paths) - 1})" if len(paths) > 1 else "")


def _signed_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


def _value(m: Metric, v: float | None) -> str:
    if v is None:
        return "n/a"
    if m.unit == "ns":
        return fmt.duration(v)
    if m.unit == "pct":
        return fmt.pct(v)
    if m.unit == "bytes":
        return fmt.size(v)
    if m.unit == "j":
        return f"{v:.4g} J"
    return f"{v:.1f}"


def _change(m: Metric) -> str:
    d = m.delta
    if d is None:
        return "n/a"
    if m.unit == "pct":
        text = f"{d:+.1f} pp"
    elif m.delta_pct is None:
        text = "new" if d else "0"
    else:
        text = _signed_pct(m.delta_pct)
        if m.unit == "ns":
            text = f"{'+' if d >= 0 else '-'}{fmt.duration(abs(d))} ({text})"
    if m.change is not None and m.change.has_noise_estimate:
        text += f" [{m.change.ci_low_pct:+.1f}%, {m.change.ci_high_pct:+.1f}%]"
    elif m.change is not None and m.change.too_few_samples:
        text += " [too few steps]"
    return text


def verdict_line(d: RunDiff) -> str:
    """The first line of the comment: verdict, step time of each side, change and noise."""
    ch: Change = d.step
    if not ch.base and not ch.candidate:
        return (
            "**Verdict: no step time to compare.** Neither input records GPU work or steps "
            "(counters only?); the table below compares what they do record."
        )
    word = {"faster": "faster", "slower": "slower", "unchanged": "unchanged within noise"}
    head = f"**Verdict: {word[d.verdict]}.**"
    nb, nc = d.base.steps, d.candidate.steps
    what = (
        f"median of {nb} vs {nc} steps"
        if d.base.has_steps and d.candidate.has_steps
        else ("no step annotations on a side: its whole profiled window counts as one step")
    )
    times = (
        f"Step time {fmt.duration(ch.base)} -> {fmt.duration(ch.candidate)} ({what}), "
        f"change {_signed_pct(ch.delta_pct)}"
    )
    if ch.has_noise_estimate:
        noise = (
            f"; {CONFIDENCE_PCT}% interval of the change {ch.ci_low_pct:+.1f}% to "
            f"{ch.ci_high_pct:+.1f}% ({NOISE_METHOD})."
        )
    elif ch.too_few_samples:
        noise = (
            f"; too few steps for a noise interval ({ch.n_base} vs {ch.n_candidate}; the "
            f"interval needs {MIN_SAMPLES_FOR_INTERVAL} a side); the change counts only when "
            "every step of one side is slower than every step of the other"
            + (" (they are)." if ch.separated else " (they are not).")
        )
        if d.verdict == "unchanged":
            head = "**Verdict: unchanged.**"
    else:
        noise = "; one step on a side: no noise estimate is possible."
        if d.verdict == "unchanged":
            head = "**Verdict: unchanged.**"
    return f"{head} {times}{noise}"


def _notes(d: RunDiff) -> str:
    if not d.notes:
        return ""
    items = "\n".join(f"> - {escape_text(n)}" for n in d.notes)
    return f"> **These runs differ beyond the change under review**\n>\n{items}"


def _headline(d: RunDiff) -> _Table:
    rows = [
        table_row([escape_text(m.label), _value(m, m.base), _value(m, m.candidate), _change(m)])
        for m in d.metrics
    ]
    return _Table(
        "## Headline\n\n",
        table_header(
            ["metric", "base", "candidate", "change [95% interval]"], [False, True, True, True]
        ),
        rows,
        "\n\nIdle rows are shares of the profiled window (idle ledger: each idle ns charged "
        "to one cause); GPU time per step (and rank) by op family."
        + (
            " A one-time first-step row is the GPU idle inside first-step calls many times "
            "slower than the same calls later (the `cold-start` finding): a cold-start cost "
            "kept out of its cause's steady-state row."
            if any(m.key.endswith("_cold_start_pct") for m in d.metrics)
            else ""
        ),
    )


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.3f}"


def _calls(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0")


def _short_names(names: Sequence[str]) -> dict[str, str]:
    """Kernel names shortened (`fmt.short_names`: boilerplate dropped, the functor kept),
    except where two would then read the same."""
    return fmt.short_names(names)


def _group_rows(groups: Sequence[GroupDelta], step_delta: float, shapes: bool) -> list[str]:
    out = []
    names = _short_names([g.name for g in groups])
    for g in groups:
        share = f"{100.0 * g.delta_ns / step_delta:+.0f}%" if step_delta else "n/a"
        cells = [code_cell(names[g.name])]
        if shapes:
            cells += [code_cell(g.shapes) if g.shapes else "", escape_text(g.dtype or "")]
        cells += [
            _calls(g.base_calls_per_step),
            _calls(g.candidate_calls_per_step),
            _ms(g.base_ns_per_step),
            _ms(g.candidate_ns_per_step),
            f"{g.delta_ns / 1e6:+.3f}",
            share,
        ]
        out.append(table_row(cells))
    return out


def _group_header(shapes: bool, what: str) -> str:
    cols = [what] + (["input shapes", "dtype"] if shapes else [])
    cols += [
        "calls/step base",
        "calls/step cand.",
        "GPU ms/step base",
        "GPU ms/step cand.",
        "change ms/step",
        "of step change",
    ]
    return table_header(cols, [False] * (3 if shapes else 1) + [True] * 6)


def _where(d: RunDiff) -> str:
    """Whether the step-time change is GPU work of the steps or elsewhere, and the idle-ledger
    cause that moved most."""
    gpu = d.metric("gpu_step_time_ns")
    if gpu is None or gpu.delta is None or not d.step.delta:
        return ""
    step_delta = d.step.delta
    text = (
        f"Step time changed by {_signed_duration(step_delta)}; the GPU busy time of each "
        f"step's own work by {_signed_duration(gpu.delta)}"
    )
    if abs(gpu.delta) < 0.5 * abs(step_delta):
        text += ", so most of the change is outside the steps' GPU work (CPU time or waiting)."
    else:
        text += ", so most of the change is GPU work."
    ledger = [
        m
        for m in d.metrics
        if m.key.startswith("idle_")
        and m.key != "idle_pct"
        and not m.key.endswith("_cold_start_pct")
        and m.delta is not None
        and abs(m.delta) >= LEDGER_NOTE_PP
    ]
    if ledger:
        top = max(ledger, key=lambda m: abs(m.delta or 0.0))
        text += (
            f" Largest idle-ledger change: {escape_text(top.label.removeprefix('idle: '))}, "
            f"{_value(top, top.base)} -> {_value(top, top.candidate)} of the profiled window."
        )
    return text


def _signed_duration(ns: float) -> str:
    return f"{'+' if ns >= 0 else '-'}{fmt.duration(abs(ns))}"


def _explain(d: RunDiff) -> list[Piece]:
    pieces: list[Piece] = [
        "## What explains the change\n\nOp groups matched by (op name, input shapes, dtype), "
        "GPU time per profiled step (and rank) on each side, ranked by the size of their change; "
        '"of step change" is the change\'s share of the step-time difference (GPU time can '
        "overlap, and CPU-side time is not in this table)."
    ]
    step_delta = d.step.delta
    lead = _where(d)
    if lead:
        pieces.append(lead)
    both = [g for g in d.changed_ops if g.side == "both"]
    one = [g for g in d.op_groups if g.side != "both"]
    if not both and not one:
        pieces.append("No op group changed its GPU time per step.")
    if both:
        pieces.append(
            _Table("", _group_header(True, "op"), _group_rows(both[:TOP_ROWS], step_delta, True))
        )
    if len(both) > TOP_ROWS:
        pieces.append(
            _Table(
                f"<details><summary>{len(both) - TOP_ROWS} more changed op groups</summary>\n\n",
                _group_header(True, "op"),
                _group_rows(both[TOP_ROWS:], step_delta, True),
                "\n\n</details>",
            )
        )
    if one:
        pieces.append(
            _Table(
                f"<details><summary>{len(one)} op groups on one side only "
                f"({sum(g.side == 'base' for g in one)} base only, "
                f"{sum(g.side == 'candidate' for g in one)} candidate only)</summary>\n\n",
                _group_header(True, "op"),
                _group_rows(one, step_delta, True),
                "\n\n</details>",
            )
        )
    if not d.kernels_matched:
        pieces.append(
            "Kernel names are not compared: the runs use different device families, whose "
            "kernels are named differently; the op groups above are the comparison."
        )
    elif d.changed_kernels:
        ks = d.changed_kernels
        pieces.append(
            _Table(
                f"<details><summary>{len(ks)} kernels changed (same device family, matched by "
                "name)</summary>\n\n",
                _group_header(False, "kernel"),
                _group_rows(ks, step_delta, False),
                "\n\n</details>",
            )
        )
    return pieces


def _finding_row(fc: FindingChange) -> str:
    f = fc.candidate or fc.base
    assert f is not None
    sev_b = fc.base.severity.label if fc.base else "-"
    sev_c = fc.candidate.severity.label if fc.candidate else "-"
    scope = "all ranks" if fc.rank is None else f"rank {fc.rank}"
    if fc.stream is not None:
        scope += f", stream {fc.stream}"
    return table_row(
        [fc.kind, code_cell(f.rule_id), scope, f"{sev_b} -> {sev_c}", escape_text(f.title)]
    )


def _findings(d: RunDiff) -> list[Piece]:
    head = "## Findings\n\nMatched by rule id, rank and stream."
    if not d.findings:
        return [
            f"{head} No finding appeared, disappeared or changed severity "
            f"({d.findings_unchanged} unchanged)."
        ]
    return [
        head,
        _Table(
            "",
            table_header(["change", "rule", "scope", "severity", "title"], [False] * 5),
            [_finding_row(fc) for fc in d.findings],
            f"\n\n{d.findings_unchanged} findings unchanged.",
        ),
    ]


def pieces(d: RunDiff) -> list[Piece]:
    """The comment's parts in order: text, and tables the budget may cut."""
    title = (
        f"# Run comparison: {escape_text(_name(d.base.paths))} -> "
        f"{escape_text(_name(d.candidate.paths))}"
    )
    out: list[Piece] = [title, verdict_line(d)]
    if d.notes:
        out.append(_notes(d))
    out.append(_headline(d))
    out.extend(_explain(d))
    out.extend(_findings(d))
    out.append(MARKER)
    return out


def render(d: RunDiff, limit: int = COMMENT_LIMIT) -> str:
    """The comparison as one Markdown comment of at most ``limit`` characters."""
    return fit(pieces(d), limit)
