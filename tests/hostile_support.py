"""What every hostile-input test checks: the tool's promise about inputs, outputs and text.

`run_cli` runs the `analyze` entry point in this process (fast enough for hundreds of
generated cases) with stdout and stderr captured; `check_promise` asserts the promise:

- the exit code is one of the documented ones (never 70, the internal-error code);
- at most one line on stderr, and no traceback;
- every input file is byte-for-byte unchanged;
- no temporary file or folder of ours is left behind;
- the Markdown written, parsed with markdown-it-py (GitHub's autolinks on), holds no link,
  image, HTML or @mention that came from the input, and no control character;
- terminal text holds no escape sequence.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

#: Exit codes the README documents for a run on bad input (70 is a bug, never allowed).
DOCUMENTED_EXITS = frozenset({0, 1, 2, 3, 4, 5})

#: Strings an attacker would put in a trace: terminal escapes (OSC 52 writes the
#: clipboard, OSC 8 plants a link), mentions, autolinks, HTML, Markdown links, backticks,
#: newlines, NUL, bidi overrides.
HOSTILE_STRINGS: tuple[str, ...] = (
    "\x1b]52;c;ZXZpbA==\x07clip",
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "\x1b[2J\x1b[31mred\x9b31m",
    "cc @octocat please",
    "ping @acme/security-team now",
    "see https://evil.example/x?y=1",
    "go www.evil.example today",
    "mail me@evil.example now",
    "<img src=x onerror=alert(1)>",
    "[click](https://evil.example/l)",
    "![pix](https://evil.example/i.png)",
    "tick ` `` ``` end`",
    "line1\nline2\r\n# heading\n- item",
    "nul\x00byte",
    "bidi\u202etxt.exe",
    "| pipe | in | cell |",
    "<https://evil.example/auto>",
    "<script>alert(1)</script>",
    "&#x40;octocat &lt;b&gt;",
    "`@octocat` and `https://evil.example`",
)

_MD = MarkdownIt("gfm-like").enable("linkify")  # GitHub autolinks bare URLs and www.
_MENTION = re.compile(r"(?<![\w`])@[A-Za-z0-9][A-Za-z0-9-]*(/[A-Za-z0-9_.-]+)?")
_ESCAPE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Run:
    """One CLI run: exit code and what went to stdout and stderr."""

    code: int
    stdout: str
    stderr: str


_LAST_SCRATCH: list[Path] = []


def run_cli(argv: Sequence[str | os.PathLike[str]]) -> Run:
    """`analyze ARGV` in this process, stdout and stderr captured, with a private
    temporary folder (``tempfile.tempdir`` and ``TMPDIR``) whose leftovers `leaked` lists."""
    from gpu_trace_analyzer.cli import main

    scratch = Path(tempfile.mkdtemp(prefix="hostile-scratch-"))
    _LAST_SCRATCH[:] = [scratch]
    saved_dir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = str(scratch)
    os.environ["TMPDIR"] = str(scratch)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    finally:
        tempfile.tempdir = saved_dir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
    return Run(code, out.getvalue(), err.getvalue())


def leaked() -> list[str]:
    """What the last `run_cli` left in its private temporary folder (then removed)."""
    if not _LAST_SCRATCH:
        return []
    scratch = _LAST_SCRATCH[0]
    left = sorted(p.name for p in scratch.iterdir()) if scratch.is_dir() else []
    shutil.rmtree(scratch, ignore_errors=True)
    return left


def digest(paths: Iterable[Path]) -> dict[str, str]:
    """Every file under ``paths`` (recursively) -> its SHA-256, to prove it is unchanged."""
    sums: dict[str, str] = {}
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            sums[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return sums


def our_temp_entries() -> set[str]:
    """Temporary files and folders this tool creates (by their prefixes)."""
    root = Path(tempfile.gettempdir())
    return {p.name for p in root.glob("analyze-*")} | {p.name for p in root.glob(".analyze-*")}


def live_markdown(text: str) -> list[str]:
    """What in rendered Markdown would be live on GitHub: links, images, raw HTML,
    autolinks, @mentions outside code, control characters."""
    found: list[str] = []
    if _ESCAPE.search(text.replace("\n", "").replace("\t", "")):
        found.append(f"control character {_ESCAPE.search(text.replace(chr(10), ''))!r}")

    def walk(tokens: Sequence[Any]) -> None:
        for tok in tokens:
            if tok.type in ("link_open", "image", "html_inline", "html_block"):
                href = tok.attrGet("href") or tok.attrGet("src") or tok.content
                if tok.type == "image" and str(href).endswith(".svg") and "://" not in href:
                    continue  # the report's own charts
                found.append(f"{tok.type}: {href!r}")
            if tok.type == "text" and _MENTION.search(tok.content):
                found.append(f"mention: {tok.content!r}")
            if tok.children:
                walk(tok.children)

    walk(_MD.parse(text))
    return found


def terminal_escapes(text: str) -> list[str]:
    """Escape sequences (ESC, CSI, OSC, BEL...) in terminal output."""
    return [repr(m.group()) for m in _ESCAPE.finditer(text.replace("\n", ""))]


def promise_broken(
    run: Run, before: dict[str, str], inputs: Sequence[Path], temps_before: set[str]
) -> list[str]:
    """Every way this run broke the promise (empty when it kept it)."""
    broken: list[str] = []
    if run.code not in DOCUMENTED_EXITS:
        broken.append(f"exit code {run.code}: {run.stderr.strip()[:300]}")
    if "Traceback" in run.stderr or "Traceback" in run.stdout:
        broken.append("traceback printed")
    if run.stderr.count("\n") > 1 or (run.stderr and not run.stderr.endswith("\n")):
        broken.append(f"stderr is not one line: {run.stderr[:300]!r}")
    if terminal_escapes(run.stderr):
        broken.append(f"escape in stderr: {terminal_escapes(run.stderr)[:3]}")
    after = digest(inputs)
    if after != before:
        broken.append("an input file changed")
    left = leaked()
    if left:
        broken.append(f"temporary entries left: {left}")
    return broken


def check_run(
    argv: Sequence[str | os.PathLike[str]], inputs: Sequence[Path], out: Path | None = None
) -> list[str]:
    """Run the CLI and return every broken promise, the written Markdown checked too."""
    before = digest(inputs)
    temps = our_temp_entries()
    run = run_cli(argv)
    broken = promise_broken(run, before, inputs, temps)
    if out is not None and out.is_file() and out.suffix == ".md":
        broken.extend(live_markdown(out.read_text(encoding="utf-8", errors="replace")))
    if run.stdout:
        broken.extend(terminal_escapes(run.stdout))
    return broken


# --- building blocks for generated inputs ------------------------------------------------


def load_json_trace(path: Path) -> dict[str, Any]:
    """A Kineto trace (plain or gzip) as a Python document."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    doc: dict[str, Any] = json.loads(raw)
    return doc


def dump_json(doc: Any, path: Path) -> Path:
    """Write a document as JSON (non-ASCII kept as is, so hostile bytes stay raw)."""
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path
