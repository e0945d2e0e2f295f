"""Exclusive lock on a run folder, so two runs cannot write into one folder.

The writing rank holds an `flock` on `<run folder>/.mlx-train.lock` for the
whole run. The kernel drops the lock when the holder exits in any way,
SIGKILL included, so a killed run never blocks the next one. Because the lock
belongs to the file and not to its path, two spellings of one folder (for
example through a symlink) share it.
Where Python has no fcntl module (Windows) the folder is not locked.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

logger = logging.getLogger(__name__)

LOCK_FILE = ".mlx-train.lock"


class RunFolderInUseError(RuntimeError):
    """Another process holds the lock on the run folder."""


class RunFolderLock:
    """Exclusive lock on a run folder, taken by `acquire` or `with`."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.created_folder = False
        self._fd: int | None = None

    def acquire(self) -> None:
        """Create the folder and lock it, or raise RunFolderInUseError."""
        self.created_folder = not self.run_dir.exists()
        if fcntl is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # NOTE: without fcntl (Windows) nothing stops a second run from
            # writing into the same folder; msvcrt.locking could replace it.
            logger.warning("no fcntl here, so %s is not locked", self.run_dir)
            return
        while True:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder_pid(fd)
                os.close(fd)
                owner = f"process {holder}" if holder else "another process"
                raise RunFolderInUseError(
                    f"run folder {self.run_dir} is in use by {owner} (lock file "
                    f"{self.path}); wait for that run to end or choose another "
                    "output_dir"
                ) from None
            # A holder that removed its unused folder (see release) may have
            # unlinked this file after it was opened, so lock the current one.
            if _is_same_file(fd, self.path):
                break
            os.close(fd)
        # The pid is for the error message of a second run only.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self, remove_unused: bool = False) -> None:
        """Release the lock if this object has taken it.

        With `remove_unused`, a folder that `acquire` created and that still
        contains nothing but the lock file is deleted first, so a run that
        fails before writing anything leaves no empty folder behind.
        """
        if self._fd is None:
            return
        if remove_unused and self.created_folder:
            try:
                if [entry.name for entry in self.run_dir.iterdir()] == [LOCK_FILE]:
                    self.path.unlink()
                    self.run_dir.rmdir()
            except OSError as error:
                logger.warning("could not remove unused %s: %s", self.run_dir, error)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunFolderLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type | None, *exc_info: object) -> None:
        self.release(remove_unused=exc_type is not None)


def _is_same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)


def _read_holder_pid(fd: int) -> int | None:
    # The holder writes its pid right after locking, so this can be empty.
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None
