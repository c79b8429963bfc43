"""The model: `TraceTables` and `load()`, which picks a parser for each input path."""

from __future__ import annotations

from parsers.schema import DeviceInfo, RankInfo, TraceMeta, TraceTables

__all__ = ["DeviceInfo", "RankInfo", "TraceMeta", "TraceTables"]
