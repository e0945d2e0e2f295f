"""HTTP routes of the job API."""

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from .checkpoints import list_checkpoints
from .job_config import prepare_job_config
from .job_files import (
    STDERR_FILE_NAME,
    STDOUT_FILE_NAME,
    new_job_id,
    read_log_tail,
    write_config,
)
from .records import JobNotFoundError
from .runner import JobRunner
from .schemas import (
    CheckpointList,
    CheckpointPublic,
    ErrorBody,
    EventPage,
    EventPublic,
    Health,
    JobCreate,
    JobPage,
    JobPublic,
)
from .settings import ServerSettings
from .states import JobState
from .store import JobStore

logger = logging.getLogger(__name__)

router = APIRouter()

MAX_EVENT_WAIT_SECONDS = 60.0
MAX_LOG_LINES = 10_000
MAX_LOG_BYTES = 4 * 1024 * 1024
LOG_FILES = {"stdout": STDOUT_FILE_NAME, "stderr": STDERR_FILE_NAME}
EVENT_POLL_SECONDS = 0.25
# Cursors are SQLite integers, which are signed 64-bit.
MAX_CURSOR = 2**63 - 1

NOT_FOUND = {404: {"model": ErrorBody, "description": "No job has this id."}}


def _store(request: Request) -> JobStore:
    return request.app.state.store


def _runner(request: Request) -> JobRunner:
    return request.app.state.runner


def _settings(request: Request) -> ServerSettings:
    return request.app.state.settings


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "The runner has stopped."}},
)
def read_health(request: Request, response: Response) -> Health:
    """Report whether the runner is alive and how many jobs are in each state."""
    runner = _runner(request)
    if not runner.is_alive:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(
        status="ok" if runner.is_alive else "degraded",
        runner_alive=runner.is_alive,
        max_concurrent_jobs=runner.max_concurrent_jobs,
        jobs=_store(request).count_by_state(),
    )


@router.post(
    "/v1/jobs",
    response_model=JobPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        409: {
            "model": ErrorBody,
            "description": "output_dir is in use, or holds another run's checkpoints.",
        },
        422: {"model": ErrorBody, "description": "Invalid config."},
    },
)
def create_job(body: JobCreate, request: Request) -> JobPublic:
    """Validate a training config and queue a job that trains with it."""
    job_id = new_job_id()
    job_dir = _settings(request).jobs_dir / job_id
    config = prepare_job_config(body.config, job_dir)
    if body.resume_from is None:
        _reject_earlier_checkpoints(_output_dir(config))
    write_config(job_dir, config)
    try:
        job = _store(request).create_job(
            job_id,
            config,
            job_dir.absolute(),
            _output_dir(config),
            num_processes=body.num_processes,
            resume_from=None if body.resume_from is None else Path(body.resume_from),
        )
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    _runner(request).wake()
    logger.info("Job %s queued", job_id)
    return JobPublic.from_record(job)


def _output_dir(config: dict) -> Path:
    return Path(config["output_dir"])


def _reject_earlier_checkpoints(output_dir: Path) -> None:
    """Raise 409 when a new job would start over another run's checkpoints,
    which mlx-train itself refuses to overwrite."""
    earlier = list_checkpoints(output_dir)
    if earlier:
        newest = earlier[-1].path.name
        logger.info("Rejected a new job over the checkpoints in %s", output_dir)
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"output_dir {output_dir} already contains checkpoints of an earlier "
            f"run, the newest {newest}. Set resume_from to continue it, or "
            "choose another output_dir.",
        )


@router.get("/v1/jobs", response_model=JobPage)
def list_jobs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[
        str | None, Query(description="Id of the last job of the previous page.")
    ] = None,
    state: JobState | None = None,
) -> JobPage:
    """List jobs, newest first, optionally only those in one state."""
    try:
        jobs, has_more = _store(request).list_jobs(limit, after=after, state=state)
    except JobNotFoundError:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"Invalid after: job {after} not found"
        ) from None
    return JobPage(
        jobs=[JobPublic.from_record(job) for job in jobs],
        has_more=has_more,
        next_after=jobs[-1].id if has_more else None,
    )


@router.get("/v1/jobs/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
def read_job(job_id: str, request: Request) -> JobPublic:
    """Return one job."""
    return JobPublic.from_record(_store(request).get_job(job_id))


@router.post(
    "/v1/jobs/{job_id}/cancel",
    response_model=JobPublic,
    responses={
        **NOT_FOUND,
        202: {"model": JobPublic, "description": "The running job is stopping."},
    },
)
def cancel_job(job_id: str, request: Request, response: Response) -> JobPublic:
    """Cancel a job. Repeating the request changes nothing.

    A queued job is cancelled at once (200). A running job gets SIGTERM, then
    SIGKILL after the grace period, and the response (202) returns before it
    stops. A finished job is returned unchanged (200).
    """
    job = _store(request).request_cancel(job_id)
    if job.state is JobState.RUNNING:
        response.status_code = status.HTTP_202_ACCEPTED
        _runner(request).wake()
    return JobPublic.from_record(job)


@router.get("/v1/jobs/{job_id}/events", response_model=EventPage, responses=NOT_FOUND)
async def list_events(
    job_id: str,
    request: Request,
    after: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_CURSOR,
            description="Return events after this cursor.",
        ),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    wait_seconds: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_EVENT_WAIT_SECONDS,
            description="If no event follows the cursor yet, wait up to this "
            "many seconds for one (long polling). A finished job returns at once.",
        ),
    ] = 0,
) -> EventPage:
    """Return a job's events after a cursor, oldest first."""
    store = _store(request)
    deadline = time.monotonic() + wait_seconds
    while True:
        # Store calls run in the thread pool, but the wait between them
        # occupies no worker thread, so many clients can long-poll at once.
        events = await run_in_threadpool(store.list_events, job_id, after, limit + 1)
        if events or time.monotonic() >= deadline:
            break
        job = await run_in_threadpool(store.get_job, job_id)
        if job.state.is_terminal:
            # A finished job's last event is its final state change.
            break
        await asyncio.sleep(EVENT_POLL_SECONDS)
    page = events[:limit]
    return EventPage(
        events=[EventPublic.from_record(event) for event in page],
        next_cursor=page[-1].seq if page else after,
        has_more=len(events) > limit,
    )


@router.get(
    "/v1/jobs/{job_id}/checkpoints",
    response_model=CheckpointList,
    responses=NOT_FOUND,
)
def list_job_checkpoints(job_id: str, request: Request) -> CheckpointList:
    """List the checkpoints the job has saved so far, by step."""
    job = _store(request).get_job(job_id)
    return CheckpointList(
        checkpoints=[
            CheckpointPublic.from_info(info)
            for info in list_checkpoints(job.output_dir)
        ]
    )


@router.get(
    "/v1/jobs/{job_id}/logs",
    response_class=PlainTextResponse,
    responses=NOT_FOUND,
)
def read_job_logs(
    job_id: str,
    request: Request,
    stream: Annotated[
        Literal["stdout", "stderr"],
        Query(description="Which output of the training process to read."),
    ] = "stdout",
    tail_lines: Annotated[int, Query(ge=1, le=MAX_LOG_LINES)] = 200,
) -> str:
    """Return the last lines the training process wrote to stdout or stderr.

    mlx-train prints its progress lines and summary to stdout, and its log
    messages and errors to stderr.
    """
    job = _store(request).get_job(job_id)
    return read_log_tail(job.job_dir / LOG_FILES[stream], tail_lines, MAX_LOG_BYTES)
