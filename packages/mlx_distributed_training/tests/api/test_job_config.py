"""Tests of the checks a submitted config gets before its job is queued."""

import os

import pytest
from mlx_distributed_training.api.job_config import prepare_job_config
from mlx_distributed_training.configs.training_config import ConfigError


def test_output_dir_defaults_to_job_folder(tmp_path):
    config = prepare_job_config({"max_steps": 2}, tmp_path / "job-a")

    assert config == {"max_steps": 2, "output_dir": str(tmp_path / "job-a")}


def test_relative_output_dir_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    config = prepare_job_config({"output_dir": "runs/../out/"}, tmp_path / "job-a")

    assert config["output_dir"] == os.path.join(str(tmp_path), "out")


def test_dashed_keys_use_underscores(tmp_path):
    config = prepare_job_config(
        {"max-steps": 2, "output-dir": str(tmp_path / "out")}, tmp_path / "job-a"
    )

    assert config == {"max_steps": 2, "output_dir": str(tmp_path / "out")}


def test_invalid_config_raises_every_problem(tmp_path):
    with pytest.raises(ConfigError) as raised:
        prepare_job_config({"lora_rank": 0, "backend": "tcp"}, tmp_path / "job-a")

    assert raised.value.problems == [
        "lora_rank: got 0, expected >= 1",
        "backend: got 'tcp', expected one of any, ring, mpi, nccl, jaccl",
    ]
