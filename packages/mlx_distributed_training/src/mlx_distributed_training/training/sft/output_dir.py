"""The default run folder, used when no output_dir is configured."""

import datetime
from pathlib import Path


def default_output_dir() -> str:
    """`runs/<UTC timestamp>`, so repeated runs never overwrite each other."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / stamp)
