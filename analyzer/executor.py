"""Where the per-rank parse of a multi-rank Kineto directory runs: here, a local process
pool, or a Ray cluster.

``local`` (the default): ``min(ranks, jobs or CPUs)`` processes parse one rank file at a
time: this one and spawned workers (`parsers.pool.share_items`; spawned, because polars is
not fork-safe); a single file, or ``jobs=1``, parses in this process alone. Each worker
returns its rank's tables; this process merges them (`parsers.kineto.merge_ranks`).

``ray``: each rank is a Ray task that parses its file and writes the tables as Parquet
(`analyzer.parquet`); the files come back through Ray's object store (so the cluster needs
no shared file system), land in a temporary directory here, and are read back and merged.
``ray_address`` names a running cluster (``ray.init(address=...)``); without it a local Ray
is started with one CPU per core, no dashboard, on localhost only, and shut down after.
Ray is an optional extra (``pip install '.[ray]'``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gpu_trace_analyzer.parsers.errors import AnalyzerError, BadConfigError
from gpu_trace_analyzer.parsers.pool import share_items
from gpu_trace_analyzer.parsers.schema import TraceTables

EXECUTORS: Final = ("local", "ray")


@dataclass(frozen=True, slots=True)
class ExecutorOptions:
    """How to run per-rank parsing: ``kind`` local or ray, ``jobs`` (None: one per CPU),
    and the Ray cluster to join (None: start a local one)."""

    kind: str = "local"
    jobs: int | None = None
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise BadConfigError(f"unknown executor {self.kind!r} (choose: {', '.join(EXECUTORS)})")
        if self.jobs is not None and self.jobs < 1:
            raise BadConfigError(f"--jobs must be at least 1, not {self.jobs}")
        if self.ray_address is not None and self.kind != "ray":
            raise BadConfigError("--ray-address needs --executor ray")


@dataclass(frozen=True, slots=True)
class _Failure:
    """An `AnalyzerError` raised in a worker, carried back whole (its path included)."""

    kind: type[AnalyzerError]
    message: str
    path: str | None

    def raise_again(self) -> None:
        raise self.kind(self.message, self.path)


def parse_ranks(files: Sequence[Path], options: ExecutorOptions) -> list[TraceTables]:
    """Each rank file's tables, in the order of ``files``."""
    if options.kind == "ray":
        return _on_ray(files, options)
    workers = min(len(files), options.jobs or os.cpu_count() or 1)
    if workers <= 1:
        return [_parse_here(f) for f in files]
    try:
        results = share_items(_parse_in_worker, [str(f) for f in files], workers - 1, batch=1)
    except (BrokenProcessPool, OSError):  # workers could not start (e.g. a caller without
        # the __main__ guard spawn needs) or the temporary folder is full: parse here
        return [_parse_here(f) for f in files]
    return [_unwrap(r) for r in results]


def _parse_here(path: Path) -> TraceTables:
    from gpu_trace_analyzer.parsers.kineto import parse_file

    return parse_file(path, workers=1)


def _parse_in_worker(path: str) -> TraceTables | _Failure:
    """Worker task: one rank file's tables, or the user-facing error it raised."""
    try:
        return _parse_here(Path(path))
    except AnalyzerError as exc:
        return _Failure(type(exc), exc.message, exc.path)


def _unwrap(result: TraceTables | _Failure) -> TraceTables:
    if isinstance(result, _Failure):
        result.raise_again()
        raise AssertionError("unreachable")
    return result


# --- Ray ---------------------------------------------------------------------------------


def _ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise BadConfigError(
            "--executor ray needs Ray, an optional extra: pip install '.[ray]'"
        ) from None
    return ray


def _on_ray(files: Sequence[Path], options: ExecutorOptions) -> list[TraceTables]:
    """Parse every rank as a Ray task; read the Parquet they wrote back here."""
    from gpu_trace_analyzer import parquet

    ray = _ray_module()
    started = _start_ray(ray, options.ray_address)
    refs: list[Any] = []
    try:
        task = ray.remote(num_cpus=1)(_parquet_task)
        refs = [task.remote(str(f)) for f in files]
        packed = ray.get(refs)
    except KeyboardInterrupt:
        _cancel(ray, refs)  # as the local pool does: nothing runs on, no worker speaks
        raise
    finally:
        if started:
            ray.shutdown()
    tables = []
    with tempfile.TemporaryDirectory(prefix="analyze-ray-") as tmp:
        for index, result in enumerate(packed):
            if isinstance(result, _Failure):
                result.raise_again()
            folder = Path(tmp) / f"rank-file-{index}"
            folder.mkdir()
            for name, data in result.items():
                (folder / name).write_bytes(data)
            tables.append(parquet.read(folder))
    return tables


def _cancel(ray: Any, refs: Sequence[Any]) -> None:
    """Ctrl-C: stop every task still queued or running (force: its worker is killed, so no
    rank keeps parsing after the CLI has exited 130). Errors while cancelling are not the
    user's concern: the interrupt goes on either way."""
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)


def _start_ray(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address``, or start a quiet local Ray; True when we started
    (or joined) it here and so must shut it down."""
    if ray.is_initialized():
        return False
    common: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
    }
    try:
        if address is not None:
            ray.init(address=address, **common)
        else:
            ray.init(
                num_cpus=os.cpu_count() or 1,
                _node_ip_address="127.0.0.1",
                runtime_env={"env_vars": {"PYTHONPATH": _import_root()}},
                **common,
            )
    except Exception as exc:  # Ray reports a failed start or connection in many ways
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise BadConfigError(f"cannot start {where}: {exc}") from exc
    return True


def _import_root() -> str:
    """The folder holding the ``gpu_trace_analyzer`` package (for Ray's workers).

    Not resolved through symlinks: an editable install's link tree is that folder.
    """
    import gpu_trace_analyzer

    return str(Path(gpu_trace_analyzer.__file__).parent.parent)


def _parquet_task(path: str) -> dict[str, bytes] | _Failure:
    """Ray task: parse one rank file and return its tables as Parquet files' bytes."""
    from gpu_trace_analyzer import parquet

    try:
        tables = _parse_here(Path(path))
    except AnalyzerError as exc:
        return _Failure(type(exc), exc.message, exc.path)
    with tempfile.TemporaryDirectory(prefix="analyze-rank-") as tmp:
        written = parquet.write(tables, Path(tmp))
        return {p.name: p.read_bytes() for p in written}
