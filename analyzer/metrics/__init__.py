"""Metrics: pure functions of `TraceTables` returning polars DataFrames or small records."""
