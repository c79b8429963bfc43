"""Catalogs of what the builder emits: GEMM kernels, elementwise ops, NCCL collectives, copy
bandwidths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from synthetic.records import DTYPES, DeviceProps


@dataclass(frozen=True, slots=True)
class GemmKernel:
    """A GEMM kernel family: name pattern, tile and resources (from real traces)."""

    pattern: str
    tile_m: int
    tile_n: int
    block: tuple[int, int, int]
    registers: int
    shared_mem: int
    tensor_core: bool
    persistent: bool = False

    def name(self, dtype: str, *, bias: bool) -> str:
        """The kernel name for a dtype, with cuBLAS's bias epilogue when fused."""
        return self.pattern.format(bias="_bias" if bias else "", dt=DTYPES[dtype][3])

    def grid(self, m: int, n: int, batch: int, num_sms: int) -> tuple[int, int, int]:
        """One block per output tile, or one per SM for persistent kernels."""
        tiles_m, tiles_n = math.ceil(m / self.tile_m), math.ceil(n / self.tile_n)
        if self.persistent:
            return (min(tiles_m * tiles_n * batch, num_sms), 1, 1)
        return (tiles_n, tiles_m, batch)


GEMM_KERNELS: Final[dict[str, GemmKernel]] = {
    "nvjet": GemmKernel(
        "nvjet_tst_256x128_64x4_1x2_h_bz_coopA{bias}_TNT", 256, 128, (384, 1, 1), 168, 213_656,
        tensor_core=True, persistent=True,
    ),
    "nvjet_small": GemmKernel(
        "nvjet_tst_64x8_64x16_4x1_v_bz{bias}_TNT", 8, 64, (256, 1, 1), 168, 164_504,
        tensor_core=True,
    ),
    "sm90": GemmKernel(
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_"
        "execute_segment_k_off_kernel__5x_cublas", 128, 128, (384, 1, 1), 168, 231_424,
        tensor_core=True,
    ),
    "ampere_bf16": GemmKernel(
        "ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_64x3_tn", 128, 128, (256, 1, 1),
        232, 98_304, tensor_core=True,
    ),
    "ampere_sgemm": GemmKernel(
        "ampere_sgemm_128x64_tn", 128, 64, (128, 1, 1), 122, 12_544, tensor_core=False
    ),
    "ampere_sgemm_sliced": GemmKernel(
        "ampere_sgemm_32x32_sliced1x4_tn", 32, 32, (128, 1, 1), 86, 32_768, tensor_core=False
    ),
    "cutlass_simt": GemmKernel(
        "void cutlass::Kernel2<cutlass_80_simt_sgemm_128x128_8x4_tn_align1>("
        "cutlass_80_simt_sgemm_128x128_8x4_tn_align1::Params)", 128, 128, (256, 1, 1), 254,
        33_280, tensor_core=False,
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ElementwiseOp:
    """How an elementwise aten op appears: its kernel, inputs and tensors touched."""

    kernel: str
    tensor_inputs: int
    tensors: int  # tensors read + written
    extra_types: tuple[str, ...] = ()
    extra_concrete: tuple[str, ...] = ()
    registers: int = 24


_VEC = "void at::native::vectorized_elementwise_kernel<4, "


ELEMENTWISE_OPS: Final[dict[str, ElementwiseOp]] = {
    "aten::add": ElementwiseOp(
        _VEC + "at::native::CUDAFunctor_add<{T}>, std::array<char*, 3ul> >(int, "
        "at::native::CUDAFunctor_add<{T}>, std::array<char*, 3ul>)", 2, 3, ("Scalar",), ("1",),
    ),
    "aten::mul": ElementwiseOp(
        _VEC + "at::native::BinaryFunctor<{T}, {T}, {T}, at::native::binary_internal::"
        "MulFunctor<float> >, std::array<char*, 3ul> >(int, at::native::BinaryFunctor<{T}, {T}, "
        "{T}, at::native::binary_internal::MulFunctor<float> >, std::array<char*, 3ul>)", 2, 3,
    ),
    "aten::gelu": ElementwiseOp(
        _VEC + "at::native::GeluCUDAKernelImpl(at::TensorIteratorBase&, at::native::GeluType)::"
        "{{lambda()#2}}::operator()() const::{{lambda()#4}}::operator()() const::"
        "{{lambda({T})#1}}, std::array<char*, 2ul> >(int, at::native::GeluCUDAKernelImpl("
        "at::TensorIteratorBase&, at::native::GeluType)::{{lambda()#2}}::operator()() const::"
        "{{lambda()#4}}::operator()() const::{{lambda({T})#1}}, std::array<char*, 2ul>)",
        1, 2, ("",), ("none",),
    ),
    "aten::gelu_backward": ElementwiseOp(
        _VEC + "at::native::GeluBackwardCUDAKernelImpl(at::TensorIteratorBase&, "
        "at::native::GeluType)::{{lambda()#2}}::operator()() const::{{lambda()#4}}::operator()"
        "() const::{{lambda({T}, {T})#1}}, std::array<char*, 3ul> >(int, "
        "at::native::GeluBackwardCUDAKernelImpl(at::TensorIteratorBase&, at::native::GeluType)"
        "::{{lambda()#2}}::operator()() const::{{lambda()#4}}::operator()() const::"
        "{{lambda({T}, {T})#1}}, std::array<char*, 3ul>)", 2, 3, ("",), ("none",),
    ),
    "aten::relu": ElementwiseOp(
        _VEC + "at::native::(anonymous namespace)::launch_clamp_scalar(at::TensorIteratorBase&, "
        "c10::Scalar, c10::Scalar, at::native::detail::ClampLimits)::{{lambda()#1}}::operator()"
        "() const::{{lambda()#14}}::operator()() const::{{lambda({T})#1}}, std::array<char*, "
        "2ul> >(int, at::native::(anonymous namespace)::launch_clamp_scalar("
        "at::TensorIteratorBase&, c10::Scalar, c10::Scalar, at::native::detail::ClampLimits)::"
        "{{lambda()#1}}::operator()() const::{{lambda()#14}}::operator()() const::"
        "{{lambda({T})#1}}, std::array<char*, 2ul>)", 1, 2,
    ),
    "aten::fill_": ElementwiseOp(
        _VEC + "at::native::FillFunctor<{T}>, std::array<char*, 1ul> >(int, "
        "at::native::FillFunctor<{T}>, std::array<char*, 1ul>)", 1, 1, ("Scalar",), ("0",), 16,
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CollectiveSpec:
    """Names of one collective across c10d, its annotation, record_param_comms and NCCL."""

    arg_name: str
    c10d_op: str
    annotation: str
    kernel: str
    gathers: bool = False
    scatters: bool = False

    def msg_nelems(self, nelems: int, world: int) -> tuple[int, int]:
        """(In msg nelems, Out msg nelems) for a per-rank input of ``nelems``."""
        if self.gathers:
            return nelems, nelems * world
        if self.scatters:
            return nelems, nelems // world
        return nelems, nelems


_NCCL_ARGS = "(ncclDevKernelArgsStorage<4096ul>)"


COLLECTIVES: Final[dict[str, CollectiveSpec]] = {
    "allreduce": CollectiveSpec(
        "allreduce", "c10d::allreduce_", "nccl:all_reduce",
        "ncclDevKernel_AllReduce_Sum_{dt}_RING_LL" + _NCCL_ARGS,
    ),
    "allgather": CollectiveSpec(
        "_allgather_base", "c10d::_allgather_base_", "nccl:_all_gather_base",
        "ncclDevKernel_AllGather_RING_LL" + _NCCL_ARGS, gathers=True,
    ),
    "reduce_scatter": CollectiveSpec(
        "_reduce_scatter_base", "c10d::_reduce_scatter_base_", "nccl:_reduce_scatter_base",
        "ncclDevKernel_ReduceScatter_Sum_{dt}_RING_LL" + _NCCL_ARGS, scatters=True,
    ),
    "broadcast": CollectiveSpec(
        "broadcast", "c10d::broadcast_", "nccl:broadcast",
        "ncclDevKernel_Broadcast_RING_LL" + _NCCL_ARGS,
    ),
}  # fmt: skip


def copy_bandwidth(props: DeviceProps, src: str, dst: str) -> float:
    """Default copy bandwidth in GB/s (= bytes per ns) for a source / destination pair."""
    if "pageable" in (src, dst):
        return 10.0
    if "pinned" in (src, dst):
        return 25.0
    return props.mem_bw_gbs * 0.7
