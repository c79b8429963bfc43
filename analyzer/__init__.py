"""GPU profiler trace analyzer: canonical tables in, insight report out."""

__version__ = "0.1.0"
