"""Scaling sets: one data-parallel job at several GPU counts, with recorded ground truth.

Why: `analyze scaling` computes speedup, parallel efficiency, communication share, per-rank
status (failed / slow / cold start) across runs. Real multi-GPU recordings never say what
their answer is; these runs do, to the nanosecond.

The job (one H100 per rank, ``STEPS`` profiled steps, ranks in lockstep):

- a DataLoader fetch (20 us), then ``GEMMS`` bf16 GEMMs [tokens/N, 8192] x [8192, 8192]
  (strong scaling: the global batch of ``TOKENS`` rows is split over the N ranks; weak
  scaling: every rank keeps ``TOKENS`` rows), durations from the H100's peak at 60%;
- for N > 1, one gradient all-reduce (``GRAD_NELEMS`` bf16 elements) on the communication
  stream after the backward, fully exposed: the transfer lasts a ring all-reduce's time,
  ``2 (N-1)/N x bytes / BUS_GBS + LATENCY_NS``, and every rank's kernel ends at the same
  time (earlier ranks wait inside it, `lockstep_collective`);
- a fused AdamW after the all-reduce, then ``loss.item()`` (the host waits for the GPU, so
  each step's CPU range covers its GPU work).

Faults (any run, by rank): ``straggler`` computes (1 + ``slowdown``) x slower (the others
wait for it in every all-reduce); ``cold_rank`` spends ``cold_ns`` of unprofiled host time
after the first step's all-reduce (lazy initialization: its first step is long, the others
pay one long wait in the next step's all-reduce instead); ``failed_rank`` stops after
``failed_after`` steps (the others go on without it). Ranks sit ``ranks_per_node`` to a host
(``host_name`` ``node0``, ``node1``...).

Truth (``expect`` of each run): per-rank step durations, the run's step time as
`analyze scaling` defines it (per step the slowest rank, median over steps), per-rank GPU
compute per step, communication and exposed communication as a share of the ranks' steps
windows, and the faulty ranks; `expected_scaling` turns a set of runs into speedup and
efficiency by the definitions in `analyzer.scaling`.

Run ``python sample_traces/synthetic/scaling.py [OUTPUT_DIR]`` to regenerate the committed
set ``sample_traces/synthetic_scaling/`` (worlds 1, 2, 4 healthy; world 8 with a straggler,
a cold-start rank and a rank that completed fewer steps).
"""

from __future__ import annotations

import statistics
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthetic.builder import RankedTrace, TraceBuilder, lockstep_collective, lockstep_step
from synthetic.records import COMM_STREAM, COMPUTE_STREAM, clip, subtract_ns, union_ns
from synthetic.truth import write_json, write_truth

STEPS: Final = 5
GEMMS: Final = 6
TOKENS: Final = 8192
HIDDEN: Final = 8192
#: Gradient elements all-reduced per step (bf16: a 50M-parameter model).
GRAD_NELEMS: Final = 50_000_000
BUS_GBS: Final = 100
LATENCY_NS: Final = 20_000
ADAM_NUMEL: Final = 1_000_000
HERE: Final = Path(__file__).resolve().parent.parent
COMMITTED: Final = HERE / "synthetic_scaling"


def allreduce_ns(world: int) -> int:
    """Transfer time of the ring all-reduce of the gradients over ``world`` ranks (0: none)."""
    if world < 2:
        return 0
    nbytes = 2 * GRAD_NELEMS
    return LATENCY_NS + (2 * (world - 1) * nbytes) // (world * BUS_GBS)


def scaling_run(
    world: int,
    *,
    weak: bool = False,
    straggler: int | None = None,
    slowdown: float = 0.25,
    cold_rank: int | None = None,
    cold_ns: int = 8_000_000,
    failed_rank: int | None = None,
    failed_after: int = 3,
    ranks_per_node: int = 4,
) -> RankedTrace:
    """One run of the job at ``world`` GPUs (see the module doc)."""
    name = f"scaling_{'weak' if weak else 'strong'}_world{world}"
    ranks = [
        TraceBuilder(
            rank=r,
            world_size=world,
            name=name,
            compute_scale=(1 + Fraction(slowdown).limit_denominator(1000))
            if r == straggler
            else Fraction(1),
        )
        for r in range(world)
    ]
    rows = TOKENS if weak else TOKENS // world
    transfer = allreduce_ns(world)
    for i in range(STEPS):
        alive = [b for b in ranks if not (b.rank == failed_rank and i >= failed_after)]
        with lockstep_step(alive):
            for b in alive:
                b.dataloader(20_000)
                for _ in range(GEMMS):
                    b.gemm(rows, HIDDEN, HIDDEN)
                b.wait_stream(COMM_STREAM, COMPUTE_STREAM)
            if transfer:
                lockstep_collective(alive, "allreduce", GRAD_NELEMS, transfer)
            for b in alive:
                if i == 0 and b.rank == cold_rank:
                    b.cpu(cold_ns)
                b.wait_stream(COMPUTE_STREAM, COMM_STREAM)
                b.fused_adam(ADAM_NUMEL)
                b.item()
    trace = RankedTrace(name, scaling_run.__doc__ or "", ranks)
    trace.params = {
        "world_size": world,
        "mode": "weak" if weak else "strong",
        "rows_per_rank": rows,
        "allreduce_transfer_ns": transfer,
        "straggler": straggler,
        "slowdown": slowdown if straggler is not None else 0.0,
        "cold_rank": cold_rank,
        "cold_ns": cold_ns if cold_rank is not None else 0,
        "failed_rank": failed_rank,
        "failed_after": failed_after if failed_rank is not None else None,
        "ranks_per_node": ranks_per_node,
    }
    trace.expect = _expect(ranks, ranks_per_node)
    return trace


def _window(b: TraceBuilder) -> tuple[int, int]:
    return min(s.start_ns for s in b.steps), max(s.end_ns for s in b.steps)


def _expect(ranks: list[TraceBuilder], per_node: int) -> dict[str, Any]:
    """What `analyze scaling` must find, measured from the builders' records."""
    steps: dict[int, list[int]] = {}
    comm_ns = exposed_ns = span_ns = 0
    per_rank = {}
    for b in ranks:
        lo, hi = _window(b)
        comm = [(a.start_ns, a.end_ns) for a in b.gpu if a.label == "comm"]
        compute = [
            (a.start_ns, a.end_ns) for a in b.gpu if a.kind == "kernel" and a.label != "comm"
        ]
        c = union_ns(clip(comm, lo, hi))
        e = subtract_ns(clip(comm, lo, hi), clip(compute, lo, hi))
        comm_ns, exposed_ns, span_ns = comm_ns + c, exposed_ns + e, span_ns + hi - lo
        durs = [s.end_ns - s.start_ns for s in b.steps]
        for s in b.steps:
            steps.setdefault(s.step, []).append(s.end_ns - s.start_ns)
        per_rank[str(b.rank)] = {
            "node": f"node{b.rank // per_node}",
            "steps": len(durs),
            "step_ns": durs,
            "step_median_ns": statistics.median(durs),
            "compute_per_step_ns": union_ns(clip(compute, lo, hi)) / len(durs),
            "comm_pct": 100.0 * c / (hi - lo),
        }
    return {
        "step_median_ns": statistics.median(max(v) for v in steps.values()),
        "comm_pct": 100.0 * comm_ns / span_ns,
        "exposed_comm_pct": 100.0 * exposed_ns / span_ns,
        "ranks": per_rank,
    }


def expected_scaling(expects: dict[int, dict[str, Any]], mode: str) -> dict[int, dict[str, float]]:
    """Speedup, ideal speedup and efficiency (%) per GPU count against the smallest, from the
    runs' ``expect`` (strong: T0/TN, N0 T0/(N TN); weak: N T0/(N0 TN), T0/TN)."""
    n0 = min(expects)
    t0 = expects[n0]["step_median_ns"]
    out = {}
    for n, e in expects.items():
        tn = e["step_median_ns"]
        speedup = t0 / tn if mode == "strong" else (n * t0) / (n0 * tn)
        out[n] = {"speedup": speedup, "ideal": n / n0, "efficiency_pct": 100.0 * speedup * n0 / n}
    return out


def write_run(trace: RankedTrace, directory: Path) -> Path:
    """Write one file per rank (``rank-N.json.gz``, with ``host_name``) and a compact truth
    (``<directory>.truth.json``: scenario, params, expect)."""
    directory.mkdir(parents=True, exist_ok=True)
    per_node = int(trace.params.get("ranks_per_node", 4))
    for b in trace.ranks:
        doc = {**b.to_json(), "host_name": f"node{b.rank // per_node}"}
        write_json(directory / f"rank-{b.rank}.json.gz", doc)
    truth = {"scenario": trace.name, "params": trace.params, "expect": trace.expect}
    write_truth(directory.with_name(f"{directory.name}.truth.json"), truth)
    return directory


def committed_runs() -> dict[str, RankedTrace]:
    """The committed set: worlds 1, 2, 4 healthy; world 8 with a straggler (rank 5, +25%
    compute), a cold-start rank (3) and a rank (7) that completed 3 of 5 steps."""
    return {
        "world1": scaling_run(1),
        "world2": scaling_run(2),
        "world4": scaling_run(4),
        "world8": scaling_run(8, straggler=5, cold_rank=3, failed_rank=7),
    }


def write_committed(out_dir: Path = COMMITTED) -> list[Path]:
    """Regenerate ``sample_traces/synthetic_scaling/``."""
    return [write_run(t, out_dir / name) for name, t in committed_runs().items()]


if __name__ == "__main__":
    for path in write_committed(Path(sys.argv[1]) if len(sys.argv) > 1 else COMMITTED):
        size = sum(p.stat().st_size for p in path.iterdir())
        print(f"wrote {path} ({size} bytes)")
