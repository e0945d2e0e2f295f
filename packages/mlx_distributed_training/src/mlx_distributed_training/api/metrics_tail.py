"""Incremental reader for the trainer's metrics.jsonl."""

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Upper bound on the bytes read per call, so one poll of a long file stays short.
MAX_READ_BYTES = 4 * 1024 * 1024


def read_new_records(
    path: Path, offset: int, max_bytes: int = MAX_READ_BYTES
) -> tuple[list[dict[str, Any]], int]:
    """Read the complete lines after byte `offset`.

    Returns their records and the offset just past the last complete line.

    A trailing line without its newline is left for the next call, because the
    trainer may still be writing it. Lines that are not JSON objects are logged
    and skipped. A missing file yields no records.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [], offset
    if size < offset:
        logger.warning(
            "%s shrank from %s to %s bytes, so it is read again from the start",
            path,
            offset,
            size,
        )
        offset = 0
    if size == offset:
        return [], offset

    with path.open("rb") as handle:
        handle.seek(offset)
        chunk = handle.read(max_bytes)
    end = chunk.rfind(b"\n")
    if end < 0:
        if len(chunk) < max_bytes:
            return [], offset
        logger.warning(
            "%s has a line longer than %s bytes at offset %s, which is skipped",
            path,
            max_bytes,
            offset,
        )
        return [], offset + len(chunk)

    records: list[dict[str, Any]] = []
    line_start = offset
    for raw_line in chunk[: end + 1].splitlines(keepends=True):
        line = raw_line.strip()
        if line:
            record = _parse_line(line)
            if record is None:
                logger.warning("%s: invalid JSON line at byte %s", path, line_start)
            else:
                records.append(record)
        line_start += len(raw_line)
    return records, offset + end + 1


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None
