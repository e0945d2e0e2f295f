"""Atomic writes: a reader sees the old content or the new one, never a mix.

Each helper writes into a temporary sibling first, flushes it to disk and then
renames it over the target. A crash or SIGKILL part-way leaves only a temporary
name behind (starting with ".tmp-"), which readers ignore and
`remove_stale_temporaries` deletes before the next writer starts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".tmp-"
RETIRED_PREFIX = TEMP_PREFIX + "old-"

logger = logging.getLogger(__name__)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace the file at `path` with `data` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        # mkstemp makes the file owner-only (0600); use open()'s permissions.
        os.chmod(temp_name, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace the file at `path` with `text` (UTF-8) in one rename."""
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: Path, value: Any) -> None:
    """Replace the file at `path` with `value` as indented JSON."""
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def _current_umask() -> int:
    # The umask can only be read by setting it, so set it back at once.
    # NOTE: a file another thread creates in between gets umask 022.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_folder_atomic(path: Path, fill: Callable[[Path], None]) -> None:
    """Create folder `path` by filling a temporary folder and renaming it.

    `fill` receives the temporary folder and writes every file into it. If
    `path` already exists it is replaced as a whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + path.name + "-", dir=path.parent))
    try:
        # mkdtemp makes the folder owner-only (0700). Give it the permissions
        # that mkdir would, so other users can read the adapter or model.
        os.chmod(temp, 0o777 & ~_current_umask())
        fill(temp)
        for file in temp.rglob("*"):
            if file.is_file():
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
        if path.exists():
            # Two renames keep a whole folder at some name at every moment.
            retired = path.with_name(RETIRED_PREFIX + path.name)
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(path, retired)
            os.replace(temp, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _fsync_directory(path.parent)


def remove_folder(path: Path) -> None:
    """Delete a folder by first renaming it to a temporary name, then removing it."""
    if not path.exists():
        return
    retired = path.with_name(f"{TEMP_PREFIX}removed-{path.name}")
    shutil.rmtree(retired, ignore_errors=True)
    os.replace(path, retired)
    shutil.rmtree(retired, ignore_errors=True)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete what killed atomic writes left directly inside `folder`.

    Only entries whose names start with ".tmp-" are touched. Call it only while
    no other process writes into `folder`, because a live writer's temporary
    looks the same. A folder that was being replaced when the writer died
    (".tmp-old-NAME" with no NAME beside it) is the last complete copy, so it
    is renamed back to NAME instead. Returns the entries removed or restored.
    """
    if not folder.is_dir():
        return []
    touched = []
    for entry in sorted(folder.iterdir()):
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        original = folder / entry.name.removeprefix(RETIRED_PREFIX)
        if entry.name.startswith(RETIRED_PREFIX) and not original.exists():
            os.replace(entry, original)
            logger.warning("restored %s from an interrupted replace", original)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
            logger.info("removed %s, left by an interrupted write", entry)
        else:
            entry.unlink()
            logger.info("removed %s, left by an interrupted write", entry)
        touched.append(entry)
    return touched
