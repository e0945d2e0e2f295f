"""Job states and the transitions allowed between them."""

from enum import StrEnum


class JobState(StrEnum):
    """Lifecycle state of a training job."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

# queued -> running -> succeeded | failed | cancelled. A queued job can also be
# cancelled before it starts, or fail when its process cannot be started.
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.RUNNING: TERMINAL_STATES,
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class InvalidTransitionError(RuntimeError):
    """Raised when a job is moved to a state its current state cannot reach."""

    def __init__(self, job_id: str, current: JobState, target: JobState) -> None:
        super().__init__(
            f"Job {job_id} cannot move from {current.value} to {target.value}"
        )
        self.job_id = job_id
        self.current = current
        self.target = target
