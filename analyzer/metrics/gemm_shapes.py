"""GEMM dimensions from the roofline's shapes label, and the shapes of unfused attention.

Shared by the rules that reason about GEMM shapes (`small-batch`, `misaligned-gemm`,
`rocm-tuning`): they live here, not in one of those rules, because rules never import each
other.
"""

from __future__ import annotations

import math

from gpu_trace_analyzer.context import AnalysisContext
from gpu_trace_analyzer.metrics.op_families import attention_of


def gemm_dims(op_name: str, shapes: str) -> tuple[int, int, int, int] | None:
    """(batch, M, N, K) of a GEMM from the roofline's shapes label, or None.

    The label lists tensor inputs as ``AxB`` in argument order: ``aten::addmm`` /
    ``aten::baddbmm`` start with the bias, ``aten::linear`` has the weight as N x K.
    """
    try:
        tensors = [
            tuple(int(d) for d in part.strip().split("x")) for part in shapes.split(",") if part
        ]
    except ValueError:
        return None
    name = op_name.split("::")[-1]
    if name in ("addmm", "baddbmm", "addbmm", "_addmm_activation"):
        tensors = tensors[1:3]
    if len(tensors) < 2:
        return None
    a, b = tensors[0], tensors[1]
    if name == "linear":
        if len(b) != 2 or not a:
            return None
        return 1, math.prod(a[:-1]) if len(a) > 1 else 1, b[0], b[1]
    if len(a) < 2 or len(b) < 2:
        return None
    batch = max(math.prod(a[:-2]), math.prod(b[:-2]))
    return batch, a[-2], b[-1], a[-1]


def attention_gemm_shapes(ctx: AnalysisContext) -> set[tuple[int, int, int]]:
    """(M, N, K) of the products of unfused attention chains: Q·Kᵀ is (q, k, d), P·V (q, d, k)."""
    chains = attention_of(ctx).chains
    shapes: set[tuple[int, int, int]] = set()
    for q, k, d in chains.select("q_len", "k_len", "head_dim").unique().iter_rows():
        shapes.add((int(q), int(k), int(d)))
        shapes.add((int(q), int(d), int(k)))
    return shapes
