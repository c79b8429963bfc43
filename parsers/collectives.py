"""Collective names as one vocabulary, for the parsers and for every rule that groups them.

PyTorch, NCCL/RCCL kernels and Kineto's ``collective_comm`` events spell one collective many
ways (``_allgather_base``, ``all_gather_into_tensor_coalesced``, ``AllGather``,
``nccl:all_reduce``, ``symm_mem::multimem_all_reduce_``). This is the one place that maps them
to one word. It lives in `parsers` because the Kineto parser normalizes the comms table while
reading, and parsers never import `analyzer`; `analyzer.metrics.collectives` re-exports it for
the rules.
"""

from __future__ import annotations

from typing import Final

#: Canonical name by the spelling with underscores removed.
_CANONICAL: Final[dict[str, str]] = {
    "allreduce": "allreduce",
    "allgather": "allgather",
    "reducescatter": "reduce_scatter",
    "alltoall": "all_to_all",
    "alltoallv": "all_to_all",
    "broadcast": "broadcast",
    "reduce": "reduce",
    "gather": "gather",
    "scatter": "scatter",
    "send": "send",
    "recv": "recv",
    "sendrecv": "sendrecv",
    "barrier": "barrier",
    "wait": "wait",
}
#: Library prefixes of profiler record and op names (``nccl:all_reduce``,
#: ``c10d::alltoall_base_``).
_PREFIXES: Final = ("c10d::", "nccl:", "rccl:", "symm_mem::")
#: Algorithm prefixes of PyTorch's symmetric-memory collectives
#: (``symm_mem::multimem_all_reduce_``, ``symm_mem::two_shot_all_reduce_``).
_VARIANT_PREFIXES: Final = ("multimem_", "one_shot_", "two_shot_")
#: Variant suffixes of PyTorch's collective names (``all_gather_into_tensor_coalesced``,
#: ``all_to_all_single``).
_SUFFIXES: Final = ("_coalesced", "_tensor", "_into", "_base", "_single", "_out")


def normalize_collective(name: str) -> str:
    """A collective's canonical name: ``_allgather_base``, ``all_gather_into_tensor_coalesced``
    and ``AllGather`` are ``allgather``; ``nccl:all_reduce`` is ``allreduce``.

    Unknown names come back lower-cased with prefixes and variant suffixes removed.
    """
    word = name.strip().lower().strip("_")
    for prefix in _PREFIXES:
        word = word.removeprefix(prefix)
    word = word.strip("_")
    for prefix in _VARIANT_PREFIXES:
        word = word.removeprefix(prefix)
    previous = None
    while word != previous:
        previous = word
        for suffix in _SUFFIXES:
            word = word.removesuffix(suffix)
    return _CANONICAL.get(word.replace("_", ""), word)
