"""Benchmark: our full ``analyze`` report against a bare msgspec decode and against HTA.

    python bench/run.py --mode single [--copies 11] [--out DIR] [--hta-python PATH]
    python bench/run.py --mode ranks  [--ranks 8]   [--out DIR] [--hta-python PATH]

``single`` builds one trace of ``--copies`` consecutive copies of the source trace
(`build_trace`); ``ranks`` builds a directory of ``--ranks`` per-rank copies. The trace is
written into the work directory ``--out`` (default: a folder in the system's temp dir,
never the repository) and reused when it is already there. Then, each in its own process:

(a) ``analyze TRACE -o report.md``: the full report, end to end;
(b) ``bench/decode_floor.py TRACE``: a bare msgspec typed decode, the floor;
(c) ``bench/hta_run.py``: HTA 0.5 parse + temporal breakdown, when ``--hta-python`` names
    an interpreter that has it (it pins pandas: keep it in a virtual environment of its own);
(d) ``analyze export TRACE --parquet DIR`` once, then ``analyze DIR``: the report from the
    Parquet tables instead of the JSON.

For each: wall time, CPU time (user + sys, all its processes) and CPU use (CPU / wall: 2.0
means two cores busy), peak RSS of its largest process (``ru_maxrss`` from ``wait4``, what
``/usr/bin/time`` reports) and the peak of its whole process tree's RSS (sampled from
``/proc`` every 20 ms: worker processes included). Then the ratios a/b and c/a. The output
is Markdown, also written to ``<out>/results-<mode>.md``.

Our packages are byte-compiled first, as ``pip install .`` leaves them: run from a checkout
with ``PYTHONDONTWRITEBYTECODE`` set, every run would otherwise compile them from source
again (0.2-0.3 s), a cost no installed copy pays. HTA's and msgspec's installed packages
are compiled by pip already.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DEFAULT_SOURCE = (
    REPO.parent / "shared" / "traces" / "hta" / "df_index_resolver" / "df_index_resolver.json.gz"
)
_SAMPLE_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class Measurement:
    """One command's cost."""

    label: str
    wall_s: float
    cpu_s: float
    max_rss_mib: float
    tree_rss_mib: float
    exit_code: int
    output: str

    @property
    def cpu_use(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s else 0.0


def _tree_rss_kib(root: int) -> int:
    """RSS of a process and all its descendants, from /proc (0 when it is gone)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid = int(entry)
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def measure(label: str, command: list[str], cwd: Path) -> Measurement:
    """Run ``command`` in its own process; its wall and CPU time and memory."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_kib(process.pid))
            done.wait(_SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output_chunks: list[bytes] = []
    reader = threading.Thread(
        target=lambda: output_chunks.append(process.stdout.read() if process.stdout else b""),
        daemon=True,
    )
    reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(
        label=label,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mib=usage.ru_maxrss / 1024,
        tree_rss_mib=peak[0] / 1024,
        exit_code=process.returncode,
        output=b"".join(output_chunks).decode(errors="replace").strip(),
    )


def measure_median(label: str, command: list[str], cwd: Path, repeat: int) -> Measurement:
    """``repeat`` runs of a command: the run with the median wall time, with the largest
    peak RSS seen over all runs (the machines are shared: one run can be an outlier)."""
    runs = sorted((measure(label, command, cwd) for _ in range(max(repeat, 1))), key=_wall)
    middle = runs[len(runs) // 2]
    return replace(
        middle,
        max_rss_mib=max(r.max_rss_mib for r in runs),
        tree_rss_mib=max(r.tree_rss_mib for r in runs),
        exit_code=max(r.exit_code for r in runs),
    )


def _wall(m: Measurement) -> float:
    return m.wall_s


def _analyze(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpu_trace_analyzer.cli", *args]


def build(mode: str, out: Path, copies: int, ranks: int, source: Path) -> Path:
    """The benchmark trace (built once per parameters; reused when present).

    Built by a separate process: a child's ``ru_maxrss`` starts from its parent's RSS at
    fork on Linux, so the measuring process must stay small.
    """
    target = out / (f"single-{copies}x" if mode == "single" else f"ranks-{ranks}")
    stamp = out / f"{target.name}.complete"
    if stamp.is_file():
        return target
    shutil.rmtree(target, ignore_errors=True)
    destination = target / "trace.json" if mode == "single" else target
    command = [sys.executable, str(BENCH / "build_trace.py"), mode, str(destination)]
    command += ["--copies", str(copies), "--ranks", str(ranks), "--source", str(source)]
    subprocess.run(command, check=True)
    stamp.write_text(f"{source}\n")
    return target


def _trace_argument(mode: str, target: Path) -> Path:
    return target / "trace.json" if mode == "single" else target


def run(args: argparse.Namespace) -> str:
    """Build, measure, and return the Markdown summary."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = build(args.mode, out, args.copies, args.ranks, Path(args.source))
    trace = _trace_argument(args.mode, target)
    work = out / f"work-{args.mode}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    floor = [sys.executable, str(BENCH / "decode_floor.py"), str(trace)]
    n = args.repeat
    packages = [str(REPO / name) for name in ("analyzer", "parsers", "rules")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True)
    rows = [
        measure_median(
            "(a) analyze (full report)", _analyze(str(trace), "-o", "report.md"), work, n
        ),
        measure_median("(b) msgspec typed decode", floor, work, n),
    ]
    if args.hta_python:
        hta = [args.hta_python, str(BENCH / "hta_run.py"), str(target)]
        rows.append(measure("(c) HTA 0.5 parse + temporal breakdown", hta, work))
    export = _analyze("export", str(trace), "--parquet", "tables")
    rows.append(measure_median("(d1) analyze export --parquet", export, work, n))
    from_parquet = _analyze("tables", "-o", "report-pq.md")
    rows.append(measure_median("(d2) analyze PARQUET_DIR", from_parquet, work, n))
    return summary(args, trace, rows)


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.iterdir() if p.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def machine() -> list[str]:
    """The machine and software the numbers were measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    versions = ", ".join(
        f"{name} {_version(name)}" for name in ("polars", "pyarrow", "msgspec", "ray")
    )
    return [
        f"- CPU: {cpu}; {os.cpu_count()} cores (nproc); memory {memory_kib / 1024**2:.1f} GiB",
        f"- {platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"{versions}",
    ]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def summary(args: argparse.Namespace, trace: Path, rows: list[Measurement]) -> str:
    """The Markdown table of measurements and the ratios."""
    by_key = {r.label[:3]: r for r in rows}
    lines = [
        f"### mode `{args.mode}`: {trace.name} ({_size_mb(trace):.0f} MB of JSON)",
        "",
        *machine(),
        f"- each of our runs and (b): median wall of {args.repeat} runs, largest peak RSS; "
        "(c) once",
        "",
        "| run | wall s | CPU s | CPU use | peak RSS MiB (largest process) "
        "| peak RSS MiB (process tree) | exit |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.label} | {r.wall_s:.2f} | {r.cpu_s:.2f} | {r.cpu_use:.2f} | "
        f"{r.max_rss_mib:.0f} | {r.tree_rss_mib:.0f} | {r.exit_code} |"
        for r in rows
    ]
    a, b, c = by_key.get("(a)"), by_key.get("(b)"), by_key.get("(c)")
    lines.append("")
    if a and b:
        lines.append(f"- a/b (analyze / bare decode), wall: {a.wall_s / b.wall_s:.2f}")
    if a and c:
        lines.append(f"- c/a (HTA / analyze), wall: {c.wall_s / a.wall_s:.1f}")
    pq = by_key.get("(d2")
    if a and pq:
        lines.append(f"- analyze from Parquet vs from JSON, wall: {pq.wall_s / a.wall_s:.2f}")
    failed = [r for r in rows if r.exit_code != 0]
    for r in failed:
        lines.append(f"- {r.label} failed (exit {r.exit_code}): {r.output[-500:]}")
    if c and c.exit_code == 0:
        lines += ["", "HTA's own timing line: " + c.output.splitlines()[0]]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse the command line, run the benchmark, print and save the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("single", "ranks"), required=True)
    parser.add_argument("--copies", type=int, default=11, help="copies in single mode")
    parser.add_argument("--ranks", type=int, default=8, help="rank files in ranks mode")
    parser.add_argument(
        "--out",
        default=str(Path(tempfile.gettempdir()) / "analyze-bench"),
        help="work directory for the traces and outputs (not the repository)",
    )
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--hta-python", help="interpreter with HolisticTraceAnalysis 0.5")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each of our commands and of the decode floor; the median is kept "
        "(HTA, which takes a minute, runs once)",
    )
    args = parser.parse_args()
    if not Path(args.source).is_file():
        parser.error(f"source trace {args.source} not found (../shared/traces beside the repo)")
    text = run(args)
    sys.stdout.write(text)
    (Path(args.out) / f"results-{args.mode}.md").write_text(text)


if __name__ == "__main__":
    main()
