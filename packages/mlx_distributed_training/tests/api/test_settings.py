"""Tests of mlx-train-serve's flags and environment overrides."""

from pathlib import Path

import pytest
from mlx_distributed_training.api.settings import ServerSettings, parse_settings


def test_defaults_listen_on_loopback_8200():
    settings = parse_settings([], environ={})

    assert settings == ServerSettings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8200
    assert settings.max_concurrent_jobs == 1


def test_environment_overrides_defaults():
    settings = parse_settings(
        [],
        environ={
            "MLX_TRAIN_SERVE_PORT": "9000",
            "MLX_TRAIN_SERVE_DB": "/tmp/x.sqlite3",
            "MLX_TRAIN_SERVE_MAX_CONCURRENT_JOBS": "3",
            "MLX_TRAIN_SERVE_LOG_LEVEL": "DEBUG",
        },
    )

    assert settings.port == 9000
    assert settings.db == Path("/tmp/x.sqlite3")
    assert settings.max_concurrent_jobs == 3
    assert settings.log_level == "debug"


def test_flags_override_environment():
    settings = parse_settings(
        ["--port", "9100", "--jobs-dir", "here"],
        environ={"MLX_TRAIN_SERVE_PORT": "9000", "MLX_TRAIN_SERVE_JOBS_DIR": "x"},
    )

    assert settings.port == 9100
    assert settings.jobs_dir == Path("here")


def test_invalid_environment_value_names_variable(capsys):
    with pytest.raises(SystemExit):
        parse_settings([], environ={"MLX_TRAIN_SERVE_MAX_CONCURRENT_JOBS": "0"})

    assert (
        "environment variable MLX_TRAIN_SERVE_MAX_CONCURRENT_JOBS "
        "(for --max-concurrent-jobs): invalid value '0': must be at least 1"
    ) in capsys.readouterr().err


def test_invalid_flag_value_names_flag(capsys):
    with pytest.raises(SystemExit):
        parse_settings(["--port", "http"], environ={})

    assert (
        "argument --port: invalid value 'http': must be an integer"
        in capsys.readouterr().err
    )
