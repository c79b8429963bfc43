"""Record a real PyTorch profiler (Kineto) trace of a small CPU training loop.

Why: the synthetic traces carry known ground truth, but a parser must also be proven on what
the profiler really writes. This script records one on any machine (no GPU needed) and writes
``sample_traces/cpu_train.pt.trace.json.gz``.

What the trace holds: ``torch.profiler`` with ``record_shapes=True`` and
``profile_memory=True`` over a schedule ``wait=1, warmup=1, active=3``, so exactly three
``ProfilerStep#N`` annotations (N = 2, 3, 4) are recorded. Each step trains a small MLP on a
batch drawn from a ``DataLoader`` with ``num_workers=0`` (so the annotation
``enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__`` appears), with a
forward pass, a cross-entropy loss, a backward pass and an SGD step (``Optimizer.step#SGD.step``).
Seeds are fixed, so the model, data and op sequence are the same on every run; timestamps,
pids and tids of course differ.

Needs the ``torch`` extra (``pip install '.[torch]'``, torch 2.13.0 CPU build).
Run: ``python sample_traces/record_cpu_trace.py [OUTPUT]``.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, schedule
from torch.utils.data import DataLoader, TensorDataset

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "cpu_train.pt.trace.json.gz"

SEED = 20240501
WAIT_STEPS = 1
WARMUP_STEPS = 1
ACTIVE_STEPS = 3
TOTAL_STEPS = WAIT_STEPS + WARMUP_STEPS + ACTIVE_STEPS
BATCH_SIZE = 32
NUM_SAMPLES = BATCH_SIZE * TOTAL_STEPS
IN_FEATURES = 64
HIDDEN_FEATURES = 128
NUM_CLASSES = 10


def make_model() -> nn.Module:
    """A two-layer MLP with a layer norm: enough op variety (addmm, relu, layer_norm, loss)."""
    return nn.Sequential(
        nn.Linear(IN_FEATURES, HIDDEN_FEATURES),
        nn.LayerNorm(HIDDEN_FEATURES),
        nn.ReLU(),
        nn.Linear(HIDDEN_FEATURES, NUM_CLASSES),
    )


def make_loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    """Random inputs and labels from a fixed generator, served without worker processes."""
    gen = torch.Generator().manual_seed(SEED)
    inputs = torch.randn(NUM_SAMPLES, IN_FEATURES, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=gen)
    return DataLoader(TensorDataset(inputs, labels), batch_size=BATCH_SIZE, num_workers=0)


def record(output: Path) -> Path:
    """Train for ``TOTAL_STEPS`` steps under the profiler and write the gzipped trace."""
    torch.manual_seed(SEED)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
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
            for inputs, labels in make_loader():
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(inputs), labels)
                loss.backward()
                optimizer.step()
                prof.step()
        _gzip_copy(raw, output)
    return output


def _gzip_copy(src: Path, dst: Path) -> None:
    """Gzip ``src`` into ``dst`` with a zero mtime so equal traces give equal bytes."""
    with (
        src.open("rb") as fin,
        dst.open("wb") as raw_out,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw_out, mtime=0) as fout,
    ):
        shutil.copyfileobj(fin, fout)


def main(argv: list[str]) -> int:
    """Record to the path given on the command line, or to the committed sample's path."""
    output = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    path = record(output)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
