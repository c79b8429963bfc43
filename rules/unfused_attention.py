"""`unfused-attention`: attention computed as matmul, softmax, matmul instead of one fused kernel.

The chains come from `analyzer.metrics.attention` (shapes of the launching ops: the first
product's inner dimension is the head dimension, the softmax runs over the key length). Their
kernels' share of GPU time is the stake: a fused kernel (FlashAttention / memory-efficient
SDPA) never writes the [query x key] score matrix to memory, so the softmax pass and most of
the matmuls' memory traffic disappear. Needs recorded shapes (``record_shapes=True``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import polars as pl
from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.findings import EvidenceTable, Finding, Scope, Severity
from gpu_trace_analyzer.metrics import advice as _advice
from gpu_trace_analyzer.metrics.op_families import attention_of, op_families
from gpu_trace_analyzer.rules.base import RuleConfig, register

_TABLE_ROWS = 6


@dataclass(frozen=True, slots=True)
class UnfusedAttentionConfig(RuleConfig):
    """Thresholds of `unfused-attention`."""

    warning_share_pct: float = 5.0
    """Share of GPU time (%) in unfused attention chains at which the rule warns."""
    critical_share_pct: float = 40.0
    """Share of GPU time (%) at which the finding is critical."""
    min_group_share_pct: float = 5.0
    """A shape group (query, key length, head dim) is listed and claimed only when its
    chains hold at least this share (%) of the unfused attention's GPU time; smaller groups
    (tiny heads such as 5 x 5 text-query attention, where a fused kernel gains next to
    nothing) are summed in one line."""


@register
class UnfusedAttention:
    """Attention as separate matmul / softmax / matmul kernels, from the ops' shapes."""

    id: ClassVar[str] = "unfused-attention"
    title: ClassVar[str] = "Attention runs unfused: matmul, softmax, matmul"
    description: ClassVar[str] = (
        "Chains of batched matmul (inner dimension = head dimension), softmax over the key "
        "length and batched matmul, found from recorded shapes; their share of GPU time, with "
        "the switch to scaled_dot_product_attention as the fix."
    )
    needs: ClassVar[frozenset[str]] = frozenset({"kernels", "shapes"})
    Config: ClassVar[type[UnfusedAttentionConfig]] = UnfusedAttentionConfig

    def check(self, ctx: AnalysisContext, cfg: UnfusedAttentionConfig) -> Iterable[Finding]:
        """One finding when unfused attention takes the configured share of GPU time."""
        attention = attention_of(ctx)
        fam = op_families(ctx)
        share = fam.share("attention_unfused")
        if not attention.found or share < cfg.warning_share_pct:
            return []
        chains = attention.chains
        stake_ns = fam.ns("attention_unfused")
        groups = (
            chains.group_by("q_len", "k_len", "head_dim")
            .agg(pl.len().alias("chains"), pl.col("batch_heads").first(), pl.col("gpu_ns").sum())
            .sort(["gpu_ns", "chains", "k_len"], descending=[True, True, True])
        )
        chain_ns = max(int(groups["gpu_ns"].sum()), 1)
        matters = pl.col("gpu_ns") >= cfg.min_group_share_pct / 100.0 * chain_ns
        shapes = groups.filter(matters)
        if shapes.height == 0:
            shapes = groups.head(1)
        minor = groups.filter(~matters) if shapes.height < groups.height else groups.clear()
        minor = minor.join(
            shapes.select("q_len", "k_len", "head_dim"),
            on=["q_len", "k_len", "head_dim"],
            how="anti",
        )
        top = shapes.row(0, named=True)
        listed = int(shapes["chains"].sum())
        severity = Severity.CRITICAL if share >= cfg.critical_share_pct else Severity.WARNING
        ranks = chains["rank"].unique().to_list()
        profile = _advice.profile(ctx)
        hf = profile.uses("Hugging Face Transformers") or profile.uses("Hugging Face pipelines")
        listed_ns = int(shapes["gpu_ns"].sum())
        if minor.height:  # claim only the groups that matter
            stake_ns = listed_ns
            share = 100.0 * listed_ns / max(fam.total_ns, 1)
            severity = Severity.CRITICAL if share >= cfg.critical_share_pct else Severity.WARNING
        summary = (
            f"{share:.1f}% of GPU time ({stake_ns / 1e6:.2f} ms) is attention computed as "
            f"separate kernels: {listed} chains of batched matmul (Q·Kᵀ), softmax and "
            f"batched matmul (P·V) in the shape groups that matter (each at least "
            f"{cfg.min_group_share_pct:g}% of that time); the largest has query length "
            f"{top['q_len']:,}, key length {top['k_len']:,} and head dimension "
            f"{top['head_dim']} ({top['chains']} chains, {int(top['gpu_ns']) / 1e6:.2f} ms), "
            f"so each writes and reads a {top['q_len']:,} x {top['k_len']:,} score matrix "
            "per head."
        )
        if minor.height:
            minor_ns = int(minor["gpu_ns"].sum())
            sizes = ", ".join(
                f"{r['q_len']:,} x {r['k_len']:,}" for r in minor.head(3).iter_rows(named=True)
            )
            summary += (
                f" {int(minor['chains'].sum())} more chain(s) in {minor.height} small shape "
                f"group(s) ({sizes}{', ...' if minor.height > 3 else ''}) take "
                f"{minor_ns / 1e6:.2f} ms ({100.0 * minor_ns / chain_ns:.1f}% of the unfused "
                "attention time): too small for a fused kernel to gain more than a few "
                "launches; not listed or claimed."
            )
        fix = (
            'Load the model with `attn_implementation="sdpa"` (Hugging Face; '
            '"flash_attention_2" where the flash-attn package is installed) so attention runs '
            "as one fused kernel"
            if hf
            else "Replace the matmul-softmax-matmul with "
            "`torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=...)`, which "
            "dispatches to a fused FlashAttention or memory-efficient kernel"
        )
        recommendation = (
            fix + "; the score matrix then never goes to memory, and the softmax and scaling "
            "kernels disappear. This is not a batch-size problem: these matmuls' FLOP/byte is "
            "set by the head dimension."
        )
        if _advice.rocm(ctx):
            recommendation += (
                " On ROCm, SDPA uses the AOTriton/CK flash kernels in recent PyTorch builds."
            )
        return [
            Finding(
                rule_id=self.id,
                severity=severity,
                title=self.title,
                summary=summary,
                evidence={
                    "unfused_attention_share_pct": round(share, 2),
                    "unfused_attention_ns": stake_ns,
                    "gpu_time_ns": fam.total_ns,
                    "chains": chains.height,
                    "chains_listed": listed,
                    "chains_negligible": int(minor["chains"].sum()) if minor.height else 0,
                    "top_q_len": int(top["q_len"]),
                    "top_k_len": int(top["k_len"]),
                    "top_head_dim": int(top["head_dim"]),
                },
                recommendation=recommendation,
                scope=Scope(rank=int(ranks[0]) if len(ranks) == 1 else None),
                impact_ns=stake_ns,
                table=EvidenceTable(
                    columns=[
                        "query length",
                        "key length",
                        "head dim",
                        "batch x heads",
                        "chains",
                        "GPU ms",
                    ],
                    rows=[
                        [
                            int(r["q_len"]),
                            int(r["k_len"]),
                            int(r["head_dim"]),
                            int(r["batch_heads"]),
                            int(r["chains"]),
                            round(int(r["gpu_ns"]) / 1e6, 2),
                        ]
                        for r in shapes.head(_TABLE_ROWS).iter_rows(named=True)
                    ],
                ),
            )
        ]
