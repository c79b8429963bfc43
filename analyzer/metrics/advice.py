"""Advice worded for the workload: what the trace shows already running is never advised.

Rules read the one workload profile (`analyzer.metrics.workload`) through these helpers, so
that "use FlashAttention" is not said where FlashAttention runs, "CUDA graphs" not where
graphs replay the kernels, "torch.compile" not where Inductor produced them, and nothing on an
inference trace speaks of gradients or micro-batches.

Why here, in `analyzer.metrics`: the wording is a function of the workload profile (itself a
metric) and of the trace's metadata, and several rules share it. Rules may import the
analyzer's model and metrics but never each other, so shared wording cannot live in `rules/`;
it is not report formatting either (renderers never see the profile).
"""

from __future__ import annotations

import re

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
    """How to remove launch overhead, leaving out what already runs (empty when all does):
    a serving engine's own graph settings (vLLM, SGLang: never ``torch.compile``, which
    their users do not call), graphs for a model Inductor already compiles, else
    ``torch.compile``."""
    p = profile(ctx)
    if p.uses_graphs:
        return ""
    engine = p.serving_engine
    graphs = graphs_name(ctx)
    if engine == "vLLM":
        return (
            f"let vLLM capture the step in {graphs}: drop `--enforce-eager` "
            "(`enforce_eager=False`), set `compilation_config` `cudagraph_capture_sizes` to "
            "cover the batch/token counts this workload runs (prefill token counts are "
            "often above the default sizes), or use full cudagraph mode (`cudagraph_mode` "
            "FULL instead of piecewise)"
        )
    if engine == "SGLang":
        return (
            f"let SGLang replay the step from {graphs}: do not pass `--disable-cuda-graph`, "
            "and raise `--cuda-graph-max-bs` (or `--cuda-graph-bs`) to cover the batch sizes "
            "this workload runs"
        )
    if p.compiled or p.triton_kernels:
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
    if profile(ctx).compiled or profile(ctx).triton_kernels:
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


#: Frame packages with their own fix for host-side work the GPU waits on (REVIEW #10).
_HF_PREPROCESSING = (
    r"transformers/(image_processing|image_transforms|image_utils|video_utils|pipelines/"
    r"|processing_utils|feature_extraction)"
)
_GROUP_OFFLOAD = r"diffusers/hooks/(group_offloading|hooks\.py)"
_BACKWARD = r"(?i)backward|autograd"
_OPTIMIZER = r"(?i)optimizer|Optimizer\.step|_foreach_|shampoo|adam|sgd"
_DATALOADER = r"DataLoader"


def per_kernel_overhead_fix(ctx: AnalysisContext, call_site: str | None) -> str:
    """How to cut host work per kernel in dispatch-bound eager regions, naming the call
    site the idle ledger found; ``torch.compile`` only where Inductor does not run yet."""
    p = profile(ctx)
    site = f" (the ledger's call site: `{call_site}`)" if call_site else ""
    hook = (
        "; that frame is Python overhead of a tensor subclass's `__torch_function__` hook, "
        "paid on every op it touches, which graph replay removes"
        if call_site and "__torch_function__" in call_site
        else ""
    )
    graphs = launch_overhead_fix(ctx)
    if p.uses_graphs:
        graphs = f"{graphs_name(ctx)} already run here: capture the eager regions left outside them"
    fuse = (
        "look for graph breaks that leave eager regions between the compiled ones "
        "(`TORCH_LOGS=graph_breaks`)"
        if p.compiled or p.triton_kernels
        else "fuse small ops with `torch.compile`"
    )
    return f"Cut host work per kernel{site}: {graphs}{hook}; {fuse}; give each kernel more work"


def host_work_fix(ctx: AnalysisContext, detail: str, phase: str | None) -> str:
    """How to get host work the GPU waits on off the critical path, fitted to where it runs:
    the frame's package (Hugging Face preprocessing, diffusers group offloading), then the
    training phase (backward, optimizer step, data loading), else generic. DataLoader
    workers are advised only when a DataLoader runs."""
    where = f"{detail} {phase or ''}"
    if re.search(_HF_PREPROCESSING, where):
        return (
            "this is the Hugging Face pipeline's own preprocessing: use a fast image "
            "processor (`use_fast=True`), pass `batch_size` (and `num_workers`) to the "
            "pipeline so preprocessing overlaps the device, or run the preprocessing on "
            'the GPU (fast processors accept `device="cuda"`)'
        )
    if re.search(_GROUP_OFFLOAD, where):
        return (
            "this is diffusers' group-offloading hook moving weights: disable "
            "`enable_group_offload` (keep the module resident) when memory allows, or "
            "reconfigure it with `use_stream=True` so the transfers overlap compute "
            "(and a larger `num_blocks_per_group` / `offload_type`)"
        )
    if re.search(_OPTIMIZER, where):
        return (
            "this is host work of the optimizer step: use the fused or foreach "
            "implementation on the GPU (`fused=True`), and for preconditioned optimizers "
            "such as Shampoo compute the preconditioner less often "
            "(`precondition_frequency`) or distribute it (DistributedShampoo); overlap "
            "the step with the next iteration's forward where the framework allows"
        )
    if re.search(_BACKWARD, where):
        return (
            "this is host work inside the backward pass (autograd engine, backward and "
            "communication hooks, gradient bucketing): record Python stacks to find the "
            "hook, keep hooks free of host-side tensor work and syncs, and let "
            "communication hooks launch asynchronously"
        )
    if re.search(_DATALOADER, where):
        return (
            "this is data loading: use DataLoader workers (`num_workers`, "
            "`persistent_workers=True`, `pin_memory=True`) and prefetch the next batch"
        )
    return (
        "precompute it, run it on a background thread, or do it on the GPU, and queue GPU "
        "work ahead of it so it overlaps"
    )
