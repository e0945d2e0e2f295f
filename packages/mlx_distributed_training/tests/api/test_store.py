"""Tests of the SQLite job store: states, events, paging and crash safety."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlx_distributed_training.api.records import (
    JobNotFoundError,
    OutputDirInUseError,
)
from mlx_distributed_training.api.states import InvalidTransitionError, JobState
from mlx_distributed_training.api.store import JobStore, UnsupportedSchemaError


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite3")


def _create(store: JobStore, job_id: str, tmp_path: Path):
    return store.create_job(
        job_id, {"max_steps": 2}, tmp_path / job_id, tmp_path / job_id
    )


def _event_types(store: JobStore, job_id: str) -> list[tuple[str, dict]]:
    return [(e.type, e.data) for e in store.list_events(job_id, after=0, limit=100)]


def test_new_job_is_queued_with_one_state_event(store, tmp_path):
    job = _create(store, "job-a", tmp_path)

    assert job.state is JobState.QUEUED
    assert job.config == {"max_steps": 2}
    assert job.started_at is None
    assert _event_types(store, "job-a") == [("state", {"state": "queued"})]


def test_database_uses_wal_journal(store):
    mode = store._connection().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_claim_takes_oldest_queued_job(store, tmp_path):
    _create(store, "job-a", tmp_path)
    _create(store, "job-b", tmp_path)

    claimed = store.claim_next_queued()

    assert claimed.id == "job-a"
    assert claimed.state is JobState.RUNNING
    assert claimed.started_at is not None
    assert store.get_job("job-b").state is JobState.QUEUED


def test_claim_returns_none_without_queued_jobs(store):
    assert store.claim_next_queued() is None


def test_finish_records_exit_code_and_error(store, tmp_path):
    _create(store, "job-a", tmp_path)
    store.claim_next_queued()

    job = store.finish_job(
        "job-a", JobState.FAILED, exit_code=3, error="boom", stderr_tail="last"
    )

    assert job.state is JobState.FAILED
    assert job.exit_code == 3
    assert job.error == "boom"
    assert job.stderr_tail == "last"
    assert job.finished_at >= job.started_at
    assert _event_types(store, "job-a")[-1] == (
        "state",
        {"state": "failed", "previous": "running", "exit_code": 3, "error": "boom"},
    )


def test_finished_job_cannot_change_state(store, tmp_path):
    _create(store, "job-a", tmp_path)
    store.claim_next_queued()
    store.finish_job("job-a", JobState.SUCCEEDED, exit_code=0)

    with pytest.raises(InvalidTransitionError) as raised:
        store.finish_job("job-a", JobState.FAILED)

    assert str(raised.value) == "Job job-a cannot move from succeeded to failed"
    assert store.get_job("job-a").state is JobState.SUCCEEDED


def test_queued_job_cannot_succeed_without_running(store, tmp_path):
    _create(store, "job-a", tmp_path)

    with pytest.raises(InvalidTransitionError):
        store.finish_job("job-a", JobState.SUCCEEDED, exit_code=0)


def test_cancel_of_queued_job_is_immediate_and_idempotent(store, tmp_path):
    _create(store, "job-a", tmp_path)

    first = store.request_cancel("job-a")
    second = store.request_cancel("job-a")

    assert first.state is JobState.CANCELLED
    assert second == first
    assert [t for t, _ in _event_types(store, "job-a")] == ["state", "state"]
    assert store.claim_next_queued() is None


def test_cancel_of_running_job_is_recorded_once(store, tmp_path):
    _create(store, "job-a", tmp_path)
    store.claim_next_queued()

    first = store.request_cancel("job-a")
    second = store.request_cancel("job-a")

    assert first.state is JobState.RUNNING
    assert first.cancel_requested_at is not None
    assert second.cancel_requested_at == first.cancel_requested_at
    types = [t for t, _ in _event_types(store, "job-a")]
    assert types == ["state", "state", "cancel_requested"]


def test_cancel_of_finished_job_changes_nothing(store, tmp_path):
    _create(store, "job-a", tmp_path)
    store.claim_next_queued()
    finished = store.finish_job("job-a", JobState.SUCCEEDED, exit_code=0)

    assert store.request_cancel("job-a") == finished


def test_active_job_output_dir_is_exclusive(store, tmp_path):
    store.create_job("job-a", {}, tmp_path / "job-a", tmp_path / "shared")

    with pytest.raises(OutputDirInUseError) as raised:
        store.create_job("job-b", {}, tmp_path / "job-b", tmp_path / "shared")

    assert str(raised.value) == (
        f"output_dir {tmp_path / 'shared'} is in use by job job-a, which is "
        "queued or running. Choose another output_dir or wait for that job to "
        "finish."
    )
    with pytest.raises(JobNotFoundError):
        store.get_job("job-b")


def test_finished_job_output_dir_can_be_reused(store, tmp_path):
    store.create_job("job-a", {}, tmp_path / "job-a", tmp_path / "shared")
    store.request_cancel("job-a")

    job = store.create_job("job-b", {}, tmp_path / "job-b", tmp_path / "shared")

    assert job.output_dir == tmp_path / "shared"


def test_unknown_job_raises_not_found(store):
    with pytest.raises(JobNotFoundError) as raised:
        store.get_job("job-missing")
    assert str(raised.value) == "Job job-missing not found"
    with pytest.raises(JobNotFoundError):
        store.request_cancel("job-missing")
    with pytest.raises(JobNotFoundError):
        store.list_events("job-missing", after=0, limit=10)


def test_list_jobs_pages_newest_first(store, tmp_path):
    for name in ("job-a", "job-b", "job-c"):
        _create(store, name, tmp_path)

    first, more_after_first = store.list_jobs(limit=2)
    second, more_after_second = store.list_jobs(limit=2, after=first[-1].id)

    assert [job.id for job in first] == ["job-c", "job-b"]
    assert more_after_first
    assert [job.id for job in second] == ["job-a"]
    assert not more_after_second


def test_list_jobs_filters_by_state(store, tmp_path):
    for name in ("job-a", "job-b"):
        _create(store, name, tmp_path)
    store.claim_next_queued()

    running, _ = store.list_jobs(limit=10, state=JobState.RUNNING)

    assert [job.id for job in running] == ["job-a"]


def test_list_jobs_rejects_unknown_cursor(store):
    with pytest.raises(JobNotFoundError):
        store.list_jobs(limit=10, after="job-missing")


def test_events_page_by_cursor(store, tmp_path):
    _create(store, "job-a", tmp_path)
    store.append_metrics("job-a", [{"step": i} for i in range(5)], new_offset=50)

    first = store.list_events("job-a", after=0, limit=3)
    rest = store.list_events("job-a", after=first[-1].seq, limit=10)

    assert [e.seq for e in first] == [1, 2, 3]
    assert [e.seq for e in rest] == [4, 5, 6]
    assert [e.data for e in rest] == [{"step": 2}, {"step": 3}, {"step": 4}]
    assert store.get_job("job-a").metrics_offset == 50


def test_event_cursors_are_per_job(store, tmp_path):
    _create(store, "job-a", tmp_path)
    _create(store, "job-b", tmp_path)
    store.append_metrics("job-a", [{"step": 1}], new_offset=10)
    store.append_metrics("job-b", [{"step": 1}], new_offset=10)

    assert [e.seq for e in store.list_events("job-b", after=0, limit=10)] == [1, 2]


def test_count_by_state_lists_every_state(store, tmp_path):
    _create(store, "job-a", tmp_path)

    counts = store.count_by_state()

    assert counts[JobState.QUEUED] == 1
    assert counts[JobState.RUNNING] == 0
    assert set(counts) == set(JobState)


def test_jobs_survive_reopening_the_database(store, tmp_path):
    _create(store, "job-a", tmp_path)
    store.close()

    reopened = JobStore(tmp_path / "jobs.sqlite3")

    assert reopened.get_job("job-a").state is JobState.QUEUED


def test_crash_inside_transaction_leaves_no_partial_change(store, tmp_path):
    _create(store, "job-a", tmp_path)
    store.close()
    # A separate process writes half of a state change, then dies without
    # committing, as a server killed mid-write would.
    script = textwrap.dedent(
        f"""
        import os
        from mlx_distributed_training.api.store import JobStore
        store = JobStore({str(tmp_path / "jobs.sqlite3")!r})
        with store._transaction() as tx:
            tx.execute("UPDATE jobs SET state = 'running' WHERE id = 'job-a'")
            os._exit(9)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False)

    reopened = JobStore(tmp_path / "jobs.sqlite3")
    assert result.returncode == 9
    assert reopened.get_job("job-a").state is JobState.QUEUED
    assert len(reopened.list_events("job-a", after=0, limit=10)) == 1


def test_newer_schema_version_is_rejected(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    JobStore(path)._connection().execute("PRAGMA user_version = 99")

    with pytest.raises(UnsupportedSchemaError) as raised:
        JobStore(path)

    assert str(raised.value) == (
        f"Job database {path} has schema version 99, but this server reads "
        "version 1. Pass a new --db path."
    )
