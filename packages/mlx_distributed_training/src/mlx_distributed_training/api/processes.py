"""Process-group helpers for job processes: identity, liveness and signals.

Each job runs as the leader of its own session, so its process group id equals
its pid and one signal to the group reaches every process the trainer started
(for example the ranks that `mlx.launch` spawns).
"""

import logging
import os
import signal
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def process_start_time(pid: int) -> int | None:
    """Return the start time of a process in clock ticks since boot, from /proc.

    Together with the pid it identifies a process even after the pid is reused.
    Returns None where /proc is missing (macOS) or the process is gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) can contain spaces and parentheses, so split
    # after its closing parenthesis. starttime is field 22 of the whole line.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def is_same_process_alive(pid: int, start_time: int | None) -> bool:
    """Return whether `pid` still runs and is the process recorded earlier.

    A zombie counts as gone. With a recorded start time the pid must also still
    have that start time, so a reused pid is not mistaken for the job.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Some other user's process now has this pid.
        return False
    if _is_zombie(pid):
        return False
    if start_time is not None:
        return process_start_time(pid) == start_time
    # NOTE: without /proc (macOS) a reused pid is only caught when it leads no
    # process group of that id, because the job process was a group leader.
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def signal_process_group(pgid: int, signum: signal.Signals) -> bool:
    """Send `signum` to a process group, returning False if the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    logger.info("Sent %s to process group %s", signum.name, pgid)
    return True


def stop_orphan_process_group(
    pid: int, start_time: int | None, grace_seconds: float
) -> bool:
    """Stop a job process left behind by an earlier server, if it still runs.

    Sends SIGTERM to its group, then SIGKILL if it is still alive after
    `grace_seconds`. The SIGKILL goes to the group even when the leader has
    exited, so children it left behind stop too. Returns whether the process
    was still running. The earlier server's death made the process a child of
    init, so its exit code cannot be read.
    """
    if not is_same_process_alive(pid, start_time):
        return False
    signal_process_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and is_same_process_alive(pid, start_time):
        time.sleep(0.05)
    signal_process_group(pid, signal.SIGKILL)
    return True
