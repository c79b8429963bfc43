"""Advice worded for the workload: what the trace shows already running is never advised.

Rules read the one workload profile (`analyzer.metrics.workload`) through these helpers, so
that "use FlashAttention" is not said where FlashAttention runs, "CUDA graphs" not where
graphs replay the kernels, "torch.compile" not where Inductor produced them, and nothing on an
inference trace speaks of gradients or micro-batches.
"""

from __future__ import annotations

from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics.workload import WorkloadProfile, workload_profile


def profile(ctx: AnalysisContext) -> WorkloadProfile:
    """The analysis's workload profile (computed once)."""
    return ctx.metric("workload", workload_profile)


def rocm(ctx: AnalysisContext) -> bool:
    """True when the trace was recorded on ROCm (HIP/roctracer versions, HIP runtime calls)."""
    versions = ctx.tables.meta.versions
    if any(
        k in versions for k in ("hip_runtime_version", "hip_driver_version", "roctracer_version")
    ):
        return True
    return profile(ctx).graph_api == "HIP graphs"


def graphs_name(ctx: AnalysisContext) -> str:
    """``"HIP graphs"`` on ROCm, else ``"CUDA graphs"``."""
    return "HIP graphs" if rocm(ctx) else "CUDA graphs"


def collective_library(ctx: AnalysisContext) -> str:
    """``"RCCL"`` on ROCm, else ``"NCCL"``."""
    return "RCCL" if rocm(ctx) else "NCCL"


def launch_overhead_fix(ctx: AnalysisContext) -> str:
    """How to remove launch overhead, leaving out what already runs (empty when all does)."""
    p = profile(ctx)
    if p.uses_graphs:
        return ""
    engine = p.serving_engine
    if engine == "vLLM":
        return f"enable vLLM's {graphs_name(ctx)} capture (do not pass `enforce_eager=True`)"
    if engine == "SGLang":
        return f"enable SGLang's {graphs_name(ctx)} capture (do not pass `--disable-cuda-graph`)"
    if p.compiled:
        return (
            f"capture the compiled model in {graphs_name(ctx)} "
            '(`torch.compile(mode="reduce-overhead")`)'
        )
    return (
        f'`torch.compile(mode="reduce-overhead")` (fuses small ops and replays them from '
        f"{graphs_name(ctx)})"
    )


def fusion_fix(ctx: AnalysisContext) -> str:
    """How to fuse memory-bound elementwise/normalization ops, given what already runs."""
    if profile(ctx).compiled:
        return (
            "look at the Inductor kernels that remain memory-bound (`triton_poi`/`triton_red` "
            "in the table) for graph breaks that split fusions (`TORCH_LOGS=graph_breaks`)"
        )
    return "fuse elementwise, normalization and activation ops with `torch.compile`"


def batch_advice(ctx: AnalysisContext) -> str:
    """How to give GEMMs more rows, in the workload's own terms."""
    p = profile(ctx)
    if p.is_training:
        return (
            "raise the batch size, or keep it and accumulate gradients over fewer, larger "
            "micro-batches; pack variable-length sequences into full-length rows"
        )
    if p.serving_engine:
        return (
            f"serve more sequences per step: raise {p.serving_engine}'s batch limits "
            "(max running sequences, max batched tokens) so continuous batching fills each step"
        )
    if p.is_inference:
        return (
            "run more inputs per forward pass (batch requests or frames together); pack "
            "variable-length inputs instead of padding many short ones"
        )
    return (
        "raise the batch size (more inputs per step); pack variable-length sequences into "
        "full-length rows instead of padding many short ones"
    )
