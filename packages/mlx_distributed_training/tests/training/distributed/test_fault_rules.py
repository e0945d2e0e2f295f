"""Fault rules: which rank the watchdog names, and the exact message."""

from mlx_distributed_training.training.distributed.fault_rules import (
    RankStatus,
    RankView,
    find_lost_rank,
    find_stuck_collective,
)


def view(rank, entered, waiting_s=None, **fields):
    return RankView(rank, entered, f"step {entered - 1}", waiting_s, **fields)


def test_failed_rank_named_with_error():
    views = [view(0, 3, 1.0), view(1, 2, status=RankStatus.FAILED, error="E: x")]
    assert find_lost_rank(views, 10) == "rank 1 failed: E: x"


def test_disconnected_rank_named_with_last_collective():
    views = [view(0, 3, 1.0), view(1, 3, connected=False)]
    assert find_lost_rank(views, 10) == (
        "rank 1 exited or lost its watchdog connection; "
        "rank 1 last entered the collective at step 2"
    )


def test_silent_rank_named_after_timeout():
    views = [view(0, 1), view(1, 0, silent_s=12.5)]
    assert find_lost_rank(views, 10) == (
        "rank 1 sent no heartbeat for 12.5 s (timeout 10 s); "
        "rank 1 had not entered a collective yet"
    )


def test_finished_rank_is_not_lost():
    views = [view(0, 3), view(1, 3, status=RankStatus.DONE, connected=False)]
    assert find_lost_rank(views, 10) is None


def test_short_wait_is_not_stuck():
    assert find_stuck_collective([view(0, 4, 9.0), view(1, 3)], 10) is None


def test_rank_behind_a_long_wait_is_named():
    views = [view(0, 4, 10.5), view(1, 3)]
    assert find_stuck_collective(views, 10) == (
        "rank 1 did not reach the collective at step 3 within 10 s, while rank 0 "
        "waited 10.5 s; rank 1 last entered the collective at step 2"
    )


def test_all_ranks_waiting_means_stuck_collective():
    views = [view(0, 4, 11.0), view(1, 4, 10.8)]
    assert find_stuck_collective(views, 10) == (
        "ranks 0, 1 all waited more than 10 s in the collective at step 3; "
        "the collective is stuck"
    )


def test_rank_left_behind_in_finished_collective_is_named():
    views = [view(0, 4, 11.0), view(1, 4)]
    assert find_stuck_collective(views, 10) == (
        "rank 0 waited 11.0 s in the collective at step 3 that rank 1 already left"
    )
