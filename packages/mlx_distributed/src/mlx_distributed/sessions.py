"""Per-session KV caches on a node, bounded by count and idle time."""

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mlx_distributed.sampling import TokenSampler

logger = logging.getLogger(__name__)


class SessionError(Exception):
    """A request that does not fit the session it names."""


class SessionNotFoundError(SessionError):
    pass


class SessionPositionError(SessionError):
    pass


class SessionLimitError(SessionError):
    pass


@dataclass
class Session:
    """One generation's state on this node: its KV cache and position."""

    session_id: str
    cache: list[Any]
    batch: int
    sampler: TokenSampler | None = None
    # Positions (columns, padding included) already in the cache.
    position: int = 0
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


class SessionStore:
    """Open sessions of one node.

    At most `max_sessions` are open at once; a session unused for
    `idle_timeout_s` seconds is freed on the next sweep.
    """

    def __init__(self, max_sessions: int = 64, idle_timeout_s: float = 300.0):
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, found {max_sessions}")
        if idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be > 0, found {idle_timeout_s}")
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def __contains__(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._sessions

    def open(self, session: Session) -> Session:
        """Register a new session; raise if the id is taken or the store is full."""
        self.expire_idle()
        with self._lock:
            if session.session_id in self._sessions:
                raise SessionPositionError(
                    f"session {session.session_id} already exists; a new "
                    "prompt needs a new session id"
                )
            if len(self._sessions) >= self.max_sessions:
                raise SessionLimitError(
                    f"node has {len(self._sessions)} open sessions, the maximum "
                    f"is {self.max_sessions}; end finished sessions first"
                )
            self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str, position: int) -> Session:
        """Return an open session whose cache is exactly at `position`."""
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise SessionNotFoundError(
                f"session {session_id} is not open on this node (ended, expired "
                "or never started); restart the generation at position 0"
            )
        if session.position != position:
            raise SessionPositionError(
                f"session {session_id} is at position {session.position}, "
                f"but the request starts at {position}"
            )
        session.last_used = time.monotonic()
        return session

    def end(self, session_id: str) -> bool:
        """Free a session's cache; return whether it was open."""
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    def clear(self) -> int:
        """Free every session; return how many there were."""
        with self._lock:
            count = len(self._sessions)
            self._sessions.clear()
        return count

    def expire_idle(self) -> list[str]:
        """Free sessions idle longer than the timeout; return their ids."""
        cutoff = time.monotonic() - self.idle_timeout_s
        with self._lock:
            expired = [
                session_id
                for session_id, session in self._sessions.items()
                if session.last_used < cutoff and not session.lock.locked()
            ]
            for session_id in expired:
                del self._sessions[session_id]
        for session_id in expired:
            logger.info("freed idle session %s", session_id)
        return expired
