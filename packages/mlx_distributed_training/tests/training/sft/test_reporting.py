"""Reporter sinks after a resume: metrics.jsonl and TensorBoard."""

import json

from mlx_distributed_training.configs.training_config import config_from_mapping
from mlx_distributed_training.training.sft.reporting import (
    Reporter,
    keep_metrics_up_to,
)
from tensorboardX.proto.event_pb2 import SessionLog

from .tensorboard_events import read_event_files, scalar_steps


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def test_keep_metrics_drops_steps_after_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    events = [
        {"event": "start", "total_steps": 6},
        {"event": "train", "step": 2, "loss": 2.0},
        {"event": "checkpoint", "step": 2, "path": "checkpoints/step-00000002"},
        {"event": "train", "step": 3, "loss": 1.9},
        {"event": "eval", "step": 3, "valid_loss": 2.1},
    ]
    write_lines(path, [json.dumps(event) for event in events])

    keep_metrics_up_to(path, 2)

    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert kept == events[:3]


def test_keep_metrics_drops_line_cut_by_kill(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "train", "step": 1}\n{"event": "train", "st')

    keep_metrics_up_to(path, 1)

    assert path.read_text() == '{"event": "train", "step": 1}\n'


def test_keep_metrics_without_file_writes_nothing(tmp_path):
    keep_metrics_up_to(tmp_path / "metrics.jsonl", 4)

    assert list(tmp_path.iterdir()) == []


def log_train_steps(run_dir, steps, resume_step=None):
    config = config_from_mapping({"output_dir": str(run_dir)})
    reporter = Reporter(run_dir, config, None, resume_step=resume_step)
    for step in steps:
        reporter.record("train", {"step": step, "loss": 1.0 / step})
    reporter.close()


def test_resumed_reporter_keeps_each_step_once(tmp_path):
    log_train_steps(tmp_path, [1, 2, 3, 4, 5])

    log_train_steps(tmp_path, [4, 5, 6], resume_step=3)

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_resumed_reporter_marks_tensorboard_purge(tmp_path):
    log_train_steps(tmp_path, [1, 2, 3, 4, 5])

    log_train_steps(tmp_path, [4, 5, 6], resume_step=3)

    killed, resumed = read_event_files(tmp_path / "tensorboard")
    starts = [
        event.step
        for event in resumed
        if event.HasField("session_log")
        and event.session_log.status == SessionLog.START
    ]
    assert starts == [4]
    assert scalar_steps(killed, "train/loss") == [1, 2, 3, 4, 5]
    assert scalar_steps(resumed, "train/loss") == [4, 5, 6]
    assert not any(event.HasField("session_log") for event in killed)
