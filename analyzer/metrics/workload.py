"""What was profiled: training or inference, and which parts of the stack the trace shows.

Computed once per analysis (``ctx.metric("workload", workload_profile)``) and read by every
rule that words advice, so that no rule re-derives (and contradicts) it: no training vocabulary
on inference traces, no advice for a technique the trace shows already in use.

Training shows autograd (``autograd::engine::evaluate_function``, ``*Backward*`` ops) or an
optimizer step (``Optimizer.step#...``, ``Optimizer.zero_grad#...``); inference shows neither.
A trace with no CPU ops (GPU-only capture) says nothing either way: ``unknown``.

The stack is read from names the trace already holds: Python frames (``with_stack``) and
module names of Hugging Face, vLLM, SGLang, TorchRec, DeepSpeed, diffusers/xDiT; CPU ops of
DDP/FSDP and of torch.compile (``Torch-Compiled Region``); kernel names of Triton, FlashAttention
/ SDPA and fused optimizers; runtime calls of CUDA/HIP graph replays; the profiler's own flags.
Each detection keeps the name it rests on (``evidence``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

import polars as pl
from gpu_trace_analyzer.parsers.categories import family_of
from gpu_trace_analyzer.parsers.schema import TraceTables

Mode = Literal["training", "inference", "unknown"]

#: Runtime calls that replay a captured graph.
_GRAPH_LAUNCH_PATTERN: Final = r"^(cuda|hip)GraphLaunch"

#: CPU ops that only run when gradients are computed or applied.
_TRAINING_OP_PATTERN: Final = (
    r"^autograd::engine::evaluate_function|Backward[0-9]*$|^Optimizer\.(step|zero_grad)#"
)

#: (framework, regex over CPU-op / annotation / Python-frame names).
_FRAMEWORKS: Final[tuple[tuple[str, str], ...]] = (
    ("Hugging Face pipelines", r"(^|/)transformers/pipelines/"),
    ("Hugging Face Transformers", r"(^|/)transformers/(models|modeling_|generation|pipelines)"),
    ("vLLM", r"(^|/)vllm/|^vllm::"),
    ("SGLang", r"(^|/)sglang/|^sglang::"),
    ("TorchRec", r"(^|/)torchrec/|^torchrec::|^fbgemm::"),
    ("diffusers", r"(^|/)diffusers/"),
    ("xDiT", r"(^|/)xfuser/"),
    ("DDP", r"DistributedDataParallel|nn/parallel/distributed\.py|^DDP::|reducer\.cpp"),
    ("FSDP", r"FullyShardedDataParallel|distributed/fsdp/|^FSDP::|fully_shard"),
    ("DeepSpeed", r"(^|/)deepspeed/|^DeepSpeed"),
    ("torch.compile (Inductor)", r"^Torch-Compiled Region|torch/_inductor/|^CompiledFunction"),
)

#: How the header states an unknown mode.
_UNKNOWN_MODE: Final = "training or inference not known (no CPU ops recorded)"

#: Kernel families whose presence means the technique already runs.
_FUSED_ATTENTION: Final = "attention"
_OPTIMIZER: Final = "optimizer"
_TRITON_KERNEL: Final = re.compile(r"^triton_|^_?triton", re.IGNORECASE)
_FUSED_OPTIMIZER_KERNEL: Final = re.compile(r"multi_tensor_apply|fused_?adam|FusedAdam", re.I)


@dataclass(frozen=True, slots=True)
class WorkloadProfile:
    """The workload as the trace shows it; ``evidence`` says what each conclusion rests on."""

    mode: Mode
    evidence: tuple[str, ...] = ()
    graph_launches: int = 0
    """CUDA/HIP graph launch calls (``cudaGraphLaunch``, ``hipGraphLaunch``) in the trace."""
    frameworks: tuple[str, ...] = ()
    """Frameworks and parallelism wrappers seen (``"vLLM"``, ``"DDP"``, ...), report order."""
    features: tuple[str, ...] = ()
    """Profiler options in effect: ``record_shapes``, ``with_stack``, ``profile_memory``."""
    graph_api: str = ""
    """``"CUDA graphs"`` or ``"HIP graphs"`` when graph launches were recorded."""
    fused_attention: tuple[str, ...] = ()
    """Names of fused attention kernels that ran (FlashAttention, SDPA, FMHA, paged ...)."""
    triton_kernels: int = 0
    """Distinct Triton-generated kernels (Inductor or hand-written Triton)."""
    fused_optimizer: bool = False
    """A foreach/fused optimizer kernel (``multi_tensor_apply``, fused Adam) ran."""
    collectives: tuple[str, ...] = ()
    """Collective kinds recorded (``allreduce``, ``all_to_all`` ...), most time first."""

    @property
    def uses_graphs(self) -> bool:
        """True when kernels were replayed from CUDA/HIP graphs."""
        return self.graph_launches > 0

    @property
    def is_training(self) -> bool:
        """True only when the trace shows backward or optimizer work."""
        return self.mode == "training"

    @property
    def is_inference(self) -> bool:
        """True when CPU ops were recorded and none of them is backward or optimizer work."""
        return self.mode == "inference"

    def uses(self, framework: str) -> bool:
        """True when ``framework`` (a name from the frameworks list) was seen."""
        return framework in self.frameworks

    @property
    def compiled(self) -> bool:
        """True when torch.compile (Inductor) produced kernels or regions."""
        return self.uses("torch.compile (Inductor)")

    @property
    def serving_engine(self) -> str | None:
        """``"vLLM"`` or ``"SGLang"`` when an LLM serving engine ran, else None."""
        for engine in ("vLLM", "SGLang"):
            if self.uses(engine):
                return engine
        return None

    @property
    def data_parallel(self) -> str | None:
        """The data-parallel wrapper seen (``"DDP"``, ``"FSDP"``, ``"DeepSpeed"``), else None."""
        for wrapper in ("FSDP", "DeepSpeed", "DDP"):
            if self.uses(wrapper):
                return wrapper
        return None

    def describe(self) -> str:
        """One line for the report header: mode, stack, graphs, profiler options."""
        parts: list[str] = [self.mode if self.mode != "unknown" else _UNKNOWN_MODE]
        stack = list(self.frameworks)
        if self.triton_kernels and not self.compiled:
            stack.append("Triton kernels")
        if stack:
            parts.append(", ".join(stack))
        if self.graph_api:
            plural = "es" if self.graph_launches > 1 else ""
            parts.append(f"{self.graph_api} ({self.graph_launches} launch{plural})")
        if self.fused_attention:
            parts.append("fused attention kernels")
        if self.features:
            parts.append("recorded: " + ", ".join(self.features))
        return " · ".join(parts)


def workload_profile(t: TraceTables) -> WorkloadProfile:
    """Classify the trace as training, inference or unknown, and read its stack."""
    graph_calls = t.runtime.filter(
        pl.col("name").cast(pl.String).str.contains(_GRAPH_LAUNCH_PATTERN)
    )["name"].cast(pl.String)
    graphs = graph_calls.len()
    graph_api = ""
    if graphs:
        graph_api = "HIP graphs" if graph_calls[0].startswith("hip") else "CUDA graphs"
    stack = _stack(t)
    cpu_ops = t.ops.filter(pl.col("kind") == "cpu_op")
    if cpu_ops.height == 0:
        mode: Mode = "unknown"
        evidence: tuple[str, ...] = ("no CPU ops recorded",)
    else:
        names = cpu_ops["name"].unique().drop_nulls().cast(pl.String)
        training = names.filter(names.str.contains(_TRAINING_OP_PATTERN))
        if training.len():
            shown = ", ".join(sorted(training.to_list())[:3])
            mode, evidence = "training", (f"backward/optimizer ops: {shown}",)
        else:
            mode, evidence = "inference", ("no backward or optimizer ops among the CPU ops",)
    frameworks, found = stack
    return WorkloadProfile(
        mode,
        (*evidence, *found),
        graphs,
        frameworks=frameworks,
        features=_features(t),
        graph_api=graph_api,
        fused_attention=_kernels_of_family(t, _FUSED_ATTENTION),
        triton_kernels=_triton_kernels(t),
        fused_optimizer=_has_fused_optimizer(t),
        collectives=_collectives(t),
    )


def _stack(t: TraceTables) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Frameworks whose names occur among the ops (any kind), and the name each rests on."""
    names = t.ops["name"].unique().drop_nulls().cast(pl.String)
    found: list[str] = []
    evidence: list[str] = []
    for framework, pattern in _FRAMEWORKS:
        hits = names.filter(names.str.contains(pattern))
        if framework == "Hugging Face Transformers" and "Hugging Face pipelines" in found:
            continue  # pipelines imply Transformers; say the more specific
        if hits.len():
            found.append(framework)
            evidence.append(f"{framework}: {sorted(hits.to_list())[0][:80]}")
    if "TorchRec" not in found:
        kernels = _distinct_kernel_names(t)
        tbe = [n for n in kernels if "split_embedding" in n]
        if tbe:
            found.append("TorchRec")
            evidence.append(f"TorchRec: {tbe[0][:80]}")
    return tuple(found), tuple(evidence)


def _features(t: TraceTables) -> tuple[str, ...]:
    """The profiler options the trace shows in effect, from its flags or from its contents."""
    flags = t.meta.flags
    out = []
    if _flag(flags.get("record_shapes")) or t.ops["input_dims"].drop_nulls().len():
        out.append("record_shapes")
    kinds = set(t.ops["kind"].unique().cast(pl.String).to_list()) if t.ops.height else set()
    if _flag(flags.get("with_stack")) or "python_function" in kinds:
        out.append("with_stack")
    if _flag(flags.get("profile_memory")) or t.memory.height:
        out.append("profile_memory")
    return tuple(out)


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"1", "true", "yes"}


def _distinct_kernel_names(t: TraceTables) -> list[str]:
    names: list[str] = t.kernels["name"].unique().drop_nulls().cast(pl.String).to_list()
    return names


def _kernels_of_family(t: TraceTables, family: str) -> tuple[str, ...]:
    return tuple(sorted(n for n in _distinct_kernel_names(t) if family_of(n) == family))


def _triton_kernels(t: TraceTables) -> int:
    return sum(1 for n in _distinct_kernel_names(t) if _TRITON_KERNEL.search(n))


def _has_fused_optimizer(t: TraceTables) -> bool:
    return any(
        _FUSED_OPTIMIZER_KERNEL.search(n) and family_of(n) == _OPTIMIZER
        for n in _distinct_kernel_names(t)
    )


def _collectives(t: TraceTables) -> tuple[str, ...]:
    """Collective kinds, most GPU time first: from the comms table, else from kernel names."""
    if t.comms.height:
        by = (
            t.comms.group_by(pl.col("collective").cast(pl.String))
            .agg(pl.col("dur_ns").sum())
            .sort(["dur_ns", "collective"], descending=[True, False])
        )
        return tuple(c for c in by["collective"].to_list() if c)
    kinds: dict[str, int] = {}
    comm = t.kernels.filter(pl.col("category").cast(pl.String) == "comm")
    for name, dur in (
        comm.group_by(pl.col("name").cast(pl.String)).agg(pl.col("dur_ns").sum()).rows()
    ):
        kind = _collective_of(name)
        kinds[kind] = kinds.get(kind, 0) + int(dur or 0)
    return tuple(k for k, _ in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))


_COLLECTIVE_NAMES: Final = (
    ("all_to_all", r"alltoall|all_to_all|sendrecv"),
    ("allreduce", r"allreduce|all_reduce"),
    ("allgather", r"allgather|all_gather"),
    ("reduce_scatter", r"reducescatter|reduce_scatter"),
    ("broadcast", r"broadcast"),
)


def _collective_of(name: str) -> str:
    for kind, pattern in _COLLECTIVE_NAMES:
        if re.search(pattern, name, re.IGNORECASE):
            return kind
    return "other"
