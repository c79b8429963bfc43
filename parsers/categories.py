"""Kernel categories from kernel names, kept in one ordered table (first match wins).

Profilers record no kernel "type"; every peer (HTA, TraceLens, tb_plugin) derives it from the
name. The rows below are ordered so that the specific wins over the general: a cuDNN
``implicit_gemm`` convolution is ``conv`` before the ``gemm`` row can claim it, a
``direct_copy_kernel`` inside ``elementwise_kernel`` is ``copy``, a batch-norm kernel under a
``cudnn::`` namespace is ``norm``. Matching is case-insensitive.

`is_communication` and `is_memory_name` reproduce HTA's own kernel-type rules exactly, so that
our temporal breakdown can be compared with HTA's figures.
"""

from __future__ import annotations

import re
from typing import Final

import polars as pl

#: Every category `categorize` can return, in report order.
CATEGORIES: Final[tuple[str, ...]] = (
    "gemm",
    "attention",
    "conv",
    "comm",
    "copy",
    "norm",
    "reduction",
    "elementwise",
    "other",
)

#: (category, regex) rows; the first row whose regex matches the name decides.
_RULES: Final[tuple[tuple[str, str], ...]] = (
    # NCCL / RCCL / MSCCL kernels, symmetric-memory and custom all-reduce kernels.
    ("comm", r"nccl|rccl|msccl|multimem_all|cross_device_reduce|custom_?all_?reduce"),
    # Flash / memory-efficient / paged attention, fused MHA.
    ("attention", r"flash(?!infer::)|fmha|attention|attn|mha_(fwd|bwd)|sdpa"),
    # ATen's generic reduction kernel, even when its functor computes a norm (NormTwoOps).
    ("reduction", r"native::reduce_kernel|vector_norm"),
    # Normalization layers; "normal" (random numbers) excluded.
    ("norm", r"norm(?!al)|bn_fw|bn_bw|rowwisemoments|gammabeta|welford"),
    # Convolutions: cuDNN, MIOpen, cutlass implicit-GEMM convolutions, winograd.
    (
        "conv",
        r"conv(?!ert)|winograd|implicit_?gemm|fprop|dgrad|wgrad|scudnn|cudnn|miopen"
        r"|igemm_(fwd|bwd|wrw)",
    ),
    # Dense matrix products: cuBLAS(Lt), cutlass, nvjet, xmma/wgmma, rocBLAS/hipBLASLt (Cijk_).
    (
        "gemm",
        r"(?<!fb)gemm|gemv|cutlass::kernel|cutlass3x|cublas|nvjet|xmma|wgmma|cijk_|matmul"
        r"|(^|_)b?mm(_|$)|^fc-|splitk_?reduce|h884|s884|h1688|s1688|hmma|i8816|16816",
    ),
    # Triton pointwise kernels compute even when fused with a cast (``..._to_copy``).
    ("elementwise", r"^triton_poi"),
    # Data movement done by kernels: copies, concatenation, transposes, MTIA DMA, memsets.
    ("copy", r"memcpy|memset|copy|^dma|transpose"),
    # Reductions, softmax, scans, top-k; Triton reduction / persistent-reduction kernels.
    (
        "reduction",
        r"reduce|softmax|sum|mean|argmax|argmin|triton_red|triton_per|cumsum|topk|max_dim|min_dim",
    ),
    # Pointwise kernels: ATen elementwise families, Triton pointwise kernels.
    ("elementwise", r"elementwise|triton_poi|pointwise"),
)

_COMPILED: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (category, re.compile(pattern, re.IGNORECASE)) for category, pattern in _RULES
)

_HTA_COMM: Final[re.Pattern[str]] = re.compile(r"^(nccl|rccl).*Kernel")
_HTA_MEMORY: Final[re.Pattern[str]] = re.compile(r"^Memcpy|^Memset|^dma")


def category_of(name: str) -> str:
    """The category of one kernel name ("other" when no row matches)."""
    for category, pattern in _COMPILED:
        if pattern.search(name):
            return category
    return "other"


def categorize(names: pl.Series) -> pl.Series:
    """Category per kernel name, vectorized: each distinct name is classified once."""
    text = names.cast(pl.String)
    distinct = text.unique().drop_nulls().to_list()
    mapping = {name: category_of(name) for name in distinct}
    return (
        text.replace_strict(mapping, default="other", return_dtype=pl.String)
        .fill_null("other")
        .alias("category")
    )


def is_communication(name: str) -> bool:
    """HTA's communication-kernel rule: the name matches ``^nccl.*Kernel`` (RCCL too)."""
    return _HTA_COMM.match(name) is not None


def is_memory_name(name: str) -> bool:
    """HTA's memory-kernel rule: the name starts with Memcpy, Memset or dma."""
    return _HTA_MEMORY.match(name) is not None
