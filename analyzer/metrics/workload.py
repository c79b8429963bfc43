"""What was profiled: training or inference, and which parts of the stack the trace shows.

Computed once per analysis (``ctx.metric("workload", workload_profile)``) and read by every
rule that words advice, so that no rule re-derives (and contradicts) it: no training vocabulary
on inference traces, no advice for a technique the trace shows already in use.

Training shows autograd (``autograd::engine::evaluate_function``, ``*Backward*`` ops) or an
optimizer step (``Optimizer.step#...``, ``Optimizer.zero_grad#...``); inference shows neither.
A trace with no CPU ops (GPU-only capture) says nothing either way: ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import polars as pl

from parsers.schema import TraceTables

Mode = Literal["training", "inference", "unknown"]

#: Runtime calls that replay a captured graph.
_GRAPH_LAUNCH_PATTERN: Final = r"^(cuda|hip)GraphLaunch"

#: CPU ops that only run when gradients are computed or applied.
_TRAINING_OP_PATTERN: Final = (
    r"^autograd::engine::evaluate_function|Backward[0-9]*$|^Optimizer\.(step|zero_grad)#"
)


@dataclass(frozen=True, slots=True)
class WorkloadProfile:
    """The workload as the trace shows it; ``evidence`` says what each conclusion rests on."""

    mode: Mode
    evidence: tuple[str, ...] = ()
    graph_launches: int = 0
    """CUDA/HIP graph launch calls (``cudaGraphLaunch``, ``hipGraphLaunch``) in the trace."""

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


def workload_profile(t: TraceTables) -> WorkloadProfile:
    """Classify the trace as training, inference or unknown from its CPU ops."""
    graphs = t.runtime.filter(
        pl.col("name").cast(pl.String).str.contains(_GRAPH_LAUNCH_PATTERN)
    ).height
    cpu_ops = t.ops.filter(pl.col("kind") == "cpu_op")
    if cpu_ops.height == 0:
        return WorkloadProfile("unknown", ("no CPU ops recorded",), graphs)
    names = cpu_ops.select(pl.col("name").cast(pl.String).unique())["name"]
    training = names.filter(names.str.contains(_TRAINING_OP_PATTERN))
    if training.len():
        shown = ", ".join(sorted(training.to_list())[:3])
        return WorkloadProfile("training", (f"backward/optimizer ops: {shown}",), graphs)
    return WorkloadProfile("inference", ("no backward or optimizer ops among the CPU ops",), graphs)
