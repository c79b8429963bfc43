"""Output safety: no output path may touch an input, and reports are written atomically.

Why: ``analyze trace.json -o trace.json`` once replaced the trace with its own report and
exited 0. Every path the tool writes (``-o``, the chart folder, ``--charts-dir``,
``export --parquet``) is resolved (symlinks, ``..``) and compared with every input, by
path and by inode (a hard link is the same file under another name). Refused, with exit 2:

- an output file that is an input file, or lies inside an input directory;
- an output folder that is an input file, is or lies inside an input directory, or
  holds an input file (writing charts or tables there could replace it).

A report is written to a temporary file in the target's own folder and renamed over the
target (`os.replace` is atomic on one file system), so an interrupted run leaves the old
file or the new one, never half of one, and no temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gpu_trace_analyzer.parsers.errors import BadConfigError

#: Prefix of the temporary file a report is written to before its rename.
TEMP_PREFIX = ".analyze-"
#: Files of an input directory looked at (a directory of more is compared by path only).
_MAX_DIR_FILES = 100_000


@dataclass(frozen=True, slots=True)
class _Inputs:
    """The inputs, resolved: their files (path and inode) and their directories."""

    files: frozenset[Path]
    inodes: frozenset[tuple[int, int]]
    dirs: tuple[Path, ...]


def _resolve(path: Path) -> Path:
    """``path`` absolute with symlinks and ``..`` resolved (as far as it exists)."""
    return Path(os.path.realpath(os.path.abspath(path)))


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _dir_files(folder: Path) -> Iterator[Path]:
    """Files under an input directory (recursively, bounded)."""
    for count, (root, _dirs, names) in enumerate(os.walk(folder)):
        if count > _MAX_DIR_FILES:
            return
        for name in names:
            yield Path(root) / name


def _collect(inputs: Sequence[Path]) -> _Inputs:
    files: set[Path] = set()
    inodes: set[tuple[int, int]] = set()
    dirs: list[Path] = []
    for given in inputs:
        path = _resolve(Path(given))
        members = [path]
        if path.is_dir():
            dirs.append(path)
            members = [_resolve(f) for f in _dir_files(path)]
        for member in members:
            files.add(member)
            if (ino := _inode(member)) is not None:
                inodes.add(ino)
    return _Inputs(frozenset(files), frozenset(inodes), tuple(dirs))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _refuse(option: str, path: Path, why: str) -> BadConfigError:
    return BadConfigError(f"{option} {path}: {why}; choose a path away from the inputs")


def check_output_file(option: str, path: Path, inputs: Sequence[Path]) -> None:
    """Refuse (exit 2) an output file that is an input or lies inside an input folder."""
    known = _collect(inputs)
    target = _resolve(path)
    if target in known.files or _inode(target) in known.inodes:
        raise _refuse(option, path, "is an input file")
    if any(_inside(target, d) for d in known.dirs):
        raise _refuse(option, path, "lies inside an input directory")


def check_output_dir(option: str, path: Path, inputs: Sequence[Path]) -> None:
    """Refuse (exit 2) an output folder that is an input file, is or lies inside an input
    folder, or holds an input file; or that exists as something else than a folder."""
    known = _collect(inputs)
    target = _resolve(path)
    if target in known.files or _inode(target) in known.inodes:
        raise _refuse(option, path, "is an input file")
    if any(_inside(target, d) for d in known.dirs):
        raise _refuse(option, path, "is or lies inside an input directory")
    if any(_inside(f, target) for f in known.files):
        raise _refuse(option, path, "holds an input file")
    if target.exists() and not target.is_dir():
        raise BadConfigError(f"{option} {path}: exists and is not a directory")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename;
    any failure is one line (exit 2) and leaves no temporary file behind."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise BadConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
