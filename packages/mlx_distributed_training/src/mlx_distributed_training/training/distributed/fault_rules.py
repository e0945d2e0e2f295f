"""Rules that decide, from every rank's heartbeat, which rank broke a run.

Each rank counts the collectives it has entered. When a rank waits inside a
collective longer than the timeout, the ranks with a lower count are at
fault, because they never arrived. When no rank is behind, the collective
itself is stuck. A rank that failed, closed its connection or went silent is
named before any of that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class RankStatus(StrEnum):
    """Lifecycle of one rank as its heartbeats report it."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class RankView:
    """The watchdog's latest information about one rank."""

    rank: int
    collectives_entered: int
    label: str
    waiting_s: float | None
    status: RankStatus = RankStatus.RUNNING
    error: str = ""
    connected: bool = True
    silent_s: float = 0.0


def position(view: RankView) -> str:
    """Describe the last collective a rank entered, for error messages."""
    if view.collectives_entered == 0:
        return f"rank {view.rank} had not entered a collective yet"
    return f"rank {view.rank} last entered the collective at {view.label}"


def find_lost_rank(views: Sequence[RankView], timeout_s: float) -> str | None:
    """Return a message naming the first rank that failed, disconnected or
    sent no heartbeat for more than ``timeout_s``, or None."""
    for view in sorted(views, key=lambda v: v.rank):
        if view.status is RankStatus.FAILED:
            return f"rank {view.rank} failed: {view.error}"
    for view in sorted(views, key=lambda v: v.rank):
        if view.status is RankStatus.DONE:
            continue
        if not view.connected:
            return (
                f"rank {view.rank} exited or lost its watchdog connection; "
                f"{position(view)}"
            )
        if view.silent_s > timeout_s:
            return (
                f"rank {view.rank} sent no heartbeat for {view.silent_s:.1f} s "
                f"(timeout {timeout_s:g} s); {position(view)}"
            )
    return None


def find_stuck_collective(views: Sequence[RankView], timeout_s: float) -> str | None:
    """Return a message naming the ranks that hold up a collective in which
    some rank has waited longer than ``timeout_s``, or None."""
    waiting = [
        v
        for v in views
        if v.status is RankStatus.RUNNING
        and v.waiting_s is not None
        and v.waiting_s > timeout_s
    ]
    if not waiting:
        return None
    longest = max(waiting, key=lambda v: (v.waiting_s, -v.rank))
    collective = f"the collective at {longest.label}"

    behind = [
        v
        for v in sorted(views, key=lambda v: v.rank)
        if v.collectives_entered < longest.collectives_entered
    ]
    if behind:
        names = _rank_list(behind)
        where = "; ".join(position(v) for v in behind)
        return (
            f"{names} did not reach {collective} within {timeout_s:g} s, "
            f"while rank {longest.rank} waited {longest.waiting_s:.1f} s; {where}"
        )

    running = [v for v in views if v.status is RankStatus.RUNNING]
    if all(v.waiting_s is not None for v in running):
        return (
            f"{_rank_list(running)} all waited more than {timeout_s:g} s in "
            f"{collective}; the collective is stuck"
        )
    left = [v for v in running if v.waiting_s is None]
    return (
        f"rank {longest.rank} waited {longest.waiting_s:.1f} s in {collective} "
        f"that {_rank_list(left)} already left"
    )


def _rank_list(views: Sequence[RankView]) -> str:
    ranks = [str(v.rank) for v in sorted(views, key=lambda v: v.rank)]
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    return f"ranks {', '.join(ranks)}"
