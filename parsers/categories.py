"""Kernel families and categories from kernel names, kept in one ordered table (first match wins).

Profilers record no kernel "type"; every peer (HTA, TraceLens, tb_plugin) derives it from the
name. A kernel gets two labels from the one table below:

- its **family** (`family_of`): what the kernel does in the model (GEMM, fused attention,
  normalization, rotary embedding, KV-cache writes, MoE routing and expert GEMMs, optimizer
  steps, embedding lookups, layout transposes ...), the rows of the report's "Where the time
  goes" section;
- its **category** (`category_of`, the ``category`` column of the kernels table): one of nine
  coarse classes (`CATEGORIES`) that say what bounds the kernel (the roofline's name heuristic
  counts gemm/attention/conv as compute, elementwise/reduction/norm/copy as memory).

Rows are ordered so that the specific wins over the general: a cuDNN ``implicit_gemm``
convolution is ``conv`` before the ``gemm`` row can claim it, a ``direct_copy_kernel`` inside
``elementwise_kernel`` is a copy, a KV-cache write is not attention, a TorchRec embedding
backward with a fused Adagrad update is an embedding kernel, not an optimizer one. Matching is
case-insensitive. Unfused attention (batched matmuls around a softmax) is not visible in kernel
names: `analyzer.metrics.attention` finds it from the ops' shapes.

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

#: Every family `family_of` can return -> its label in the report, in report order.
#: ``attention_unfused`` never comes from a name (see the module docstring).
FAMILIES: Final[dict[str, str]] = {
    "gemm": "GEMM",
    "attention": "attention (fused kernels)",
    "attention_unfused": "attention (unfused: matmul, softmax, matmul)",
    "conv": "convolution",
    "norm": "normalization",
    "rotary": "rotary and positional embeddings",
    "elementwise": "activation and other elementwise",
    "reduction": "reductions, softmax, pooling, sorting",
    "embedding": "embedding lookups, gathers and scatters",
    "optimizer": "optimizer",
    "kv_cache": "KV-cache reads and writes",
    "moe": "MoE routing and expert GEMMs",
    "transpose": "layout transposes",
    "copy": "copies and fills",
    "comm": "communication",
    "sleep": "sleep kernels (torch.cuda._sleep)",
    "other": "uncategorized",
}

#: (family, category, regex) rows; the first row whose regex matches the name decides.
_RULES: Final[tuple[tuple[str, str, str], ...]] = (
    # NCCL / RCCL / MSCCL kernels, symmetric-memory and custom all-reduce kernels.
    ("comm", "comm", r"nccl|rccl|msccl|multimem_all|cross_device_reduce|custom_?all_?reduce"),
    # Inductor/Triton kernels by their generated prefix, whatever ops their names list
    # (``triton_poi_fused_..._fmha_...`` is pointwise work around attention, not attention):
    # pointwise, reductions and persistent reductions, GEMM templates.
    ("elementwise", "elementwise", r"^triton_poi"),
    ("reduction", "reduction", r"^triton_(red|per)_"),
    ("gemm", "gemm", r"^triton_tem"),
    # KV-cache writes of vLLM (reshape_and_cache*, concat_and_cache) and SGLang (store_kvcache).
    (
        "kv_cache",
        "copy",
        r"reshape_and_cache|concat_and_cache|store_kvcache|kv_?cache_(write|store|copy)|copy_blocks",
    ),
    # MoE: Triton matmul_ogs expert GEMMs (gpt-oss), fused_moe, TRT-LLM moe::dev routing and
    # finalize, expert routing/top-k, grouped-GEMM token permutation.
    (
        "moe",
        "gemm",
        r"matmul_ogs|fused_moe|moe_?gemm|grouped_?gemm|expert.*gemm|finalize_matmul",
    ),
    (
        "moe",
        "elementwise",
        r"moe|_routing|topk_?softmax|topk_?gating|expert|align_block_size|permute_tokens",
    ),
    # Rotary and positional embeddings (vLLM/SGLang rotary_embedding, AITER rope).
    ("rotary", "elementwise", r"rotary|rope_|_rope|positional|pos_emb|pos_encoding"),
    # SageAttention's Q/K quantization: part of attention's cost, but an elementwise pass.
    ("attention", "elementwise", r"^sage_quant"),
    # Flash / memory-efficient / paged / SageAttention attention, fused MHA, AITER / CK FMHA,
    # FlashInfer's Batch/Single Prefill/Decode kernels, SGLang's Triton decode attention
    # (``_fwd_kernel_stage1``, ``_fwd_grouped_kernel_stage1``, ``_fwd_kernel_stage2``).
    (
        "attention",
        "attention",
        r"flash(?!infer::)|fmha|attention|attn|mha_(fwd|bwd)|sdpa|^sage_|paged_?att|mla_"
        r"|(batch|single)_?(decode|prefill)_?with|^_fwd_(grouped_)?kernel_stage[12]",
    ),
    # TorchRec / FBGEMM table-batched embeddings (forward and backward with fused optimizer),
    # ATen embedding, index_select / gather / scatter / index kernels, MTIA split_eb ops.
    (
        "embedding",
        "elementwise",
        r"split_embedding|embedding|split_eb_|permute_pooled|permute_2d|permute_1d"
        r"|bounds_check_indices|linearize_cache|index_?select|indexselect|gather|scatter"
        r"|index_put|index_kernel|indexing_backward|jagged|_index_",
    ),
    # Optimizer updates named as such: fused Adam/AdamW/Adagrad/LAMB/SGD functors (ATen, Apex,
    # DeepSpeed). Generic foreach kernels (``multi_tensor_apply`` with a Binary/Copy functor)
    # are elementwise by name; `analyzer.metrics.op_families` counts them as optimizer work
    # when an ``Optimizer.step`` launched them.
    (
        "optimizer",
        "elementwise",
        r"adamfunctor|adamw|fused_?adam|adagrad(?!_unweighted|_weighted)|lamb_|sgdfunctor"
        r"|fused_optim|fused_sgd|_amp_update_scale",
    ),
    ("elementwise", "elementwise", r"multi_tensor_apply"),
    # ATen's generic reduction kernel, even when its functor computes a norm (NormTwoOps).
    ("reduction", "reduction", r"native::reduce_kernel|vector_norm"),
    # Normalization layers; "normal" (random numbers) excluded. GroupNorm helper kernels.
    (
        "norm",
        "norm",
        r"norm(?!al)|bn_fw|bn_bw|rowwisemoments|gammabeta|welford|computefusedparams"
        r"|computebackwardfusedparams|computeinternalgradients",
    ),
    # Layout transposes: MIOpen batched_transpose, cuDNN/MIOpen NCHW<->NHWC conversions.
    (
        "transpose",
        "copy",
        r"batched_transpose|nchw_?to_?nhwc|nhwc_?to_?nchw|nchw2nhwc|nhwc2nchw|transpose_nchw"
        r"|transpose_nhwc|miopen.*transpose",
    ),
    # Convolutions: cuDNN, MIOpen, cutlass implicit-GEMM convolutions, winograd, im2col.
    (
        "conv",
        "conv",
        r"conv(?!ert)|winograd|implicit_?gemm|fprop|dgrad|wgrad|scudnn|cudnn|miopen"
        r"|igemm_(fwd|bwd|wrw)|im2col|im2d2col|col2im",
    ),
    # Dense matrix products: cuBLAS(Lt), cutlass, nvjet, xmma/wgmma, rocBLAS/hipBLASLt (Cijk_),
    # Inductor/Triton GEMM templates, CK / AITER GEMMs.
    (
        "gemm",
        "gemm",
        r"(?<!fb)gemm|gemv|cutlass::kernel|cutlass3x|cublas|nvjet|xmma|wgmma|cijk_|matmul"
        r"|(^|_)b?mm(_|$)|^fc-|splitk_?reduce|h884|s884|h1688|s1688|hmma|i8816|16816"
        r"|^triton_tem|_mm_|^mm_|bmm_|ck_tile.*gemm|aiter.*gemm|hipblaslt|rocblas",
    ),
    # Data movement done by kernels: copies, concatenation, transposes, MTIA DMA, memsets.
    ("transpose", "copy", r"transpose|permute"),
    ("copy", "copy", r"memcpy|memset|copy|^dma|fill_kernel|catarray|cat_kernel|stack_kernel"),
    # Reductions, softmax, scans, top-k, sorting, pooling.
    (
        "reduction",
        "reduction",
        r"reduce|softmax|sum|mean|argmax|argmin|cumsum|topk|max_dim|min_dim|scan|radixsort"
        r"|sort|pool|_max_|_min_|nll|crossentropy|cross_entropy|logsumexp",
    ),
    # Quantization and casts (fp8 / block-scale quantization): elementwise data conversion.
    ("elementwise", "elementwise", r"quant|_cast|dequant|float8|fp8|fp4|mxfp"),
    # Activations, dropout, random numbers, MIOpen tensor ops, ATen elementwise families.
    (
        "elementwise",
        "elementwise",
        r"elementwise|pointwise|act_and_mul|silu|gelu|relu|sigmoid|tanh|swiglu|dropout"
        r"|philox|distribution|tensorop|subtensorop|upsample|interpolate|clamp|where"
        r"|masked_fill|fill_|triu|tril|arange|_mul|_add|divide|div_|-dtype_|^aten::"
        r"|resolve_future_token|position_kernel",
    ),
    # torch.cuda._sleep (test traces that sleep on the GPU on purpose) and MTIA event waits.
    ("sleep", "other", r"spin_kernel|^event_(wait|record)$"),
)

_COMPILED: Final[tuple[tuple[str, str, re.Pattern[str]], ...]] = tuple(
    (family, category, re.compile(pattern, re.IGNORECASE)) for family, category, pattern in _RULES
)

_HTA_COMM: Final[re.Pattern[str]] = re.compile(r"^(nccl|rccl).*Kernel")
_HTA_MEMORY: Final[re.Pattern[str]] = re.compile(r"^Memcpy|^Memset|^dma")


def classify(name: str) -> tuple[str, str]:
    """(family, category) of one kernel name (("other", "other") when no row matches)."""
    for family, category, pattern in _COMPILED:
        if pattern.search(name):
            return family, category
    return "other", "other"


def category_of(name: str) -> str:
    """The coarse category of one kernel name ("other" when no row matches)."""
    return classify(name)[1]


def family_of(name: str) -> str:
    """The op family of one kernel name ("other" when no row matches)."""
    return classify(name)[0]


def _mapped(names: pl.Series, pick: int, alias: str) -> pl.Series:
    """Family or category per name, vectorized: each distinct name is classified once.

    Categorical names are joined with their distinct values' labels (no per-row string
    cast); other names are replaced through a mapping."""
    if isinstance(names.dtype, pl.Categorical):
        values = names.unique().drop_nulls()
        labels = [classify(n)[pick] for n in values.cast(pl.String).to_list()]
        table = pl.DataFrame({"name": values, alias: pl.Series(labels, dtype=pl.String)})
        joined = (
            names.alias("name").to_frame().join(table, on="name", how="left", maintain_order="left")
        )
        return joined[alias].fill_null("other")
    text = names.cast(pl.String)
    distinct = text.unique().drop_nulls().to_list()
    mapping = {name: classify(name)[pick] for name in distinct}
    return (
        text.replace_strict(mapping, default="other", return_dtype=pl.String)
        .fill_null("other")
        .alias(alias)
    )


def categorize(names: pl.Series) -> pl.Series:
    """Category per kernel name, vectorized: each distinct name is classified once."""
    return _mapped(names, 1, "category")


def families(names: pl.Series) -> pl.Series:
    """Family per kernel name, vectorized: each distinct name is classified once."""
    return _mapped(names, 0, "family")


#: Attention kernels that only ever run decode (one new query token per sequence against its
#: cached keys and values): paged attention (vLLM ``paged_attention_v1/v2``, ROCm
#: ``paged_attention_ll4mi_QKV_*`` and its ``_reduce_kernel``), kernels named for decode
#: (FlashInfer ``BatchDecodeWithPagedKVCacheKernel``, ``flash_decoding``, MLA decode), SGLang's
#: two-stage Triton decode attention, and the combine step of split-KV attention.
_DECODE_ATTENTION: Final[re.Pattern[str]] = re.compile(
    r"paged_?att|decod|^_fwd_(grouped_)?kernel_stage[12]|splitkv_(mla_)?combine|mla_combine",
    re.IGNORECASE,
)


def is_decode_attention(name: str) -> bool:
    """Whether a kernel name is decode attention by name alone (see `decode_attention`)."""
    return category_of(name) == "attention" and _DECODE_ATTENTION.search(name) is not None


def decode_attention(names: pl.Series) -> pl.Series:
    """Per kernel name: decode attention by name alone, vectorized.

    Decode attention is memory-bound, whatever the batch: each generated token's query meets
    its own sequence's whole KV cache, read from memory once per step, and no other sequence
    shares it. Per KV head and cached token it reads K and V (2 x head_dim elements) and does
    4 x head_dim FLOPs for each query head of the group, so its intensity is 2 x (query heads
    per KV head) / (bytes per element): Qwen3-8B, 32 query and 8 KV heads in bf16, 4 FLOP/byte
    (8 with an fp8 cache), against a ridge of ~250 FLOP/byte on H100/MI300X. Kernels that serve both
    phases (vLLM ``kernel_unified_attention_2d/3d``, FlashAttention ``flash_fwd_splitkv``)
    are not decode by name: `gpu_trace_analyzer.metrics.roofline` counts them memory-bound
    only in traces whose served steps are all decode.
    """
    text = names.cast(pl.String)
    distinct = text.unique().drop_nulls().to_list()
    mapping = {name: is_decode_attention(name) for name in distinct}
    return (
        text.replace_strict(mapping, default=False, return_dtype=pl.Boolean)
        .fill_null(False)
        .alias("decode_attention")
    )


def is_communication(name: str) -> bool:
    """HTA's communication-kernel rule: the name matches ``^nccl.*Kernel`` (RCCL too)."""
    return _HTA_COMM.match(name) is not None


def is_memory_name(name: str) -> bool:
    """HTA's memory-kernel rule: the name starts with Memcpy, Memset or dma."""
    return _HTA_MEMORY.match(name) is not None
