"""What `mlx-train` does with its run folder, run as real subprocesses."""

import json
import signal
import subprocess
import sys
import time

from mlx_distributed_training.training.sft.checkpoints import list_checkpoints
from mlx_distributed_training.training.sft.run_folder_lock import LOCK_FILE
from tensorboardX.proto.event_pb2 import SessionLog

from .tensorboard_events import read_event_files

TRAIN_COMMAND = [sys.executable, "-m", "mlx_distributed_training.cli.train"]


def train_args(model_dir, data_dir, output_dir, *extra):
    return [
        *("--model", str(model_dir), "--data", str(data_dir)),
        *("--output-dir", str(output_dir), "--lora-layers", "-1"),
        *("--exact-match-samples", "0", "--report-interval-steps", "1"),
        *extra,
    ]


def run_train(*args, timeout=300):
    return subprocess.run(
        [*TRAIN_COMMAND, *args], capture_output=True, text=True, timeout=timeout
    )


def start_train(*args):
    return subprocess.Popen(
        [*TRAIN_COMMAND, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def read_events(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def last_train_step(run_dir):
    try:
        events = read_events(run_dir)
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    steps = [event["step"] for event in events if event["event"] == "train"]
    return steps[-1] if steps else 0


def test_resume_after_kill_logs_each_step_once(tiny_model_dir, chat_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    args = train_args(
        tiny_model_dir,
        chat_data_dir,
        run_dir,
        *("--max-steps", "200", "--save-interval-steps", "20"),
        *("--eval-interval-steps", "5", "--keep-last", "50"),
    )
    process = start_train(*args)
    # Kill after a checkpoint, so steps after the last one are logged.
    wait_for(lambda: last_train_step(run_dir) >= 22)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resume_step = int(list_checkpoints(run_dir)[-1].name.removeprefix("step-"))
    killed_step = last_train_step(run_dir)
    assert killed_step > resume_step, "the kill came before the first save"

    result = run_train("--resume", str(run_dir))

    assert result.returncode == 0, result.stderr
    events = read_events(run_dir)
    for kind in ("train", "eval", "checkpoint"):
        steps = [event["step"] for event in events if event["event"] == kind]
        assert len(steps) == len(set(steps)), kind
        assert steps == sorted(steps), kind
    train_steps = [event["step"] for event in events if event["event"] == "train"]
    assert train_steps == list(range(1, 201))
    killed_file, resumed_file = read_event_files(run_dir / "tensorboard")
    starts = [
        event.step
        for event in resumed_file
        if event.session_log.status == SessionLog.START
    ]
    assert starts == [resume_step + 1]


KILL_DURING_SAVE = """
import os, signal, sys
from pathlib import Path
from mlx_distributed_training.training.utils.atomic import write_folder_atomic

def fill(folder):
    (folder / "adapters.safetensors").write_bytes(b"partial")
    (folder / "trainer_state.json").write_text('{"step": 3}')
    os.kill(os.getpid(), signal.SIGKILL)

write_folder_atomic(Path(sys.argv[1]), fill)
"""


def kill_during_save(checkpoint):
    """Start the atomic save of `checkpoint` in a process that SIGKILLs itself
    part-way, and return the temporary folder it leaves."""
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(checkpoint)])
    assert killed.returncode == -signal.SIGKILL
    (leftover,) = checkpoint.parent.glob(".tmp-*")
    return leftover


def test_resume_removes_killed_save_temporaries(
    tiny_model_dir, chat_data_dir, tmp_path
):
    run_dir = tmp_path / "run"
    args = train_args(
        tiny_model_dir,
        chat_data_dir,
        run_dir,
        *("--max-steps", "2", "--save-interval-steps", "1"),
    )
    assert run_train(*args).returncode == 0
    kill_during_save(run_dir / "checkpoints/step-00000003")
    kill_during_save(run_dir / "adapter")
    (run_dir / "my-notes.tmp").write_text("not written by mlx-train")

    result = run_train("--resume", str(run_dir), "--max-steps", "3")

    assert result.returncode == 0, result.stderr
    assert list(run_dir.glob(".tmp-*")) == []
    assert list((run_dir / "checkpoints").glob(".tmp-*")) == []
    assert (run_dir / "my-notes.tmp").is_file()
    state_file = run_dir / "checkpoints/step-00000003/trainer_state.json"
    assert json.loads(state_file.read_text())["step"] == 3


def test_resume_from_temporary_folder_exits_2(tmp_path):
    leftover = kill_during_save(tmp_path / "run/checkpoints/step-00000003")

    result = run_train("--resume", str(leftover))

    assert result.returncode == 2
    assert (
        f"{leftover} is the temporary folder of an unfinished save, not a "
        "checkpoint; resume from its run folder instead"
    ) in result.stderr


def test_second_run_into_locked_folder_exits_1(tiny_model_dir, chat_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    alias = tmp_path / "alias"
    alias.symlink_to(run_dir, target_is_directory=True)
    first = start_train(
        *train_args(tiny_model_dir, chat_data_dir, run_dir, "--max-steps", "100000"),
        *("--save-interval-steps", "0"),
    )
    try:
        wait_for(lambda: last_train_step(run_dir) >= 1)

        second = run_train(
            *train_args(tiny_model_dir, chat_data_dir, alias, "--max-steps", "2")
        )

        assert second.returncode == 1
        assert (
            f"run folder {alias} is in use by process {first.pid} (lock file "
            f"{alias / LOCK_FILE}); wait for that run to end or choose another "
            "output_dir"
        ) in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    after_kill = run_train(
        *train_args(tiny_model_dir, chat_data_dir, alias, "--max-steps", "2")
    )
    assert after_kill.returncode == 0, after_kill.stderr


def test_fresh_run_over_checkpoints_exits_1(tiny_model_dir, chat_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    args = train_args(tiny_model_dir, chat_data_dir, run_dir, "--max-steps", "2")
    first = run_train(*args, "--save-interval-steps", "1")
    assert first.returncode == 0, first.stderr
    second = run_train(*args)
    assert second.returncode == 1
    assert "already contains checkpoints of an earlier run" in second.stderr
    assert f"--resume {run_dir}" in second.stderr
    assert [path.name for path in list_checkpoints(run_dir)] == [
        "step-00000001",
        "step-00000002",
    ]


def test_fresh_run_without_checkpoints_logs_steps_once(
    tiny_model_dir, chat_data_dir, tmp_path
):
    run_dir = tmp_path / "run"
    args = train_args(tiny_model_dir, chat_data_dir, run_dir, "--max-steps", "2") + [
        "--save-interval-steps",
        "0",
    ]
    for _ in range(2):
        completed = run_train(*args)
        assert completed.returncode == 0, completed.stderr
    steps = [
        event["step"] for event in read_events(run_dir) if event["event"] == "train"
    ]
    assert steps == [1, 2]
