"""Records read from the job store, and the error for an unknown job id."""

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .states import JobState


class JobNotFoundError(LookupError):
    """Raised when no job has the given id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job {job_id} not found")
        self.job_id = job_id


class OutputDirInUseError(RuntimeError):
    """Raised when a queued or running job already writes to an output folder."""

    def __init__(self, output_dir: Path, other_job_id: str) -> None:
        super().__init__(
            f"output_dir {output_dir} is in use by job {other_job_id}, which is "
            "queued or running. Choose another output_dir or wait for that job "
            "to finish."
        )
        self.output_dir = output_dir
        self.other_job_id = other_job_id


@dataclass(frozen=True)
class JobRecord:
    """One row of the jobs table, with the config decoded."""

    id: str
    state: JobState
    config: dict[str, Any]
    job_dir: Path
    output_dir: Path
    num_processes: int
    resume_from: Path | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    error: str | None
    stderr_tail: str | None
    pid: int | None
    process_start_time: int | None
    cancel_requested_at: float | None
    metrics_offset: int


@dataclass(frozen=True)
class EventRecord:
    """One job event: a state change, a cancel request or a metrics.jsonl line."""

    job_id: str
    seq: int
    type: str
    created_at: float
    data: dict[str, Any]


def job_from_row(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        state=JobState(row["state"]),
        config=json.loads(row["config"]),
        job_dir=Path(row["job_dir"]),
        output_dir=Path(row["output_dir"]),
        num_processes=row["num_processes"],
        resume_from=None if row["resume_from"] is None else Path(row["resume_from"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        exit_code=row["exit_code"],
        error=row["error"],
        stderr_tail=row["stderr_tail"],
        pid=row["pid"],
        process_start_time=row["process_start_time"],
        cancel_requested_at=row["cancel_requested_at"],
        metrics_offset=row["metrics_offset"],
    )
