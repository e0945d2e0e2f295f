"""Fixture that runs a program as real ranks of a ring group on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

RANK_PROGRAMS = Path(__file__).parent / "rank_programs"


@dataclass
class RankRun:
    """How one rank ended: exit status, output and seconds from start to exit."""

    rank: int
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def run_ranks(
    workdir: Path,
    program: str,
    args: list[str],
    world_size: int = 2,
    timeout_s: float = 120.0,
) -> list[RankRun]:
    """Start ``world_size`` copies of a rank program and wait for all of them.

    With more than one rank each process gets ``MLX_RANK`` and a ring
    ``MLX_HOSTFILE`` with free loopback ports, the variables mlx.launch sets.
    One rank runs without them, as a plain single process.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if world_size > 1:
        hostfile = workdir / "ring_hosts.json"
        ports = _free_ports(world_size)
        hostfile.write_text(json.dumps([[f"127.0.0.1:{p}"] for p in ports]))
        env["MLX_HOSTFILE"] = str(hostfile)
    command = [sys.executable, str(RANK_PROGRAMS / program), *args]

    processes = []
    started = time.monotonic()
    for rank in range(world_size):
        rank_env = dict(env)
        if world_size > 1:
            rank_env["MLX_RANK"] = str(rank)
        stdout = open(workdir / f"rank{rank}.out", "w+")
        stderr = open(workdir / f"rank{rank}.err", "w+")
        process = subprocess.Popen(command, env=rank_env, stdout=stdout, stderr=stderr)
        processes.append((process, stdout, stderr))

    ended: dict[int, float] = {}
    while len(ended) < world_size and time.monotonic() - started < timeout_s:
        for rank, (process, _, _) in enumerate(processes):
            if rank not in ended and process.poll() is not None:
                ended[rank] = time.monotonic() - started
        time.sleep(0.05)

    runs = []
    for rank, (process, stdout, stderr) in enumerate(processes):
        if rank not in ended:
            process.kill()
            process.wait()
        stdout.seek(0)
        stderr.seek(0)
        runs.append(
            RankRun(
                rank=rank,
                returncode=process.returncode if rank in ended else -999,
                stdout=stdout.read(),
                stderr=stderr.read(),
                elapsed_s=ended.get(rank, float("inf")),
            )
        )
        stdout.close()
        stderr.close()
    hung = [run.rank for run in runs if run.returncode == -999]
    if hung:
        details = "\n".join(f"rank {r.rank} stderr:\n{r.stderr}" for r in runs)
        pytest.fail(f"ranks {hung} still ran after {timeout_s} s\n{details}")
    return runs


class RankRuns(list):
    """The runs of every rank, in rank order."""

    def describe(self) -> str:
        """Format every rank's status and output for an assertion message."""
        return "\n".join(
            f"rank {r.rank} exited {r.returncode} after {r.elapsed_s:.1f} s\n"
            f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
            for r in self
        )


@pytest.fixture(scope="session")
def launch_ranks(tmp_path_factory):
    """Return ``launch(program, args, world_size=2, timeout_s=120)``, which runs
    a program from ``rank_programs/`` as real ranks and returns their RankRuns;
    the program's output folder is passed as ``--out``."""

    def launch(
        program: str,
        args: list[str] | None = None,
        world_size: int = 2,
        timeout_s: float = 120.0,
    ) -> RankRuns:
        workdir = tmp_path_factory.mktemp(Path(program).stem)
        runs = run_ranks(
            workdir,
            program,
            ["--out", str(workdir), *(args or [])],
            world_size,
            timeout_s,
        )
        result = RankRuns(runs)
        result.workdir = workdir
        return result

    return launch
