"""Lock that keeps two servers from running jobs from the same database."""

import fcntl
import os
from pathlib import Path


class DatabaseInUseError(RuntimeError):
    """Raised when another server process holds the database's lock."""


class InstanceLock:
    """Exclusive lock on `<db>.lock`, held for the life of the server.

    The operating system releases the lock when the holder dies, so a server
    that crashed does not block the next one. Job processes do not inherit it.
    """

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.path = Path(f"{db_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatabaseInUseError(
                f"Another mlx-train-serve process is using {self.db_path}; "
                "stop it or pass a different --db"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Release the lock if this object holds it."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
