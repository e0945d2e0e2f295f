"""SQLite store for training jobs and their append-only event logs.

Every change runs in one `BEGIN IMMEDIATE` transaction, so a crash leaves either
the whole change or none of it. A state change and its event are written together,
and so are a batch of metrics events and the metrics.jsonl offset they end at.
The database runs in WAL mode, where readers and a writer do not block each
other.
"""

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .records import (
    EventRecord,
    JobNotFoundError,
    JobRecord,
    OutputDirInUseError,
    job_from_row,
)
from .states import ALLOWED_TRANSITIONS, InvalidTransitionError, JobState

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    config TEXT NOT NULL,
    job_dir TEXT NOT NULL,
    output_dir TEXT NOT NULL,
    num_processes INTEGER NOT NULL DEFAULT 1,
    resume_from TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    exit_code INTEGER,
    error TEXT,
    stderr_tail TEXT,
    pid INTEGER,
    process_start_time INTEGER,
    cancel_requested_at REAL,
    metrics_offset INTEGER NOT NULL DEFAULT 0,
    next_event_seq INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, number);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    created_at REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""


class UnsupportedSchemaError(RuntimeError):
    """Raised when the database was written by another version of the server."""


class JobStore:
    """Jobs and events in one SQLite file, safe to use from several threads.

    Each thread gets its own connection, because sqlite3 connections must not be
    shared between threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = self._connection()
        conn.execute("PRAGMA journal_mode=WAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise UnsupportedSchemaError(
                f"Job database {self.path} has schema version {version}, but this "
                f"server reads version {SCHEMA_VERSION}. Pass a new --db path."
            )
        with self._transaction() as tx:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: transactions are opened explicitly below.
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection.

        Other threads' connections close when their thread ends and the
        connection is garbage-collected.
        """
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # Reads

    def get_job(self, job_id: str) -> JobRecord:
        row = (
            self._connection()
            .execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
            .fetchone()
        )
        if row is None:
            raise JobNotFoundError(job_id)
        return job_from_row(row)

    def list_jobs(
        self, limit: int, after: str | None = None, state: JobState | None = None
    ) -> tuple[list[JobRecord], bool]:
        """Return up to `limit` jobs, newest first, and whether more follow.

        `after` is the id of the last job of the previous page.
        """
        conn = self._connection()
        clauses, params = [], []
        if after is not None:
            row = conn.execute("SELECT number FROM jobs WHERE id = ?", (after,))
            found = row.fetchone()
            if found is None:
                raise JobNotFoundError(after)
            clauses.append("number < ?")
            params.append(found["number"])
        if state is not None:
            clauses.append("state = ?")
            params.append(state.value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = conn.execute(
            f"SELECT * FROM jobs {where} ORDER BY number DESC LIMIT ?",
            (*params, limit + 1),
        ).fetchall()
        return [job_from_row(row) for row in rows[:limit]], len(rows) > limit

    def jobs_in_state(self, state: JobState) -> list[JobRecord]:
        rows = (
            self._connection()
            .execute(
                "SELECT * FROM jobs WHERE state = ? ORDER BY number", (state.value,)
            )
            .fetchall()
        )
        return [job_from_row(row) for row in rows]

    def count_by_state(self) -> dict[JobState, int]:
        rows = self._connection().execute(
            "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"
        )
        counts = dict.fromkeys(JobState, 0)
        for row in rows:
            counts[JobState(row["state"])] = row["n"]
        return counts

    def list_events(self, job_id: str, after: int, limit: int) -> list[EventRecord]:
        """Return up to `limit` events of a job whose seq is greater than `after`."""
        conn = self._connection()
        found = conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,))
        if found.fetchone() is None:
            raise JobNotFoundError(job_id)
        rows = conn.execute(
            "SELECT * FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (job_id, after, limit),
        ).fetchall()
        return [
            EventRecord(
                job_id=row["job_id"],
                seq=row["seq"],
                type=row["type"],
                created_at=row["created_at"],
                data=json.loads(row["data"]),
            )
            for row in rows
        ]

    # Writes

    def create_job(
        self,
        job_id: str,
        config: dict[str, Any],
        job_dir: Path,
        output_dir: Path,
        num_processes: int = 1,
        resume_from: Path | None = None,
    ) -> JobRecord:
        """Insert a queued job and its first state event.

        Raises OutputDirInUseError if a queued or running job already has the
        same output folder, because two trainers would overwrite each other.
        """
        now = time.time()
        with self._transaction() as tx:
            other = tx.execute(
                "SELECT id FROM jobs WHERE output_dir = ?"
                " AND state IN ('queued', 'running') LIMIT 1",
                (str(output_dir),),
            ).fetchone()
            if other is not None:
                raise OutputDirInUseError(output_dir, other["id"])
            tx.execute(
                "INSERT INTO jobs (id, state, config, job_dir, output_dir,"
                " num_processes, resume_from, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    JobState.QUEUED.value,
                    json.dumps(config),
                    str(job_dir),
                    str(output_dir),
                    num_processes,
                    None if resume_from is None else str(resume_from),
                    now,
                ),
            )
            self._append_event(
                tx, job_id, "state", {"state": JobState.QUEUED.value}, now
            )
        return self.get_job(job_id)

    def claim_next_queued(self) -> JobRecord | None:
        """Move the oldest queued job to running and return it, or None if none."""
        with self._transaction() as tx:
            row = tx.execute(
                "SELECT * FROM jobs WHERE state = 'queued' ORDER BY number LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            job = job_from_row(row)
            self._transition(tx, job, JobState.RUNNING, started_at=time.time())
        return self.get_job(job.id)

    def record_process(self, job_id: str, pid: int, start_time: int | None) -> None:
        """Store the pid (and process group id) of a running job's process."""
        with self._transaction() as tx:
            tx.execute(
                "UPDATE jobs SET pid = ?, process_start_time = ? WHERE id = ?",
                (pid, start_time, job_id),
            )

    def finish_job(
        self,
        job_id: str,
        state: JobState,
        exit_code: int | None = None,
        error: str | None = None,
        stderr_tail: str | None = None,
    ) -> JobRecord:
        """Move a job to a terminal state, recording how it ended."""
        if not state.is_terminal:
            raise ValueError(f"finish_job needs a terminal state, got {state.value}")
        with self._transaction() as tx:
            job = self._get_for_update(tx, job_id)
            self._transition(
                tx,
                job,
                state,
                finished_at=time.time(),
                exit_code=exit_code,
                error=error,
                stderr_tail=stderr_tail,
            )
        return self.get_job(job_id)

    def request_cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: at once if queued, through the runner if running.

        Repeated requests change nothing, and a finished job is returned as it is.
        """
        now = time.time()
        with self._transaction() as tx:
            job = self._get_for_update(tx, job_id)
            if job.state is JobState.QUEUED:
                self._transition(tx, job, JobState.CANCELLED, finished_at=now)
                tx.execute(
                    "UPDATE jobs SET cancel_requested_at = ? WHERE id = ?",
                    (now, job_id),
                )
            elif job.state is JobState.RUNNING and job.cancel_requested_at is None:
                tx.execute(
                    "UPDATE jobs SET cancel_requested_at = ? WHERE id = ?",
                    (now, job_id),
                )
                self._append_event(tx, job_id, "cancel_requested", {}, now)
        return self.get_job(job_id)

    def append_event(self, job_id: str, event_type: str, data: dict[str, Any]) -> None:
        """Append one event, such as a signal the runner sent, to a job's log."""
        with self._transaction() as tx:
            self._get_for_update(tx, job_id)
            self._append_event(tx, job_id, event_type, data, time.time())

    def append_metrics(
        self, job_id: str, records: list[dict[str, Any]], new_offset: int
    ) -> None:
        """Append metrics.jsonl records as events and advance the read offset."""
        now = time.time()
        with self._transaction() as tx:
            for record in records:
                self._append_event(tx, job_id, "metrics", record, now)
            tx.execute(
                "UPDATE jobs SET metrics_offset = ? WHERE id = ?", (new_offset, job_id)
            )

    # Helpers that run inside a caller's transaction

    def _get_for_update(self, tx: sqlite3.Connection, job_id: str) -> JobRecord:
        row = tx.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return job_from_row(row)

    def _transition(
        self,
        tx: sqlite3.Connection,
        job: JobRecord,
        target: JobState,
        **fields: Any,
    ) -> None:
        if target not in ALLOWED_TRANSITIONS[job.state]:
            raise InvalidTransitionError(job.id, job.state, target)
        assignments = ", ".join(f"{name} = ?" for name in ["state", *fields])
        tx.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ?",
            (target.value, *fields.values(), job.id),
        )
        data: dict[str, Any] = {"state": target.value, "previous": job.state.value}
        for name in ("exit_code", "error"):
            if fields.get(name) is not None:
                data[name] = fields[name]
        self._append_event(tx, job.id, "state", data, time.time())
        logger.info("Job %s: %s -> %s", job.id, job.state.value, target.value)

    def _append_event(
        self,
        tx: sqlite3.Connection,
        job_id: str,
        event_type: str,
        data: dict[str, Any],
        created_at: float,
    ) -> None:
        seq = tx.execute(
            "UPDATE jobs SET next_event_seq = next_event_seq + 1 WHERE id = ?"
            " RETURNING next_event_seq - 1",
            (job_id,),
        ).fetchone()[0]
        tx.execute(
            "INSERT INTO events (job_id, seq, type, created_at, data)"
            " VALUES (?, ?, ?, ?, ?)",
            (job_id, seq, event_type, created_at, json.dumps(data)),
        )
