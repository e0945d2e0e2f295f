import time

import pytest
from mlx_distributed.sessions import (
    Session,
    SessionLimitError,
    SessionNotFoundError,
    SessionPositionError,
    SessionStore,
)


def _session(session_id: str) -> Session:
    return Session(session_id=session_id, cache=[], batch=1)


def test_store_rejects_sessions_over_limit():
    store = SessionStore(max_sessions=2)
    store.open(_session("a"))
    store.open(_session("b"))
    with pytest.raises(SessionLimitError) as error:
        store.open(_session("c"))
    assert str(error.value) == (
        "node has 2 open sessions, the maximum is 2; end finished sessions first"
    )


def test_ended_session_frees_its_slot():
    store = SessionStore(max_sessions=1)
    store.open(_session("a"))
    assert store.end("a") is True
    assert store.end("a") is False
    store.open(_session("b"))
    assert "b" in store


def test_idle_sessions_expire():
    store = SessionStore(idle_timeout_s=0.05)
    store.open(_session("a"))
    time.sleep(0.1)
    assert store.expire_idle() == ["a"]
    assert len(store) == 0


def test_reused_session_id_is_rejected():
    store = SessionStore()
    store.open(_session("a"))
    with pytest.raises(SessionPositionError, match="already exists"):
        store.open(_session("a"))


def test_position_mismatch_is_rejected():
    store = SessionStore()
    session = store.open(_session("a"))
    session.position = 7
    with pytest.raises(SessionPositionError) as error:
        store.get("a", 3)
    assert str(error.value) == (
        "session a is at position 7, but the request starts at 3"
    )


def test_unknown_session_is_not_found():
    with pytest.raises(SessionNotFoundError, match="session x is not open"):
        SessionStore().get("x", 1)
