"""Class 6: interrupts. Ctrl-C (SIGINT to the whole process group, as a terminal sends it)
during a multi-rank parse ends every worker quietly: exit 130, one line on stderr, no
worker traceback, no temporary folder left, no worker left running, and no serial
fallback that parses on after the interrupt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES
from hostile_support import load_json_trace

RANKS = 4
COPIES = 120  # each rank ~ 100k events: long enough to interrupt mid-parse


@pytest.fixture(scope="module")
def rank_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    doc = load_json_trace(SAMPLES / "synthetic_train.json.gz")
    events = doc["traceEvents"]
    times = [e["ts"] for e in events if isinstance(e.get("ts"), int | float)]
    span = max(times) - min(times) + 1000.0
    big = [
        {**e, "ts": e["ts"] + k * span} if "ts" in e else e for k in range(COPIES) for e in events
    ]
    folder = tmp_path_factory.mktemp("ranks")
    for rank in range(RANKS):
        info = {**doc.get("distributedInfo", {}), "rank": rank, "world_size": RANKS}
        text = json.dumps({**doc, "traceEvents": big, "distributedInfo": info})
        (folder / f"rank-{rank}.json").write_text(text)
    return folder


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("delay_s", [0.0, 0.4, 1.0])
def test_ctrl_c_ends_every_worker_quietly(delay_s: float, rank_dir: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"  # a private TMPDIR: the system one is shared
    scratch.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from gpu_trace_analyzer.cli import entry; entry()",
            str(rank_dir),
            "--jobs",
            "2",
            "-o",
            str(tmp_path / "r.md"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while not workers and proc.poll() is None and time.monotonic() < deadline:
        workers = _children(proc.pid)
        time.sleep(0.02)
    assert workers, "no worker process started"
    time.sleep(delay_s)
    if proc.poll() is not None:
        pytest.skip("the parse finished before the interrupt (a very fast machine)")
    seen = set(workers) | set(_children(proc.pid))
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert err.strip() == "analyze: interrupted", err[-2000:]
    assert not (tmp_path / "r.md").exists()
    time.sleep(0.3)
    assert not [pid for pid in seen if _alive(pid)], "a worker still runs"
    assert not list(scratch.iterdir()), "a temporary folder was left"


class _FakeRay:
    """Stands in for Ray (an optional extra, absent here): ``get`` is interrupted by
    Ctrl-C, as ``ray.get`` is when the terminal sends SIGINT to the driver."""

    def __init__(self) -> None:
        self.cancelled: list[tuple[int, bool]] = []
        self.shut_down = False
        self.submitted = 0

    def is_initialized(self) -> bool:
        return False

    def init(self, **_: object) -> None:
        return None

    def remote(self, **_: object) -> object:
        fake = self

        class _Task:
            @staticmethod
            def remote(_path: str) -> int:
                fake.submitted += 1
                return fake.submitted

        return lambda _fn: _Task()

    def get(self, _refs: list[int]) -> list[object]:
        raise KeyboardInterrupt

    def cancel(self, ref: int, force: bool = False) -> None:
        self.cancelled.append((ref, force))

    def shutdown(self) -> None:
        self.shut_down = True


def test_ray_ctrl_c_cancels_every_task_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpu_trace_analyzer import executor
    from gpu_trace_analyzer.cli import INTERRUPTED, main

    fake = _FakeRay()
    monkeypatch.setattr(executor, "_ray_module", lambda: fake)
    folder = tmp_path / "ranks"
    folder.mkdir()
    trace = load_json_trace(SAMPLES / "synthetic_train.json.gz")
    for rank in range(3):
        info = {**trace.get("distributedInfo", {}), "rank": rank, "world_size": 3}
        (folder / f"rank-{rank}.json").write_text(json.dumps({**trace, "distributedInfo": info}))
    assert main([str(folder), "--executor", "ray", "-o", str(tmp_path / "r.md")]) == INTERRUPTED
    assert fake.cancelled == [(1, True), (2, True), (3, True)]  # every task, forcibly
    assert fake.shut_down  # the local Ray we started is stopped
    err = capsys.readouterr().err
    assert err == "analyze: interrupted\n"  # one line, no traceback
    assert not (tmp_path / "r.md").exists()
