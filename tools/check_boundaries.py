"""Run the boundary check from a checkout: `python tools/check_boundaries.py --help`.

The same command is installed as `check-boundaries` (`uv run check-boundaries`).
"""

import sys
from pathlib import Path

# Run as a script, this file's folder is already first on sys.path; the insert
# also makes it importable when the file is loaded some other way.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from boundaries.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
