"""Small helpers shared by the section builders."""

from __future__ import annotations

MAX_NAME_CHARS = 90


def short_name(name: str, limit: int = MAX_NAME_CHARS) -> str:
    """A kernel or op name cut to ``limit`` characters, with an ellipsis when cut.

    C++ template kernel names run to hundreds of characters; the report shows the head,
    which carries the distinguishing part (namespace, kernel, first template arguments).
    """
    name = " ".join(name.split())
    return name if len(name) <= limit else name[: limit - 1] + "…"
