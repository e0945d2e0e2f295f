"""The bundled quickstart task: normalise written dates to ISO 8601."""

from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
