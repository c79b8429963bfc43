"""``python sample_traces/synthetic [SCENARIO OUTPUT]``: regenerate the committed samples or
write one scenario (see `synthetic.scenarios.main`)."""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from synthetic.scenarios import main

    raise SystemExit(main())
