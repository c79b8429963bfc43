""" "Where the time goes": GPU time by op family, right after the headline.

The first question about any trace is what dominates it; this section answers it before any
finding does: each family's share of GPU time, its top ops, how much of it is unfused
attention (from shapes) and how much was replayed from CUDA/HIP graphs.
"""

from __future__ import annotations

from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics.graphs import graph_replay
from gpu_trace_analyzer.metrics.op_families import FamilyTime, attention_of, op_families
from gpu_trace_analyzer.metrics.serving import phase_breakdown
from gpu_trace_analyzer.metrics.workload import workload_profile
from gpu_trace_analyzer.report import fmt
from gpu_trace_analyzer.report.model import Block, Cell, Code, Paragraph, Section, Table
from gpu_trace_analyzer.sections.common import short_name

#: Families shown; the rest are summed in one "other families" row.
MAX_ROWS = 10


def build(ctx: AnalysisContext, charts: bool = False) -> Section | None:
    """The section, or None when the trace holds no GPU work."""
    del charts  # no charts
    fam = op_families(ctx)
    if fam.total_ns <= 0:
        return None
    blocks: list[Block] = [
        Paragraph.of(
            f"GPU time by op family over {fmt.ms(fam.total_ns, 2)} ms of kernels and memory "
            "operations (sum of durations; overlapping streams count in full). Families come "
            "from kernel names; unfused attention from the shapes of the ops that launched it."
        ),
        family_table(fam),
    ]
    attention = unfused_attention_note(ctx, fam)
    if attention is not None:
        blocks.append(attention)
    graphs = graphs_note(ctx)
    if graphs is not None:
        blocks.append(graphs)
    blocks.extend(phase_blocks(ctx))
    return Section("Where the time goes", blocks, key="time_by_family", lead=True)


def family_table(fam: FamilyTime, top: int = MAX_ROWS) -> Table:
    """Family, share, GPU time, calls, top ops; families past ``top`` summed in one row."""
    rows: list[list[Cell]] = []
    for r in fam.table.head(top).iter_rows(named=True):
        ops = ", ".join(short_name(o, 60) for o in (r["top_ops"] or []))
        rows.append(
            [
                r["label"],
                fmt.pct(r["share_pct"]),
                fmt.ms(r["gpu_ns"], 2),
                fmt.count(r["calls"]),
                Code(ops) if ops else "",
            ]
        )
    rest = fam.table.slice(top)
    if rest.height:
        rest_ns = int(rest["gpu_ns"].sum())
        rows.append(
            [
                f"{rest.height} other families",
                fmt.pct(100.0 * rest_ns / fam.total_ns),
                fmt.ms(rest_ns, 2),
                fmt.count(int(rest["calls"].sum())),
                "",
            ]
        )
    return Table(
        ["family", "share of GPU time", "GPU time ms", "kernels and copies", "top ops"],
        rows,
        numeric=[False, True, True, True, False],
    )


def unfused_attention_note(ctx: AnalysisContext, fam: FamilyTime) -> Paragraph | None:
    """What the unfused attention chains are: count, shapes, share."""
    chains = attention_of(ctx).chains
    share = fam.share("attention_unfused")
    if chains.height == 0 or share <= 0:
        return None
    shapes = (
        chains.group_by("q_len", "k_len", "head_dim")
        .len()
        .sort(["len", "k_len"], descending=[True, True])
        .head(3)
    )
    described = "; ".join(
        f"{r['len']} x query length {r['q_len']:,}, key length {r['k_len']:,}, "
        f"head dimension {r['head_dim']}"
        for r in shapes.iter_rows(named=True)
    )
    return Paragraph.of(
        f"Unfused attention: {chains.height} chains of batched matmul (Q·Kᵀ), softmax and "
        f"batched matmul (P·V) take {fmt.pct(share)} of GPU time ({described}). Their "
        "FLOP/byte is set by the head dimension, not the batch size; a fused kernel "
        "(scaled_dot_product_attention) removes the score matrix's round trips to memory."
    )


def graphs_note(ctx: AnalysisContext) -> Paragraph | None:
    """The share of kernel time replayed from CUDA/HIP graphs."""
    g = ctx.metric("graph_replay", graph_replay)
    if g.launches == 0:
        return None
    api = (ctx.metric("workload", workload_profile).graph_api or "graphs").removesuffix("s")
    plural = "es" if g.launches > 1 else ""
    return Paragraph.of(
        f"{fmt.pct(g.share_pct)} of kernel time ({fmt.count(g.replayed_kernels)} kernels) was "
        f"replayed from {g.launches} {api} launch{plural}; those kernels have no CPU op of "
        "their own (the ops ran at capture time), so their top ops show kernel names."
    )


def phase_blocks(ctx: AnalysisContext) -> list[Block]:
    """Per serving phase (prefill / decode): GPU time, busy share, top families."""
    phases = ctx.metric("serving_phases", phase_breakdown)
    if phases.height == 0:
        return []
    rows: list[list[Cell]] = [
        [
            r["phase"],
            fmt.count(r["windows"]),
            r["batch_sizes"] or "",
            fmt.ms(r["gpu_ns"], 2),
            fmt.pct(r["share_pct"]),
            fmt.pct(r["busy_pct"]),
            r["top_families"],
        ]
        for r in phases.iter_rows(named=True)
    ]
    return [
        Paragraph.of(
            "Serving phases, from the engine's own step annotations and attention calls "
            "(a kernel belongs to the phase whose CPU window launched it; batch size is "
            "sequences per step, for decode also tokens per step):"
        ),
        Table(
            [
                "phase",
                "steps",
                "batch sizes",
                "GPU time ms",
                "share of kernel time",
                "GPU busy",
                "top families",
            ],
            rows,
            numeric=[False, True, False, True, True, True, False],
        ),
    ]
