"""Request and response bodies of the job API."""

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .checkpoints import CheckpointInfo
from .records import EventRecord, JobRecord
from .states import JobState

# Upper bound on local ranks per job, as a guard against a typo such as 800.
MAX_PROCESSES = 64


def _timestamp(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


class JobCreate(BaseModel):
    """Body of POST /v1/jobs."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(
        description="Training config, with the keys of an `mlx-train` YAML file. "
        "`output_dir` defaults to the job's own folder."
    )
    num_processes: int = Field(
        1,
        ge=1,
        le=MAX_PROCESSES,
        description="Local ranks to train with, started through mlx.launch "
        "(`mlx-train -n`).",
    )
    resume_from: str | None = Field(
        None,
        description="Run folder or checkpoint folder to continue from "
        "(`mlx-train --resume`). Step numbering, optimizer state and data "
        "position continue from its newest checkpoint.",
    )

    @field_validator("resume_from")
    @classmethod
    def _resume_folder_exists(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not Path(value).is_dir():
            raise ValueError(f"folder {value} not found")
        # The trainer runs in the server's working folder too, but an absolute
        # path keeps the stored job meaningful if that ever changes.
        return os.path.abspath(value)


class JobPublic(BaseModel):
    """A job as the API returns it."""

    id: str
    state: JobState
    config: dict[str, Any]
    output_dir: str
    num_processes: int
    resume_from: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    exit_code: int | None = Field(
        description="Exit status of the training process, negative for a signal."
    )
    error: str | None
    stderr_tail: str | None = Field(
        description="Last lines the training process wrote to stderr, on failure."
    )
    pid: int | None

    @classmethod
    def from_record(cls, job: JobRecord) -> "JobPublic":
        return cls(
            id=job.id,
            state=job.state,
            config=job.config,
            output_dir=str(job.output_dir),
            num_processes=job.num_processes,
            resume_from=None if job.resume_from is None else str(job.resume_from),
            created_at=_timestamp(job.created_at),
            started_at=_timestamp(job.started_at),
            finished_at=_timestamp(job.finished_at),
            cancel_requested_at=_timestamp(job.cancel_requested_at),
            exit_code=job.exit_code,
            error=job.error,
            stderr_tail=job.stderr_tail,
            pid=job.pid,
        )


class JobPage(BaseModel):
    """One page of jobs, newest first."""

    jobs: list[JobPublic]
    has_more: bool
    next_after: str | None = Field(
        description="Pass as `after` to fetch the next page. Null on the last page."
    )


class EventPublic(BaseModel):
    """One job event.

    `type` is `state` (a state change), `cancel_requested`, `signal` (a signal
    the runner sent to the job's processes) or `metrics` (one metrics.jsonl
    record, unchanged, in `data`).
    """

    cursor: int = Field(description="Position of the event in the job's log.")
    type: str
    created_at: datetime
    data: dict[str, Any]

    @classmethod
    def from_record(cls, event: EventRecord) -> "EventPublic":
        return cls(
            cursor=event.seq,
            type=event.type,
            created_at=_timestamp(event.created_at),
            data=event.data,
        )


class EventPage(BaseModel):
    """Events after a cursor, oldest first."""

    events: list[EventPublic]
    next_cursor: int = Field(
        description="Pass as `after` to fetch the events that follow this page."
    )
    has_more: bool


class CheckpointPublic(BaseModel):
    """One checkpoint, with the losses from its trainer_state.json."""

    step: int
    train_loss: float | None
    valid_loss: float | None
    path: str

    @classmethod
    def from_info(cls, info: CheckpointInfo) -> "CheckpointPublic":
        return cls(
            step=info.step,
            train_loss=info.train_loss,
            valid_loss=info.valid_loss,
            path=str(info.path),
        )


class CheckpointList(BaseModel):
    checkpoints: list[CheckpointPublic]


class Health(BaseModel):
    status: str
    runner_alive: bool
    max_concurrent_jobs: int
    jobs: dict[JobState, int]


class ErrorBody(BaseModel):
    """Body of every error response."""

    detail: str
    problems: list[str] = Field(
        default_factory=list,
        description="Each invalid key or field with what was given and allowed.",
    )
