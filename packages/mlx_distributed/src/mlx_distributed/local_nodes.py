"""Start and stop `mlx-dist-node` processes on this machine."""

import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlx_distributed.blas import BlasUnavailableError, blas_environment

logger = logging.getLogger(__name__)


class LocalNode:
    """A node process on 127.0.0.1 started by this process."""

    def __init__(self, process: subprocess.Popen, port: int, log_path: Path):
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the process, killing it if it does not exit in time."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_local_node(
    port: int = 0,
    log_dir: Path | None = None,
    startup_timeout_s: float = 60.0,
    extra_args: list[str] | None = None,
) -> LocalNode:
    """Start `mlx-dist-node` on 127.0.0.1 and wait until it reports its port."""
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="mlx-dist-node-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    port_file = Path(tempfile.mkdtemp(dir=log_dir)) / "port"
    log_path = port_file.parent / "node.log"
    command = [
        sys.executable,
        "-m",
        "mlx_distributed.grpc_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--port-file",
        str(port_file),
        *(extra_args or []),
    ]
    try:
        # Preloading OpenBLAS here spares the node a restart to do it itself.
        environment = blas_environment()
    except BlasUnavailableError as error:
        logger.warning("starting a node without OpenBLAS: %s", error)
        environment = dict(os.environ)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment
        )

    deadline = time.monotonic() + startup_timeout_s
    while not port_file.exists():
        if process.poll() is not None:
            raise RuntimeError(
                f"local node exited with code {process.returncode} before "
                f"listening; log: {log_path}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(
                f"local node did not listen within {startup_timeout_s} s; "
                f"log: {log_path}"
            )
        time.sleep(0.05)
    bound = int(port_file.read_text())
    logger.info("started local node pid %s on 127.0.0.1:%s", process.pid, bound)
    return LocalNode(process, bound, log_path)
