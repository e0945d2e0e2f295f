"""Tests of the checks a submitted config gets before its job is queued."""

import os
from pathlib import Path

import pytest
from mlx_distributed_training.api.job_config import prepare_job_config
from mlx_distributed_training.api.records import OutputDirInUseError
from mlx_distributed_training.api.store import JobStore
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


def test_symlinked_output_dir_is_resolved(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")

    config = prepare_job_config({"output_dir": str(tmp_path / "alias")}, tmp_path)

    assert config["output_dir"] == str(tmp_path / "real")


def test_symlinked_output_dir_clashes_with_job(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    first = prepare_job_config({"output_dir": str(tmp_path / "real")}, tmp_path)
    second = prepare_job_config({"output_dir": str(tmp_path / "alias")}, tmp_path)
    store = JobStore(tmp_path / "jobs.sqlite3")
    try:
        store.create_job("job-a", first, tmp_path / "job-a", Path(first["output_dir"]))
        with pytest.raises(OutputDirInUseError) as raised:
            store.create_job(
                "job-b", second, tmp_path / "job-b", Path(second["output_dir"])
            )
    finally:
        store.close()

    assert raised.value.output_dir == tmp_path / "real"
    assert raised.value.other_job_id == "job-a"
