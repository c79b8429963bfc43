"""Perf model: FLOPs and bytes per op family, against arithmetic written out by hand.

Wherever a trace holds the op, its arguments are read straight from the raw JSON here (not
through our parser), and the expected numbers are worked out in the test from the shapes the
trace shows. Families no trace exercises (conv backward, transposed / grouped / dilated conv,
causal and grouped-query attention, attention backward, _scaled_mm, baddbmm) use hand-made
arguments in the exact layout PyTorch's profiler records.
"""

from __future__ import annotations

import gzip
from functools import cache
from typing import Any

import msgspec
import polars as pl
import pytest
from conftest import shared_trace
from gpu_trace_analyzer.metrics.perf_model import (
    KEY_COLUMNS,
    MODELED_OPS,
    OpCost,
    may_have_cost,
    model_op,
    model_ops,
    op_costs,
)
from gpu_trace_analyzer.parsers import kineto

TL = "tracelens"
H100_BERT = f"{TL}/h100__gaunernst_bert-small-uncased__1016001.json.gz"
H100_VIT = f"{TL}/h100__Falconsai_nsfw_image_detection__1016002.json.gz"
B200 = f"{TL}/b200__eager_trace.json.gz"
NORM = f"{TL}/perf_model__normalization__normalization_layer_test.json.gz"
SGLANG = f"{TL}/inference__sglang_decode__sglang_Qwen3-8B_decode.json.gz"
HTA_TIMELINE = "hta/timeline_analysis/sampled_rank-0.json.gz"
HTA_BMM = "hta/distributed_info_unavailable/distributed_info_not_found.json.gz"
TB_RESNET = "tb_plugin/resnet50_num_workers_0__worker0.1623143089861.pt.trace.json.gz"

BF16, FP32, INT64 = 2, 4, 8


@cache
def _cpu_ops(rel: str) -> list[dict[str, Any]]:
    """Every CPU op event of a trace, straight from the file."""
    raw = gzip.decompress(shared_trace(rel).read_bytes())
    events = msgspec.json.decode(raw)["traceEvents"]
    return [e for e in events if e.get("cat") in ("cpu_op", "Operator")]


def _op(rel: str, name: str, dims: list[Any] | None = None) -> dict[str, Any]:
    """The args of the first op called ``name`` (with these Input Dims, when given)."""
    for e in _cpu_ops(rel):
        args = e.get("args", {})
        if e["name"] == name and (dims is None or args.get("Input Dims") == dims):
            return dict(args)
    raise AssertionError(f"{name} {dims} not in {rel}")


def _enc(value: Any) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


def _cost_of(name: str, args: dict[str, Any]) -> OpCost | None:
    return model_op(
        name,
        _enc(args.get("Input Dims")),
        _enc(args.get("Input type")),
        _enc(args.get("Concrete Inputs")),
    )


def _cost(rel: str, name: str, dims: list[Any] | None = None) -> OpCost:
    cost = _cost_of(name, _op(rel, name, dims))
    assert cost is not None, f"{name} not modeled"
    return cost


def _synthetic(name: str, dims: list[Any], types: list[str], concrete: list[str]) -> OpCost:
    cost = model_op(name, _enc(dims), _enc(types), _enc(concrete))
    assert cost is not None, f"{name} not modeled"
    return cost


# --- GEMM ---------------------------------------------------------------------------------


def test_addmm_from_bert() -> None:
    # bias [512], x [141, 512], w^T [512, 512], bf16: M=141, N=512, K=512.
    c = _cost(H100_BERT, "aten::addmm", [[512], [141, 512], [512, 512], [], []])
    assert c.flops == 2 * 141 * 512 * 512 + 141 * 512 == 73_996_800
    # A 141x512 + B 512x512 + C 141x512 at 2 bytes, plus the 512-element bias.
    assert c.bytes == (141 * 512 + 512 * 512 + 141 * 512) * BF16 + 512 * BF16 == 814_080
    assert (c.family, c.dtype, c.matrix) == ("gemm", "bf16", True)


def test_linear_matches_its_addmm() -> None:
    # linear(x [1, 141, 512], w [512, 512], b [512]): M = 1 * 141 leading rows.
    c = _cost(H100_BERT, "aten::linear", [[1, 141, 512], [512, 512], [512]])
    assert c.flops == 73_996_800
    assert c.bytes == 814_080


def test_mm_and_matmul_from_b200_lm_head() -> None:
    # mm(x [1, 2880], w [2880, 25136]), bf16, no bias: M=1, N=25136, K=2880.
    for name in ("aten::mm", "aten::matmul"):
        c = _cost(B200, name, [[1, 2880], [2880, 25136]])
        assert c.flops == 2 * 1 * 25136 * 2880 == 144_783_360
        assert c.bytes == (1 * 2880 + 2880 * 25136 + 1 * 25136) * BF16 == 144_839_392


def test_bmm_from_hta_trace() -> None:
    # bmm(a [1024, 96, 50], b [1024, 50, 8]) in fp32: B=1024, M=96, K=50, N=8.
    c = _cost(HTA_BMM, "aten::bmm", [[1024, 96, 50], [1024, 50, 8]])
    assert c.flops == 1024 * 2 * 96 * 8 * 50 == 78_643_200
    assert c.bytes == 1024 * (96 * 50 + 50 * 8 + 96 * 8) * FP32 == 24_444_928


def test_baddbmm_adds_the_bias_term() -> None:
    # baddbmm(bias [4, 64, 32], a [4, 64, 16], b [4, 16, 32]) fp16: B=4, M=64, K=16, N=32.
    c = _synthetic(
        "aten::baddbmm",
        [[4, 64, 32], [4, 64, 16], [4, 16, 32], [], []],
        ["c10::Half"] * 3 + ["Scalar", "Scalar"],
        ["", "", "", "1", "1"],
    )
    assert c.flops == 4 * 2 * 64 * 32 * 16 + 4 * 64 * 32 == 270_336
    assert c.bytes == (4 * 64 * 16 + 4 * 16 * 32 + 4 * 64 * 32) * 2 + 4 * 64 * 32 * 2 == 45_056


def test_scaled_mm_reads_fp8_writes_out_dtype() -> None:
    # _scaled_mm(a [128, 256] fp8, b [256, 512] fp8, scale_a [], scale_b [], bias None,
    # scale_result None, out_dtype=15 (bf16), use_fast_accum False).
    c = _synthetic(
        "aten::_scaled_mm",
        [[128, 256], [256, 512], [], [], [], [], [], []],
        ["c10::Float8_e4m3fn", "c10::Float8_e4m3fn", "float", "float", "", "", "Scalar", "Scalar"],
        ["", "", "", "", "", "", "15", "False"],
    )
    assert c.flops == 2 * 128 * 512 * 256 == 33_554_432
    # a and b at 1 byte, C 128x512 in bf16, two fp32 scalar scales.
    assert c.bytes == 128 * 256 + 256 * 512 + 128 * 512 * 2 + 2 * 4 == 294_920
    assert c.dtype == "fp8"


# --- Convolution --------------------------------------------------------------------------


def test_cudnn_convolution_from_vit_patch_embedding() -> None:
    # x [4, 3, 224, 224], w [768, 3, 16, 16], padding 0, stride 16, dilation 1, groups 1.
    c = _cost(H100_VIT, "aten::cudnn_convolution")
    out = (224 + 2 * 0 - 1 * (16 - 1) - 1) // 16 + 1
    assert out == 14
    assert c.flops == 2 * 4 * 768 * out * out * 3 * 16 * 16 == 924_844_032
    x, w, y = 4 * 3 * 224 * 224, 768 * 3 * 16 * 16, 4 * 768 * out * out
    assert c.bytes == (x + w + y) * BF16 == 3_588_096


def test_conv2d_with_bias_adds_one_flop_per_output() -> None:
    c = _cost(H100_VIT, "aten::conv2d")
    assert c.flops == 924_844_032 + 4 * 768 * 14 * 14 == 925_446_144
    assert c.bytes == 3_588_096 + 768 * BF16 == 3_589_632


def test_grouped_dilated_strided_conv() -> None:
    # convolution(x [2, 32, 28, 28], w [64, 8, 3, 3], bias None, stride [2, 2], padding [2, 2],
    # dilation [2, 2], transposed False, output_padding [0, 0], groups 4), fp32.
    c = _synthetic(
        "aten::convolution",
        [[2, 32, 28, 28], [64, 8, 3, 3], [], [], [], [], [], [], []],
        ["float", "float", "", *["ScalarList"] * 3, "Scalar", "ScalarList", "Scalar"],
        ["", "", "", "[2, 2]", "[2, 2]", "[2, 2]", "False", "[0, 0]", "4"],
    )
    out = (28 + 2 * 2 - 2 * (3 - 1) - 1) // 2 + 1  # 14
    assert out == 14
    # C_in / groups = 32 / 4 = 8 = w.shape[1].
    assert c.flops == 2 * 2 * 64 * out * out * 8 * 3 * 3 == 3_612_672
    assert c.bytes == (2 * 32 * 28 * 28 + 64 * 8 * 9 + 2 * 64 * out * out) * FP32 == 319_488


def test_transposed_conv() -> None:
    # conv_transpose2d(x [1, 16, 8, 8], w [16, 4, 4, 4], bias [8], stride [2, 2],
    # padding [1, 1], output_padding [0, 0], groups 2, dilation [1, 1]), fp32.
    c = _synthetic(
        "aten::conv_transpose2d",
        [[1, 16, 8, 8], [16, 4, 4, 4], [8], [], [], [], [], []],
        ["float", "float", "float", *["ScalarList"] * 3, "Scalar", "ScalarList"],
        ["", "", "", "[2, 2]", "[1, 1]", "[0, 0]", "2", "[1, 1]"],
    )
    out = (8 - 1) * 2 - 2 * 1 + 1 * (4 - 1) + 0 + 1  # 16
    assert out == 16
    c_out = 4 * 2  # w.shape[1] * groups
    # Transposed: every input position scatters into C_out / groups = 4 channels x 4x4 taps.
    macs = 1 * 16 * 8 * 8 * (c_out // 2) * 4 * 4
    assert c.flops == 2 * macs + 1 * c_out * out * out == 133_120
    assert c.bytes == (16 * 64 + 16 * 4 * 16 + 8 + c_out * out * out) * FP32 == 16_416


def test_convolution_backward_follows_output_mask() -> None:
    # convolution_backward(grad_out [2, 64, 14, 14], x [2, 32, 28, 28], w [64, 32, 3, 3],
    # bias_sizes [64], stride [2,2], padding [1,1], dilation [1,1], transposed False,
    # output_padding [0,0], groups 1, output_mask [True, True, False]), bf16.
    c = _synthetic(
        "aten::convolution_backward",
        [[2, 64, 14, 14], [2, 32, 28, 28], [64, 32, 3, 3], [], [], [], [], [], [], [], []],
        ["c10::BFloat16"] * 3
        + ["ScalarList"] * 4
        + ["Scalar", "ScalarList", "Scalar"]
        + ["ScalarList"],
        [
            "",
            "",
            "",
            "[64]",
            "[2, 2]",
            "[1, 1]",
            "[1, 1]",
            "False",
            "[0, 0]",
            "1",
            "[True, True, False]",
        ],
    )
    forward = 2 * 2 * 64 * 14 * 14 * 32 * 3 * 3  # 14,450,688
    assert c.flops == 2 * forward == 28_901_376
    gy, x, w = 2 * 64 * 196, 2 * 32 * 784, 64 * 32 * 9
    # Read grad_out, input, weight; write grad_input and grad_weight (no grad_bias).
    assert c.bytes == (gy + x + w + x + w) * BF16 == 324_608


def test_forward_conv_without_concrete_inputs_is_not_modeled() -> None:
    # 2021 traces record no Concrete Inputs: stride and padding unknown, no guess.
    args = _op(TB_RESNET, "aten::cudnn_convolution")
    assert "Concrete Inputs" not in args
    assert _cost_of("aten::cudnn_convolution", args) is None


# --- Attention ----------------------------------------------------------------------------


def test_flash_attention_forward_from_bert() -> None:
    # q, k, v [B=1, N=141, H=8, d=64] (flash layout), not causal, bf16.
    c = _cost(H100_BERT, "aten::_flash_attention_forward")
    assert c.flops == 4 * 1 * 8 * 141 * 141 * 64 == 40_716_288
    assert c.bytes == 4 * (1 * 141 * 8 * 64) * BF16 == 577_536  # Q, K, V, O
    assert (c.family, c.matrix) == ("attention", True)


def test_sdpa_matches_its_flash_kernel_op() -> None:
    # scaled_dot_product_attention(q, k, v [1, 8, 141, 64]) in (B, H, N, d) layout.
    sdpa = _cost(H100_BERT, "aten::scaled_dot_product_attention")
    flash = _cost(H100_BERT, "aten::_scaled_dot_product_flash_attention")
    assert sdpa.flops == flash.flops == 40_716_288
    assert sdpa.bytes == flash.bytes == 577_536


def test_causal_grouped_query_attention() -> None:
    # sdpa(q [2, 32, 1024, 128], k, v [2, 8, 1024, 128], mask None, dropout 0, causal True,
    # scale None, enable_gqa True), bf16: 32 query heads over 8 kv heads.
    c = _synthetic(
        "aten::scaled_dot_product_attention",
        [[2, 32, 1024, 128], [2, 8, 1024, 128], [2, 8, 1024, 128], [], [], [], [], []],
        ["c10::BFloat16"] * 3 + ["", "Scalar", "Scalar", "", "Scalar"],
        ["", "", "", "", "0.", "True", "", "True"],
    )
    full = 4 * 2 * 32 * 1024 * 1024 * 128  # every query head, both matmuls
    assert c.flops == full // 2 == 17_179_869_184
    q = 2 * 32 * 1024 * 128
    kv = 2 * 8 * 1024 * 128
    assert c.bytes == (q + kv + kv + q) * BF16 == 41_943_040


def test_flash_attention_backward() -> None:
    # _scaled_dot_product_flash_attention_backward(grad_out, q, k, v, out, logsumexp,
    # cum_seq_q, cum_seq_k, max_q, max_k, dropout_p, is_causal, philox_seed, philox_offset,
    # scale), all [4, 16, 512, 64] fp16, not causal.
    shape = [4, 16, 512, 64]
    c = _synthetic(
        "aten::_scaled_dot_product_flash_attention_backward",
        [shape] * 5 + [[4, 16, 512]] + [[]] * 9,
        ["c10::Half"] * 5
        + ["float"]
        + ["", "", "Scalar", "Scalar", "Scalar", "Scalar"]
        + ["", "", "Scalar"],
        [""] * 8 + ["512", "512", "0.", "False", "", "", "0.125"],
    )
    forward = 4 * 4 * 16 * 512 * 512 * 64
    assert c.flops == forward * 5 // 2 == 10_737_418_240
    numel = 4 * 16 * 512 * 64
    # Read dO, Q, K, V, O; write dQ, dK, dV: 8 tensors of the same size.
    assert c.bytes == 8 * numel * 2 == 33_554_432


def test_varlen_attention_is_not_modeled() -> None:
    c = model_op(
        "aten::_flash_attention_forward",
        _enc([[300, 8, 64], [300, 8, 64], [300, 8, 64], [3], [3]]),
        _enc(["c10::BFloat16"] * 3 + ["int", "int"]),
        _enc(["", "", "", "", "", "128", "128", "0.", "True"]),
    )
    assert c is None


# --- Elementwise, softmax, reductions -----------------------------------------------------


def test_binary_elementwise_broadcasts() -> None:
    # add(x [4, 197, 768], pos [1, 197, 768], alpha 1), bf16: output 4 x 197 x 768.
    c = _cost(H100_VIT, "aten::add", [[4, 197, 768], [1, 197, 768], []])
    n = 4 * 197 * 768
    assert c.flops == n == 605_184
    assert c.bytes == (n + 197 * 768 + n) * BF16 == 2_723_328


def test_unary_elementwise() -> None:
    c = _cost(H100_BERT, "aten::gelu", [[1, 141, 2048], []])
    n = 141 * 2048
    assert c.flops == n == 288_768
    assert c.bytes == 2 * n * BF16 == 1_155_072


def test_out_argument_is_not_read() -> None:
    # 2021 trace: clamp_min.out(x [32, 64, 112, 112], min, out [32, 64, 112, 112]), fp32.
    c = _cost(TB_RESNET, "aten::clamp_min")
    n = 32 * 64 * 112 * 112
    assert c.bytes == 2 * n * FP32 == 205_520_896  # read x, write out: not 3 tensors


def test_where_takes_the_value_dtype() -> None:
    # where(cond [2048] bool, x [2048] fp32, y [] fp32 0-d): output fp32.
    c = _cost(HTA_TIMELINE, "aten::where", [[2048], [2048], []])
    assert c.bytes == 2048 * 1 + 2048 * FP32 + 1 * FP32 + 2048 * FP32 == 18_436
    assert c.dtype == "fp32"


def test_softmax_forward_and_backward() -> None:
    fwd = _cost(HTA_TIMELINE, "aten::_softmax", [[2, 1], [], []])
    assert fwd.flops == 5 * 2 and fwd.bytes == 2 * 2 * FP32
    bwd = _cost(HTA_TIMELINE, "aten::_softmax_backward_data", [[2, 1], [2, 1], [], []])
    assert bwd.flops == 4 * 2 and bwd.bytes == 3 * 2 * FP32  # grad, output read; grad_in


def test_reduction_over_one_dim() -> None:
    # sum(x [8, 16], dim [0], keepdim False), fp32: 128 inputs, 16 outputs.
    c = _cost(NORM, "aten::sum", [[8, 16], [], [], []])
    assert c.flops == 128
    assert c.bytes == 128 * FP32 + 16 * FP32 == 576


def test_argmax_writes_int64() -> None:
    # argmax(logits [32, 151936], dim -1, keepdim False).
    c = _cost(SGLANG, "aten::argmax")
    assert c.flops == 32 * 151936 == 4_861_952
    assert c.bytes == 32 * 151936 * FP32 + 32 * INT64 == 19_448_064


# --- Normalization ------------------------------------------------------------------------


def test_layer_norm_with_affine() -> None:
    # native_layer_norm(x [1, 141, 512], [512], w [512], b [512]), bf16.
    c = _cost(H100_BERT, "aten::native_layer_norm")
    n = 141 * 512
    assert c.flops == n * (4 + 2 + 2) == 577_536  # stats, normalize, weight and bias
    assert c.bytes == 2 * n * BF16 + 2 * 512 * BF16 == 290_816


def test_rms_norm_with_weight() -> None:
    c = _cost(NORM, "aten::_fused_rms_norm", [[8, 16, 32, 32], [], [32, 32], []])
    n = 8 * 16 * 32 * 32
    assert c.flops == n * (2 + 1 + 1) == 524_288
    assert c.bytes == 2 * n * FP32 + 32 * 32 * FP32 == 1_052_672


def test_batch_norm_training() -> None:
    # batch_norm(x [8, 16, 32, 32], w, b, running_mean, running_var [16], training True).
    args = _op(NORM, "aten::batch_norm", [[8, 16, 32, 32], [16], [16], [16], [16], [], [], [], []])
    assert args["Concrete Inputs"][5] == "True"
    c = _cost_of("aten::batch_norm", args)
    assert c is not None
    n = 8 * 16 * 32 * 32
    assert c.flops == n * (6 + 2) == 1_048_576
    assert c.bytes == 2 * n * FP32 + 2 * 16 * FP32 == 1_048_704


def test_vllm_fused_add_rms_norm() -> None:
    # _C::fused_add_rms_norm(x [888, 2880], residual [888, 2880], w [2880], eps), bf16,
    # in place: reads x, residual, w; writes x and residual.
    c = _cost(B200, "_C::fused_add_rms_norm")
    n = 888 * 2880
    assert c.flops == n * (1 + 3 + 1) == 12_787_200
    assert c.bytes == (2 * n + 2880 + 2 * n) * BF16 == 20_465_280


def test_layer_norm_backward() -> None:
    # native_layer_norm_backward(dy, x [8, 16, 32, 32], [16, 32, 32], mean, rstd,
    # w [16, 32, 32], b [16, 32, 32], mask [True, True, True]), fp32.
    c = _cost(
        NORM,
        "aten::native_layer_norm_backward",
        [*[[8, 16, 32, 32]] * 2, [], *[[8, 1, 1, 1]] * 2, *[[16, 32, 32]] * 2, []],
    )
    n, w = 8 * 16 * 32 * 32, 16 * 32 * 32
    assert c.flops == 2 * n * (6 + 2) == 2_097_152
    # Read dy, x, w; write dx, dw, db.
    assert c.bytes == (n + n + w + n + 2 * w) * FP32 == 1_769_472


# --- Embedding, copies --------------------------------------------------------------------


def test_embedding_and_its_index_select() -> None:
    # embedding(table [30522, 512], ids [1, 141]) -> index_select(table, 0, ids [141]).
    for name in ("aten::embedding", "aten::index_select"):
        c = _cost(H100_BERT, name, None)
        out = 141 * 512
        assert c.flops == 0
        assert c.bytes == 141 * INT64 + 2 * out * BF16 == 289_896


def test_gather() -> None:
    # gather(x [25136, 2880], 0, index [888, 2880] int64, sparse False, out [888, 2880]).
    c = _cost(B200, "aten::gather")
    n = 888 * 2880
    assert c.bytes == n * INT64 + 2 * n * BF16 == 30_689_280


def test_copy_and_casts() -> None:
    same = _cost(B200, "aten::copy_", [[888, 2880], [888, 2880], []])
    assert same.flops == 0 and same.bytes == 2 * 888 * 2880 * BF16 == 10_229_760
    # copy_(dst int32 [32], src int64 [32]): reads 8-byte, writes 4-byte elements.
    cast = _cost(SGLANG, "aten::copy_", [[32], [32], []])
    assert _op(SGLANG, "aten::copy_", [[32], [32], []])["Input type"][:2] == ["int", "long int"]
    assert cast.bytes == 32 * 4 + 32 * 8 == 384
    # _to_copy(x int32 [32], dtype=4 (int64)).
    to = _cost(SGLANG, "aten::_to_copy")
    assert to.bytes == 32 * (4 + 8) == 384


# --- Robustness and the vectorized entry point -------------------------------------------


def test_unknown_and_malformed_ops_are_not_modeled() -> None:
    assert model_op("vllm::unified_attention_with_output", "[[1]]", '["float"]', None) is None
    assert model_op("aten::mm", "not json", '["float"]', None) is None
    assert model_op("aten::mm", "[[2, 3], [4, 5]]", '["float", "float"]', None) is None
    assert model_op("aten::mm", "[[2, 3]]", '["float"]', None) is None


def test_model_ops_joins_costs_onto_every_row() -> None:
    dims = "[[141, 512], [512, 512]]"
    ops = pl.DataFrame(
        {
            "name": ["aten::mm", "aten::mm", "aten::view", "aten::mm"],
            "input_dims": [dims, dims, "[[1]]", None],
            "input_types": ['["float", "float"]'] * 3 + [None],
            "concrete_inputs": [None, None, None, None],
        }
    ).with_columns(pl.col("name").cast(pl.Categorical))
    out = model_ops(ops)
    assert out.height == 4
    assert out["flops"].to_list() == [2 * 141 * 512 * 512] * 2 + [None, None]
    assert out["name"].cast(pl.String).to_list() == ops["name"].cast(pl.String).to_list()


@pytest.mark.parametrize(
    "name",
    ["aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
     "aten::_scaled_mm", "aten::convolution", "aten::convolution_backward",
     "aten::scaled_dot_product_attention", "aten::_efficient_attention_forward",
     "aten::_scaled_dot_product_cudnn_attention", "aten::add", "aten::relu_", "aten::_softmax",
     "aten::native_layer_norm", "aten::native_batch_norm_backward", "aten::native_group_norm",
     "aten::sum", "aten::embedding", "aten::copy_", "aten::_to_copy"],
)  # fmt: skip
def test_issue_op_list_is_covered(name: str) -> None:
    assert name in MODELED_OPS


def test_op_costs_skips_only_rows_that_cannot_have_a_cost() -> None:
    """Every row of a real trace's ops table, costed one by one with `model_op`: `op_costs`
    (which looks only at `may_have_cost` rows: a modeled name, arguments recorded) finds
    exactly the rows that get a cost, with the same FLOPs and bytes."""
    ops = kineto.parse(shared_trace(H100_BERT)).ops
    args = ops.select(pl.col(c).cast(pl.String) for c in KEY_COLUMNS)
    by_row = {
        i: (cost.flops, cost.bytes)
        for i, key in enumerate(args.iter_rows())
        if (cost := model_op(*key)) is not None
    }
    assert by_row  # the trace records shapes: some ops are modeled
    costs = op_costs(ops)
    assert {r: (f, b) for r, f, b in costs.select("row", "flops", "bytes").iter_rows()} == by_row
    no_args = ops.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in KEY_COLUMNS[1:])
    assert op_costs(no_args).height == 0
    assert ops.filter(may_have_cost()).height >= len(by_row)
