"""Files the server writes into a job's folder."""

import os
import stat

import yaml
from mlx_distributed_training.api.job_files import write_config


def test_config_file_gets_umask_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        path = write_config(tmp_path / "job-a", {"max_steps": 2})
    finally:
        os.umask(previous)

    assert oct(stat.S_IMODE(path.stat().st_mode)) == oct(0o644)


def test_config_file_round_trips(tmp_path):
    config = {"max_steps": 2, "output_dir": str(tmp_path / "out")}

    path = write_config(tmp_path / "job-a", config)

    assert yaml.safe_load(path.read_text()) == config
    assert [entry.name for entry in path.parent.iterdir()] == ["config.yaml"]
