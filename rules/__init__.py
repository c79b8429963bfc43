"""Diagnostic rules: one module per rule, registered in `rules.registry`."""
