"""The one sanitizer of untrusted text: every trace-derived string, before any output.

Traces come from other people's jobs and reports get pasted into pull requests, so op and
kernel names, NVTX text, device and host names, versions, DCGM labels, file names and
Parquet ``meta.json`` read back are all untrusted. Two steps:

`clean` (every renderer and every error message): escape sequences removed whole (an OSC
52 writes the user's clipboard, an OSC 8 plants a link, a CSI repaints the screen), then
every other control character, NUL and bidirectional override removed; line breaks and
tabs become one space, so a name never starts a new line of a table, of an error
message or of the terminal.

`defuse_markdown` (Markdown text outside code spans, after its escaping): what GitHub
would turn live even in escaped text gets a zero-width joiner (U+200D) that breaks the
pattern while it still reads the same: ``@mention`` and ``@org/team``, e-mail addresses,
``scheme://`` URLs and ``www.`` autolinks. Inside code spans nothing is live, so code
spans need only `clean` (and a fence longer than any backtick run, in the renderer).
"""

from __future__ import annotations

import re
from typing import Any, Final

ZWJ: Final = "\u200d"

#: Whole escape sequences: OSC / DCS / SOS / PM / APC strings up to their terminator (BEL
#: or ST, 7- or 8-bit), CSI sequences (7- or 8-bit) with their final byte, and any other
#: ESC + one character.
_ESCAPE_SEQUENCE: Final = re.compile(
    r"(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\s\S]?"
)
#: Line breaks of every kind, and tabs: one space each run.
_BREAKS: Final = re.compile(r"[\t\n\v\f\r\x85\u2028\u2029]+")
#: Other control characters, NUL included, and bidi / zero-width format characters.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")

_MENTION_OR_EMAIL: Final = re.compile(r"@(?=[A-Za-z0-9_])")
_SCHEME: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,31}):(?=//)|\b(mailto):")
_WWW: Final = re.compile(r"(?i)\b(www)\.")


def clean(text: str) -> str:
    """``text`` without escape sequences, control or bidi characters, on one line."""
    if text.isprintable():  # the usual case: nothing to remove (fast path)
        return text
    text = _ESCAPE_SEQUENCE.sub("", text)
    text = _BREAKS.sub(" ", text)
    return _CONTROL.sub("", text)


def defuse_markdown(text: str) -> str:
    """Escaped Markdown text with mentions, e-mail addresses, URLs and ``www.`` made inert
    (a zero-width joiner after ``@``, after a scheme's colon, after ``www``)."""
    if "@" not in text and ":" not in text and "www" not in text.lower():
        return text
    text = _MENTION_OR_EMAIL.sub("@" + ZWJ, text)
    text = _SCHEME.sub(lambda m: f"{m.group(1) or m.group(2)}{ZWJ}:", text)
    return _WWW.sub(lambda m: f"{m.group(1)}{ZWJ}.", text)


def one_line(text: str) -> str:
    """An error or warning message for stderr: cleaned, on one line."""
    return clean(text).strip()


def clean_tree(value: Any) -> Any:
    """``value`` (decoded JSON: a chart spec, a report) with every string `clean`."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean_tree(k): clean_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_tree(v) for v in value]
    return value
