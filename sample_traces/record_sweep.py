"""Record real PyTorch profiler (Kineto) traces of a batch-size x sequence-length sweep on CPU.

Why: ``analyze sweep`` must be proven on what the profiler really writes, not only on
synthetic traces. This script records one trace per configuration of a small transformer
block run for inference, at batch sizes 1, 2, 4, ..., 64 and sequence lengths 16 and 64,
into ``sample_traces/sweep_cpu/bs{B}_seq{S}.pt.trace.json.gz``.

What each trace holds: ``torch.profiler`` (CPU activity only) with ``record_shapes=True``
over a schedule ``wait=1, warmup=1, active=5``, so exactly five ``ProfilerStep#N``
annotations (N = 2 to 6). Each step runs the block's forward pass under ``torch.no_grad()``
on an input of shape ``[B, S, 64]``: a QKV projection (``aten::linear``), scaled dot-product
attention (4 heads), an output projection, two layer norms and a GELU MLP (64 -> 256 -> 64).
The first ``aten::linear`` of each step takes the model input, so its leading dimension is
the batch (``analyze sweep --batch-dim-op aten::linear`` reads it). One intra-op thread
(``torch.set_num_threads(1)``) keeps the scaling a property of the model, not of the
machine's idle cores. Seeds are fixed: the model, data and op sequence are the same on
every run; timestamps, pids and tids differ.

Needs the ``torch`` extra (``pip install '.[torch]'``, torch 2.13.0 CPU build).
Run: ``python sample_traces/record_sweep.py [OUTPUT_DIR]``.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile, schedule

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "sweep_cpu"

SEED = 20240501
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
SEQ_LENS = (16, 64)
WAIT_STEPS = 1
WARMUP_STEPS = 1
ACTIVE_STEPS = 5
TOTAL_STEPS = WAIT_STEPS + WARMUP_STEPS + ACTIVE_STEPS
D_MODEL = 64
HEADS = 4
D_FF = 256


class TinyBlock(nn.Module):  # type: ignore[misc,unused-ignore]  # torch is Any where not installed (CI)
    """One pre-norm transformer encoder block, written out op by op (no fused fast path)."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.proj = nn.Linear(D_MODEL, D_MODEL)
        self.norm1 = nn.LayerNorm(D_MODEL)
        self.norm2 = nn.LayerNorm(D_MODEL)
        self.up = nn.Linear(D_MODEL, D_FF)
        self.down = nn.Linear(D_FF, D_MODEL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: [batch, seq, D_MODEL]."""
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v)
        x = self.norm1(x + self.proj(att.transpose(1, 2).reshape(b, s, d)))
        out: torch.Tensor = self.norm2(x + self.down(F.gelu(self.up(x))))
        return out


def record(batch: int, seq: int, output: Path) -> Path:
    """Run ``TOTAL_STEPS`` forward passes under the profiler and write the gzipped trace."""
    torch.manual_seed(SEED)
    model = TinyBlock().eval()
    gen = torch.Generator().manual_seed(SEED + batch * 1000 + seq)
    inputs = [torch.randn(batch, seq, D_MODEL, generator=gen) for _ in range(TOTAL_STEPS)]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "trace.json"

        def write_trace(prof: profile) -> None:
            prof.export_chrome_trace(str(raw))

        with (
            torch.no_grad(),
            profile(
                activities=[ProfilerActivity.CPU],
                schedule=schedule(wait=WAIT_STEPS, warmup=WARMUP_STEPS, active=ACTIVE_STEPS),
                on_trace_ready=write_trace,
                record_shapes=True,
            ) as prof,
        ):
            for x in inputs:
                model(x)
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
    """Record every configuration into the directory given, or the committed one."""
    out_dir = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    total = 0
    for seq in SEQ_LENS:
        for batch in BATCH_SIZES:
            path = record(batch, seq, out_dir / f"bs{batch}_seq{seq}.pt.trace.json.gz")
            total += path.stat().st_size
            print(f"wrote {path} ({path.stat().st_size} bytes)")
    print(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
