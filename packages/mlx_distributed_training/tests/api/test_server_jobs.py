"""End-to-end tests: real `mlx-train` jobs run through a real server process."""

import json
from pathlib import Path

import pytest

TERMINAL = {"succeeded", "failed", "cancelled"}


def _is_terminal(job: dict) -> bool:
    return job["state"] in TERMINAL


def _has_train_metrics(server, job_id: str) -> bool:
    return any(
        event["type"] == "metrics" and event["data"]["event"] == "train"
        for event in server.all_events(job_id)
    )


def _live_group_members(pgid: int) -> list[int]:
    """Return the pids of live (not zombie) processes in a process group."""
    members = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:
            continue
        # Fields after the command name: state, ppid, pgrp, ...
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat_path.parent.name))
    return members


def _wait_for_training(server, job_id: str) -> dict:
    """Wait until the job has reported at least one train step."""
    return server.wait_for_job(
        job_id,
        lambda job: _is_terminal(job) or _has_train_metrics(server, job_id),
    )


def test_job_trains_to_success(start_server, train_config):
    server = start_server()

    created = server.client.post("/v1/jobs", json={"config": train_config()})
    # Long polling returns as soon as the runner starts the job.
    next_events = server.client.get(
        f"/v1/jobs/{created.json()['id']}/events",
        params={"after": 1, "wait_seconds": 30},
    ).json()
    job = server.wait_for_job(created.json()["id"], _is_terminal)

    assert created.status_code == 201
    assert created.json()["state"] == "queued"
    assert next_events["events"][0]["data"] == {
        "state": "running",
        "previous": "queued",
    }
    assert job["state"] == "succeeded", job
    assert job["exit_code"] == 0
    assert job["error"] is None
    job_dir = server.jobs_dir / job["id"]
    assert job["output_dir"] == str(job_dir)
    assert (job_dir / "config.yaml").is_file()
    assert (job_dir / "adapter" / "adapters.safetensors").is_file()

    events = server.all_events(job["id"])
    states = [e["data"]["state"] for e in events if e["type"] == "state"]
    metrics = [e["data"] for e in events if e["type"] == "metrics"]
    train_steps = [m["step"] for m in metrics if m["event"] == "train"]
    assert states == ["queued", "running", "succeeded"]
    assert train_steps == [1, 2, 3]
    assert metrics[-1]["event"] == "summary"
    assert [e["cursor"] for e in events] == list(range(1, len(events) + 1))

    stdout = server.client.get(
        f"/v1/jobs/{job['id']}/logs", params={"stream": "stdout", "tail_lines": 50}
    )
    assert stdout.status_code == 200
    assert "step 3/3" in stdout.text

    checkpoints = server.client.get(f"/v1/jobs/{job['id']}/checkpoints").json()
    train_loss = {m["step"]: m["loss"] for m in metrics if m["event"] == "train"}
    valid_loss = {m["step"]: m["valid_loss"] for m in metrics if m["event"] == "eval"}
    assert [c["step"] for c in checkpoints["checkpoints"]] == [2, 3]
    for checkpoint in checkpoints["checkpoints"]:
        assert checkpoint["train_loss"] == train_loss[checkpoint["step"]]
        assert checkpoint["valid_loss"] == valid_loss[checkpoint["step"]]
        assert Path(checkpoint["path"]).name == f"step-{checkpoint['step']:08d}"


def test_rerun_in_same_output_dir_reports_own_metrics(
    start_server, train_config, tmp_path
):
    server = start_server()
    # Without checkpoints in the folder, a second run may start over there.
    config = train_config(
        output_dir=str(tmp_path / "shared-output"), save_interval_steps=0
    )

    first = server.client.post("/v1/jobs", json={"config": config}).json()
    server.wait_for_job(first["id"], _is_terminal)
    second = server.client.post("/v1/jobs", json={"config": config}).json()
    job = server.wait_for_job(second["id"], _is_terminal)

    assert job["state"] == "succeeded"
    for job_id in (first["id"], second["id"]):
        train_steps = [
            e["data"]["step"]
            for e in server.all_events(job_id)
            if e["type"] == "metrics" and e["data"]["event"] == "train"
        ]
        assert train_steps == [1, 2, 3]


def test_new_job_over_checkpoints_is_rejected(start_server, train_config, tmp_path):
    server = start_server()
    config = train_config(output_dir=str(tmp_path / "output"))
    first = server.client.post("/v1/jobs", json={"config": config}).json()
    first = server.wait_for_job(first["id"], _is_terminal)
    assert first["state"] == "succeeded"

    clash = server.client.post("/v1/jobs", json={"config": config})

    assert clash.status_code == 409
    assert clash.json() == {
        "detail": f"output_dir {first['output_dir']} already contains checkpoints "
        "of an earlier run, the newest step-00000003. Set resume_from to "
        "continue it, or choose another output_dir."
    }


def test_resumed_job_continues_step_numbering(start_server, train_config):
    server = start_server()
    first = server.client.post("/v1/jobs", json={"config": train_config()}).json()
    first = server.wait_for_job(first["id"], _is_terminal)

    created = server.client.post(
        "/v1/jobs",
        json={
            "config": train_config(max_steps=5),
            "resume_from": first["output_dir"],
        },
    )
    job = server.wait_for_job(created.json()["id"], _is_terminal)

    assert created.status_code == 201
    assert created.json()["resume_from"] == first["output_dir"]
    assert job["state"] == "succeeded", job
    train_steps = [
        e["data"]["step"]
        for e in server.all_events(job["id"])
        if e["type"] == "metrics" and e["data"]["event"] == "train"
    ]
    assert train_steps == [4, 5]


@pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="lists process groups from /proc"
)
def test_cancel_stops_every_rank(start_server, long_train_config):
    server = start_server("--cancel-grace-seconds", "5")

    created = server.client.post(
        "/v1/jobs", json={"config": long_train_config, "num_processes": 2}
    )
    running = _wait_for_training(server, created.json()["id"])
    # The trainer, mlx.launch and its two ranks share the job's process group.
    members_while_running = _live_group_members(running["pid"])
    server.client.post(f"/v1/jobs/{running['id']}/cancel")
    job = server.wait_for_job(running["id"], _is_terminal, timeout=30)

    assert created.json()["num_processes"] == 2
    assert running["state"] == "running"
    assert len(members_while_running) >= 4
    assert job["state"] == "cancelled"
    assert _live_group_members(running["pid"]) == []


def test_failed_training_records_exit_code_and_stderr(
    start_server, train_config, chat_data_dir
):
    with (chat_data_dir / "train.jsonl").open("a") as handle:
        handle.write('{"messages": unterminated\n')
    server = start_server()

    created = server.client.post("/v1/jobs", json={"config": train_config()})
    job = server.wait_for_job(created.json()["id"], _is_terminal)

    assert job["state"] == "failed"
    assert job["exit_code"] == 1
    assert job["error"] == "Training process exited with code 1"
    assert "train.jsonl" in job["stderr_tail"]
    stderr = server.client.get(
        f"/v1/jobs/{job['id']}/logs", params={"stream": "stderr", "tail_lines": 1}
    )
    assert stderr.text == job["stderr_tail"].splitlines()[-1]
    last_event = server.all_events(job["id"])[-1]
    assert last_event["data"] == {
        "state": "failed",
        "previous": "running",
        "exit_code": 1,
        "error": "Training process exited with code 1",
    }


def test_cancel_stops_running_job(start_server, long_train_config, process_is_running):
    # Outside pytest, mlx-train restarts itself (same pid) before training.
    server = start_server("--cancel-grace-seconds", "5", outside_pytest=True)
    job_id = server.client.post("/v1/jobs", json={"config": long_train_config}).json()[
        "id"
    ]
    running = _wait_for_training(server, job_id)
    assert running["state"] == "running"

    first = server.client.post(f"/v1/jobs/{job_id}/cancel")
    second = server.client.post(f"/v1/jobs/{job_id}/cancel")
    job = server.wait_for_job(job_id, _is_terminal, timeout=30)
    third = server.client.post(f"/v1/jobs/{job_id}/cancel")

    assert first.status_code == 202
    assert first.json()["state"] == "running"
    assert first.json()["cancel_requested_at"] is not None
    assert second.status_code in (200, 202)
    assert second.json()["cancel_requested_at"] == first.json()["cancel_requested_at"]
    assert job["state"] == "cancelled"
    assert job["exit_code"] is not None
    assert third.status_code == 200
    assert third.json() == job
    assert not process_is_running(running["pid"])
    types = [e["type"] for e in server.all_events(job_id)]
    assert types.count("cancel_requested") == 1
    assert types.count("signal") == 1
    assert types[-1] == "state"


def test_queued_job_waits_for_a_free_slot(
    start_server, long_train_config, train_config, process_is_running
):
    server = start_server("--cancel-grace-seconds", "5")
    first_id = server.client.post(
        "/v1/jobs", json={"config": long_train_config}
    ).json()["id"]
    second_id = server.client.post("/v1/jobs", json={"config": train_config()}).json()[
        "id"
    ]
    first = _wait_for_training(server, first_id)

    second = server.client.get(f"/v1/jobs/{second_id}").json()
    cancelled = server.client.post(f"/v1/jobs/{second_id}/cancel")

    assert first["state"] == "running"
    assert second["state"] == "queued"
    assert second["pid"] is None
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["started_at"] is None

    # A second job may not write into the running job's folder.
    clash = server.client.post(
        "/v1/jobs", json={"config": train_config(output_dir=first["output_dir"])}
    )
    assert clash.status_code == 409
    assert clash.json() == {
        "detail": f"output_dir {first['output_dir']} is in use by job {first_id}, "
        "which is queued or running. Choose another output_dir or wait for that "
        "job to finish."
    }


def test_shutdown_stops_concurrent_jobs(
    start_server, long_train_config, process_is_running
):
    server = start_server("--max-concurrent-jobs", "2", "--cancel-grace-seconds", "5")
    job_ids = [
        server.client.post("/v1/jobs", json={"config": long_train_config}).json()["id"]
        for _ in range(2)
    ]
    running = [_wait_for_training(server, job_id) for job_id in job_ids]
    health = server.client.get("/health").json()

    assert [job["state"] for job in running] == ["running", "running"]
    assert health["jobs"]["running"] == 2
    assert health["max_concurrent_jobs"] == 2

    # A graceful shutdown stops both jobs and records why.
    assert server.stop() == 0
    for job in running:
        assert not process_is_running(job["pid"])
    restarted = start_server()
    for job_id in job_ids:
        ended = restarted.client.get(f"/v1/jobs/{job_id}").json()
        assert ended["state"] == "failed"
        assert ended["error"] == "The server shut down while the job was running"
        assert ended["exit_code"] is not None


def test_restart_ends_orphan_and_resumes_queue(
    start_server, long_train_config, train_config, process_is_running
):
    server = start_server(outside_pytest=True)
    orphaned_id = server.client.post(
        "/v1/jobs", json={"config": long_train_config}
    ).json()["id"]
    queued_id = server.client.post("/v1/jobs", json={"config": train_config()}).json()[
        "id"
    ]
    orphaned = _wait_for_training(server, orphaned_id)
    server.kill()
    assert process_is_running(orphaned["pid"])

    restarted = start_server("--cancel-grace-seconds", "5", outside_pytest=True)
    failed = restarted.client.get(f"/v1/jobs/{orphaned_id}").json()
    queued = restarted.wait_for_job(queued_id, _is_terminal)

    assert failed["state"] == "failed"
    assert failed["error"] == (
        "The server stopped while the job was running. Its training process "
        f"(pid {orphaned['pid']}) was stopped when the server restarted"
    )
    assert failed["finished_at"] is not None
    assert not process_is_running(orphaned["pid"])
    assert queued["state"] == "succeeded"
    metrics_lines = (Path(orphaned["output_dir"]) / "metrics.jsonl").read_text()
    recorded = [
        e["data"] for e in restarted.all_events(orphaned_id) if e["type"] == "metrics"
    ]
    assert recorded == [json.loads(line) for line in metrics_lines.splitlines()]
