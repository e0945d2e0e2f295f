"""Creation of the process group that every distributed piece receives."""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Mapping
from pathlib import Path

import mlx.core as mx

BACKENDS = ("any", "ring", "mpi", "nccl", "jaccl")

# Variables that mlx.launch or mpirun set for the ranks they start. Their
# presence means this process is one rank of several.
LAUNCHER_VARIABLES = (
    "MLX_RANK",
    "MLX_HOSTFILE",
    "MLX_WORLD_SIZE",
    "MLX_JACCL_COORDINATOR",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
)


class DistributedBackendError(RuntimeError):
    """The requested distributed backend could not create a group."""


def launched_by_launcher(environ: Mapping[str, str] = os.environ) -> bool:
    """Return True when a launcher started this process as one of several ranks."""
    return any(environ.get(name) for name in LAUNCHER_VARIABLES)


def init_group(backend: str, timeout_s: float | None = None) -> mx.distributed.Group:
    """Create the global group for ``backend`` (one of :data:`BACKENDS`).

    With ``timeout_s``, a rank still waiting for the others to connect after
    that many seconds prints its Python traceback and exits with status 1.

    ``"any"`` tries every backend MLX has and falls back to a one-process group
    when no launcher started this process. A named backend, or ``"any"``
    under a launcher, must succeed, because a rank that silently trained
    alone would write its own results next to the others'.
    """
    if backend not in BACKENDS:
        raise DistributedBackendError(
            f"unknown distributed backend {backend!r}; "
            f"expected one of {', '.join(BACKENDS)}"
        )
    if _lone_ring_rank(os.environ):
        # mlx.launch gives the only rank of a one-host launch an empty ring
        # hostfile, which MLX cannot parse, so that rank trains alone.
        return _one_process_group()
    strict = backend != "any" or launched_by_launcher()
    if backend != "any" and not mx.distributed.is_available(backend):
        raise DistributedBackendError(
            f"distributed backend {backend!r} is not available: mlx "
            f"{mx.__version__} cannot load its library or find its hardware; "
            "choose another backend or 'any'"
        )
    try:
        if timeout_s is None:
            return mx.distributed.init(strict=strict, backend=backend)
        # mx.distributed.init holds the GIL while it waits for the other
        # ranks (mlx 0.32), so no Python thread can end a wait on a rank that
        # never arrives. faulthandler's timer runs in C and can.
        # NOTE: it replaces, then cancels, any faulthandler timer armed
        # elsewhere in this process, such as pytest's faulthandler_timeout.
        faulthandler.dump_traceback_later(timeout_s, exit=True)
        try:
            return mx.distributed.init(strict=strict, backend=backend)
        finally:
            faulthandler.cancel_dump_traceback_later()
    except RuntimeError as error:
        raise DistributedBackendError(
            f"could not initialize distributed backend {backend!r}: {error}. "
            "Start the ranks with `mlx-train -n N` or `mlx-train --hostfile "
            "FILE`, or set backend to 'any' to train in one process"
        ) from error


def init_single_process_group() -> mx.distributed.Group:
    """Return a group of this process alone, for ``mlx-train -n 1``.

    The configured backend is not consulted: one process needs no transport,
    and a config written for multi-rank runs may name one.
    """
    if launched_by_launcher():
        raise DistributedBackendError(
            "-n 1 trains in this process, but a launcher started it as one "
            "rank of several (MLX_RANK or a similar variable is set); drop -n 1"
        )
    return _one_process_group()


def _one_process_group() -> mx.distributed.Group:
    """Return MLX's group of this process alone.

    Without MLX_HOSTFILE the ring backend cannot start, and a non-strict init
    then returns the one-process group. A set MLX_HOSTFILE is put back after.
    """
    hostfile = os.environ.pop("MLX_HOSTFILE", None)
    try:
        return mx.distributed.init(strict=False, backend="ring")
    finally:
        if hostfile is not None:
            os.environ["MLX_HOSTFILE"] = hostfile


def _lone_ring_rank(environ: Mapping[str, str]) -> bool:
    """Return True when mlx.launch started this process as its only ring rank."""
    path = environ.get("MLX_HOSTFILE")
    if not path or environ.get("MLX_RANK") != "0":
        return False
    try:
        return not Path(path).read_text().strip()
    except OSError:
        return False
