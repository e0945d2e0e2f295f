"""Job runner: starts queued jobs as `mlx-train` processes and supervises them.

One background thread does all the work in short ticks: it copies new
metrics.jsonl lines into the job's events, signals jobs whose cancel was
requested, records how finished processes ended, and starts queued jobs while
fewer than `max_concurrent_jobs` run. Routes only write to the store and call
`wake()`, so every process is handled by this one thread.
"""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .job_files import (
    CONFIG_FILE_NAME,
    METRICS_FILE_NAME,
    STDERR_FILE_NAME,
    STDOUT_FILE_NAME,
    read_stderr_tail,
)
from .metrics_tail import read_new_records
from .processes import process_start_time, signal_process_group
from .records import JobRecord
from .states import JobState
from .store import JobStore

logger = logging.getLogger(__name__)

TRAIN_MODULE = "mlx_distributed_training.cli.train"


@dataclass
class _ActiveJob:
    """A job whose process this runner started and has not yet reaped."""

    job_id: str
    process: subprocess.Popen[bytes]
    job_dir: Path
    metrics_path: Path
    metrics_offset: int
    # Inode of the metrics.jsonl that metrics_offset points into, or None.
    metrics_inode: int | None
    sigterm_sent_at: float | None = None
    sigkill_sent: bool = False


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"Training process was killed by {name}"
    return f"Training process exited with code {returncode}"


class JobRunner:
    """Runs queued jobs, at most `max_concurrent_jobs` at a time."""

    def __init__(
        self,
        store: JobStore,
        max_concurrent_jobs: int = 1,
        cancel_grace_seconds: float = 10.0,
        poll_interval_seconds: float = 0.25,
        python_executable: str = sys.executable,
    ) -> None:
        if max_concurrent_jobs < 1:
            raise ValueError(
                f"max_concurrent_jobs must be at least 1, got {max_concurrent_jobs}"
            )
        self._store = store
        self.max_concurrent_jobs = max_concurrent_jobs
        self.cancel_grace_seconds = cancel_grace_seconds
        self._poll_interval = poll_interval_seconds
        self._python = python_executable
        self._active: dict[str, _ActiveJob] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="mlx-train-serve-runner", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """Make the runner act now instead of at its next tick."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the loop, then stop every running job and mark it failed.

        The jobs cannot outlive the server in a useful way, because nothing
        would record how they end.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        active_jobs = list(self._active.values())
        self._stop_processes(active_jobs)
        for active in active_jobs:
            self._ingest_metrics(active, drain=True)
            self._finish(
                active,
                active.process.returncode,
                shutdown_reason="The server shut down while the job was running",
            )
        self._store.close()

    def _run(self) -> None:
        logger.info(
            "Job runner started: at most %s concurrent job(s)",
            self.max_concurrent_jobs,
        )
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception:
                # A failed tick (for example a locked database) is retried at
                # the next one instead of ending the runner thread.
                logger.exception("Job runner tick failed")
            self._wake.wait(self._poll_interval)
            self._wake.clear()
        logger.info("Job runner stopped")

    def _tick(self) -> None:
        for active in list(self._active.values()):
            self._ingest_metrics(active)
            returncode = active.process.poll()
            if returncode is None:
                self._enforce_cancel(active)
            else:
                # Lines written just before the exit are read here.
                self._ingest_metrics(active, drain=True)
                self._finish(active, returncode)
        while len(self._active) < self.max_concurrent_jobs:
            if self._stopping.is_set():
                return
            job = self._store.claim_next_queued()
            if job is None:
                return
            self._launch(job)

    def _launch(self, job: JobRecord) -> None:
        command = [
            self._python,
            "-m",
            TRAIN_MODULE,
            "--config",
            str(job.job_dir / CONFIG_FILE_NAME),
        ]
        if job.num_processes > 1:
            command += ["-n", str(job.num_processes)]
        if job.resume_from is not None:
            command += ["--resume", str(job.resume_from)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        metrics_path = job.output_dir / METRICS_FILE_NAME
        try:
            # Lines already in metrics.jsonl belong to an earlier run that used
            # the same output folder, so this job's events start after them.
            metrics_stat = metrics_path.stat()
            metrics_offset, metrics_inode = metrics_stat.st_size, metrics_stat.st_ino
        except OSError:
            metrics_offset, metrics_inode = 0, None
        try:
            with (
                (job.job_dir / STDOUT_FILE_NAME).open("ab") as stdout,
                (job.job_dir / STDERR_FILE_NAME).open("ab") as stderr,
            ):
                # start_new_session: the job leads its own process group, so a
                # cancel can signal it and everything it started, and a Ctrl-C
                # aimed at the server does not reach it.
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    env=env,
                    start_new_session=True,
                )
        except OSError as error:
            logger.error("Job %s: could not start %s: %s", job.id, command, error)
            self._store.finish_job(
                job.id,
                JobState.FAILED,
                error=f"Could not start the training process: {error}",
            )
            return

        # Track the process before the next write, so a failed write cannot
        # leave it unsupervised.
        self._active[job.id] = _ActiveJob(
            job_id=job.id,
            process=process,
            job_dir=job.job_dir,
            metrics_path=metrics_path,
            metrics_offset=metrics_offset,
            metrics_inode=metrics_inode,
        )
        logger.info("Job %s: started pid %s: %s", job.id, process.pid, command)
        self._store.record_process(job.id, process.pid, process_start_time(process.pid))
        self._store.append_metrics(job.id, [], metrics_offset)

    def _ingest_metrics(self, active: _ActiveJob, drain: bool = False) -> None:
        """Copy new metrics.jsonl lines into events; with `drain`, all of them.

        A resumed trainer replaces metrics.jsonl with the earlier run's lines
        up to the resumed step, before it logs anything. The offset taken at
        launch means nothing in the new file, so it is read from the start,
        and the job's events then hold those earlier steps once too.
        """
        try:
            inode = active.metrics_path.stat().st_ino
        except OSError:
            inode = None
        if inode is not None and inode != active.metrics_inode:
            if active.metrics_inode is not None:
                logger.info(
                    "Job %s: %s was replaced, so it is read from the start",
                    active.job_id,
                    active.metrics_path,
                )
                # NOTE: the store keeps the offset but not the inode, so a
                # server that dies before this point recovers the job with an
                # offset into the old file.
                active.metrics_offset = 0
            active.metrics_inode = inode
        while True:
            records, offset = read_new_records(
                active.metrics_path, active.metrics_offset
            )
            if offset == active.metrics_offset:
                return
            self._store.append_metrics(active.job_id, records, offset)
            active.metrics_offset = offset
            if not drain:
                return

    def _enforce_cancel(self, active: _ActiveJob) -> None:
        job = self._store.get_job(active.job_id)
        if job.cancel_requested_at is None:
            return
        now = time.monotonic()
        if active.sigterm_sent_at is None:
            signal_process_group(active.process.pid, signal.SIGTERM)
            active.sigterm_sent_at = now
            self._store.append_event(active.job_id, "signal", {"signal": "SIGTERM"})
        elif (
            not active.sigkill_sent
            and now - active.sigterm_sent_at >= self.cancel_grace_seconds
        ):
            signal_process_group(active.process.pid, signal.SIGKILL)
            active.sigkill_sent = True
            self._store.append_event(active.job_id, "signal", {"signal": "SIGKILL"})

    def _stop_processes(self, active_jobs: list[_ActiveJob]) -> None:
        """Stop and reap job processes, all within one grace period.

        Each group gets SIGTERM, and those still running when the grace period
        ends get SIGKILL.
        """
        for active in active_jobs:
            if active.process.poll() is None:
                signal_process_group(active.process.pid, signal.SIGTERM)
                active.sigterm_sent_at = time.monotonic()
        deadline = time.monotonic() + self.cancel_grace_seconds
        for active in active_jobs:
            try:
                active.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_process_group(active.process.pid, signal.SIGKILL)
                active.process.wait()

    def _finish(
        self,
        active: _ActiveJob,
        returncode: int,
        shutdown_reason: str | None = None,
    ) -> None:
        # Stop anything the trainer left running in its group. The leader has
        # been reaped, so a live group can only contain its leftover children.
        signal_process_group(active.process.pid, signal.SIGKILL)

        # A job that ended before the runner signalled it keeps its own
        # outcome, even if a cancel or a shutdown was already under way.
        job = self._store.get_job(active.job_id)
        signalled = active.sigterm_sent_at is not None
        if signalled and job.cancel_requested_at is not None:
            self._store.finish_job(job.id, JobState.CANCELLED, exit_code=returncode)
        elif not signalled and returncode == 0:
            self._store.finish_job(job.id, JobState.SUCCEEDED, exit_code=0)
        else:
            if signalled and shutdown_reason is not None:
                error = shutdown_reason
            else:
                error = _describe_exit(returncode)
            self._store.finish_job(
                job.id,
                JobState.FAILED,
                exit_code=returncode,
                error=error,
                stderr_tail=read_stderr_tail(active.job_dir),
            )
        # Removed only now, so a failed write is retried at the next tick.
        del self._active[active.job_id]
