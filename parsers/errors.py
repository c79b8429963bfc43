"""The one exception family of the analyzer, each class carrying its exit code.

Defined at the bottom of the pipeline (parsers raise most of them) so that every layer
can import it without pointing upward. `analyzer.errors` re-exports it.

Exit codes (also documented in the README):

====  ==========================================================
0     report written, no finding at or above ``--fail-on``
1     a finding at or above ``--fail-on`` severity exists
2     bad command line or bad configuration (``BadConfigError``)
3     input cannot be read: missing, empty, corrupt (``UnreadableInputError``)
4     input read but not a supported format (``UnsupportedFormatError``)
5     input is a trace but holds nothing to analyze (``EmptyTraceError``)
70    internal error (a bug: please report it with ``--debug`` output)
130   interrupted (Ctrl-C)
====  ==========================================================
"""

from __future__ import annotations

from pathlib import Path


class AnalyzerError(Exception):
    """Base class: a user-facing problem, printed as one line naming the file."""

    exit_code: int = 70

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        return f"{self.path}: {self.message}"


class BadConfigError(AnalyzerError):
    """Command line, rule selection or a config file is wrong."""

    exit_code = 2


class UnreadableInputError(AnalyzerError):
    """The file is missing, empty, truncated beyond use, or its compression is corrupt."""

    exit_code = 3


class UnsupportedFormatError(AnalyzerError):
    """The file is readable but is not a profiler trace or metrics dump we know."""

    exit_code = 4


class EmptyTraceError(AnalyzerError):
    """The file is a trace of a known format but holds no events to analyze."""

    exit_code = 5
