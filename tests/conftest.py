"""Shared test fixtures: where the real traces live, and skipping when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
TRACES = SHARED / "traces"
REFERENCE = SHARED / "reference"
SAMPLES = REPO / "sample_traces"

needs_shared = pytest.mark.skipif(
    not TRACES.is_dir(),
    reason="../shared/traces is absent (a fresh clone without the project's shared data)",
)


def shared_trace(rel: str) -> Path:
    """Path of a real trace under ../shared/traces; skips the test when it is absent."""
    path = TRACES / rel
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not beside this checkout)")
    return path


# The synthetic trace generator (the package sample_traces/synthetic/) lives beside the samples
# it made; tests import it as a plain package.
import sys  # noqa: E402

if str(SAMPLES) not in sys.path:
    sys.path.insert(0, str(SAMPLES))


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--update-goldens`` rewrites the golden reports instead of comparing with them."""
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite tests/golden/*.md from the current output (review the diff!)",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    """Whether this run rewrites golden files."""
    return bool(request.config.getoption("--update-goldens"))
