"""The job runner driven in-process, with a real store and real mlx-train jobs."""

import subprocess
import sys
import time

from mlx_distributed_training.api.job_config import prepare_job_config
from mlx_distributed_training.api.job_files import write_config
from mlx_distributed_training.api.runner import TRAIN_MODULE, JobRunner
from mlx_distributed_training.api.states import JobState
from mlx_distributed_training.api.store import JobStore


def wait_until(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def metrics_train_steps(store, job_id):
    events = store.list_events(job_id, after=0, limit=10_000)
    return [
        event.data["step"]
        for event in events
        if event.type == "metrics" and event.data.get("event") == "train"
    ]


def test_resumed_job_reads_replaced_metrics_file(
    tmp_path, train_config, process_is_running
):
    output_dir = tmp_path / "run"
    earlier = prepare_job_config(
        train_config(output_dir=str(output_dir), save_interval_steps=1), tmp_path
    )
    write_config(tmp_path / "earlier", earlier)
    subprocess.run(
        [
            sys.executable,
            "-m",
            TRAIN_MODULE,
            "--config",
            str(tmp_path / "earlier/config.yaml"),
        ],
        check=True,
        capture_output=True,
    )
    store = JobStore(tmp_path / "jobs.sqlite3")
    job_dir = tmp_path / "job-resumed"
    config = {**earlier, "max_steps": 40, "eval_interval_steps": 0}
    write_config(job_dir, config)
    store.create_job(
        "job-resumed",
        config,
        job_dir,
        output_dir,
        resume_from=output_dir / "checkpoints/step-00000001",
    )
    # One tick at start launches the job; the next runs only on wake(), after
    # the trainer has replaced metrics.jsonl and written past the old size.
    runner = JobRunner(store, poll_interval_seconds=3600)
    runner.start()
    try:
        wait_until(lambda: store.get_job("job-resumed").pid is not None)
        wait_until(lambda: not process_is_running(store.get_job("job-resumed").pid))
        runner.wake()
        wait_until(lambda: store.get_job("job-resumed").finished_at is not None)
    finally:
        runner.stop()

    job = store.get_job("job-resumed")
    assert job.state == JobState.SUCCEEDED, job.stderr_tail
    assert metrics_train_steps(store, "job-resumed") == list(range(1, 41))
