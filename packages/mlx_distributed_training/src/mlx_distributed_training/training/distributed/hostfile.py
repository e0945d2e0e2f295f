"""Validation of the JSON hostfile that ``mlx-train --hostfile`` hands to
mlx.launch.

The format is mlx.launch's: either a list of hosts or an object with
``hosts`` and optionally ``backend`` and ``envs``. Each host has ``ssh`` (the
name to ssh into), ``ips`` (addresses the ring backend connects to) and
``rdma`` (JACCL device names). mlx.launch reports a malformed file without
saying which entry is wrong, so it is checked here first.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path

HOSTFILE_BACKENDS = ("ring", "mpi", "nccl", "jaccl", "jaccl-ring")
_TOP_LEVEL_KEYS = ("hosts", "backend", "envs")
_HOST_KEYS = ("ssh", "ips", "rdma")
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class HostfileError(ValueError):
    """A hostfile that mlx.launch cannot use; the message names the entry."""


@dataclass(frozen=True)
class Host:
    """One machine of the launch, in hostfile order (its index is its rank)."""

    ssh: str
    ips: tuple[str, ...]


@dataclass(frozen=True)
class Hostfile:
    """A validated hostfile."""

    path: Path
    hosts: tuple[Host, ...]
    backend: str
    envs: tuple[str, ...]


def load_hostfile(path: str | Path) -> Hostfile:
    """Read and validate a hostfile, raising HostfileError on the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise HostfileError(f"hostfile {path} not found") from error
    except OSError as error:
        raise HostfileError(f"could not read hostfile {path}: {error}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise HostfileError(
            f"{path}: invalid JSON at line {error.lineno} column {error.colno}: "
            f"{error.msg}"
        ) from error

    backend, envs = "", ()
    if isinstance(data, dict):
        _reject_unknown_keys(path, "top level", data, _TOP_LEVEL_KEYS)
        if "hosts" not in data:
            raise HostfileError(f"{path}: missing key 'hosts'")
        backend = _check_backend(path, data.get("backend", ""))
        envs = _check_envs(path, data.get("envs", []))
        entries = data["hosts"]
    else:
        entries = data
    if not isinstance(entries, list):
        raise HostfileError(
            f"{path}: 'hosts' must be a list of host objects, "
            f"got {type(entries).__name__}"
        )
    if not entries:
        raise HostfileError(f"{path}: 'hosts' is empty")
    hosts = tuple(
        _check_host(path, index, entry) for index, entry in enumerate(entries)
    )
    return Hostfile(path=path, hosts=hosts, backend=backend, envs=envs)


def check_backend_matches(hostfile: Hostfile, backend: str) -> str:
    """Return the backend to launch with, given the configured ``backend``
    (``"any"`` or a name) and the hostfile's own ``backend`` entry."""
    if backend != "any" and hostfile.backend and backend != hostfile.backend:
        raise HostfileError(
            f"{hostfile.path}: backend {hostfile.backend!r} conflicts with the "
            f"configured backend {backend!r}; remove one of them"
        )
    chosen = hostfile.backend if backend == "any" else backend
    if chosen == "ring":
        for rank, host in enumerate(hostfile.hosts):
            if not host.ips:
                raise HostfileError(
                    f"{hostfile.path}: hosts[{rank}] ({host.ssh}) has no 'ips'; "
                    "the ring backend needs an IP address for every host"
                )
    return chosen or "any"


def _check_host(path: Path, index: int, entry: object) -> Host:
    where = f"{path}: hosts[{index}]"
    if not isinstance(entry, dict):
        raise HostfileError(
            f"{where} must be an object with 'ssh', got {type(entry).__name__}"
        )
    _reject_unknown_keys(path, f"hosts[{index}]", entry, _HOST_KEYS)
    ssh = entry.get("ssh")
    if not isinstance(ssh, str) or not ssh.strip():
        raise HostfileError(f"{where}: 'ssh' must be a non-empty host name")
    ips = entry.get("ips", [])
    if not isinstance(ips, list):
        raise HostfileError(f"{where}: 'ips' must be a list of IP addresses")
    for position, ip in enumerate(ips):
        try:
            ipaddress.ip_address(ip)
        except (ValueError, TypeError) as error:
            raise HostfileError(
                f"{where}: ips[{position}] {ip!r} is not an IP address"
            ) from error
    rdma = entry.get("rdma", [])
    if not isinstance(rdma, list) or not all(
        device is None or isinstance(device, str | list) for device in rdma
    ):
        raise HostfileError(f"{where}: 'rdma' must be a list of device names or null")
    return Host(ssh=ssh, ips=tuple(ips))


def _check_backend(path: Path, backend: object) -> str:
    if backend == "":
        return ""
    if backend not in HOSTFILE_BACKENDS:
        raise HostfileError(
            f"{path}: backend {backend!r} is not one of {', '.join(HOSTFILE_BACKENDS)}"
        )
    return str(backend)


def _check_envs(path: Path, envs: object) -> tuple[str, ...]:
    if not isinstance(envs, list):
        raise HostfileError(f"{path}: 'envs' must be a list of NAME=VALUE strings")
    for index, assignment in enumerate(envs):
        if not isinstance(assignment, str) or not _ENV_ASSIGNMENT.match(assignment):
            raise HostfileError(
                f"{path}: envs[{index}] {assignment!r} is not a NAME=VALUE string"
            )
    return tuple(envs)


def _reject_unknown_keys(
    path: Path, where: str, entry: dict, allowed: tuple[str, ...]
) -> None:
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise HostfileError(
            f"{path}: {where}: unknown key {unknown[0]!r}; "
            f"expected {', '.join(allowed)}"
        )
