"""What kind of file system object an input is, checked before anything reads it.

Only regular files and directories are inputs. A FIFO blocks the first ``open`` until a
writer appears (forever, when none does), and even with one it can be read only once,
while the tool reads a trace's head to sniff it and then reads it again; a socket or a
device (``/dev/zero``, ``/dev/urandom``) never ends. So each is refused at once, with one
line that says what to do instead; the check uses ``stat``, which never blocks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from gpu_trace_analyzer.parsers.errors import UnreadableInputError

_PIPE_HELP: Final = (
    "is a pipe (as `<(zcat trace.json.gz)` gives), which can be read only once; pass the "
    "file itself (gzip is read directly: analyze trace.json.gz) or save the stream to a "
    "file first (zcat trace.json.gz > trace.json)"
)


def check_input(path: Path) -> None:
    """Raise `UnreadableInputError` unless ``path`` is a readable regular file or
    directory (a symlink to one is fine)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UnreadableInputError("no such file or directory", path) from None
    except OSError as exc:
        raise UnreadableInputError(f"cannot read: {exc.strerror or exc}", path) from None
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        _check_listable(path)
        return
    if stat.S_ISFIFO(mode) or str(path).startswith(("/dev/fd/", "/proc/self/fd/")):
        raise UnreadableInputError(_PIPE_HELP, path)
    if stat.S_ISSOCK(mode):
        raise UnreadableInputError("is a socket, not a file", path)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise UnreadableInputError("is a device, not a file", path)
    raise UnreadableInputError("is not a regular file or a directory", path)


def _check_listable(path: Path) -> None:
    """A directory we cannot list is one line, not a traceback later."""
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as exc:
        raise UnreadableInputError(
            f"cannot list the directory: {exc.strerror or exc}", path
        ) from None
