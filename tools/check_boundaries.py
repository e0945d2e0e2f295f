"""Run the boundary check from a checkout: `python tools/check_boundaries.py --help`.

The same command is installed as `check-boundaries` (`uv run check-boundaries`).
"""

import sys
from pathlib import Path

# A script's own folder is first on sys.path already. The insert keeps the
# package importable when this file is loaded in another way.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from boundaries.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
