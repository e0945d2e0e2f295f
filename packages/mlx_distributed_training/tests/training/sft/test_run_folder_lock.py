"""The run folder lock, held by a real second process."""

import os
import signal
import subprocess
import sys

import pytest
from mlx_distributed_training.training.sft.run_folder_lock import (
    LOCK_FILE,
    RunFolderInUseError,
    RunFolderLock,
)

HOLD_LOCK = """
import sys, time
from mlx_distributed_training.training.sft.run_folder_lock import RunFolderLock

RunFolderLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """A process that locks `tmp_path / "run"` and sleeps until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "locked\n"
    yield process
    process.kill()
    process.wait()


def test_held_lock_rejects_symlinked_folder(tmp_path, holder):
    alias = tmp_path / "alias"
    alias.symlink_to(tmp_path / "run")

    with pytest.raises(RunFolderInUseError) as raised:
        RunFolderLock(alias).acquire()

    assert str(raised.value) == (
        f"run folder {alias} is in use by process {holder.pid} (lock file "
        f"{alias / LOCK_FILE}); wait for that run to end or choose another "
        "output_dir"
    )


def test_lock_is_free_after_holder_sigkill(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()

    with RunFolderLock(tmp_path / "run") as lock:
        assert lock.path.read_text() == f"{os.getpid()}\n"


def test_released_lock_can_be_taken_again(tmp_path):
    first = RunFolderLock(tmp_path / "run")
    first.acquire()
    first.release()

    with RunFolderLock(tmp_path / "run"):
        pass


def test_lock_rejects_second_holder_in_process(tmp_path):
    with RunFolderLock(tmp_path / "run"):
        with pytest.raises(RunFolderInUseError):
            RunFolderLock(tmp_path / "run").acquire()


def test_failed_run_removes_folder_it_created(tmp_path):
    with pytest.raises(RuntimeError), RunFolderLock(tmp_path / "run"):
        raise RuntimeError("model not found")

    assert not (tmp_path / "run").exists()


def test_failed_run_keeps_existing_folder(tmp_path):
    (tmp_path / "run").mkdir()

    with pytest.raises(RuntimeError), RunFolderLock(tmp_path / "run"):
        raise RuntimeError("model not found")

    assert (tmp_path / "run").is_dir()


def test_failed_run_keeps_folder_with_output(tmp_path):
    with pytest.raises(RuntimeError), RunFolderLock(tmp_path / "run"):
        (tmp_path / "run" / "metrics.jsonl").write_text("{}\n")
        raise RuntimeError("diverged")

    assert (tmp_path / "run" / "metrics.jsonl").is_file()


def test_finished_run_keeps_lock_file(tmp_path):
    with RunFolderLock(tmp_path / "run"):
        pass

    assert (tmp_path / "run" / LOCK_FILE).is_file()
