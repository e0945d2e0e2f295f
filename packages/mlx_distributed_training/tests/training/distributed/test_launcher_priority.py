"""Lowering the priority of a running process's threads."""

import os
import subprocess
import sys
import time

from mlx_distributed_training.training.distributed.launcher_priority import (
    child_pids,
    lower_launcher_priority_when_started,
    lower_priority,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


def test_child_pids_lists_started_processes():
    child = subprocess.Popen(SLEEPER)
    try:
        assert child.pid in child_pids(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_lower_priority_covers_all_threads():
    child = subprocess.Popen(SLEEPER)
    try:
        assert lower_priority(child.pid) >= 1
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 19
    finally:
        child.kill()
        child.wait()


def test_launcher_priority_drops_after_ranks_start():
    # This launcher starts its one child after a second. The priority must
    # drop only once that child exists.
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; time.sleep(1); "
            "subprocess.run([sys.executable, '-c', 'import time; time.sleep(3)'])",
        ]
    )
    own = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        watcher = lower_launcher_priority_when_started(launcher.pid, rank_count=1)
        time.sleep(0.5)
        assert os.getpriority(os.PRIO_PROCESS, launcher.pid) == own
        watcher.join(timeout=10)
        assert os.getpriority(os.PRIO_PROCESS, launcher.pid) == 19
        grandchild = child_pids(launcher.pid)
        assert grandchild
        assert os.getpriority(os.PRIO_PROCESS, grandchild[0]) == own
    finally:
        launcher.kill()
        launcher.wait()
