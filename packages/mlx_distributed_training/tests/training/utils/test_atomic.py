"""Atomic writes: renamed files and folders get the usual permissions."""

import os
import stat

from mlx_distributed_training.training.utils.atomic import (
    write_folder_atomic,
    write_text_atomic,
)


def test_folder_gets_umask_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        write_folder_atomic(tmp_path / "adapter", lambda folder: None)
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "adapter").stat().st_mode)
    assert oct(mode) == oct(0o755)


def test_file_gets_umask_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "config.yaml", "seed: 1\n")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode)
    assert oct(mode) == oct(0o644)
