"""Synthetic traces with ground truth for the workload profile (issue 12).

Each scenario builds a Kineto trace with `synthetic.TraceBuilder` and returns the path with
the numbers the analysis must find, computed here from the durations the builder chose:

- `inference`: a forward-only transformer block loop (no backward, no optimizer), with GEMMs
  small enough for `small-batch` and a low memory peak, so that rules fire and their wording
  can be checked for training vocabulary.
- `unfused_attention`: eager attention (bmm Q·Kᵀ, scale, softmax, bmm P·V) beside projections;
  ``sdpa=True`` builds the same model with one fused attention kernel instead.
- `graph_replay`: eager warm-up kernels, then kernels replayed by one ``cudaGraphLaunch``
  (their correlation is the launch's, they carry no External id, as Kineto records replays).
- `serving`: SGLang-style ``step[EXTEND bs=4]`` prefill steps and ``step[DECODE bs=32]``
  decode steps, each with its own kernels.
- `inductor_launch_overhead`: a ``Torch-Compiled Region`` launching many short Triton
  pointwise kernels with host gaps between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import synthetic

#: Head dimension and sequence length of the attention scenarios.
HEAD_DIM = 64
SEQ = 1024
BATCH_HEADS = 16


@dataclass
class Scenario:
    """A written trace and its ground truth."""

    path: Path
    truth: dict[str, Any] = field(default_factory=dict)


def _gpu_ns(b: synthetic.TraceBuilder) -> int:
    """Sum of every GPU activity's duration (kernels and memory operations)."""
    return sum(a.dur_ns for a in b.gpu)


def inference(tmp: Path) -> Scenario:
    """Forward-only steps: small linear GEMMs, layer norm, GELU; a low memory peak."""
    b = synthetic.TraceBuilder(name="inference")
    b.memory_event(64 * 2**20)
    for _ in range(3):
        with b.step():
            with b.op("nn.Module: Encoder"):
                for _ in range(4):
                    b.gemm(32, 4096, 4096, op="aten::linear")
                    b.layer_norm(32, 4096)
                    b.elementwise("aten::gelu", [32, 4096])
            b.idle(2_000_000)
            b.sync("device")
    return Scenario(b.write(tmp / "inference.json.gz"), {"mode": "inference"})


def _attention_chain(b: synthetic.TraceBuilder, q: int, k: int, d: int, bh: int) -> int:
    """One eager attention: bmm Q·Kᵀ, mul (scale), softmax, bmm P·V; returns its kernel ns."""
    total = 0
    with b.op("aten::matmul", [[bh, q, d], [bh, d, k]], ["c10::BFloat16"] * 2, ["", ""]):
        total += b.gemm(q, k, d, op="aten::bmm", batch=bh, dur_ns=400_000).dur_ns
    total += b.elementwise("aten::mul", [bh, q, k], dur_ns=150_000).dur_ns
    dims = [[bh, q, k], [], []]
    with (
        b.op("aten::softmax", dims, ["c10::BFloat16", "Scalar", ""]),
        b.op("aten::_softmax", dims, ["c10::BFloat16", "Scalar", "Scalar"]),
    ):
        total += b.kernel(
            "void at::native::(anonymous namespace)::cunn_SoftMaxForward<8, c10::BFloat16>",
            600_000,
            (bh * q, 1, 1),
            label="reduction",
        ).dur_ns
    with b.op("aten::matmul", [[bh, q, k], [bh, k, d]], ["c10::BFloat16"] * 2, ["", ""]):
        total += b.gemm(q, d, k, op="aten::bmm", batch=bh, dur_ns=400_000).dur_ns
    return total


def unfused_attention(tmp: Path, *, sdpa: bool = False) -> Scenario:
    """Two layers of projections around attention: eager chains, or one SDPA kernel each."""
    b = synthetic.TraceBuilder(name="attention_sdpa" if sdpa else "attention_eager")
    attention_ns = 0
    chains = 0
    with b.step():
        for _ in range(2):
            b.gemm(SEQ, 3 * 1024, 1024, op="aten::linear", dur_ns=300_000)
            if sdpa:
                dims = [[1, BATCH_HEADS, SEQ, HEAD_DIM]] * 3
                with b.op("aten::scaled_dot_product_attention", dims, ["c10::BFloat16"] * 3):
                    b.kernel(
                        "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64>>",
                        500_000,
                        (16, 16, 1),
                        label="attention",
                    )
            else:
                attention_ns += _attention_chain(b, SEQ, SEQ, HEAD_DIM, BATCH_HEADS)
                chains += 1
            b.gemm(SEQ, 1024, 1024, op="aten::linear", dur_ns=150_000)
        b.sync("device")
    truth = {
        "chains": chains,
        "unfused_attention_ns": attention_ns,
        "gpu_ns": _gpu_ns(b),
        "unfused_attention_share_pct": 100.0 * attention_ns / _gpu_ns(b),
    }
    return Scenario(b.write(tmp / f"{b.name}.json.gz", with_truth=False), truth)


def _as_graph_replay(doc: dict[str, Any], correlations: set[int], graph_corr: int) -> None:
    """Rewrite kernels with ``correlations`` as replays of one ``cudaGraphLaunch``.

    Their launch calls and flow arrows are removed, one ``cudaGraphLaunch`` takes the first
    call's place, and each kernel gets the launch's correlation and no External id."""
    events = doc["traceEvents"]
    first_call: dict[str, Any] | None = None
    kept = []
    for e in events:
        corr = (e.get("args") or {}).get("correlation")
        if e.get("cat") == "cuda_runtime" and corr in correlations:
            first_call = first_call or e
            continue
        if e.get("cat") == "ac2g" and e.get("id") in correlations:
            continue
        if e.get("cat") == "kernel" and corr in correlations:
            e["args"]["correlation"] = graph_corr
            e["args"].pop("External id", None)
        kept.append(e)
    assert first_call is not None
    kept.append(
        {
            **first_call,
            "name": "cudaGraphLaunch",
            "args": {"cbid": 311, "correlation": graph_corr},
        }
    )
    doc["traceEvents"] = kept


def graph_replay(tmp: Path) -> Scenario:
    """Three eager kernels, then ten kernels replayed from one CUDA graph launch."""
    b = synthetic.TraceBuilder(name="graph_replay")
    with b.step():
        eager = [b.elementwise("aten::add", [1024, 1024], dur_ns=20_000) for _ in range(3)]
        with b.annotation("graph_replay"):
            replayed = [b.gemm(256, 1024, 1024, dur_ns=50_000) for _ in range(10)]
        b.sync("device")
    doc = b.to_json()
    _as_graph_replay(doc, {a.correlation for a in replayed}, 9_999_999)
    path = tmp / "graph_replay.json.gz"
    synthetic.write_json(path, doc)
    replayed_ns = sum(a.dur_ns for a in replayed)
    total = replayed_ns + sum(a.dur_ns for a in eager)
    return Scenario(
        path,
        {
            "graph_launches": 1,
            "replayed_kernels": len(replayed),
            "replayed_ns": replayed_ns,
            "replayed_share_pct": 100.0 * replayed_ns / total,
        },
    )


def serving(tmp: Path) -> Scenario:
    """Two prefill (EXTEND, bs=4) steps with large GEMMs, four decode (bs=32) steps."""
    b = synthetic.TraceBuilder(name="serving")
    truth: dict[str, Any] = {"prefill_ns": 0, "decode_ns": 0, "prefill_steps": 2}
    with b.op("sglang/srt/managers/scheduler.py(100): event_loop"):
        for _ in range(2):
            with b.annotation("step[EXTEND bs=4]"):
                truth["prefill_ns"] += b.gemm(4 * 512, 4096, 4096, dur_ns=900_000).dur_ns
                truth["prefill_ns"] += b.elementwise("aten::mul", [2048, 4096]).dur_ns
        for _ in range(4):
            with b.annotation("step[DECODE bs=32]"):
                truth["decode_ns"] += b.gemm(32, 4096, 4096, dur_ns=120_000).dur_ns
                truth["decode_ns"] += b.elementwise("aten::mul", [32, 4096]).dur_ns
        b.sync("device")
    truth["decode_steps"] = 4
    return Scenario(b.write(tmp / "serving.json.gz", with_truth=False), truth)


def inductor_launch_overhead(tmp: Path, kernels: int = 40, gap_ns: int = 30_000) -> Scenario:
    """A compiled region launching ``kernels`` 3 us Triton kernels, ``gap_ns`` of host time
    before each launch (the launch overhead the GPU waits on)."""
    b = synthetic.TraceBuilder(name="inductor")
    with b.step():
        with b.op("Torch-Compiled Region: 0/0"), b.op("CompiledFunction"):
            for i in range(kernels):
                b.cpu(gap_ns)
                b.kernel(f"triton_poi_fused_add_mul_{i}", 3_000, (64, 1, 1), label="other")
        b.sync("device")
    return Scenario(
        b.write(tmp / "inductor.json.gz", with_truth=False),
        {"kernels": kernels, "kernel_ns": 3_000 * kernels},
    )
