"""Tests of the job API's responses that need no training process."""

import sqlite3
import subprocess
import sys
import time
from datetime import datetime

import pytest


@pytest.fixture
def client(finished_jobs_server):
    return finished_jobs_server.client


def test_health_reports_job_counts(client):
    response = client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["runner_alive"] is True
    assert body["max_concurrent_jobs"] == 1
    assert body["jobs"]["succeeded"] == 3
    assert body["jobs"]["running"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs/job-missing"),
        ("POST", "/v1/jobs/job-missing/cancel"),
        ("GET", "/v1/jobs/job-missing/events"),
        ("GET", "/v1/jobs/job-missing/checkpoints"),
        ("GET", "/v1/jobs/job-missing/logs"),
    ],
)
def test_unknown_job_id_is_404(client, method, path):
    response = client.request(method, path)

    assert response.status_code == 404
    assert response.json() == {"detail": "Job job-missing not found"}


def test_jobs_page_newest_first(client):
    first = client.get("/v1/jobs", params={"limit": 2}).json()
    second = client.get(
        "/v1/jobs", params={"limit": 2, "after": first["next_after"]}
    ).json()

    assert [job["id"] for job in first["jobs"]] == ["job-done2", "job-done1"]
    assert first["has_more"] is True
    assert first["next_after"] == "job-done1"
    assert [job["id"] for job in second["jobs"]] == ["job-done0"]
    assert second["has_more"] is False
    assert second["next_after"] is None


def test_jobs_filter_by_state(client):
    running = client.get("/v1/jobs", params={"state": "running"}).json()
    succeeded = client.get("/v1/jobs", params={"state": "succeeded"}).json()

    assert running["jobs"] == []
    assert len(succeeded["jobs"]) == 3


def test_jobs_unknown_cursor_is_400(client):
    response = client.get("/v1/jobs", params={"after": "job-missing"})

    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid after: job job-missing not found"}


def test_jobs_unknown_state_is_422(client):
    response = client.get("/v1/jobs", params={"state": "paused"})

    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "Invalid request"
    assert body["problems"] == [
        "query.state: Input should be 'queued', 'running', 'succeeded', "
        "'failed' or 'cancelled'"
    ]


def test_finished_job_has_timestamps_and_exit_code(client):
    job = client.get("/v1/jobs/job-done0").json()

    assert job["state"] == "succeeded"
    assert job["exit_code"] == 0
    assert job["error"] is None
    created, started, finished = (
        datetime.fromisoformat(job[name])
        for name in ("created_at", "started_at", "finished_at")
    )
    assert created <= started <= finished


def test_cancel_of_finished_job_returns_it_unchanged(client):
    before = client.get("/v1/jobs/job-done0").json()

    response = client.post("/v1/jobs/job-done0/cancel")

    assert response.status_code == 200
    assert response.json() == before


def test_events_page_by_cursor(client):
    first = client.get("/v1/jobs/job-done0/events", params={"limit": 2}).json()
    rest = client.get(
        "/v1/jobs/job-done0/events", params={"after": first["next_cursor"]}
    ).json()
    empty = client.get(
        "/v1/jobs/job-done0/events", params={"after": rest["next_cursor"]}
    ).json()

    assert [e["data"]["state"] for e in first["events"]] == ["queued", "running"]
    assert first["has_more"] is True
    assert [e["data"]["state"] for e in rest["events"]] == ["succeeded"]
    assert rest["has_more"] is False
    assert empty == {"events": [], "next_cursor": 3, "has_more": False}


def test_events_wait_returns_at_once_for_finished_job(client):
    started = time.monotonic()
    response = client.get(
        "/v1/jobs/job-done0/events", params={"after": 3, "wait_seconds": 30}
    )

    assert response.json() == {"events": [], "next_cursor": 3, "has_more": False}
    assert time.monotonic() - started < 5


def test_events_limit_out_of_range_is_422(client):
    response = client.get("/v1/jobs/job-done0/events", params={"limit": 0})

    assert response.status_code == 422
    assert response.json()["problems"] == [
        "query.limit: Input should be greater than or equal to 1"
    ]


def test_checkpoints_of_job_without_output_is_empty(client):
    response = client.get("/v1/jobs/job-done0/checkpoints")

    assert response.status_code == 200
    assert response.json() == {"checkpoints": []}


def test_logs_of_job_without_output_are_empty(client):
    response = client.get("/v1/jobs/job-done0/logs", params={"stream": "stderr"})

    assert response.status_code == 200
    assert response.text == ""


def test_logs_unknown_stream_is_422(client):
    response = client.get("/v1/jobs/job-done0/logs", params={"stream": "both"})

    assert response.status_code == 422
    assert response.json()["problems"] == [
        "query.stream: Input should be 'stdout' or 'stderr'"
    ]


def test_invalid_config_lists_each_problem(client):
    response = client.post(
        "/v1/jobs",
        json={"config": {"lora_rank": 0, "lr_schedule": "step", "max_step": 5}},
    )

    assert response.status_code == 422
    assert response.json() == {
        "detail": "Invalid training config",
        "problems": [
            "max_step: unknown key (did you mean max_steps?)",
            "lora_rank: got 0, expected >= 1",
            "lr_schedule: got 'step', expected one of constant, linear, cosine",
        ],
    }
    assert client.get("/health").json()["jobs"]["queued"] == 0


def test_wrongly_typed_config_value_is_422(client):
    response = client.post("/v1/jobs", json={"config": {"max_steps": "many"}})

    assert response.status_code == 422
    assert response.json()["problems"] == ["max_steps: got 'many', expected an integer"]


def test_body_without_config_object_is_422(client):
    missing = client.post("/v1/jobs", json={"steps": 3})
    not_object = client.post("/v1/jobs", json={"config": [1, 2]})

    assert missing.status_code == 422
    assert missing.json() == {
        "detail": "Invalid request",
        "problems": [
            "body.config: Field required",
            "body.steps: Extra inputs are not permitted",
        ],
    }
    assert not_object.status_code == 422
    assert not_object.json()["problems"] == [
        "body.config: Input should be a valid dictionary"
    ]


def test_server_with_newer_database_exits(tmp_path):
    db = tmp_path / "jobs.sqlite3"
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA user_version = 99")
    connection.close()

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_distributed_training.api.server",
            "--port",
            "0",
            "--db",
            str(db),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert (
        f"Job database {db} has schema version 99, but this server reads version "
        "1. Pass a new --db path."
    ) in result.stderr


def test_launch_options_are_checked(client, tmp_path):
    too_few = client.post("/v1/jobs", json={"config": {}, "num_processes": 0})
    missing = client.post(
        "/v1/jobs",
        json={"config": {}, "resume_from": str(tmp_path / "no-such-run")},
    )

    assert too_few.status_code == 422
    assert too_few.json()["problems"] == [
        "body.num_processes: Input should be greater than or equal to 1"
    ]
    assert missing.status_code == 422
    assert missing.json()["problems"] == [
        f"body.resume_from: Value error, folder {tmp_path / 'no-such-run'} not found"
    ]


def test_second_server_on_same_database_exits(finished_jobs_server):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_distributed_training.api.server",
            "--port",
            "0",
            "--db",
            str(finished_jobs_server.db),
            "--jobs-dir",
            str(finished_jobs_server.jobs_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert (
        f"Another mlx-train-serve process is using {finished_jobs_server.db}; "
        "stop it or pass a different --db"
    ) in result.stderr
