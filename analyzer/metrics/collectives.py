"""Collective names as one vocabulary, shared by the rules that group communication.

The mapping itself lives in `parsers.collectives` (the Kineto parser normalizes while reading
and parsers never import `analyzer`); rules import it from here, never from another rule.
"""

from __future__ import annotations

from gpu_trace_analyzer.parsers.collectives import normalize_collective

__all__ = ["normalize_collective"]
