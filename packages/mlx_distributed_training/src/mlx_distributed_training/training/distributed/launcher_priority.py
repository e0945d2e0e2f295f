"""Keep mlx.launch from taking CPU time away from the ranks it starts.

mlx.launch (mlx 0.32) relays each rank's output from a thread that waits in
``select`` for the rank's stdin pipe to become writable. An empty pipe is
always writable, so every relay thread spins for the whole run. Two local
ranks on a two-core machine then share their cores with two spinning threads:
measured, two ranks trained at 1.01x the speed of one, and at 1.9x once the
launcher ran at the lowest priority.

So once every rank process exists, the launcher's own threads are set to the
lowest priority (nice 19). The ranks keep theirs: a process inherits its
priority when it is started, and they are started by then.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

LOWEST_PRIORITY = 19
PROC = Path("/proc")


def lower_launcher_priority_when_started(
    launcher_pid: int, rank_count: int, timeout_s: float = 60.0
) -> threading.Thread:
    """Start a daemon thread that waits until ``launcher_pid`` has started
    ``rank_count`` child processes, then lowers the launcher's priority."""
    thread = threading.Thread(
        target=_lower_when_started,
        args=(launcher_pid, rank_count, timeout_s),
        name="launcher-priority",
        daemon=True,
    )
    thread.start()
    return thread


def _lower_when_started(launcher_pid: int, rank_count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(child_pids(launcher_pid)) < rank_count:
        if time.monotonic() > deadline or not _alive(launcher_pid):
            logger.debug("mlx.launch keeps its priority: its ranks did not start")
            return
        time.sleep(0.05)
    lowered = lower_priority(launcher_pid)
    logger.debug("lowered the priority of %d mlx.launch threads", lowered)


def child_pids(pid: int) -> list[int]:
    """Return the process ids whose parent is ``pid``."""
    if PROC.is_dir():
        children = []
        for entry in PROC.iterdir():
            if entry.name.isdigit() and _parent_pid(entry) == pid:
                children.append(int(entry.name))
        return children
    pgrep = shutil.which("pgrep")
    if pgrep is None:
        return []
    found = subprocess.run(
        [pgrep, "-P", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(line) for line in found.stdout.split()]


def lower_priority(pid: int) -> int:
    """Set every thread of process ``pid`` to the lowest priority.

    Returns the number of threads changed. On Linux each thread has its own
    priority, so every thread in ``/proc/PID/task`` is set. Elsewhere one call
    on the process covers all of its threads.
    """
    if sys.platform.startswith("linux"):
        targets = [int(task.name) for task in (PROC / str(pid) / "task").iterdir()]
    else:
        targets = [pid]
    changed = 0
    for target in targets:
        try:
            os.setpriority(os.PRIO_PROCESS, target, LOWEST_PRIORITY)
        except (ProcessLookupError, PermissionError):
            continue
        changed += 1
    return changed


def _parent_pid(entry: Path) -> int | None:
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may itself contain spaces.
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
