"""Run MLX on an optimized BLAS on Linux CPUs.

MLX's Linux CPU wheel (`mlx-cpu`) links a reference netlib BLAS: a 1024x1024
float32 matmul there runs about 30x slower than numpy's. MLX calls the
standard `cblas_*` names, so preloading OpenBLAS (`LD_PRELOAD`) before the
process starts makes the dynamic loader resolve them to OpenBLAS instead.

OpenBLAS comes from the `cmeel-openblas` wheel, and `blas_libraries` makes
its `libgfortran.so.5` dependency resolvable on machines without one.

`ensure_fast_blas()` is called first thing by command-line entry points: it
re-executes the process with that environment, after a child process has
checked that a matmul through OpenBLAS matches numpy on this CPU.
`blas_environment()` builds the environment for processes we spawn.
`MLX_DISTRIBUTED_BLAS=reference` (or `blas="reference"`) turns it off. On
macOS MLX uses Accelerate and Metal, and nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlx_distributed.blas_libraries import (
    OPENBLAS_PACKAGE,
    gfortran_link_folder_or_none,
    is_mapped,
    openblas_path_or_none,
)

logger = logging.getLogger(__name__)

BLAS_ENV_VAR = "MLX_DISTRIBUTED_BLAS"
# auto: OpenBLAS where it works, else a warning and the reference BLAS.
# openblas: OpenBLAS or an error. reference: MLX's own reference BLAS.
BLAS_CHOICES = ("auto", "openblas", "reference")
# Set in the environment of a process re-executed by ensure_fast_blas, so the
# new process can tell a failed preload from a first start.
REEXEC_ENV_VAR = "MLX_DISTRIBUTED_BLAS_REEXEC"

_CHECK_TIMEOUT_S = 120

# Run in a child process with the OpenBLAS environment: exits 0 only if
# OpenBLAS is mapped and an MLX matmul through it matches numpy.
_CHECK_SCRIPT = """
import sys
import numpy as np
import mlx.core as mx
maps = open("/proc/self/maps").read()
if sys.argv[1] not in maps:
    sys.exit("OpenBLAS was not loaded")
rng = np.random.default_rng(0)
a = rng.standard_normal((96, 80), dtype=np.float32)
b = rng.standard_normal((80, 64), dtype=np.float32)
product = np.array(mx.array(a) @ mx.array(b))
if not np.allclose(product, a @ b, rtol=1e-4, atol=1e-4):
    sys.exit("an MLX matmul through OpenBLAS does not match numpy")
"""


class BlasUnavailableError(RuntimeError):
    """OpenBLAS cannot be used here, for the reason in the message."""


@dataclass(frozen=True)
class BlasStatus:
    """The BLAS that MLX uses in this process, for the one-line report."""

    name: str
    detail: str
    optimized: bool

    def summary(self) -> str:
        """Return the one-line report, e.g. `BLAS: OpenBLAS 0.3.31 (...)`."""
        return f"BLAS: {self.name} ({self.detail})"


def requested_blas(blas: str | None = None) -> str:
    """Return the BLAS choice from `blas`, else `$MLX_DISTRIBUTED_BLAS`, else
    `auto`, raising ValueError for a value outside BLAS_CHOICES."""
    if blas is not None:
        source, value = "blas", blas
    else:
        source, value = BLAS_ENV_VAR, os.environ.get(BLAS_ENV_VAR, "auto")
    choice = value.strip().lower()
    if choice not in BLAS_CHOICES:
        raise ValueError(
            f"{source} is {value!r}; expected one of: {', '.join(BLAS_CHOICES)}"
        )
    return choice


def ensure_fast_blas(
    blas: str | None = None, num_threads: int | None = None
) -> BlasStatus:
    """Make this process use OpenBLAS on Linux, re-executing it if needed.

    Call it before any work, since re-executing restarts the program from the
    beginning with the same arguments (`sys.orig_argv`). `num_threads` sets
    OpenBLAS's thread count (default: one per core); use fewer when several
    processes share the cores, since OpenBLAS threads busy-wait. Returns the
    status of the BLAS in use. Where OpenBLAS cannot be used, `auto` logs a
    one-line warning and returns the reference BLAS status, and `openblas`
    raises BlasUnavailableError.
    """
    choice = requested_blas(blas)
    if not sys.platform.startswith("linux"):
        return _platform_status()

    library = openblas_path_or_none()
    loaded = library is not None and is_mapped(library)
    if choice == "reference":
        setting = (
            "blas='reference'" if blas is not None else f"{BLAS_ENV_VAR}=reference"
        )
        status = _reference_status(f"turned off by {setting}")
        if loaded:
            # Inherited from a parent process's environment: start over
            # without the preload so the reference BLAS is really used.
            reason = _restart_blocker()
            if reason is not None:
                logger.warning("Cannot turn OpenBLAS off: %s", reason)
                return active_blas()
            _reexec(blas_environment(os.environ, blas="reference"))
        return status

    if loaded:
        if num_threads is not None:
            _openblas_handle(library).openblas_set_num_threads(num_threads)
        return active_blas()

    def unavailable(reason: str) -> BlasStatus:
        if choice == "openblas":
            raise BlasUnavailableError(f"OpenBLAS unavailable: {reason}")
        return _fall_back(reason)

    reason = _restart_blocker()
    if reason is not None:
        return unavailable(f"not preloaded, and {reason}")
    if os.environ.get(REEXEC_ENV_VAR) and library is not None:
        if str(library) in os.environ.get("LD_PRELOAD", ""):
            return unavailable("the dynamic loader did not preload it")
    try:
        environment = blas_environment(
            os.environ, blas="openblas", num_threads=num_threads
        )
        _check_environment(environment, library)
    except BlasUnavailableError as error:
        return unavailable(str(error))
    environment[BLAS_ENV_VAR] = choice
    environment[REEXEC_ENV_VAR] = "1"
    _reexec(environment)
    raise AssertionError("unreachable: os.execve returned")


def _restart_blocker() -> str | None:
    """Return why this process cannot be re-executed, or None if it can."""
    if "_pytest" in sys.modules:
        # Re-executing would rerun the whole test session from the start.
        # Programs that tests start as child processes are restarted as usual.
        return "this process is running pytest"
    if sys.argv[0] in ("", "-"):
        return (
            "a program read from standard input cannot be restarted (start it "
            "with the environment from blas_environment())"
        )
    return None


def blas_environment(
    base: Mapping[str, str] | None = None,
    *,
    blas: str | None = None,
    num_threads: int | None = None,
) -> dict[str, str]:
    """Return a copy of `base` (default `os.environ`) for a new MLX process.

    With `auto` or `openblas`, OpenBLAS is put first in `LD_PRELOAD` and the
    gfortran link folder first in `LD_LIBRARY_PATH`. With `reference`, both
    are taken out. `MLX_DISTRIBUTED_BLAS` is set to the choice so the child's
    own `ensure_fast_blas()` agrees, and `num_threads` sets
    OPENBLAS_NUM_THREADS (useful when several ranks share one machine's
    cores). Where OpenBLAS cannot be preloaded, `auto` leaves it out and
    `openblas` raises BlasUnavailableError.
    """
    environment = dict(os.environ if base is None else base)
    choice = requested_blas(blas if blas is not None else environment.get(BLAS_ENV_VAR))
    environment[BLAS_ENV_VAR] = choice
    environment.pop(REEXEC_ENV_VAR, None)
    if num_threads is not None:
        environment["OPENBLAS_NUM_THREADS"] = str(num_threads)
    if not sys.platform.startswith("linux"):
        return environment

    library = openblas_path_or_none()
    links = gfortran_link_folder_or_none()
    # The loader splits LD_PRELOAD at colons and spaces, LD_LIBRARY_PATH at
    # colons only.
    preload = [
        p
        for p in _split_paths(environment.get("LD_PRELOAD"), ": ")
        if p != str(library)
    ]
    search = [
        p for p in _split_paths(environment.get("LD_LIBRARY_PATH")) if p != str(links)
    ]
    problem = _preload_problem(library)
    if choice == "openblas" and problem is not None:
        raise BlasUnavailableError(problem)
    if choice != "reference" and problem is None:
        preload.insert(0, str(library))
        if links is not None:
            search.insert(0, str(links))
    _set_paths(environment, "LD_PRELOAD", preload)
    _set_paths(environment, "LD_LIBRARY_PATH", search)
    return environment


def _preload_problem(library: Path | None) -> str | None:
    """Return why `library` cannot go into LD_PRELOAD, or None if it can."""
    if library is None:
        return f"the {OPENBLAS_PACKAGE} package or its libopenblas.so.0 is missing"
    if any(character in str(library) for character in ": "):
        return (
            f"its path {library} contains a colon or space, which LD_PRELOAD "
            "cannot express"
        )
    return None


def active_blas() -> BlasStatus:
    """Return the status of the BLAS that MLX uses in this process."""
    if not sys.platform.startswith("linux"):
        return _platform_status()
    library = openblas_path_or_none()
    if library is None or not is_mapped(library):
        return _reference_status("MLX's bundled netlib BLAS")
    handle = _openblas_handle(library)
    version = handle.openblas_get_config().decode().split(" ")[:2]
    core = handle.openblas_get_corename().decode()
    threads = handle.openblas_get_num_threads()
    return BlasStatus(
        name=" ".join(version),
        detail=f"{OPENBLAS_PACKAGE}, core {core}, {threads} thread"
        + ("" if threads == 1 else "s"),
        optimized=True,
    )


def _openblas_handle(library: Path) -> ctypes.CDLL:
    handle = ctypes.CDLL(str(library))  # Already loaded: returns its handle.
    handle.openblas_get_config.restype = ctypes.c_char_p
    handle.openblas_get_corename.restype = ctypes.c_char_p
    handle.openblas_set_num_threads.argtypes = [ctypes.c_int]
    return handle


def _platform_status() -> BlasStatus:
    if sys.platform == "darwin":
        return BlasStatus("Accelerate", "macOS, nothing to set up", optimized=True)
    return BlasStatus("MLX default", f"nothing set up on {sys.platform}", True)


def _reference_status(detail: str) -> BlasStatus:
    return BlasStatus("reference netlib BLAS", detail, optimized=False)


def _fall_back(reason: str) -> BlasStatus:
    logger.warning(
        "OpenBLAS unavailable (%s); MLX keeps its reference BLAS, so CPU matmuls "
        "run about 30x slower",
        reason,
    )
    return _reference_status(f"OpenBLAS unavailable: {reason}")


# NOTE: cmeel-openblas 0.3.31's x86_64 library is built for SKYLAKEX only (no
# runtime kernel choice), so on CPUs without AVX-512 this check is expected to
# fail and `auto` to keep the reference BLAS. Untested on such a CPU.
def _check_environment(environment: dict[str, str], library: Path | None) -> None:
    try:
        result = subprocess.run(
            [sys.executable, "-c", _CHECK_SCRIPT, os.path.realpath(str(library))],
            env=environment,
            capture_output=True,
            text=True,
            timeout=_CHECK_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BlasUnavailableError(f"the test process failed: {error}") from error
    if result.returncode == 0:
        return
    lines = result.stderr.strip().splitlines()
    last_line = lines[-1] if lines else ""
    if result.returncode < 0:
        raise BlasUnavailableError(
            f"a test matmul was killed by signal {-result.returncode} {last_line}"
        )
    raise BlasUnavailableError(f"the test process failed: {last_line}")


def _reexec(environment: dict[str, str]) -> None:
    logger.debug("Re-executing %s with LD_PRELOAD set for OpenBLAS", sys.orig_argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, environment)


def _split_paths(value: str | None, separators: str = ":") -> list[str]:
    if not value:
        return []
    for separator in separators[1:]:
        value = value.replace(separator, separators[0])
    return [p for p in value.split(separators[0]) if p]


def _set_paths(environment: dict[str, str], key: str, paths: list[str]) -> None:
    if paths:
        environment[key] = ":".join(paths)
    else:
        environment.pop(key, None)
