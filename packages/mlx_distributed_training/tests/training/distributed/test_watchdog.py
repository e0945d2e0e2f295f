"""Watchdog: a dead, hung or failing rank stops every rank with its name.

Each test runs two real ranks of a ring group on loopback with a 3 s timeout;
rank programs/watchdog_faults.py injects the fault.
"""

import re

import mlx.core as mx
import pytest
from mlx_distributed_training.training.distributed.watchdog import (
    WATCHDOG_EXIT_CODE,
    Watchdog,
    hub_host_from_environment,
)

TIMEOUT_S = 3.0
# Allowed delay past the timeout: heartbeat interval plus process exit, with
# several test processes sharing two CPU cores.
SLACK_S = 4.0


def run(launch_ranks, *options):
    return launch_ranks(
        "watchdog_faults.py", ["--timeout-s", str(TIMEOUT_S), *options], timeout_s=60
    )


def stop_message(runs, rank):
    lines = [line for line in runs[rank].stderr.splitlines() if " stops: " in line]
    assert len(lines) == 1, runs.describe()
    # MLX's ring backend writes "[ring]" messages without a line end, so one
    # can share the line with the stop message, before or after it.
    pieces = [p for p in lines[0].split("[ring]") if " stops: " in p]
    return pieces[0][pieces[0].index(f"rank {rank} stops: ") :]


def test_clean_run_finishes_on_every_rank(launch_ranks):
    runs = run(
        launch_ranks, "--fault", "slow", "--slow-s", "1.5", "--late-finish-s", "2"
    )
    assert [r.returncode for r in runs] == [0, 0], runs.describe()
    assert all("finished" in r.stderr for r in runs)


def test_killed_rank_named_by_survivor(launch_ranks):
    runs = run(launch_ranks, "--fault", "kill", "--fault-rank", "1")
    assert runs[1].returncode == -9, runs.describe()
    assert runs[0].returncode == WATCHDOG_EXIT_CODE, runs.describe()
    # The last step the survivor heard of depends on when heartbeats went out.
    assert re.fullmatch(
        "rank 0 stops: rank 1 exited or lost its watchdog connection; "
        "rank 1 last entered the collective at step [0-9]+",
        stop_message(runs, 0),
    ), stop_message(runs, 0)
    assert runs[0].elapsed_s - runs[1].elapsed_s < TIMEOUT_S + SLACK_S


def test_killed_rank_zero_named_by_survivor(launch_ranks):
    runs = run(launch_ranks, "--fault", "kill", "--fault-rank", "0")
    assert runs[1].returncode == WATCHDOG_EXIT_CODE, runs.describe()
    assert re.fullmatch(
        "rank 1 stops: rank 0 exited or lost its watchdog connection; "
        "rank 0 last entered the collective at step [0-9]+",
        stop_message(runs, 1),
    ), stop_message(runs, 1)


@pytest.mark.parametrize("hung_rank", [1, 0])
def test_hung_rank_stops_every_rank(launch_ranks, hung_rank):
    runs = run(launch_ranks, "--fault", "hang", "--fault-rank", str(hung_rank))
    waiting_rank = 1 - hung_rank
    assert [r.returncode for r in runs] == [WATCHDOG_EXIT_CODE] * 2, runs.describe()
    for rank in (0, 1):
        message = stop_message(runs, rank)
        assert message.startswith(
            f"rank {rank} stops: rank {hung_rank} did not reach the collective at "
            f"step 3 within 3 s, while rank {waiting_rank} waited "
        )
        assert message.endswith(
            f"rank {hung_rank} last entered the collective at step 2"
        )


def test_rank_missing_at_connect(launch_ranks):
    # Only a deadline ends the wait for a rank that never connects the group,
    # such as one stopped with SIGSTOP.
    late_s = 3 * TIMEOUT_S
    runs = run(launch_ranks, "--fault", "sleep-before-init", "--slow-s", str(late_s))
    assert runs[0].returncode == 1, runs.describe()
    assert runs[0].elapsed_s < late_s, runs.describe()
    assert "Timeout (0:00:03)!" in runs[0].stderr
    assert "in init_group" in runs[0].stderr


def test_rank_missing_at_watchdog_start(launch_ranks):
    # The heartbeat does not run yet while rank 0 sends its port to the others.
    late_s = 3 * TIMEOUT_S
    runs = run(
        launch_ranks, "--fault", "sleep-before-watchdog", "--slow-s", str(late_s)
    )
    assert runs[0].returncode == WATCHDOG_EXIT_CODE, runs.describe()
    assert runs[0].elapsed_s < late_s, runs.describe()
    assert stop_message(runs, 0) == (
        "rank 0 stops: the watchdog's port exchange did not finish within 3 s. "
        "Another rank may be stopped, hung or unreachable"
    )


def test_failing_rank_error_reaches_other_rank(launch_ranks):
    runs = run(launch_ranks, "--fault", "raise", "--fault-rank", "1")
    assert runs[1].returncode == 1, runs.describe()
    assert "ValueError: bad batch at step 3" in runs[1].stderr
    assert runs[0].returncode == WATCHDOG_EXIT_CODE, runs.describe()
    assert stop_message(runs, 0) == (
        "rank 0 stops: rank 1 failed: ValueError: bad batch at step 3"
    )


def test_single_process_watchdog_is_noop():
    group = mx.distributed.init(strict=False, backend="any")
    with Watchdog(group, timeout_s=0.1) as watchdog:
        with watchdog.collective("step 0"):
            mx.eval(mx.distributed.all_sum(mx.ones(2), group=group))
    assert not watchdog.enabled


def test_non_positive_timeout_rejected():
    with pytest.raises(ValueError, match="timeout_s must be positive, got 0"):
        Watchdog(None, timeout_s=0)


def test_hub_host_from_ring_hostfile(tmp_path):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text('[["10.0.0.5:5000"], ["10.0.0.6:5000"]]')
    assert hub_host_from_environment({"MLX_HOSTFILE": str(hostfile)}) == "10.0.0.5"


def test_hub_host_override_wins(tmp_path):
    environ = {"MLX_TRAIN_WATCHDOG_HOST": "10.1.1.1", "NCCL_HOST_IP": "10.2.2.2"}
    assert hub_host_from_environment(environ) == "10.1.1.1"


def test_hub_host_defaults_to_loopback():
    assert hub_host_from_environment({}) == "127.0.0.1"
