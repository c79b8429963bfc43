"""Re-export of the exception family (defined in `parsers.errors`, the pipeline's bottom)."""

from gpu_trace_analyzer.parsers.errors import (
    AnalyzerError,
    BadConfigError,
    EmptyTraceError,
    UnreadableInputError,
    UnsupportedFormatError,
)

__all__ = [
    "AnalyzerError",
    "BadConfigError",
    "EmptyTraceError",
    "UnreadableInputError",
    "UnsupportedFormatError",
]
