"""Start the ranks of ``mlx-train -n N`` or ``mlx-train --hostfile FILE``
through mlx.launch.

The CLI removes ``-n``/``--hostfile`` from its arguments and every rank runs
the same CLI with the rest. mlx.launch (mlx 0.32) stops the other ranks when
one fails but itself exits with status 0, so this module reads its
"Node with rank R exited with code C" warnings to return a non-zero status
and to name the rank that failed first.

mlx.launch stops the other ranks with SIGTERM and waits for them. A rank that
cannot act on it (stopped with SIGSTOP, or stuck in the kernel) would keep
mlx-train waiting for ever, so rank processes still running
``STOP_GRACE_S`` seconds after the first failure are killed. Those are the
local children of mlx.launch: ranks on this machine, and the ssh sessions of
remote ranks. A remote rank process that ignores its stop stays on its host.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlx_distributed import blas_environment

from .group import BACKENDS
from .hostfile import check_backend_matches, load_hostfile
from .launcher_priority import child_pids, lower_launcher_priority_when_started

logger = logging.getLogger(__name__)

TRAIN_MODULE = "mlx_distributed_training.cli.train"
# The variables that mlx_distributed's blas_environment sets or clears.
BLAS_VARIABLES = (
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "MLX_DISTRIBUTED_BLAS",
    "OPENBLAS_NUM_THREADS",
)
STOP_GRACE_S = 10.0
# mlx.launch's own warning. Its "[WARN]" prefix sets it apart from rank output.
_RANK_EXIT = re.compile(
    r"\[WARN\] Node with rank (?P<rank>\d+) "
    r"(?:exited with code (?P<code>-?\d+)|was killed)"
)


class LaunchError(ValueError):
    """Invalid launch arguments, or no mlx.launch to run."""


@dataclass(frozen=True)
class LaunchRequest:
    """Placement of the ranks: ``num_processes`` local ranks or a hostfile."""

    num_processes: int | None = None
    hostfile: Path | None = None

    @property
    def in_process(self) -> bool:
        """True for ``-n 1``: this process trains alone, without mlx.launch."""
        return self.num_processes == 1 and self.hostfile is None


@dataclass(frozen=True)
class RankFailure:
    """A rank that mlx.launch reported as failed; ``exit_code`` is None when
    mlx.launch stopped the rank itself after another rank failed."""

    rank: int
    exit_code: int | None


@dataclass
class LaunchOutcome:
    """The status of a launch and the failed ranks, in the order reported."""

    exit_code: int
    failures: list[RankFailure] = field(default_factory=list)


def split_launch_arguments(
    argv: Sequence[str],
) -> tuple[LaunchRequest | None, list[str]]:
    """Remove ``-n N`` and ``--hostfile FILE`` from ``argv``.

    Return the launch request (None when neither option is present; for
    ``-n 1`` a request whose ``in_process`` is true) and the arguments every
    rank receives.
    """
    num_processes: int | None = None
    hostfile: Path | None = None
    rest: list[str] = []
    index = 0
    while index < len(argv):
        argument = argv[index]
        name, value, consumed = _option_value(argv, index, ("-n", "--hostfile"))
        if name is None:
            rest.append(argument)
            index += 1
            continue
        index += consumed
        if name == "-n":
            try:
                num_processes = int(value)
            except ValueError:
                num_processes = 0
            if num_processes < 1:
                raise LaunchError(
                    f"-n expects a positive number of processes, got {value!r}"
                )
        else:
            hostfile = Path(value)
    if num_processes is not None and hostfile is not None:
        raise LaunchError(
            "-n and --hostfile cannot be combined; the hostfile lists every rank"
        )
    if hostfile is None and num_processes is None:
        return None, rest
    return LaunchRequest(num_processes=num_processes, hostfile=hostfile), rest


def rank_environment(
    threads_per_rank: int | None = None, blas: str | None = None
) -> dict[str, str]:
    """Return the BLAS variables that every rank starts with.

    They come from mlx_distributed's ``blas_environment``: on Linux it
    preloads OpenBLAS, unless ``blas`` (or ``MLX_DISTRIBUTED_BLAS``) is
    ``"reference"``. ``threads_per_rank`` sets OPENBLAS_NUM_THREADS. Every
    variable is passed explicitly, because ranks on other hosts do not inherit
    this process's environment; an empty value clears the variable there.
    """
    try:
        environment = blas_environment(
            os.environ, blas=blas, num_threads=threads_per_rank
        )
    except RuntimeError as error:
        logger.warning("ranks keep MLX's reference BLAS: %s", error)
        environment = blas_environment(
            os.environ, blas="reference", num_threads=threads_per_rank
        )
    return {name: environment.get(name, "") for name in BLAS_VARIABLES}


def mlx_launch_command() -> list[str]:
    """Return the command that starts mlx.launch from this environment."""
    beside_python = Path(sys.executable).parent / "mlx.launch"
    if beside_python.exists():
        return [str(beside_python)]
    found = shutil.which("mlx.launch")
    if found:
        return [found]
    raise LaunchError(
        "mlx.launch was not found next to the Python interpreter or on PATH; "
        "install mlx >= 0.29 in this environment"
    )


def build_launch_command(
    rank_command: Sequence[str],
    request: LaunchRequest,
    backend: str,
    env: Mapping[str, str],
    *,
    starting_port: int | None = None,
) -> list[str]:
    """Build the mlx.launch command line that runs ``rank_command`` on every
    rank of ``request`` with ``backend`` and the variables in ``env``."""
    if backend not in BACKENDS:
        raise LaunchError(
            f"unknown distributed backend {backend!r}; "
            f"expected one of {', '.join(BACKENDS)}"
        )
    command = mlx_launch_command()
    if request.hostfile is not None:
        backend = check_backend_matches(load_hostfile(request.hostfile), backend)
        command += ["--hostfile", str(request.hostfile)]
    else:
        command += ["-n", str(request.num_processes)]
    if backend != "any":
        command += ["--backend", backend]
    if starting_port is not None:
        command += ["--starting-port", str(starting_port)]
    for name, value in sorted(env.items()):
        command += ["--env", f"{name}={value}"]
    # "--" keeps rank options such as --backend away from mlx.launch's parser.
    return [*command, "--", *rank_command]


def run_launch(
    command: Sequence[str],
    rank_count: int | None = None,
    stop_grace_s: float = STOP_GRACE_S,
) -> LaunchOutcome:
    """Run an mlx.launch command, pass its output through and return the
    status of the launch with the ranks that failed.

    With ``rank_count``, mlx.launch drops to the lowest priority once it has
    started that many ranks (see ``launcher_priority``). Rank processes still
    running ``stop_grace_s`` seconds after a rank failed are killed.
    """
    failures: list[RankFailure] = []
    killer: threading.Timer | None = None
    # mlx.launch polls its stdin and forwards it to the ranks. An open pipe
    # without data keeps that poll idle, while end of file makes it spin.
    process = subprocess.Popen(
        list(command),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    if rank_count is not None:
        lower_launcher_priority_when_started(process.pid, rank_count)
    for line in process.stderr:
        sys.stderr.write(line)
        sys.stderr.flush()
        match = _RANK_EXIT.search(line)
        if match:
            code = match.group("code")
            failures.append(
                RankFailure(int(match.group("rank")), int(code) if code else None)
            )
            if killer is None:
                killer = threading.Timer(
                    stop_grace_s, _kill_ranks_left, (process, stop_grace_s)
                )
                killer.daemon = True
                killer.start()
    process.stdin.close()
    launcher_status = process.wait()
    if killer is not None:
        killer.cancel()

    for failure in failures:
        if failure.exit_code is None:
            logger.error("rank %d was stopped by mlx.launch", failure.rank)
        else:
            logger.error("rank %d exited with code %d", failure.rank, failure.exit_code)
    if launcher_status != 0:
        return LaunchOutcome(launcher_status, failures)
    for failure in failures:
        if failure.exit_code is not None:
            return LaunchOutcome(_shell_status(failure.exit_code), failures)
    return LaunchOutcome(1 if failures else 0, failures)


def launch_ranks(
    rank_command: Sequence[str],
    request: LaunchRequest,
    backend: str,
    blas: str | None = None,
) -> LaunchOutcome:
    """Start ``rank_command`` on every rank of ``request`` and wait for all.

    Local ranks split this machine's cores between them (OpenBLAS threads);
    ranks from a hostfile keep OpenBLAS's own default.
    """
    starting_port = None
    threads_per_rank = None
    if request.hostfile is None:
        rank_count = request.num_processes or 1
        threads_per_rank = max(1, (os.cpu_count() or 1) // rank_count)
        if backend in ("any", "ring"):
            # mlx.launch's default ports are fixed, so two local runs collide.
            starting_port = find_free_port_range(rank_count)
        launched_backend = backend
    else:
        hostfile = load_hostfile(request.hostfile)
        rank_count = len(hostfile.hosts)
        launched_backend = check_backend_matches(hostfile, backend)
    command = build_launch_command(
        rank_command,
        request,
        backend,
        rank_environment(threads_per_rank, blas),
        starting_port=starting_port,
    )
    logger.info("starting ranks: %s", " ".join(command))
    # With MPI, mlx.launch hands over to mpirun and relays no output itself.
    return run_launch(command, None if launched_backend == "mpi" else rank_count)


def launch_training(
    rank_argv: Sequence[str],
    request: LaunchRequest,
    backend: str,
    blas: str | None = None,
) -> int:
    """Run ``mlx-train`` with ``rank_argv`` on every rank; return the exit status."""
    rank_command = [sys.executable, "-m", TRAIN_MODULE, *rank_argv]
    return launch_ranks(rank_command, request, backend, blas).exit_code


def find_free_port_range(count: int, attempts: int = 50) -> int:
    """Return the first of ``count`` consecutive loopback ports that are free.

    The ports are free when checked; another process may still take one
    before the ranks bind it.
    """
    for _ in range(attempts):
        first = random.randint(20000, 60000 - count)
        if all(_port_is_free(first + offset) for offset in range(count)):
            return first
    raise LaunchError(f"found no {count} consecutive free ports on 127.0.0.1")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kill_ranks_left(launcher: subprocess.Popen, grace_s: float) -> None:
    """Kill the rank processes mlx.launch still waits for."""
    if launcher.poll() is not None:
        return
    for pid in child_pids(launcher.pid):
        logger.error(
            "rank process %d did not stop within %.0f s of a rank's failure; "
            "killing it",
            pid,
            grace_s,
        )
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _shell_status(exit_code: int) -> int:
    """Map a Popen return code to a shell exit status (signal N gives 128+N)."""
    return 128 - exit_code if exit_code < 0 else exit_code


def _option_value(
    argv: Sequence[str], index: int, names: tuple[str, ...]
) -> tuple[str | None, str, int]:
    """Match ``argv[index]`` against options that take one value.

    Return ``(name, value, arguments consumed)`` or ``(None, "", 0)``. Accepted
    forms are ``--opt value``, ``--opt=value`` and, for ``-n``, ``-n4``.
    """
    argument = argv[index]
    for name in names:
        if argument == name:
            if index + 1 >= len(argv):
                raise LaunchError(f"{name} expects a value")
            return name, argv[index + 1], 2
        if argument.startswith(name + "="):
            return name, argument[len(name) + 1 :], 1
        if name == "-n" and argument.startswith("-n") and argument[2:].isdigit():
            return name, argument[2:], 1
    return None, "", 0
