"""Measurement (c): Holistic Trace Analysis 0.5 parse plus temporal breakdown.

Runs under an interpreter that has ``HolisticTraceAnalysis==0.5.0`` (it pins pandas and
numpy, so keep it in a virtual environment of its own): ``python bench/hta_run.py DIR``,
DIR holding the trace file(s), one per rank. Prints the parse and breakdown times and the
breakdown's first rows.
"""

from __future__ import annotations

import logging
import sys
import time


def main() -> None:
    """Parse the traces in ``sys.argv[1]`` with HTA and compute its temporal breakdown."""
    logging.disable(logging.WARNING)  # HTA logs its timings at WARNING level
    from hta.trace_analysis import TraceAnalysis

    started = time.perf_counter()
    analysis = TraceAnalysis(trace_dir=sys.argv[1])
    parsed = time.perf_counter()
    breakdown = analysis.get_temporal_breakdown(visualize=False)
    done = time.perf_counter()
    sys.stdout.write(
        f"hta parse {parsed - started:.2f} s, temporal breakdown {done - parsed:.2f} s\n"
        f"{breakdown.head().to_string()}\n"
    )


if __name__ == "__main__":
    main()
