"""FastAPI application: wires the store, the runner and the routes together."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib.metadata import version

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from mlx_distributed_training.configs.training_config import ConfigError

from .instance_lock import InstanceLock
from .records import JobNotFoundError, OutputDirInUseError
from .recovery import recover_interrupted_jobs
from .routes import router
from .runner import JobRunner
from .settings import ServerSettings
from .store import JobStore

logger = logging.getLogger(__name__)


def _error(status_code: int, detail: str, problems: list[str] | None = None):
    body: dict = {"detail": detail}
    if problems is not None:
        body["problems"] = problems
    return JSONResponse(status_code=status_code, content=body)


async def _job_not_found(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, JobNotFoundError)
    return _error(404, f"Job {error.job_id} not found")


async def _invalid_config(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ConfigError)
    logger.info("Rejected a job config with %s problem(s)", len(error.problems))
    return _error(422, "Invalid training config", list(error.problems))


async def _output_dir_in_use(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, OutputDirInUseError)
    logger.info("Rejected a job: %s", error)
    return _error(409, str(error))


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        problems.append(f"{location}: {item['msg']}")
    return _error(422, "Invalid request", problems)


def create_app(settings: ServerSettings) -> FastAPI:
    """Build the app, whose store and runner start and stop with it."""
    settings = replace(
        settings, db=settings.db.absolute(), jobs_dir=settings.jobs_dir.absolute()
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lock = InstanceLock(settings.db)
        lock.acquire()
        try:
            settings.jobs_dir.mkdir(parents=True, exist_ok=True)
            store = JobStore(settings.db)
            recovered = await asyncio.to_thread(
                recover_interrupted_jobs, store, settings.cancel_grace_seconds
            )
            if recovered:
                logger.warning("Marked %s interrupted job(s) as ended", len(recovered))
            runner = JobRunner(
                store,
                max_concurrent_jobs=settings.max_concurrent_jobs,
                cancel_grace_seconds=settings.cancel_grace_seconds,
            )
            app.state.settings = settings
            app.state.store = store
            app.state.runner = runner
            runner.start()
            logger.info(
                "Serving jobs from %s (job folders in %s)",
                settings.db,
                settings.jobs_dir,
            )
            try:
                yield
            finally:
                await asyncio.to_thread(runner.stop)
                store.close()
        finally:
            lock.release()

    app = FastAPI(
        title="mlx-train-serve",
        summary="Queue, run and watch mlx-train fine-tuning jobs.",
        version=version("mlx-distributed-training"),
        lifespan=lifespan,
    )
    app.add_exception_handler(JobNotFoundError, _job_not_found)
    app.add_exception_handler(ConfigError, _invalid_config)
    app.add_exception_handler(OutputDirInUseError, _output_dir_in_use)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(router)
    return app
