"""Validation of a submitted training config before the job is queued."""

import os
from pathlib import Path
from typing import Any

from mlx_distributed_training.configs.training_config import config_from_mapping

CONFIG_SOURCE = "request body 'config'"


def prepare_job_config(mapping: dict[str, Any], job_dir: Path) -> dict[str, Any]:
    """Return the config to write for a new job, after validating it.

    `output_dir` defaults to the job's folder. Either is made absolute against
    the server's working folder, where the trainer also runs, and symlinks in
    it are resolved. Raises ConfigError listing every problem.
    """
    # The loader accepts `output-dir` as well as `output_dir`, so use one spelling.
    config = {str(key).replace("-", "_"): value for key, value in mapping.items()}
    output_dir = config.get("output_dir")
    if output_dir is None or output_dir == "":
        output_dir = str(job_dir)
    if isinstance(output_dir, str):
        # realpath also resolves symlinks and folds `..` and a trailing slash,
        # so one folder has one spelling when jobs are checked for a shared
        # output_dir. The trainer's lock on the folder catches what this
        # misses, such as a symlink created after the job was queued.
        config["output_dir"] = os.path.realpath(output_dir)
    config_from_mapping(config, source=CONFIG_SOURCE)
    return config
