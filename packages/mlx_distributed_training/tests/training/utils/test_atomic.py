"""Atomic folder writes: the renamed folder looks like one made with mkdir."""

import os
import stat

from mlx_distributed_training.training.utils.atomic import write_folder_atomic


def test_folder_gets_umask_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        write_folder_atomic(tmp_path / "adapter", lambda folder: None)
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "adapter").stat().st_mode)
    assert oct(mode) == oct(0o755)
