"""Record real PyTorch profiler (Kineto) traces of a CPU DDP job (gloo) at 1, 2 and 4 ranks.

Why: `analyze scaling` compares runs of one job at different world sizes, and its per-rank
tables, failure detection and CPU-only path must be proven on what the profiler really
writes for a distributed job: one trace per rank with ``distributedInfo`` (rank, world
size, backend ``gloo``) and real collectives (``c10d::allreduce_`` > ``gloo:all_reduce`` /
``record_param_comms`` with the collective's arguments), not only on synthetic traces.

What is recorded: for each world size W in ``WORLD_SIZES``, ``torch.multiprocessing.spawn``
starts W processes that join a gloo process group on ``127.0.0.1`` (a free port) and train
the same small MLP wrapped in ``DistributedDataParallel`` under ``torch.profiler`` with
``record_shapes=True`` and ``profile_memory=True`` over the schedule ``wait=1, warmup=1,
active=4``: exactly four ``ProfilerStep#N`` annotations (N = 2..5) per rank. Strong
scaling: the global batch (``GLOBAL_BATCH`` samples) is split evenly, each rank trains on
``GLOBAL_BATCH / W`` samples per step, so ideal scaling halves the step time per doubling.
Each process uses one intra-op thread (``torch.set_num_threads(1)``). Seeds are fixed;
timestamps, pids and tids differ on every run, and so do the timings (and the scaling a
machine with fewer cores than ranks can show).

Output: ``sample_traces/ddp_cpu/world{W}/rank{r}.pt.trace.json.gz``, gzipped with mtime 0.
Needs the ``torch`` extra (torch 2.13.0 CPU build).
Run: ``python sample_traces/record_ddp.py [OUTPUT_DIR]``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import ProfilerActivity, profile, schedule

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "ddp_cpu"

WORLD_SIZES = (1, 2, 4)
SEED = 20261204
WAIT_STEPS = 1
WARMUP_STEPS = 1
ACTIVE_STEPS = 4
TOTAL_STEPS = WAIT_STEPS + WARMUP_STEPS + ACTIVE_STEPS
#: Samples per step over all ranks (strong scaling: each rank gets GLOBAL_BATCH / W).
GLOBAL_BATCH = 256
IN_FEATURES = 256
HIDDEN_FEATURES = 512
NUM_CLASSES = 16


def make_model() -> nn.Module:
    """A three-layer MLP: ~400k parameters, two DDP gradient buckets (two all-reduces)."""
    return nn.Sequential(
        nn.Linear(IN_FEATURES, HIDDEN_FEATURES),
        nn.ReLU(),
        nn.Linear(HIDDEN_FEATURES, HIDDEN_FEATURES),
        nn.ReLU(),
        nn.Linear(HIDDEN_FEATURES, NUM_CLASSES),
    )


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gzip_copy(src: Path, dst: Path) -> None:
    """Gzip ``src`` into ``dst`` with a zero mtime."""
    with (
        src.open("rb") as fin,
        dst.open("wb") as raw_out,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw_out, mtime=0) as fout,
    ):
        shutil.copyfileobj(fin, fout)


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """One rank: join the gloo group, train ``TOTAL_STEPS`` steps under the profiler."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(SEED)
        model = DistributedDataParallel(make_model())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        per_rank = GLOBAL_BATCH // world_size
        gen = torch.Generator().manual_seed(SEED + rank)
        inputs = torch.randn(TOTAL_STEPS, per_rank, IN_FEATURES, generator=gen)
        labels = torch.randint(0, NUM_CLASSES, (TOTAL_STEPS, per_rank), generator=gen)
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "trace.json"

            def write_trace(prof: profile) -> None:
                prof.export_chrome_trace(str(raw))

            with profile(
                activities=[ProfilerActivity.CPU],
                schedule=schedule(wait=WAIT_STEPS, warmup=WARMUP_STEPS, active=ACTIVE_STEPS),
                on_trace_ready=write_trace,
                record_shapes=True,
                profile_memory=True,
            ) as prof:
                for step in range(TOTAL_STEPS):
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(model(inputs[step]), labels[step])
                    loss.backward()
                    optimizer.step()
                    prof.step()
            _gzip_copy(raw, Path(out_dir) / f"rank{rank}.pt.trace.json.gz")
    finally:
        dist.destroy_process_group()


def record(output: Path) -> list[Path]:
    """Record every world size into ``output/world{W}/``; the directories written."""
    written = []
    for world in WORLD_SIZES:
        out_dir = output / f"world{world}"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        spawn = mp.spawn  # type: ignore[attr-defined,unused-ignore]
        spawn(worker, args=(world, free_port(), str(out_dir)), nprocs=world, join=True)  # type: ignore[no-untyped-call,unused-ignore]
        written.append(out_dir)
    return written


def main(argv: list[str]) -> int:
    """Record to the directory given on the command line, or to the committed one."""
    output = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    for d in record(output):
        size = sum(p.stat().st_size for p in d.iterdir())
        print(f"wrote {d} ({size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
