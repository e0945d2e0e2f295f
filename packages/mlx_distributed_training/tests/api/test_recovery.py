"""Tests of recovering jobs that a dead server left in the running state."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlx_distributed_training.api.processes import process_start_time
from mlx_distributed_training.api.recovery import recover_interrupted_jobs
from mlx_distributed_training.api.states import JobState
from mlx_distributed_training.api.store import JobStore

needs_proc = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="needs /proc for start times"
)


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite3")


@pytest.fixture
def orphan():
    """A process in its own session, like a job whose server has died."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        start_new_session=True,
    )
    yield process
    process.kill()
    process.wait()


def _running_job(store: JobStore, tmp_path: Path, job_id: str = "job-a"):
    job_dir = tmp_path / job_id
    job_dir.mkdir()
    store.create_job(job_id, {}, job_dir, job_dir)
    store.claim_next_queued()
    return job_dir


def test_live_orphan_is_stopped_and_job_failed(store, tmp_path, orphan):
    _running_job(store, tmp_path)
    store.record_process("job-a", orphan.pid, process_start_time(orphan.pid))

    recovered = recover_interrupted_jobs(store, grace_seconds=5)

    job = store.get_job("job-a")
    assert recovered == ["job-a"]
    assert orphan.wait(timeout=10) == -15
    assert job.state is JobState.FAILED
    assert job.error == (
        "The server stopped while the job was running. Its training process "
        f"(pid {orphan.pid}) was stopped when the server restarted"
    )


def test_orphan_ignoring_sigterm_is_killed(store, tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)",
        ],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    assert process.stdout.readline() == b"ready\n"
    _running_job(store, tmp_path)
    store.record_process("job-a", process.pid, process_start_time(process.pid))

    recover_interrupted_jobs(store, grace_seconds=0.5)

    assert process.wait(timeout=10) == -9


def test_exited_process_is_reported_as_exited(store, tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    _running_job(store, tmp_path)
    store.record_process("job-a", process.pid, None)

    recover_interrupted_jobs(store, grace_seconds=5)

    job = store.get_job("job-a")
    assert job.state is JobState.FAILED
    assert job.error.endswith("had exited, so its exit code is unknown")


@needs_proc
def test_reused_pid_is_not_signalled(store, tmp_path, orphan):
    _running_job(store, tmp_path)
    wrong_start_time = process_start_time(orphan.pid) - 1
    store.record_process("job-a", orphan.pid, wrong_start_time)

    recover_interrupted_jobs(store, grace_seconds=5)

    assert orphan.poll() is None
    assert store.get_job("job-a").state is JobState.FAILED


def test_job_without_process_failed_before_start(store, tmp_path):
    _running_job(store, tmp_path)

    recover_interrupted_jobs(store, grace_seconds=5)

    job = store.get_job("job-a")
    assert job.error == "The server stopped before the training process started"


def test_requested_cancel_ends_as_cancelled(store, tmp_path, orphan):
    _running_job(store, tmp_path)
    store.record_process("job-a", orphan.pid, process_start_time(orphan.pid))
    store.request_cancel("job-a")

    recover_interrupted_jobs(store, grace_seconds=5)

    assert store.get_job("job-a").state is JobState.CANCELLED
    assert orphan.wait(timeout=10) == -15


def test_unread_metrics_and_stderr_are_kept(store, tmp_path):
    job_dir = _running_job(store, tmp_path)
    (job_dir / "metrics.jsonl").write_text(json.dumps({"step": 1}) + "\n")
    (job_dir / "stderr.log").write_text("loading\nstep 1 done\n")

    recover_interrupted_jobs(store, grace_seconds=5)

    events = store.list_events("job-a", after=0, limit=10)
    assert [e.type for e in events] == ["state", "state", "metrics", "state"]
    assert events[2].data == {"step": 1}
    assert store.get_job("job-a").stderr_tail == "loading\nstep 1 done"


def test_queued_and_finished_jobs_are_left_alone(store, tmp_path):
    _running_job(store, tmp_path, "job-a")
    store.finish_job("job-a", JobState.SUCCEEDED, exit_code=0)
    store.create_job("job-b", {}, tmp_path / "job-b", tmp_path / "job-b")

    assert recover_interrupted_jobs(store, grace_seconds=5) == []
    assert store.get_job("job-a").state is JobState.SUCCEEDED
    assert store.get_job("job-b").state is JobState.QUEUED
