"""FLOPs and bytes moved per CPU op, from the shapes the profiler recorded.

PyTorch's profiler with ``record_shapes=True`` stores, per op, ``Input Dims`` (one list per
argument), ``Input type`` (the tensor dtype, or ``Scalar``/``ScalarList``/... for non-tensors)
and ``Concrete Inputs`` (scalar arguments as strings). No trace in the wild carries a ``flops``
argument, so this module derives both numbers from those three lists.

Each op family has one formula function below, whose docstring gives the formula; per-op
adapters only pick the shapes and flags out of the argument lists and call it. Conventions
shared by every family:

- bytes = every tensor read plus every tensor written, once, at its dtype's size: the ideal
  DRAM traffic (caches and re-reads ignored), so achieved bandwidth is a lower bound.
- FLOPs count multiply and add separately (an FMA is 2). Elementwise ops count one FLOP per
  output element whatever the function (exp, gelu, ...), as TraceLens does.
- An op whose arguments do not fit its signature (missing shape, unknown dtype, varlen
  attention) is not modeled: `model_op` returns None rather than a guess.

Ops are modeled at the level that launches kernels (the leaf: ``aten::addmm`` under
``aten::linear``, ``aten::_flash_attention_forward`` under ``scaled_dot_product_attention``);
the composite ops are modeled too, for traces or tools that attribute at that level.
`analyzer.metrics.roofline` decides which level gets a kernel so that nothing counts twice.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import polars as pl

# Profiler dtype strings -> (canonical name, bytes per element). Capitalised names in old
# traces (`Int`, `Double`, `Bool`) are scalar arguments, not tensors, and are absent on purpose.
DTYPES: Final[dict[str, tuple[str, int]]] = {
    "double": ("fp64", 8),
    "float": ("fp32", 4),
    "c10::Half": ("fp16", 2),
    "c10::BFloat16": ("bf16", 2),
    "c10::Float8_e4m3fn": ("fp8", 1),
    "c10::Float8_e5m2": ("fp8", 1),
    "c10::Float8_e4m3fnuz": ("fp8", 1),
    "c10::Float8_e5m2fnuz": ("fp8", 1),
    "c10::Float8_e8m0fnu": ("fp8", 1),
    "signed char": ("int8", 1),
    "unsigned char": ("uint8", 1),
    "c10::qint8": ("int8", 1),
    "c10::quint8": ("uint8", 1),
    "short int": ("int16", 2),
    "short": ("int16", 2),
    "int": ("int32", 4),
    "unsigned int": ("uint32", 4),
    "c10::qint32": ("int32", 4),
    "long int": ("int64", 8),
    "long": ("int64", 8),
    "long long": ("int64", 8),
    "bool": ("bool", 1),
    "c10::complex<c10::Half>": ("complex32", 4),
    "c10::complex<float>": ("complex64", 8),
    "c10::complex<double>": ("complex128", 16),
}

# torch.ScalarType codes, as `dtype=` arguments appear in Concrete Inputs (`aten::to`, ...).
SCALAR_TYPE_CODES: Final[dict[int, tuple[str, int]]] = {
    0: ("uint8", 1),
    1: ("int8", 1),
    2: ("int16", 2),
    3: ("int32", 4),
    4: ("int64", 8),
    5: ("fp16", 2),
    6: ("fp32", 4),
    7: ("fp64", 8),
    8: ("complex32", 4),
    9: ("complex64", 8),
    10: ("complex128", 16),
    11: ("bool", 1),
    12: ("int8", 1),
    13: ("uint8", 1),
    14: ("int32", 4),
    15: ("bf16", 2),
    23: ("fp8", 1),
    24: ("fp8", 1),
    25: ("fp8", 1),
    26: ("fp8", 1),
}

#: dtypes a tensor-core / matrix-core pipe can run (fp32 only as TF32 or AMD FP32 matrix).
MATRIX_DTYPES: Final = frozenset({"fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8"})


class ShapeError(ValueError):
    """The recorded arguments do not fit the op's signature: the op is not modeled."""


@dataclass(frozen=True, slots=True)
class Tensor:
    """One tensor argument: its shape and dtype."""

    shape: tuple[int, ...]
    dtype: str
    elt_bytes: int

    @property
    def numel(self) -> int:
        """Number of elements (1 for a 0-d tensor)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Size in bytes."""
        return self.numel * self.elt_bytes


@dataclass(frozen=True, slots=True)
class OpCost:
    """What the perf model says about one op call.

    ``family``: gemm, conv, attention, elementwise, softmax, norm, reduction, embedding, copy.
    ``dtype``: the compute dtype (that of the main input). ``matrix``: a GEMM-like op that a
    tensor/matrix pipe can run. ``shapes``: the tensor input shapes, for display and grouping.
    """

    family: str
    flops: int
    bytes: int
    dtype: str
    matrix: bool
    shapes: str


@dataclass(frozen=True, slots=True)
class OpArgs:
    """An op's decoded ``Input Dims``, ``Input type`` and ``Concrete Inputs``."""

    name: str
    dims: Sequence[Any]
    types: Sequence[Any]
    concrete: Sequence[Any]

    def tensor(self, i: int) -> Tensor:
        """Argument ``i`` as a tensor; `ShapeError` when it is not one."""
        t = self.maybe_tensor(i)
        if t is None:
            raise ShapeError(f"{self.name}: argument {i} is not a tensor")
        return t

    def maybe_tensor(self, i: int) -> Tensor | None:
        """Argument ``i`` as a tensor, or None (absent, scalar, None, or unknown dtype)."""
        if i >= len(self.dims) or i >= len(self.types):
            return None
        dtype = DTYPES.get(str(self.types[i]))
        shape = self.dims[i]
        if dtype is None or not isinstance(shape, list):
            return None
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            return None
        return Tensor(tuple(shape), dtype[0], dtype[1])

    def tensors(self) -> list[Tensor]:
        """Every tensor argument, in order."""
        found = (self.maybe_tensor(i) for i in range(len(self.dims)))
        return [t for t in found if t is not None]

    def scalar(self, i: int) -> str | None:
        """Concrete value of argument ``i`` as recorded (None when absent or empty)."""
        if i >= len(self.concrete):
            return None
        value = self.concrete[i]
        text = str(value).strip() if value is not None else ""
        return text or None

    def flag(self, i: int, default: bool) -> bool:
        """Boolean argument ``i`` (``True``/``False``/``1``/``0``), or ``default``."""
        text = self.scalar(i)
        if text is None:
            return default
        if text in ("True", "true", "1"):
            return True
        if text in ("False", "false", "0"):
            return False
        return default

    def ints(self, i: int) -> list[int] | None:
        """Argument ``i`` as a list of ints (``[16, 16]`` or a bare ``2``), or None."""
        text = self.scalar(i)
        if text is None:
            return None
        try:
            value = msgspec.json.decode(text)
        except msgspec.DecodeError:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return [value]
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            return [int(v) for v in value]
        return None


def shapes_label(args: OpArgs) -> str:
    """Tensor input shapes as ``141x512, 512x512, 512`` (scalars left out; 0-d as ``()``)."""
    return ", ".join("x".join(map(str, t.shape)) or "()" for t in args.tensors())


# --- GEMM ---------------------------------------------------------------------------------


def gemm_flops(batch: int, m: int, n: int, k: int, bias: bool) -> int:
    """GEMM FLOPs: ``batch x 2 x M x N x K``, plus ``batch x M x N`` when a bias is added.

    Bytes (by the callers): A, B, bias and C, each at its own dtype size.
    """
    return batch * 2 * m * n * k + (batch * m * n if bias else 0)


def _gemm(
    args: OpArgs, a: Tensor, b: Tensor, out_dtype: tuple[str, int] | None, bias: Tensor | None
) -> OpCost:
    """A GEMM on (possibly batched, broadcast) ``a @ b``, per torch.matmul's shape rules."""
    a_shape = (1, *a.shape) if len(a.shape) == 1 else a.shape
    b_shape = (*b.shape, 1) if len(b.shape) == 1 else b.shape
    if len(a_shape) < 2 or len(b_shape) < 2 or a_shape[-1] != b_shape[-2]:
        raise ShapeError(f"{args.name}: inner dimensions differ: {a.shape} @ {b.shape}")
    m, k, n = a_shape[-2], a_shape[-1], b_shape[-1]
    batch_shape = broadcast(a_shape[:-2], b_shape[:-2])
    batch = math.prod(batch_shape)
    out_elt = out_dtype[1] if out_dtype else a.elt_bytes
    out_bytes = batch * m * n * out_elt
    nbytes = a.nbytes + b.nbytes + out_bytes + (bias.nbytes if bias else 0)
    flops = gemm_flops(batch, m, n, k, bias is not None)
    dtype = a.dtype if a.dtype == b.dtype else max(a.dtype, b.dtype, key=_precision_rank)
    return OpCost("gemm", flops, nbytes, dtype, True, shapes_label(args))


def _precision_rank(dtype: str) -> int:
    order = ("fp8", "int8", "bf16", "fp16", "fp32", "fp64")
    return order.index(dtype) if dtype in order else -1


def _mm(args: OpArgs) -> OpCost:
    """``aten::mm(a[M,K], b[K,N])``, ``aten::bmm(a[B,M,K], b[B,K,N])``, ``aten::matmul``."""
    return _gemm(args, args.tensor(0), args.tensor(1), None, None)


def _addmm(args: OpArgs) -> OpCost:
    """``aten::addmm(bias, a, b, beta, alpha)`` and ``aten::baddbmm(bias, a, b, beta, alpha)``."""
    return _gemm(args, args.tensor(1), args.tensor(2), None, args.tensor(0))


def _linear(args: OpArgs) -> OpCost:
    """``aten::linear(x[..., K], w[N, K], bias[N]?)``: M is the product of x's leading dims."""
    x, w = args.tensor(0), args.tensor(1)
    if len(w.shape) != 2:
        raise ShapeError(f"{args.name}: weight is not 2-D: {w.shape}")
    wt = Tensor((w.shape[1], w.shape[0]), w.dtype, w.elt_bytes)
    return _gemm(args, x, wt, None, args.maybe_tensor(2))


def _scaled_mm(args: OpArgs) -> OpCost:
    """``aten::_scaled_mm(a, b, scale_a, scale_b, bias?, scale_result?, out_dtype?, ...)``.

    The output dtype is argument 6 (a ScalarType code) when recorded, else a's dtype; the
    scales are per-tensor or per-row vectors and count as read bytes like any input.
    """
    a, b = args.tensor(0), args.tensor(1)
    out = None
    code = args.ints(6)
    if code and len(code) == 1:
        out = SCALAR_TYPE_CODES.get(code[0])
    cost = _gemm(args, a, b, out, args.maybe_tensor(4))
    scales = sum(t.nbytes for t in (args.maybe_tensor(2), args.maybe_tensor(3)) if t)
    return OpCost(cost.family, cost.flops, cost.bytes + scales, cost.dtype, True, cost.shapes)


# --- Convolution --------------------------------------------------------------------------


def conv_out_size(
    size: int, kernel: int, stride: int, pad: int, dilation: int, transposed: bool, out_pad: int
) -> int:
    """Output length of one spatial dimension (PyTorch's Conv/ConvTranspose formulas)."""
    if transposed:
        return (size - 1) * stride - 2 * pad + dilation * (kernel - 1) + out_pad + 1
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def conv_flops(
    n: int,
    c_in: int,
    c_out: int,
    groups: int,
    kernel: Sequence[int],
    out_spatial: Sequence[int],
    in_spatial: Sequence[int],
    transposed: bool,
    bias: bool,
) -> int:
    """Convolution FLOPs: ``2 x N x C_out x prod(out) x (C_in / groups) x prod(kernel)``.

    Transposed: the same product over the input positions, ``2 x N x C_in x prod(in) x
    (C_out / groups) x prod(kernel)``. Plus ``N x C_out x prod(out)`` with a bias.
    Bytes (by the callers): input, weight, bias and output at their dtype size.
    """
    taps = math.prod(kernel)
    if transposed:
        macs = n * c_in * math.prod(in_spatial) * (c_out // groups) * taps
    else:
        macs = n * c_out * math.prod(out_spatial) * (c_in // groups) * taps
    return 2 * macs + (n * c_out * math.prod(out_spatial) if bias else 0)


@dataclass(frozen=True, slots=True)
class _ConvSig:
    """Where a convolution op keeps its arguments (index, or -1 when it has none)."""

    bias: int
    stride: int
    padding: int
    dilation: int
    transposed: int
    out_pad: int
    groups: int


_CONV_SIGS: Final[dict[str, _ConvSig]] = {
    "aten::conv1d": _ConvSig(2, 3, 4, 5, -1, -1, 6),
    "aten::conv2d": _ConvSig(2, 3, 4, 5, -1, -1, 6),
    "aten::conv3d": _ConvSig(2, 3, 4, 5, -1, -1, 6),
    "aten::convolution": _ConvSig(2, 3, 4, 5, 6, 7, 8),
    "aten::_convolution": _ConvSig(2, 3, 4, 5, 6, 7, 8),
    "aten::cudnn_convolution": _ConvSig(-1, 3, 2, 4, -1, -1, 5),
    "aten::miopen_convolution": _ConvSig(2, 4, 3, 5, -1, -1, 6),
    "aten::mkldnn_convolution": _ConvSig(2, 4, 3, 5, -1, -1, 6),
    "aten::cudnn_convolution_transpose": _ConvSig(-1, 4, 2, 5, -2, 3, 6),
    "aten::miopen_convolution_transpose": _ConvSig(2, 5, 3, 6, -2, 4, 7),
    "aten::conv_transpose1d": _ConvSig(2, 3, 4, 7, -2, 5, 6),
    "aten::conv_transpose2d": _ConvSig(2, 3, 4, 7, -2, 5, 6),
    "aten::conv_transpose3d": _ConvSig(2, 3, 4, 7, -2, 5, 6),
}


def _conv_geometry(
    args: OpArgs,
    x: Tensor,
    w: Tensor,
    sig: _ConvSig,
    transposed: bool,
) -> tuple[int, int, int, list[int], list[int]]:
    """(C_in, C_out, groups, output spatial, kernel) from the op's recorded arguments."""
    nd = len(x.shape) - 2
    if nd < 1 or len(w.shape) != nd + 2:
        raise ShapeError(f"{args.name}: input {x.shape} and weight {w.shape} do not match")

    def per_dim(index: int, default: int) -> list[int]:
        values = args.ints(index) if index >= 0 else None
        if values is None:
            if index >= 0:
                raise ShapeError(f"{args.name}: argument {index} not recorded")
            return [default] * nd
        return values * nd if len(values) == 1 else values

    stride, pad, dil = per_dim(sig.stride, 1), per_dim(sig.padding, 0), per_dim(sig.dilation, 1)
    out_pad = per_dim(sig.out_pad, 0) if transposed else [0] * nd
    groups_list = args.ints(sig.groups)
    if groups_list is None or len(groups_list) != 1 or groups_list[0] < 1:
        raise ShapeError(f"{args.name}: groups not recorded")
    groups = groups_list[0]
    kernel = list(w.shape[2:])
    spatial = [
        conv_out_size(s, kk, st, p, d, transposed, op)
        for s, kk, st, p, d, op in zip(x.shape[2:], kernel, stride, pad, dil, out_pad, strict=True)
    ]
    c_in = x.shape[1]
    c_out = w.shape[1] * groups if transposed else w.shape[0]
    return c_in, c_out, groups, spatial, kernel


def _conv(args: OpArgs) -> OpCost:
    """Forward convolution ops (conv1d/2d/3d, convolution, cudnn/miopen, transposed)."""
    sig = _CONV_SIGS[args.name]
    x, w = args.tensor(0), args.tensor(1)
    transposed = sig.transposed == -2 or (sig.transposed >= 0 and args.flag(sig.transposed, False))
    c_in, c_out, groups, spatial, kernel = _conv_geometry(args, x, w, sig, transposed)
    bias = args.maybe_tensor(sig.bias) if sig.bias >= 0 else None
    n = x.shape[0]
    flops = conv_flops(
        n, c_in, c_out, groups, kernel, spatial, x.shape[2:], transposed, bias is not None
    )
    out_bytes = n * c_out * math.prod(spatial) * x.elt_bytes
    nbytes = x.nbytes + w.nbytes + (bias.nbytes if bias else 0) + out_bytes
    return OpCost("conv", flops, nbytes, x.dtype, True, shapes_label(args))


def _conv_backward(args: OpArgs) -> OpCost:
    """``aten::convolution_backward(grad_out, input, weight, bias_sizes, stride, padding,
    dilation, transposed, output_padding, groups, output_mask)``.

    FLOPs: the forward product (without bias) once for grad_input and once for grad_weight,
    as ``output_mask`` asks, plus ``N x C_out x prod(out)`` for grad_bias. Bytes: grad_out,
    input and weight read; grad_input, grad_weight, grad_bias written as asked.
    """
    gy, x, w = args.tensor(0), args.tensor(1), args.tensor(2)
    transposed = args.flag(7, False)
    groups_list = args.ints(9)
    if not groups_list or len(gy.shape) != len(x.shape):
        raise ShapeError(f"{args.name}: groups or grad_output shape not recorded")
    groups = groups_list[0]
    mask = _mask(args.scalar(10), 3)
    n, c_in = x.shape[0], x.shape[1]
    c_out = gy.shape[1]
    kernel = list(w.shape[2:])
    fwd = conv_flops(n, c_in, c_out, groups, kernel, gy.shape[2:], x.shape[2:], transposed, False)
    flops = fwd * (int(mask[0]) + int(mask[1])) + (gy.numel if mask[2] else 0)
    written = (x.nbytes if mask[0] else 0) + (w.nbytes if mask[1] else 0)
    written += c_out * gy.elt_bytes if mask[2] else 0
    nbytes = gy.nbytes + x.nbytes + w.nbytes + written
    return OpCost("conv", flops, nbytes, x.dtype, True, shapes_label(args))


def _mask(text: str | None, size: int) -> list[bool]:
    """An ``output_mask`` like ``[True, False, True]``; all True when absent."""
    if text is None:
        return [True] * size
    values = [v.strip() for v in text.strip("[]").split(",") if v.strip()]
    if len(values) != size:
        return [True] * size
    return [v in ("True", "true", "1") for v in values]


# --- Attention ----------------------------------------------------------------------------


def attention_flops(
    b: int, h_q: int, n_q: int, n_kv: int, d_qk: int, d_v: int, causal: bool
) -> int:
    """Attention forward FLOPs: ``2 x B x H_q x N_q x N_kv x (d_qk + d_v)``, halved when causal.

    The two matmuls (Q K^T and P V); with d_qk = d_v = d this is TraceLens' 4 B H N_q N_kv d.
    Grouped-query attention uses H_q (every query head attends). Softmax is not counted.
    Backward is 2.5x the forward (five matmuls instead of two). Bytes (by the callers):
    Q, K, V and O forward; dO, Q, K, V, O read and dQ, dK, dV written backward.
    """
    flops = 2 * b * h_q * n_q * n_kv * (d_qk + d_v)
    return flops // 2 if causal else flops


@dataclass(frozen=True, slots=True)
class _AttnSig:
    """Layout (``bhsd`` or ``bshd``), first of q/k/v, causal flag index, mask kind, backward."""

    layout: str
    qkv: int
    causal: int
    causal_is_mask_type: bool = False
    backward: bool = False
    mask: int = -1  # attn_mask / bias tensor argument, read when present


_ATTN_SIGS: Final[dict[str, _AttnSig]] = {
    "aten::scaled_dot_product_attention": _AttnSig("bhsd", 0, 5, mask=3),
    "aten::_scaled_dot_product_flash_attention": _AttnSig("bhsd", 0, 4),
    "aten::_scaled_dot_product_efficient_attention": _AttnSig("bhsd", 0, 6, mask=3),
    "aten::_scaled_dot_product_cudnn_attention": _AttnSig("bhsd", 0, 6, mask=3),
    "aten::_scaled_dot_product_fused_attention_overrideable": _AttnSig("bhsd", 0, 5, mask=3),
    "aten::_flash_attention_forward": _AttnSig("bshd", 0, 8),
    "aten::_efficient_attention_forward": _AttnSig("bshd", 0, 9, True, mask=3),
    "aten::_scaled_dot_product_flash_attention_backward": _AttnSig("bhsd", 1, 11, backward=True),
    "aten::_scaled_dot_product_efficient_attention_backward": _AttnSig(
        "bhsd", 1, 11, backward=True
    ),
    "aten::_scaled_dot_product_cudnn_attention_backward": _AttnSig("bhsd", 1, 14, backward=True),
    "aten::_flash_attention_backward": _AttnSig("bshd", 1, 11, backward=True),
    "aten::_efficient_attention_backward": _AttnSig("bshd", 1, 14, True, backward=True),
}


def _attention(args: OpArgs) -> OpCost:
    """SDPA and its flash / memory-efficient / cuDNN variants, forward and backward."""
    sig = _ATTN_SIGS[args.name]
    q, k, v = (args.tensor(sig.qkv + i) for i in range(3))
    if not len(q.shape) == len(k.shape) == len(v.shape) == 4:
        raise ShapeError(f"{args.name}: varlen or unbatched attention is not modeled")
    if sig.layout == "bhsd":
        b, h_q, n_q, d_qk = q.shape
        h_kv, n_kv = k.shape[1], k.shape[2]
    else:
        b, n_q, h_q, d_qk = q.shape
        n_kv, h_kv = k.shape[1], k.shape[2]
    d_v = v.shape[3]
    if h_kv < 1 or h_q % h_kv:
        raise ShapeError(f"{args.name}: {h_q} query heads do not group over {h_kv} kv heads")
    if sig.causal_is_mask_type:
        mask_type = args.ints(sig.causal)
        causal = bool(mask_type and mask_type[0] > 0)
    else:
        causal = args.flag(sig.causal, False)
    fwd = attention_flops(b, h_q, n_q, n_kv, d_qk, d_v, causal)
    out_bytes = b * h_q * n_q * d_v * q.elt_bytes
    qkv_bytes = q.nbytes + k.nbytes + v.nbytes
    mask = args.maybe_tensor(sig.mask) if sig.mask >= 0 and not sig.backward else None
    if sig.backward:
        flops = fwd * 5 // 2
        nbytes = 2 * qkv_bytes + 2 * out_bytes
    else:
        flops = fwd
        nbytes = qkv_bytes + out_bytes + (mask.nbytes if mask else 0)
    return OpCost("attention", flops, nbytes, q.dtype, True, shapes_label(args))


# --- Elementwise --------------------------------------------------------------------------


def broadcast(*shapes: Sequence[int]) -> tuple[int, ...]:
    """The broadcast of several shapes (NumPy rules); `ShapeError` when incompatible."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[int] = []
    for i in range(rank):
        sizes = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            raise ShapeError(f"shapes {shapes} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def elementwise_cost(inputs: Sequence[Tensor], out_numel: int, out_elt: int) -> tuple[int, int]:
    """Elementwise (FLOPs, bytes): ``n`` FLOPs for ``n`` output elements; bytes = every tensor
    input at its own size (a broadcast operand counts once, at its own shape) + the output.
    """
    return out_numel, sum(t.nbytes for t in inputs) + out_numel * out_elt


_BOOL_RESULT: Final = frozenset(
    {
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "logical_and",
        "logical_or",
        "logical_xor",
        "logical_not",
        "isnan",
        "isinf",
        "isfinite",
    }
)


#: Tensor operands of elementwise ops with more than the one (unary) or two (binary) inputs.
_ARITY: Final = {"where": 3, "addcmul": 3, "addcdiv": 3, "lerp": 3}


def _elementwise(args: OpArgs) -> OpCost:
    """Unary, binary and ternary elementwise ops; the output has the broadcast shape.

    Tensors beyond the op's arity are ``out=`` buffers (``clamp_min.out(x, min, out)`` in old
    traces): written, so they count as the output, not as inputs.
    """
    base = _base_name(args.name)
    arity = _ARITY.get(base, 1 if base in _UNARY else 2)
    tensors = args.tensors()[:arity]
    if not tensors:
        raise ShapeError(f"{args.name}: no tensor argument")
    out_shape = broadcast(*(t.shape for t in tensors))
    value = tensors[1] if base == "where" and len(tensors) > 1 else tensors[0]
    out_elt = 1 if base in _BOOL_RESULT else value.elt_bytes
    flops, nbytes = elementwise_cost(tensors, math.prod(out_shape), out_elt)
    return OpCost("elementwise", flops, nbytes, value.dtype, False, shapes_label(args))


def _base_name(name: str) -> str:
    """``aten::add_`` -> ``add``."""
    return name.split("::")[-1].rstrip("_")


# --- Softmax ------------------------------------------------------------------------------


def softmax_flops(numel: int, backward: bool) -> int:
    """Softmax / log-softmax FLOPs: ``5 n`` forward (max, subtract, exp, sum, divide or log),
    ``4 n`` backward (multiply, sum, subtract, multiply). Bytes: input(s) read, output written.
    """
    return (4 if backward else 5) * numel


def _softmax(args: OpArgs) -> OpCost:
    """``aten::_softmax(x, dim, half_to_float)``, ``softmax``, log variants, and backward."""
    base = _base_name(args.name)
    backward = base.endswith("backward_data")
    x = args.tensor(0)
    out_elt = x.elt_bytes
    if base in ("softmax", "log_softmax"):
        code = args.ints(2)
        if code and len(code) == 1 and code[0] in SCALAR_TYPE_CODES:
            out_elt = SCALAR_TYPE_CODES[code[0]][1]
    elif not backward and args.flag(2, False):
        out_elt = 4  # half_to_float
    inputs = [x, args.tensor(1)] if backward else [x]
    nbytes = sum(t.nbytes for t in inputs) + x.numel * out_elt
    flops = softmax_flops(x.numel, backward)
    return OpCost("softmax", flops, nbytes, x.dtype, False, shapes_label(args))


# --- Normalization ------------------------------------------------------------------------


def norm_flops(numel: int, kind: str, affine: int, backward: bool) -> int:
    """Normalization FLOPs per element, times ``n`` input elements:

    - ``layer`` / ``group`` / ``batch`` in training: 4 for the statistics (mean: add;
      variance: subtract, square, add) + 2 to normalize (subtract, multiply) = 6;
    - ``batch_eval`` (running statistics): 2;
    - ``rms``: 2 for the statistic (square, add) + 1 to scale = 3;
    - ``add_rms`` (residual add fused in): 1 + 3 = 4;
    plus 1 per affine tensor (weight, bias). Backward is twice the forward.
    Bytes (by the callers): input and output, plus the affine parameters; backward reads
    grad_out and input and writes grad_input (and grad_weight / grad_bias when asked).
    Per-row statistics (mean, rstd) are ignored: they are 1/normalized_size of the traffic.
    """
    per_elt = {"layer": 6, "group": 6, "batch": 6, "batch_eval": 2, "rms": 3, "add_rms": 4}
    flops = numel * (per_elt[kind] + affine)
    return 2 * flops if backward else flops


@dataclass(frozen=True, slots=True)
class _NormSig:
    """Norm op layout: input index, affine tensor indices, kind, training flag index."""

    kind: str
    x: int
    affine: tuple[int, ...]
    training: int = -1  # batch norm: index of the `training` flag (-1: always training)
    extra_in: tuple[int, ...] = ()  # further tensors read (residual, out buffer excluded)
    extra_out: int = 0  # further tensors of x's size written (residual)
    out_arg: int = -1  # an output buffer passed as an argument (not read)


_NORM_SIGS: Final[dict[str, _NormSig]] = {
    "aten::layer_norm": _NormSig("layer", 0, (2, 3)),
    "aten::native_layer_norm": _NormSig("layer", 0, (2, 3)),
    "aten::group_norm": _NormSig("group", 0, (2, 3)),
    "aten::native_group_norm": _NormSig("group", 0, (1, 2)),
    "aten::batch_norm": _NormSig("batch", 0, (1, 2), training=5),
    "aten::_batch_norm_impl_index": _NormSig("batch", 0, (1, 2), training=5),
    "aten::native_batch_norm": _NormSig("batch", 0, (1, 2), training=5),
    "aten::cudnn_batch_norm": _NormSig("batch", 0, (1, 2), training=5),
    "aten::miopen_batch_norm": _NormSig("batch", 0, (1, 2), training=5),
    "aten::_native_batch_norm_legit": _NormSig("batch", 0, (1, 2), training=5),
    "aten::_native_batch_norm_legit_no_training": _NormSig("batch", 0, (1, 2), training=-2),
    "aten::rms_norm": _NormSig("rms", 0, (2,)),
    "aten::_fused_rms_norm": _NormSig("rms", 0, (2,)),
    "_C::rms_norm": _NormSig("rms", 1, (2,), out_arg=0),
    "_C::fused_add_rms_norm": _NormSig("add_rms", 0, (2,), extra_in=(1,), extra_out=1),
}


def _norm(args: OpArgs) -> OpCost:
    """Layer / group / batch / RMS norm forward (including vLLM's fused RMS norm ops).

    Batch norm's ``training`` flag comes from Concrete Inputs; traces without them (before
    PyTorch 1.13) are taken as training, which computes the batch statistics.
    """
    sig = _NORM_SIGS[args.name]
    x = args.tensor(sig.x)
    kind = sig.kind
    if kind == "batch" and (sig.training == -2 or not args.flag(sig.training, True)):
        kind = "batch_eval"
    params = [t for t in (args.maybe_tensor(i) for i in sig.affine) if t is not None]
    extra = [args.tensor(i) for i in sig.extra_in]
    flops = norm_flops(x.numel, kind, len(params), backward=False)
    read = x.nbytes + sum(t.nbytes for t in params) + sum(t.nbytes for t in extra)
    written = x.nbytes * (1 + sig.extra_out)
    return OpCost("norm", flops, read + written, x.dtype, False, shapes_label(args))


@dataclass(frozen=True, slots=True)
class _NormBwdSig:
    """Norm backward layout: grad_out, input, weight indices, kind, output_mask index."""

    kind: str
    grad: int
    x: int
    weight: int
    mask: int


_NORM_BWD_SIGS: Final[dict[str, _NormBwdSig]] = {
    "aten::native_layer_norm_backward": _NormBwdSig("layer", 0, 1, 5, 7),
    "aten::native_group_norm_backward": _NormBwdSig("group", 0, 1, 4, 9),
    "aten::native_batch_norm_backward": _NormBwdSig("batch", 0, 1, 2, 9),
    "aten::cudnn_batch_norm_backward": _NormBwdSig("batch", 1, 0, 2, -1),
    "aten::miopen_batch_norm_backward": _NormBwdSig("batch", 1, 0, 2, -1),
    "aten::_fused_rms_norm_backward": _NormBwdSig("rms", 0, 1, 4, 5),
}


def _norm_backward(args: OpArgs) -> OpCost:
    """Norm backward ops: see `norm_flops`; the output mask selects what is written."""
    sig = _NORM_BWD_SIGS[args.name]
    gy, x = args.tensor(sig.grad), args.tensor(sig.x)
    w = args.maybe_tensor(sig.weight)
    size = 2 if sig.kind == "rms" else 3
    mask = _mask(args.scalar(sig.mask) if sig.mask >= 0 else None, size)
    affine = (1 if w else 0) * (2 if sig.kind != "rms" else 1)
    flops = norm_flops(x.numel, sig.kind, affine, backward=True)
    written = x.nbytes if mask[0] else 0
    if w is not None:
        written += w.nbytes * sum(mask[1:])
    read = gy.nbytes + x.nbytes + (w.nbytes if w else 0)
    return OpCost("norm", flops, read + written, x.dtype, False, shapes_label(args))


# --- Reductions ---------------------------------------------------------------------------


def reduction_flops(numel: int, per_element: int) -> int:
    """Reduction FLOPs: ``per_element x n`` input elements (1 for sum/mean/max/min/argmax/
    all/any, 2 for vector norms, 3 for var/std). Bytes: input read, reduced output written.
    """
    return per_element * numel


#: reduction -> (index of its `dim` argument, FLOPs per input element, output dtype override)
_REDUCTIONS: Final[dict[str, tuple[int, int, tuple[str, int] | None]]] = {
    "sum": (1, 1, None),
    "mean": (1, 1, None),
    "nansum": (1, 1, None),
    "prod": (1, 1, None),
    "amax": (1, 1, None),
    "amin": (1, 1, None),
    "max": (1, 1, None),
    "min": (1, 1, None),
    "argmax": (1, 1, ("int64", 8)),
    "argmin": (1, 1, ("int64", 8)),
    "all": (1, 1, ("bool", 1)),
    "any": (1, 1, ("bool", 1)),
    "logsumexp": (1, 3, None),
    "var": (1, 3, None),
    "std": (1, 3, None),
    "linalg_vector_norm": (2, 2, None),
    "norm": (2, 2, None),
}


def _reduction(args: OpArgs) -> OpCost:
    """``sum/mean/max/.../linalg_vector_norm`` over ``dim`` (all dims when not given)."""
    base = _base_name(args.name)
    if base in ("max", "min") and args.maybe_tensor(1) is not None:
        return _elementwise(args)  # max(a, b) is the elementwise maximum
    dim_index, per_element, out_dtype = _REDUCTIONS[base]
    x = args.tensor(0)
    # Overloads without `dim` (sum(x, dtype), max(x)) have fewer arguments: `dim` counts only
    # when the `keepdim` flag follows it.
    dims = args.ints(dim_index) if len(args.dims) > dim_index + 1 else None
    if dims:
        rank = max(len(x.shape), 1)
        reduced = {d % rank for d in dims}
        out_numel = x.numel // max(math.prod(x.shape[d] for d in reduced if d < len(x.shape)), 1)
    else:
        out_numel = 1
    out_elt = out_dtype[1] if out_dtype else x.elt_bytes
    flops = reduction_flops(x.numel, per_element)
    nbytes = x.nbytes + out_numel * out_elt
    return OpCost("reduction", flops, nbytes, x.dtype, False, shapes_label(args))


# --- Embedding and gathers ----------------------------------------------------------------


def gather_bytes(index: Tensor, out_numel: int, elt_bytes: int) -> int:
    """Embedding / index_select / gather bytes: the indices, plus each selected element read
    once and written once (``2 x out x elt``); no FLOPs. The table itself is not read whole.
    """
    return index.nbytes + 2 * out_numel * elt_bytes


def _embedding(args: OpArgs) -> OpCost:
    """``embedding(weight[V, D], indices)``, ``index_select(x, dim, index)``,
    ``gather(x, dim, index)``, ``embedding_dense_backward(grad, indices, num_weights, ...)``.
    """
    base = _base_name(args.name)
    if base == "embedding":
        w, idx = args.tensor(0), args.tensor(1)
        out = idx.numel * math.prod(w.shape[1:])
        return OpCost(
            "embedding", 0, gather_bytes(idx, out, w.elt_bytes), w.dtype, False, shapes_label(args)
        )
    if base == "index_select":
        x, idx = args.tensor(0), args.tensor(2)
        dims = args.ints(1)
        if not dims or not x.shape:
            raise ShapeError(f"{args.name}: dim not recorded")
        dim = dims[0] % len(x.shape)
        out = x.numel // max(x.shape[dim], 1) * idx.numel
        return OpCost(
            "embedding", 0, gather_bytes(idx, out, x.elt_bytes), x.dtype, False, shapes_label(args)
        )
    if base == "gather":
        x, idx = args.tensor(0), args.tensor(2)
        return OpCost(
            "embedding",
            0,
            gather_bytes(idx, idx.numel, x.elt_bytes),
            x.dtype,
            False,
            shapes_label(args),
        )
    grad, idx = args.tensor(0), args.tensor(1)
    num_weights = args.ints(2)
    if not num_weights:
        raise ShapeError(f"{args.name}: num_weights not recorded")
    dim = grad.numel // max(idx.numel, 1)
    nbytes = grad.nbytes + idx.nbytes + num_weights[0] * dim * grad.elt_bytes
    return OpCost("embedding", grad.numel, nbytes, grad.dtype, False, shapes_label(args))


# --- Copies and casts ---------------------------------------------------------------------


def copy_bytes(numel: int, src_elt: int, dst_elt: int) -> int:
    """Copy / cast bytes: every element read at the source size and written at the
    destination size; no FLOPs. ``fill_``/``zero_`` only write (src_elt = 0).
    """
    return numel * (src_elt + dst_elt)


def _copy(args: OpArgs) -> OpCost:
    """``copy_(dst, src)``, ``_to_copy(x, dtype, ...)``, ``clone(x)``, ``fill_``, ``zero_``."""
    base = _base_name(args.name)
    x = args.tensor(0)
    if base == "copy":
        src = args.tensor(1)
        nbytes = src.nbytes + x.nbytes
        return OpCost("copy", 0, nbytes, src.dtype, False, shapes_label(args))
    if base in ("fill", "zero"):
        return OpCost(
            "copy", 0, copy_bytes(x.numel, 0, x.elt_bytes), x.dtype, False, shapes_label(args)
        )
    dst_elt = x.elt_bytes
    if base == "_to_copy":
        code = args.ints(1)
        if code and len(code) == 1 and code[0] in SCALAR_TYPE_CODES:
            dst_elt = SCALAR_TYPE_CODES[code[0]][1]
    return OpCost(
        "copy", 0, copy_bytes(x.numel, x.elt_bytes, dst_elt), x.dtype, False, shapes_label(args)
    )


# --- Registry -----------------------------------------------------------------------------

# fmt: off
_UNARY: Final = (
    "abs", "neg", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt",
    "reciprocal", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "gelu", "silu", "mish",
    "hardswish", "hardsigmoid", "elu", "leaky_relu", "softplus", "erf", "erfinv", "sign", "floor",
    "ceil", "round", "trunc", "clamp", "clamp_min", "clamp_max", "hardtanh", "threshold", "logit",
    "nan_to_num", "bitwise_not", "logical_not", "isnan", "square", "cumsum",
)
_BINARY: Final = (
    "add", "sub", "mul", "div", "rsub", "maximum", "minimum", "pow", "remainder", "fmod", "atan2",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "bitwise_and",
    "bitwise_or", "bitwise_xor", "where", "masked_fill", "addcmul", "addcdiv", "lerp",
    "threshold_backward", "sigmoid_backward", "tanh_backward", "gelu_backward", "silu_backward",
    "hardtanh_backward", "leaky_relu_backward",
)
# fmt: on

Model = Callable[[OpArgs], OpCost]


def _registry() -> dict[str, Model]:
    table: dict[str, Model] = {}
    for name in ("mm", "bmm", "matmul"):
        table[f"aten::{name}"] = _mm
    table["aten::addmm"] = _addmm
    table["aten::baddbmm"] = _addmm
    table["aten::linear"] = _linear
    table["aten::_scaled_mm"] = _scaled_mm
    table.update(dict.fromkeys(_CONV_SIGS, _conv))
    table["aten::convolution_backward"] = _conv_backward
    table.update(dict.fromkeys(_ATTN_SIGS, _attention))
    for name in (*_UNARY, *_BINARY):
        table[f"aten::{name}"] = _elementwise
        table[f"aten::{name}_"] = _elementwise
    for name in (
        "_softmax",
        "softmax",
        "_log_softmax",
        "log_softmax",
        "_softmax_backward_data",
        "_log_softmax_backward_data",
    ):
        table[f"aten::{name}"] = _softmax
    table.update(dict.fromkeys(_NORM_SIGS, _norm))
    table.update(dict.fromkeys(_NORM_BWD_SIGS, _norm_backward))
    for name in _REDUCTIONS:
        table[f"aten::{name}"] = _reduction
    for name in ("embedding", "index_select", "gather", "embedding_dense_backward"):
        table[f"aten::{name}"] = _embedding
    for name in ("copy_", "_to_copy", "clone", "fill_", "zero_"):
        table[f"aten::{name}"] = _copy
    return table


MODELS: Final[dict[str, Model]] = _registry()

#: Op names the perf model covers (for documentation and for the `shapes` capability check).
MODELED_OPS: Final[frozenset[str]] = frozenset(MODELS)

_MATMUL_NAME = re.compile(r"^aten::(mm|bmm|addmm|baddbmm|matmul|linear|_scaled_mm)$")


def is_modeled(name: str) -> bool:
    """Whether the perf model has a formula for this op name."""
    return name in MODELS


def model_args(args: OpArgs) -> OpCost | None:
    """The cost of one op call, or None when the op is not modeled or its shapes do not fit."""
    fn = MODELS.get(args.name)
    if fn is None:
        return None
    try:
        return fn(args)
    except (ShapeError, IndexError, ValueError, TypeError, ZeroDivisionError):
        return None


def _decode_list(text: str | None) -> list[Any]:
    if not text:
        return []
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return []
    return value if isinstance(value, list) else []


def model_op(
    name: str, input_dims: str | None, input_types: str | None, concrete_inputs: str | None
) -> OpCost | None:
    """The cost of one op call from the JSON text of its three profiler arguments."""
    if name not in MODELS:
        return None
    args = OpArgs(
        name, _decode_list(input_dims), _decode_list(input_types), _decode_list(concrete_inputs)
    )
    return model_args(args)


COST_COLUMNS: Final = ("family", "flops", "bytes", "dtype", "matrix", "shapes")

#: The op columns a cost is computed from (the name and the three JSON argument lists).
KEY_COLUMNS: Final = ("name", "input_dims", "input_types", "concrete_inputs")

_COST_SCHEMA: Final = {
    "family": pl.String(),
    "flops": pl.Int64(),
    "bytes": pl.Int64(),
    "dtype": pl.String(),
    "matrix": pl.Boolean(),
    "shapes": pl.String(),
}


def _costs(keys: pl.DataFrame) -> pl.DataFrame:
    """`COST_COLUMNS` for each row of ``keys`` (name and the three JSON texts), null where
    the op is not modeled."""
    costs = [model_op(*key) for key in keys.iter_rows()]
    return pl.DataFrame(
        {c: [getattr(cost, c) if cost else None for cost in costs] for c in COST_COLUMNS},
        schema=_COST_SCHEMA,
    )


@functools.cache
def _names_modeled_without_args() -> frozenset[str]:
    """Op names whose model gives a cost with no argument recorded (none so far): on the rows
    of any other op, no shapes means no cost, so a trace without shapes skips the lookup."""
    return frozenset(name for name in MODELS if model_op(name, None, None, None) is not None)


def may_have_cost() -> pl.Expr:
    """Whether an ops row can get a cost: its name has a model, and it records arguments (or
    its model needs none). `op_costs` looks at these rows only; callers may pre-filter."""
    recorded = ~pl.all_horizontal(pl.col(c).is_null() for c in KEY_COLUMNS[1:])
    without_args = _names_modeled_without_args()
    if without_args:
        recorded = recorded | pl.col("name").is_in(sorted(without_args))
    return recorded & pl.col("name").is_in(list(MODELS))


def op_costs(ops: pl.DataFrame) -> pl.DataFrame:
    """Every row of ``ops`` the perf model covers: its position (``row``) and `COST_COLUMNS`.

    JSON is decoded once per distinct (name, dims, types, concrete) combination, so a trace
    with thousands of identical layer calls costs a few hundred decodes; only `may_have_cost`
    rows are looked at.
    """
    candidates = ops.select(KEY_COLUMNS).with_row_index("row").filter(may_have_cost())
    groups = (
        candidates.group_by(KEY_COLUMNS)
        .agg("row")
        .with_columns(pl.col(c).cast(pl.String) for c in KEY_COLUMNS)
    )
    costs = pl.concat([groups.select("row"), _costs(groups.select(KEY_COLUMNS))], how="horizontal")
    return costs.filter(pl.col("flops").is_not_null()).explode("row")


def model_ops(ops: pl.DataFrame) -> pl.DataFrame:
    """The ``ops`` table with the perf model's columns added (null where not modeled).

    Adds ``family``, ``flops`` (Int64), ``bytes`` (Int64), ``dtype``, ``matrix`` (bool) and
    ``shapes`` (see `op_costs`).
    """
    ops = ops.with_columns(pl.col(c).cast(pl.String) for c in KEY_COLUMNS[1:])
    costs = op_costs(ops).rename({"row": "_row"})
    return (
        ops.with_row_index("_row")
        .join(costs, on="_row", how="left", maintain_order="left")
        .drop("_row")
    )


def is_gemm_name(name: str) -> bool:
    """Whether an op name is one of the GEMM family."""
    return _MATMUL_NAME.match(name) is not None
