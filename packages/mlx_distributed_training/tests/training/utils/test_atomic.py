"""Atomic writes: permissions, and what a killed write leaves behind."""

import os
import signal
import stat
import subprocess
import sys

from mlx_distributed_training.training.utils.atomic import (
    remove_stale_temporaries,
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


KILL_DURING_FOLDER_WRITE = """
import os, signal, sys
from pathlib import Path
from mlx_distributed_training.training.utils.atomic import write_folder_atomic

def fill(folder):
    (folder / "weights.bin").write_bytes(b"partial")
    os.kill(os.getpid(), signal.SIGKILL)

write_folder_atomic(Path(sys.argv[1]), fill)
"""


def test_killed_folder_write_leaves_temporary(tmp_path):
    target = tmp_path / "checkpoints" / "step-00000003"
    result = subprocess.run(
        [sys.executable, "-c", KILL_DURING_FOLDER_WRITE, str(target)],
        capture_output=True,
        text=True,
    )

    assert result.returncode == -signal.SIGKILL, result.stderr
    assert not target.exists()
    leftovers = [entry.name for entry in target.parent.iterdir()]
    assert len(leftovers) == 1
    assert leftovers[0].startswith(".tmp-step-00000003-")


def test_stale_temporaries_are_removed(tmp_path):
    subprocess.run(
        [sys.executable, "-c", KILL_DURING_FOLDER_WRITE, str(tmp_path / "adapter")],
        check=False,
    )
    (tmp_path / ".tmp-removed-step-00000001").mkdir()
    (tmp_path / ".tmp-a1b2c3").write_text("half a config")
    (tmp_path / "notes.tmp-keep").write_text("not ours")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / ".tmp-deeper").write_text("not in this folder")

    removed = remove_stale_temporaries(tmp_path)

    assert len(removed) == 3
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [
        "nested",
        "notes.tmp-keep",
    ]
    assert (tmp_path / "nested" / ".tmp-deeper").is_file()


def test_interrupted_replace_restores_old_folder(tmp_path):
    retired = tmp_path / ".tmp-old-adapter"
    retired.mkdir()
    (retired / "adapters.safetensors").write_bytes(b"complete")

    remove_stale_temporaries(tmp_path)

    assert not retired.exists()
    assert (tmp_path / "adapter" / "adapters.safetensors").read_bytes() == b"complete"


def test_retired_folder_beside_its_original_is_removed(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / ".tmp-old-adapter").mkdir()

    remove_stale_temporaries(tmp_path)

    assert [entry.name for entry in tmp_path.iterdir()] == ["adapter"]
