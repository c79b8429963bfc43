"""Workloads built from `TraceBuilder` calls: an MLP's forward and backward, a training step,
and the small arithmetic the scenarios share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from synthetic.builder import TraceBuilder
from synthetic.records import DTYPES, MIB, GpuActivity, forward_seq


@dataclass(frozen=True, slots=True)
class Mlp:
    """A transformer-style MLP block with an output projection, trained in bf16.

    Per step: zero the gradient buffer, copy the batch to the GPU, layer norm, fc1 (linear),
    gelu, fc2 (linear), residual add, scale (mul), logits (mm), softmax; the backward of each;
    one fused AdamW step.
    """

    tokens: int = 4096
    hidden: int = 1024
    ffn: int = 4096
    vocab: int = 1024
    dtype: str = "bf16"

    @property
    def numel(self) -> int:
        """Trainable parameters."""
        h, f, v = self.hidden, self.ffn, self.vocab
        return 2 * h * f + f + h + v * h + 2 * h

    @property
    def bucket_nelems(self) -> tuple[int, int]:
        """Gradient elements of DDP's two buckets: (logits + fc2, fc1 + layer norm)."""
        h, f, v = self.hidden, self.ffn, self.vocab
        return v * h + h * f + h, f * h + f + 2 * h


def _ctype(dtype: str) -> str:
    return DTYPES[dtype][2]


def simple_op(
    b: TraceBuilder,
    op: str,
    dims: Sequence[Sequence[int]],
    types: Sequence[str],
    kernel: str,
    dur_ns: int,
    grid: tuple[int, int, int],
    block: tuple[int, int, int],
    *,
    registers: int = 32,
    shared_mem: int = 0,
    label: str = "other",
    flops: int = 0,
    nbytes: int = 0,
) -> GpuActivity:
    """One op launching one kernel, with its model FLOPs and bytes recorded for the truth."""
    with b.op(op, dims, types):
        act = b.kernel(
            kernel, dur_ns, grid, block, registers=registers, shared_mem=shared_mem, label=label
        )
    act.flops, act.model_bytes, act.op = flops, nbytes, op
    return act


def mlp_forward(b: TraceBuilder, mlp: Mlp) -> dict[str, int | None]:
    """The forward pass; returns each layer's sequence number for its backward."""
    t, h, f, v, dt = mlp.tokens, mlp.hidden, mlp.ffn, mlp.vocab, mlp.dtype
    return {
        "ln": b.layer_norm(t, h, dtype=dt).seq,
        "fc1": b.gemm(t, f, h, dtype=dt, op="aten::linear", kernel="nvjet").seq,
        "gelu": b.elementwise("aten::gelu", (t, f), dtype=dt).seq,
        "fc2": b.gemm(t, h, f, dtype=dt, op="aten::linear", kernel="sm90").seq,
        "add": b.elementwise("aten::add", (t, h), dtype=dt).seq,
        "mul": b.elementwise("aten::mul", (t, h), dtype=dt).seq,
        "logits": b.gemm(t, v, h, dtype=dt, op="aten::mm", kernel="nvjet").seq,
        "softmax": b.softmax(t, v, dtype=dt).seq,
    }


def mlp_backward_head(b: TraceBuilder, mlp: Mlp, seqs: dict[str, int | None]) -> None:
    """Backward of softmax, logits, scale and fc2: the gradients of DDP's first bucket."""
    t, h, f, v, dt = mlp.tokens, mlp.hidden, mlp.ffn, mlp.vocab, mlp.dtype
    size, tname, ct = DTYPES[dt][0], DTYPES[dt][1], _ctype(dt)
    with b.backward("SoftmaxBackward0", forward_seq(seqs["softmax"])):
        nbytes = 3 * t * v * size
        simple_op(
            b, "aten::_softmax_backward_data", [[t, v], [t, v], [], []],
            [tname, tname, "Scalar", "Scalar"],
            f"void (anonymous namespace)::softmax_warp_backward<{ct}, {ct}, float, 10, false, "
            f"false>({ct}*, {ct} const*, {ct} const*, int, int, int, bool const*)",
            mem_ns(b, nbytes), (t // 4, 1, 1), (32, 4, 1), registers=40, label="reduction",
            flops=3 * t * v, nbytes=nbytes,
        )  # fmt: skip
    with b.backward("MmBackward0", forward_seq(seqs["logits"])):
        b.gemm(t, h, v, dtype=dt, kernel="nvjet")
        b.gemm(v, h, t, dtype=dt, kernel="nvjet")
    with b.backward("MulBackward0", forward_seq(seqs["mul"])):
        b.elementwise("aten::mul", (t, h), dtype=dt)
    with b.backward("AddmmBackward0", forward_seq(seqs["fc2"])):
        b.gemm(t, f, h, dtype=dt, kernel="sm90")
        b.gemm(h, f, t, dtype=dt, kernel="nvjet")
        b.reduce_sum(t, h, dtype=dt)


def mlp_backward_tail(
    b: TraceBuilder, mlp: Mlp, seqs: dict[str, int | None], *, norm_registers: int = 40
) -> None:
    """Backward of gelu, fc1 and the layer norm: the gradients of DDP's second bucket."""
    t, h, f, dt = mlp.tokens, mlp.hidden, mlp.ffn, mlp.dtype
    with b.backward("GeluBackward0", forward_seq(seqs["gelu"])):
        b.elementwise("aten::gelu_backward", (t, f), dtype=dt)
    with b.backward("AddmmBackward0", forward_seq(seqs["fc1"])):
        b.gemm(t, h, f, dtype=dt, kernel="nvjet")
        b.gemm(f, h, t, dtype=dt, kernel="nvjet")
        b.reduce_sum(t, f, dtype=dt)
    with b.backward("NativeLayerNormBackward0", forward_seq(seqs["ln"])):
        layer_norm_backward(b, t, h, dtype=dt, registers=norm_registers)


def layer_norm_backward(
    b: TraceBuilder,
    rows: int,
    cols: int,
    *,
    dtype: str = "bf16",
    registers: int = 40,
    dur_ns: int | None = None,
    grid: tuple[int, int, int] | None = None,
) -> GpuActivity:
    """`aten::native_layer_norm_backward`: the gamma/beta gradient kernel (reads grad and
    input, writes two [cols] vectors)."""
    size, tname, ct = DTYPES[dtype][0], DTYPES[dtype][1], _ctype(dtype)
    nbytes = (2 * rows * cols + 2 * cols) * size
    dims = [[rows, cols], [rows, cols], [], [rows], [rows], [cols], [cols], []]
    types = [tname, tname, "ScalarList", "float", "float", tname, tname, "ScalarList"]
    return simple_op(
        b, "aten::native_layer_norm_backward", dims, types,
        f"void at::native::(anonymous namespace)::GammaBetaBackwardCUDAKernel<{ct}, float>("
        f"long, long, {ct} const*, {ct} const*, float const*, float const*, {ct}*, {ct}*)",
        mem_ns(b, nbytes) if dur_ns is None else dur_ns,
        grid or (math.ceil(cols / 32), 1, 1), (32, 8, 1), registers=registers, label="norm",
        flops=4 * rows * cols, nbytes=nbytes,
    )  # fmt: skip


def mem_ns(b: TraceBuilder, nbytes: int, frac: float = 0.7) -> int:
    """Duration of a memory-bound kernel moving ``nbytes`` at ``frac`` of HBM bandwidth."""
    return max(1_000, math.ceil(nbytes / (b.props.mem_bw_gbs * frac)))


def activation_bytes(mlp: Mlp) -> list[int]:
    """Sizes of the activations the forward pass keeps for the backward."""
    size = DTYPES[mlp.dtype][0]
    t, h, f, v = mlp.tokens, mlp.hidden, mlp.ffn, mlp.vocab
    return [s * size for s in (t * h, t * f, t * f, t * h, t * h, t * v, t * v)]


def zero_grads(b: TraceBuilder, mlp: Mlp) -> GpuActivity:
    """`aten::zero_` > `aten::fill_` of the flat fp32 gradient buffer (all parameters)."""
    with b.op("aten::zero_", [[mlp.numel]], ["float"], [""]):
        return b.elementwise("aten::fill_", (mlp.numel,), dtype="fp32")


def train_step(
    b: TraceBuilder,
    mlp: Mlp,
    *,
    first: bool = False,
    sync: str | None = "device",
    pinned: bool = True,
    adam_extra_ns: int = 0,
) -> None:
    """One training step of ``mlp``: zero the gradient buffer (plus one memset on the first
    step), copy the batch, forward, backward, fused AdamW, then ``sync``: "device"
    (`torch.cuda.synchronize()`), "item" (`loss.item()`) or None."""
    t, dt = mlp.tokens, mlp.dtype
    tname = DTYPES[dt][1]
    zero_grads(b, mlp)
    if first:
        with b.op("aten::zero_", [[MIB // 2]], [tname], [""]):
            b.memset(MIB)
    b.to_device((t, 256), dtype=dt, pinned=pinned)
    blocks = [b.memory_event(n) for n in activation_bytes(mlp)]
    seqs = mlp_forward(b, mlp)
    mlp_backward_head(b, mlp, seqs)
    mlp_backward_tail(b, mlp, seqs)
    for block in reversed(blocks):
        b.free(block)
    b.fused_adam(mlp.numel, dur_ns=mem_ns(b, 28 * mlp.numel) + adam_extra_ns)
    if sync == "device":
        b.sync("device")
    elif sync == "item":
        b.item()


def fraction(value: float | Fraction | str, what: str, *, upper: int = 1) -> Fraction:
    frac = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    frac = frac.limit_denominator(10_000)
    if not 0 <= frac < upper:
        raise ValueError(f"{what} must be in [0, {upper}), not {value}")
    return frac


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one (larger first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def content_ns(make: Callable[[], TraceBuilder], body: Callable[[TraceBuilder], None]) -> int:
    """How long one step running ``body`` lasts on a fresh builder (GPU idle at its start)."""
    probe = make()
    with probe.step():
        body(probe)
    return probe.steps[0].end_ns - probe.steps[0].start_ns
