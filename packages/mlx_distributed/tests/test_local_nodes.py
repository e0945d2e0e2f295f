import os
import signal
import subprocess
import sys
import time

from mlx_distributed.local_nodes import start_local_node
from mlx_distributed.node_connection import NodeConnection

PARENT_SCRIPT = """
import sys, time
from mlx_distributed.local_nodes import start_local_node
node = start_local_node(log_dir=sys.argv[1])
print(node.process.pid, flush=True)
time.sleep(600)
"""


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still accepts kill(0); on Linux, read its state.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return True


def test_local_node_serves_and_stops(tmp_path):
    node = start_local_node(log_dir=tmp_path)
    try:
        assert NodeConnection(node.address).health(5).status == "empty"
    finally:
        node.stop()
    assert node.process.poll() is not None


def test_node_exits_when_its_parent_is_killed(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    node_pid = int(parent.stdout.readline())
    assert _is_running(node_pid)

    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _is_running(node_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _is_running(node_pid)
