"""Files in a job's folder: the config the trainer reads and its logs."""

import os
import secrets
from pathlib import Path
from typing import Any

import yaml

from mlx_distributed_training.training.utils.atomic import write_text_atomic

CONFIG_FILE_NAME = "config.yaml"
METRICS_FILE_NAME = "metrics.jsonl"
STDERR_FILE_NAME = "stderr.log"
STDOUT_FILE_NAME = "stdout.log"

STDERR_TAIL_LINES = 20
STDERR_TAIL_BYTES = 8 * 1024


def new_job_id() -> str:
    """Return a new random job id such as `job-3f9c1a2b7d4e5f60`."""
    return f"job-{secrets.token_hex(8)}"


def write_config(job_dir: Path, config: dict[str, Any]) -> Path:
    """Write the job's config.yaml atomically and return its path."""
    target = job_dir / CONFIG_FILE_NAME
    write_text_atomic(target, yaml.safe_dump(config, sort_keys=False))
    return target


def read_log_tail(path: Path, max_lines: int, max_bytes: int) -> str:
    """Return up to the last `max_lines` lines of a log, read from at most its
    last `max_bytes` bytes, or "" if the file is missing."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > max_bytes:
        # The first line read may start mid-line.
        lines = lines[1:]
    return "\n".join(lines[-max_lines:])


def read_stderr_tail(job_dir: Path) -> str | None:
    """Return the last lines of the job's stderr.log, or None if it is empty."""
    tail = read_log_tail(
        job_dir / STDERR_FILE_NAME, STDERR_TAIL_LINES, STDERR_TAIL_BYTES
    ).strip()
    return tail or None
