"""Parsers: one module per source family, each turning files into canonical tables."""
