"""Unfused attention: the chain matmul -> (scale, mask) -> softmax -> matmul, found from shapes.

Eager attention (Hugging Face ``attn_implementation="eager"``, hand-written ``q @ k.T``) runs
as separate kernels: a batched GEMM Q·Kᵀ, elementwise scale and mask, a softmax over the key
length, a batched GEMM P·V. Kernel names cannot tell these GEMMs from any other; the shapes
of the ops that launched them can. A chain, on one CPU thread in program order:

1. a matmul-like op (``aten::matmul``, ``aten::bmm``, ``aten::baddbmm``) with A ``[..., M, d]``
   and B ``[..., d, N]`` where the inner dimension d is a head dimension (at most 256);
2. a softmax whose input is ``[..., M, N]``, the product's shape (it runs over the key length);
3. a matmul-like op with A ``[..., M, N]`` and B ``[..., N, d']`` (d' at most 256).

Every kernel launched from the chain's window on that thread (from the first product's start
to the second's end: scale, mask, dropout, the softmax and both products) is unfused attention.
Its FLOP/byte is set by the head dimension, not the batch, which is why `small-batch` does not
claim these GEMMs and why the fix is a fused kernel (SDPA / FlashAttention), not a larger batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

import polars as pl
from gpu_trace_analyzer.metrics.launch import kernel_launch_ops, launching_window
from gpu_trace_analyzer.parsers.schema import TraceTables

#: Largest inner dimension taken for a head dimension.
MAX_HEAD_DIM: Final = 256
_MATMUL_OPS: Final = frozenset({"aten::matmul", "aten::bmm", "aten::baddbmm"})
_SOFTMAX_OPS: Final = frozenset({"aten::softmax", "aten::_softmax", "aten::_safe_softmax"})

CHAIN_COLUMNS: Final = (
    "rank",
    "tid",
    "start_ns",
    "end_ns",
    "q_len",
    "k_len",
    "head_dim",
    "batch_heads",
    "qk_op",
    "softmax_op",
    "pv_op",
)


@dataclass(frozen=True, slots=True)
class UnfusedAttention:
    """The chains found, and per kernel (table order) whether it belongs to one.

    ``chains.gpu_ns``: the summed durations of the kernels launched inside each chain."""

    chains: pl.DataFrame
    kernel_mask: pl.Series

    @property
    def found(self) -> bool:
        """True when at least one chain ran kernels."""
        return bool(self.kernel_mask.any())


def unfused_attention(t: TraceTables) -> UnfusedAttention:
    """Find the unfused attention chains and the kernels they launched."""
    chains = find_chains(t)
    mask = pl.Series("unfused_attention", [False] * t.kernels.height, dtype=pl.Boolean)
    gpu = pl.Series("gpu_ns", [0] * chains.height, dtype=pl.Int64)
    if chains.height and t.kernels.height:
        window = launching_window(t, kernel_launch_ops(t), chains)
        mask = window.is_not_null().alias("unfused_attention")
        per_chain = (
            pl.DataFrame({"window": window, "dur_ns": t.kernels["dur_ns"]})
            .drop_nulls("window")
            .group_by("window")
            .agg(pl.col("dur_ns").sum())
        )
        gpu = (
            pl.DataFrame({"window": pl.int_range(chains.height, eager=True, dtype=pl.UInt32)})
            .join(per_chain, on="window", how="left", maintain_order="left")["dur_ns"]
            .fill_null(0)
            .cast(pl.Int64)
            .alias("gpu_ns")
        )
    return UnfusedAttention(chains.with_columns(gpu), mask)


def _dims(text: str | None) -> list[list[int]] | None:
    """The ``Input Dims`` JSON as a list of integer lists (None when unreadable)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    out: list[list[int]] = []
    for item in value:
        if isinstance(item, list) and all(isinstance(x, int) for x in item):
            out.append(list(item))
        else:
            out.append([])
    return out


def _operands(name: str, dims: list[list[int]]) -> tuple[list[int], list[int]] | None:
    """(A, B) shapes of a matmul-like op: baddbmm multiplies its second and third inputs."""
    pair = dims[1:3] if name == "aten::baddbmm" else dims[0:2]
    if len(pair) != 2 or len(pair[0]) < 3 or len(pair[1]) < 3:
        return None
    return pair[0], pair[1]


def find_chains(t: TraceTables) -> pl.DataFrame:
    """One row per unfused attention chain (columns `CHAIN_COLUMNS`)."""
    names = sorted(_MATMUL_OPS | _SOFTMAX_OPS)
    # An op without a thread (a repaired row) has no neighbours to chain with.
    ops = t.ops.filter(
        (pl.col("kind") == "cpu_op")
        & pl.col("name").cast(pl.String).is_in(names)
        & pl.col("tid").is_not_null()
    ).select(
        "rank",
        "tid",
        "op_id",
        "parent",
        pl.col("name").cast(pl.String),
        "start_ns",
        "dur_ns",
        "input_dims",
    )
    empty = pl.DataFrame(
        schema={c: (pl.Int64() if c not in ("rank",) else pl.Int32()) for c in CHAIN_COLUMNS}
    )
    if ops.height == 0:
        return empty
    # Outermost only: aten::matmul's inner aten::bmm, softmax's inner _softmax are skipped.
    outer = ops.filter(~pl.col("parent").is_in(ops["op_id"].implode()).fill_null(False))
    rows: list[dict[str, int]] = []
    for (rank, tid), group in outer.sort("start_ns").group_by(["rank", "tid"], maintain_order=True):
        rows.extend(_chains_on_thread(int(str(rank)), int(str(tid)), group))
    if not rows:
        return empty
    return pl.DataFrame(rows, schema=empty.schema, orient="row")


def _chains_on_thread(rank: int, tid: int, ops: pl.DataFrame) -> list[dict[str, int]]:
    """Walk one thread's matmul/softmax ops in program order; emit completed chains."""
    out: list[dict[str, int]] = []
    qk: dict[str, int] | None = None
    softmax: dict[str, int] | None = None
    for op in ops.iter_rows(named=True):
        dims = _dims(op["input_dims"])
        if dims is None:
            qk = softmax = None
            continue
        if op["name"] in _SOFTMAX_OPS:
            shape = dims[0] if dims else []
            if qk is not None and shape[-2:] == [qk["q_len"], qk["k_len"]]:
                softmax = {"op": op["op_id"]}
            else:
                qk = softmax = None
            continue
        operands = _operands(op["name"], dims)
        if operands is None:
            qk = softmax = None
            continue
        a, b = operands
        if (
            qk is not None
            and softmax is not None
            and a[-2:] == [qk["q_len"], qk["k_len"]]
            and b[-2] == qk["k_len"]
            and b[-1] <= MAX_HEAD_DIM
        ):
            out.append(
                {
                    "rank": rank,
                    "tid": tid,
                    "start_ns": qk["start_ns"],
                    "end_ns": int(op["start_ns"]) + int(op["dur_ns"] or 0),
                    "q_len": qk["q_len"],
                    "k_len": qk["k_len"],
                    "head_dim": qk["head_dim"],
                    "batch_heads": qk["batch_heads"],
                    "qk_op": qk["op"],
                    "softmax_op": softmax["op"],
                    "pv_op": int(op["op_id"]),
                }
            )
            qk = softmax = None
            continue
        softmax = None
        qk = None
        if a[-1] == b[-2] and 0 < a[-1] <= MAX_HEAD_DIM:
            batch = 1
            for x in a[:-2]:
                batch *= x
            qk = {
                "op": int(op["op_id"]),
                "start_ns": int(op["start_ns"]),
                "q_len": a[-2],
                "k_len": b[-1],
                "head_dim": a[-1],
                "batch_heads": batch,
            }
    return out
