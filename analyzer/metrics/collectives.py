"""Collective names as one vocabulary, shared by the rules that group communication."""

from __future__ import annotations


def normalize_collective(name: str) -> str:
    """A collective's canonical name: ``_allgather_base`` and ``all_gather`` -> allgather."""
    key = name.lower().strip("_")
    for suffix in ("_into_tensor_coalesced", "_tensor_coalesced", "_coalesced", "_base"):
        key = key.removesuffix(suffix)
    key = key.removeprefix("nccl:").strip("_")
    aliases = {
        "all_reduce": "allreduce",
        "all_gather": "allgather",
        "allgather_into_tensor": "allgather",
        "reducescatter": "reduce_scatter",
        "reduce_scatter_tensor": "reduce_scatter",
        "alltoall": "all_to_all",
        "all_to_allv": "all_to_all",
        "alltoall_base": "all_to_all",
        "all_to_all_single": "all_to_all",
    }
    return aliases.get(key, key)
