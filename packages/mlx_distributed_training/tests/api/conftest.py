"""Fixtures that run `mlx-train-serve` as a real uvicorn process."""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")
STARTUP_TIMEOUT_S = 60.0


def _server_environment(outside_pytest: bool) -> dict[str, str]:
    """Return the environment for a server process.

    With `outside_pytest`, PYTEST_CURRENT_TEST is dropped. mlx-train skips its
    restart with OpenBLAS preloaded when that variable is set, so without it
    the jobs start exactly as they do for a user, restart included.
    """
    environment = dict(os.environ)
    if outside_pytest:
        environment.pop("PYTEST_CURRENT_TEST", None)
    return environment


class ServerProcess:
    """One `mlx-train-serve` process on a free loopback port."""

    def __init__(
        self,
        db: Path,
        jobs_dir: Path,
        log_path: Path,
        *flags: str,
        outside_pytest: bool = False,
    ):
        self.db = db
        self.jobs_dir = jobs_dir
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "mlx_distributed_training.api.server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--db",
            str(db),
            "--jobs-dir",
            str(jobs_dir),
            *flags,
        ]
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_server_environment(outside_pytest),
            )
        self.url = self._wait_until_listening()
        self.client = httpx.Client(base_url=self.url, timeout=30.0)
        self._wait_until_healthy()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_until_listening(self) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            match = LISTENING.search(self.log())
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                raise RuntimeError(f"mlx-train-serve exited early:\n{self.log()}")
            time.sleep(0.05)
        raise TimeoutError(f"mlx-train-serve did not start:\n{self.log()}")

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"mlx-train-serve exited early:\n{self.log()}")
            time.sleep(0.05)
        raise TimeoutError(f"mlx-train-serve is not healthy:\n{self.log()}")

    def wait_for_job(
        self,
        job_id: str,
        until: Callable[[dict], bool],
        timeout: float = 120.0,
    ) -> dict:
        """Poll GET /v1/jobs/{id} until `until(job)` is true, and return that job."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.client.get(f"/v1/jobs/{job_id}").json()
            if until(job):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} stuck: {job}\n{self.log()}")
            time.sleep(0.1)

    def all_events(self, job_id: str) -> list[dict]:
        events, cursor = [], 0
        while True:
            page = self.client.get(
                f"/v1/jobs/{job_id}/events", params={"after": cursor, "limit": 1000}
            ).json()
            events += page["events"]
            cursor = page["next_cursor"]
            if not page["has_more"]:
                return events

    def stop(self) -> int:
        """Stop the server as Ctrl-C would and return its exit code."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would, leaving its jobs."""
        self.client.close()
        self.process.kill()
        self.process.wait()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Return a function that starts a server on this test's db and jobs folder."""
    servers: list[ServerProcess] = []

    def start(*flags: str, outside_pytest: bool = False) -> ServerProcess:
        server = ServerProcess(
            tmp_path / "jobs.sqlite3",
            tmp_path / "jobs",
            tmp_path / f"server-{len(servers)}.log",
            *flags,
            outside_pytest=outside_pytest,
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def finished_jobs_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """A server whose database contains three succeeded jobs and nothing to run.

    The jobs are written through the store before the server starts, so tests
    of paging and errors start no training process.
    """
    from mlx_distributed_training.api.states import JobState
    from mlx_distributed_training.api.store import JobStore

    root = tmp_path_factory.mktemp("finished-jobs")
    store = JobStore(root / "jobs.sqlite3")
    for index in range(3):
        job_dir = root / "jobs" / f"job-done{index}"
        store.create_job(f"job-done{index}", {"max_steps": 1}, job_dir, job_dir)
        store.claim_next_queued()
        store.finish_job(f"job-done{index}", JobState.SUCCEEDED, exit_code=0)
    store.close()
    server = ServerProcess(root / "jobs.sqlite3", root / "jobs", root / "server.log")
    yield server
    server.stop()


def pid_is_running(pid: int) -> bool:
    """Return whether `pid` runs and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return not stat[stat.rindex(")") + 2 :].startswith("Z")


@pytest.fixture
def process_is_running() -> Callable[[int], bool]:
    return pid_is_running


@pytest.fixture
def train_config(tiny_model_dir: Path, chat_data_dir: Path) -> Callable[..., dict]:
    """Return a function that builds a job config for the tiny model and data.

    `tiny_model_dir` and `chat_data_dir` come from the package's conftest: a
    random 2-layer llama with a BPE tokenizer, and short chat examples.

    The default trains 3 steps and saves checkpoints at steps 2 and 3.
    """

    def build(**overrides) -> dict:
        config = {
            "model": str(tiny_model_dir),
            "data": str(chat_data_dir),
            "lora_layers": 2,
            "micro_batch_size": 2,
            "max_seq_length": 32,
            "max_steps": 3,
            "report_interval_steps": 1,
            "eval_interval_steps": 2,
            "save_interval_steps": 2,
            "exact_match_samples": 0,
        }
        config.update(overrides)
        return config

    return build


@pytest.fixture
def long_train_config(train_config: Callable[..., dict]) -> dict:
    """A config that trains far longer than any test waits, so it must be stopped."""
    return train_config(
        max_steps=10_000_000,
        report_interval_steps=20,
        eval_interval_steps=0,
        save_interval_steps=0,
    )
