"""Recovery of jobs that an earlier server left in the running state."""

import logging

from .job_files import METRICS_FILE_NAME, read_stderr_tail
from .metrics_tail import read_new_records
from .processes import stop_orphan_process_group
from .records import JobRecord
from .states import JobState
from .store import JobStore

logger = logging.getLogger(__name__)


def recover_interrupted_jobs(store: JobStore, grace_seconds: float) -> list[str]:
    """End every job still marked running, and return their ids.

    Call this before the runner starts: a job is only marked running while a
    server supervises it, so any found now belong to a server that died. The
    job's process is stopped if it still runs, because the new server cannot
    learn its exit code and a rerun would race it for the same output folder.
    Then its metrics lines are read one last time, and the job is marked
    failed with the reason, or cancelled if a cancel had been requested.
    """
    recovered = []
    for job in store.jobs_in_state(JobState.RUNNING):
        was_running = job.pid is not None and stop_orphan_process_group(
            job.pid, job.process_start_time, grace_seconds
        )
        # Read the metrics after the stop, so lines written meanwhile count.
        offset = job.metrics_offset
        while True:
            records, new_offset = read_new_records(
                job.output_dir / METRICS_FILE_NAME, offset
            )
            if new_offset == offset:
                break
            store.append_metrics(job.id, records, new_offset)
            offset = new_offset

        if job.cancel_requested_at is not None:
            store.finish_job(job.id, JobState.CANCELLED)
        else:
            store.finish_job(
                job.id,
                JobState.FAILED,
                error=_interruption_reason(job, was_running),
                stderr_tail=read_stderr_tail(job.job_dir),
            )
        logger.warning(
            "Job %s was left running by an earlier server, and its process %s %s",
            job.id,
            job.pid,
            "was stopped" if was_running else "had already exited",
        )
        recovered.append(job.id)
    return recovered


def _interruption_reason(job: JobRecord, was_running: bool) -> str:
    if job.pid is None:
        return "The server stopped before the training process started"
    if was_running:
        return (
            "The server stopped while the job was running. Its training process "
            f"(pid {job.pid}) was stopped when the server restarted"
        )
    return (
        "The server stopped while the job was running. Its training process "
        f"(pid {job.pid}) had exited, so its exit code is unknown"
    )
