"""Watchdog that turns a dead, failed or stuck rank into an error on every rank.

A collective that one rank never enters blocks the other ranks forever, and
with some backends a dead peer looks the same. So every rank runs a heartbeat
thread on a TCP side channel, apart from MLX's collectives: rank 0 is the hub
and every other rank connects to it. Each heartbeat carries how many
collectives the rank has entered and how long it has waited in the current
one. The hub applies the rules in ``fault_rules`` and sends the verdict to
every rank; other ranks judge only the hub's own liveness. On a verdict each
rank logs a message naming the rank at fault and exits with
``WATCHDOG_EXIT_CODE``, even when its main thread is blocked in a collective
(MLX releases the GIL while it waits).

Usage, on every rank::

    with Watchdog(group, timeout_s=600) as watchdog:
        for step in range(steps):
            ...
            with watchdog.collective(f"step {step}"):
                mx.eval(loss, model.parameters(), optimizer.state)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Iterator, Mapping

import mlx.core as mx

from .fault_rules import (
    RankStatus,
    RankView,
    find_lost_rank,
    find_stuck_collective,
)

logger = logging.getLogger(__name__)

WATCHDOG_EXIT_CODE = 3
HOST_ENV = "MLX_TRAIN_WATCHDOG_HOST"
# Maximum wait, after a collective raises, for the heartbeats to name a dead
# peer before this rank reports the error as its own.
PEER_ERROR_GRACE_S = 5.0


class WatchdogError(RuntimeError):
    """The watchdog side channel could not be set up."""


@contextlib.contextmanager
def exit_if_still_waiting(timeout_s: float, waiting_for: str) -> Iterator[None]:
    """Exit this process with ``WATCHDOG_EXIT_CODE`` if the block has not
    finished after ``timeout_s`` seconds.

    For waits on other ranks before the heartbeat runs, which a rank that
    never arrives (stopped with SIGSTOP, say) would block for ever. The
    timer is a Python thread, so the wait must release the GIL, as MLX's
    collectives do.
    """
    finished = threading.Event()

    def exit_when_late() -> None:
        if finished.wait(timeout_s):
            return
        logger.critical(
            "rank %s stops: %s did not finish within %g s. Another rank may "
            "be stopped, hung or unreachable",
            os.environ.get("MLX_RANK", "0"),
            waiting_for,
            timeout_s,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(WATCHDOG_EXIT_CODE)

    threading.Thread(target=exit_when_late, name="wait-deadline", daemon=True).start()
    try:
        yield
    finally:
        finished.set()


def hub_host_from_environment(environ: Mapping[str, str] = os.environ) -> str:
    """Return the address of rank 0 that the launcher gave every rank.

    Checked in order: ``MLX_TRAIN_WATCHDOG_HOST``, the first address of rank 0
    in the ring hostfile (``MLX_HOSTFILE``), ``NCCL_HOST_IP`` and the JACCL
    coordinator. The fallback is loopback, which works on one machine only.
    """
    if environ.get(HOST_ENV):
        return environ[HOST_ENV]
    hostfile = environ.get("MLX_HOSTFILE")
    if hostfile:
        with contextlib.suppress(OSError, ValueError, LookupError, TypeError):
            with open(hostfile, encoding="utf-8") as handle:
                return json.load(handle)[0][0].rsplit(":", 1)[0]
    if environ.get("NCCL_HOST_IP"):
        return environ["NCCL_HOST_IP"]
    if environ.get("MLX_JACCL_COORDINATOR"):
        return environ["MLX_JACCL_COORDINATOR"].rsplit(":", 1)[0]
    # NOTE: MPI launches give no address of rank 0; a multi-machine MPI run
    # must set MLX_TRAIN_WATCHDOG_HOST or every rank dials its own loopback.
    return "127.0.0.1"


class _Peer:
    """One heartbeat connection and the latest state received on it."""

    def __init__(self, rank: int, sock: socket.socket, now: float):
        self.rank = rank
        self.sock = sock
        self.buffer = b""
        self.connected = True
        self.received_at = now
        self.state: dict = {}

    def view(self, now: float) -> RankView:
        state = self.state
        waiting_s = state.get("waiting_s")
        if waiting_s is not None:
            waiting_s += now - self.received_at
        return RankView(
            rank=self.rank,
            collectives_entered=state.get("entered", 0),
            label=state.get("label", ""),
            waiting_s=waiting_s,
            status=RankStatus(state.get("status", RankStatus.RUNNING)),
            error=state.get("error", ""),
            connected=self.connected,
            silent_s=now - self.received_at,
        )


class Watchdog:
    """Heartbeat monitor for the ranks of ``group``; a no-op for one process.

    ``timeout_s`` bounds both the wait inside one collective and the silence
    of a rank, so it must exceed the longest step. ``host`` is the address
    rank 0 listens on (default: :func:`hub_host_from_environment`).
    """

    def __init__(
        self,
        group: mx.distributed.Group | None,
        timeout_s: float,
        *,
        host: str | None = None,
        heartbeat_interval_s: float | None = None,
    ):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.group = group
        self.rank = group.rank() if group is not None else 0
        self.world_size = group.size() if group is not None else 1
        self.timeout_s = timeout_s
        self.host = host
        self.interval_s = heartbeat_interval_s or min(1.0, timeout_s / 4)
        self._lock = threading.Lock()
        self._entered = 0
        self._label = ""
        self._wait_started: float | None = None
        self._status = RankStatus.RUNNING
        self._error = ""
        self._peers: list[_Peer] = []
        self._stopping = threading.Event()
        self._fault_found = threading.Event()
        self._thread: threading.Thread | None = None
        # collective() writes a byte here so the heartbeat thread reports a
        # new collective at once instead of at the next interval.
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None

    def __enter__(self) -> Watchdog:
        self.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.stop(exc)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    # -- main-thread API ------------------------------------------------------

    def start(self) -> None:
        """Connect every rank to rank 0 and start the heartbeat thread.

        A collective: every rank must call it at the same point, because
        rank 0 sends its listening port to the others with an ``all_sum``.
        """
        if not self.enabled or self._thread is not None:
            return
        host = self.host or hub_host_from_environment()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_writer.setblocking(False)
        if self.rank == 0:
            self._accept_peers(host)
            target = self._run_hub
        else:
            self._connect_to_hub(host)
            target = self._run_member
        self._thread = threading.Thread(
            target=target, name=f"watchdog-rank-{self.rank}", daemon=True
        )
        self._thread.start()

    @contextlib.contextmanager
    def collective(self, label: str | None = None) -> Iterator[None]:
        """Mark the block where this rank waits on collectives.

        Every rank must enter the same marked blocks in the same order, since
        the watchdog compares how many each rank has entered.
        """
        with self._lock:
            self._entered += 1
            self._label = label or f"collective {self._entered}"
            self._wait_started = time.monotonic()
        if self._thread is not None:
            with contextlib.suppress(OSError):
                self._wake_writer.send(b"!")
        try:
            yield
        except Exception:
            # A dead peer can surface here as a backend error (ring: "connection
            # to a peer was lost") before the heartbeats name it. If a verdict
            # arrives during this wait, the heartbeat thread ends the process.
            if self.enabled:
                self._fault_found.wait(min(self.timeout_s, PEER_ERROR_GRACE_S))
            raise
        finally:
            with self._lock:
                self._wait_started = None

    def stop(self, error: BaseException | None = None) -> None:
        """Send this rank's final status to the other ranks and stop the
        heartbeat thread: done, or failed with ``error``. ``SystemExit`` with
        status 0 counts as done."""
        if self._thread is None:
            return
        if isinstance(error, SystemExit) and error.code in (0, None):
            error = None
        with self._lock:
            if error is not None:
                self._status = RankStatus.FAILED
                self._error = f"{type(error).__name__}: {error}"
            else:
                self._status = RankStatus.DONE
        self._stopping.set()
        self._thread.join(timeout=self.interval_s + 5.0)
        self._thread = None

    # -- connection setup -----------------------------------------------------

    def _broadcast_port(self, port: int) -> int:
        contribution = mx.array([port if self.rank == 0 else 0], dtype=mx.int32)
        total = mx.distributed.all_sum(contribution, group=self.group)
        # The heartbeat does not run yet, so a deadline bounds this wait.
        with exit_if_still_waiting(self.timeout_s, "the watchdog's port exchange"):
            return int(total.item())  # the host waits for the collective here

    def _accept_peers(self, host: str) -> None:
        listener = socket.create_server((host, 0))
        try:
            self._broadcast_port(listener.getsockname()[1])
            deadline = time.monotonic() + self.timeout_s
            expected = set(range(1, self.world_size))
            while expected:
                listener.settimeout(max(0.0, deadline - time.monotonic()))
                try:
                    sock, _ = listener.accept()
                    sock.settimeout(max(0.1, deadline - time.monotonic()))
                    hello, rest = _read_line(sock)
                    rank = int(json.loads(hello)["rank"])
                except (TimeoutError, OSError, ValueError, KeyError) as error:
                    missing = ", ".join(str(r) for r in sorted(expected))
                    raise WatchdogError(
                        f"ranks {missing} did not connect to the watchdog on "
                        f"{host}:{listener.getsockname()[1]} within "
                        f"{self.timeout_s:g} s ({error})"
                    ) from error
                expected.discard(rank)
                sock.settimeout(self.interval_s)
                peer = _Peer(rank, sock, time.monotonic())
                peer.buffer = rest
                self._peers.append(peer)
        finally:
            listener.close()

    def _connect_to_hub(self, host: str) -> None:
        port = self._broadcast_port(0)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                sock = socket.create_connection((host, port), timeout=1.0)
                break
            except OSError as error:
                if time.monotonic() > deadline:
                    raise WatchdogError(
                        f"rank {self.rank} could not connect to the watchdog "
                        f"of rank 0 at {host}:{port} within {self.timeout_s:g} s "
                        f"({error}); set {HOST_ENV} to an address of rank 0"
                    ) from error
                time.sleep(0.1)
        sock.settimeout(self.interval_s)
        sock.sendall(_encode({"kind": "hello", "rank": self.rank}))
        self._peers.append(_Peer(0, sock, time.monotonic()))

    # -- heartbeat thread -----------------------------------------------------

    def _run_hub(self) -> None:
        self._run(judge=self._judge_as_hub)

    def _run_member(self) -> None:
        self._run(judge=self._judge_as_member)

    def _run(self, judge) -> None:
        selector = selectors.DefaultSelector()
        for peer in self._peers:
            selector.register(peer.sock, selectors.EVENT_READ, peer)
        selector.register(self._wake_reader, selectors.EVENT_READ, None)
        next_beat = 0.0
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    self._send_all(self._state_message(now))
                    next_beat = now + self.interval_s
                for key, _ in selector.select(max(0.0, next_beat - now)):
                    if key.data is None:
                        self._wake_reader.recv(4096)
                        next_beat = 0.0
                    else:
                        self._receive(key.data, selector)
                judge(time.monotonic())
            # The final state informs the others that this rank is done or
            # failed.
            judge(time.monotonic())
            self._send_all(self._state_message(time.monotonic()))
        except Exception:
            logger.exception("watchdog thread of rank %d failed", self.rank)
        finally:
            selector.close()
            for peer in self._peers:
                peer.sock.close()
            self._wake_reader.close()
            self._wake_writer.close()

    def _judge_as_hub(self, now: float) -> None:
        views = [self._own_view(now)] + [peer.view(now) for peer in self._peers]
        message = find_lost_rank(views, self.timeout_s) or find_stuck_collective(
            views, self.timeout_s
        )
        if message:
            self._send_all(_encode({"kind": "fault", "message": message}))
            self._abort(message)

    def _judge_as_member(self, now: float) -> None:
        message = find_lost_rank([p.view(now) for p in self._peers], self.timeout_s)
        if message:
            self._abort(message)

    def _receive(self, peer: _Peer, selector: selectors.BaseSelector) -> None:
        try:
            data = peer.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            peer.connected = False
            selector.unregister(peer.sock)
            return
        peer.buffer += data
        *lines, peer.buffer = peer.buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if message.get("kind") == "fault":
                self._abort(message["message"])
            elif message.get("kind") == "state":
                peer.state = message
                peer.received_at = time.monotonic()

    def _send_all(self, payload: bytes) -> None:
        for peer in self._peers:
            if not peer.connected:
                continue
            try:
                peer.sock.sendall(payload)
            except OSError:
                peer.connected = False

    def _own_view(self, now: float) -> RankView:
        with self._lock:
            started = self._wait_started
            return RankView(
                rank=self.rank,
                collectives_entered=self._entered,
                label=self._label,
                waiting_s=None if started is None else now - started,
                status=self._status,
                error=self._error,
            )

    def _state_message(self, now: float) -> bytes:
        view = self._own_view(now)
        return _encode(
            {
                "kind": "state",
                "rank": view.rank,
                "entered": view.collectives_entered,
                "label": view.label,
                "waiting_s": view.waiting_s,
                "status": str(view.status),
                "error": view.error,
            }
        )

    def _abort(self, message: str) -> None:
        with self._lock:
            if self._status is not RankStatus.RUNNING:
                return  # this rank already finished or reports its own error
        self._fault_found.set()
        logger.critical("rank %d stops: %s", self.rank, message)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(WATCHDOG_EXIT_CODE)


def _encode(message: dict) -> bytes:
    return json.dumps(message).encode() + b"\n"


def _read_line(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read one line; return it and any bytes received after it."""
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ValueError("connection closed before the hello message")
        data += chunk
    line, rest = data.split(b"\n", 1)
    return line, rest
