"""A client-side connection to one node, and the errors it raises."""

import threading
import time

import grpc

from mlx_distributed._proto import pipeline_pb2, pipeline_pb2_grpc
from mlx_distributed.grpc_server import GRPC_OPTIONS

# Reconnect quickly after a node restarts; gRPC's default backoff grows to
# two minutes.
CHANNEL_OPTIONS = [
    *GRPC_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10000),
    ("grpc.keepalive_timeout_ms", 5000),
]

# Status codes that mean the node itself is gone or stuck, not the request.
UNREACHABLE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
)


class NodeUnavailableError(RuntimeError):
    """A node is down, unreachable or did not reply before the deadline."""

    def __init__(self, address: str, reason: str):
        self.address = address
        self.reason = reason
        super().__init__(f"node {address} is unavailable: {reason}")


class NodeRequestError(RuntimeError):
    """A node rejected a request (bad input, lost session, no shard)."""

    def __init__(self, address: str, code: grpc.StatusCode, details: str):
        self.address = address
        self.code = code
        self.details = details
        super().__init__(
            f"node {address} rejected the request ({code.name}): {details}"
        )


class NodeConnection:
    """A gRPC channel to one node plus the health the monitor last saw."""

    def __init__(self, address: str):
        self.address = address
        self.channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = pipeline_pb2_grpc.PipelineShardStub(self.channel)
        # The layer range planned for this node.
        self.layers: tuple[int, int] | None = None
        self.healthy = False
        self.last_error = "not checked yet"
        self.last_checked = 0.0
        self.lock = threading.Lock()

    def call(self, method: str, request, timeout_s: float):
        """Call one RPC, turning gRPC errors into this module's errors."""
        try:
            return getattr(self.stub, method)(request, timeout=timeout_s)
        except grpc.RpcError as error:
            raise self.translate(error, method, timeout_s) from None

    def translate(self, error: grpc.RpcError, method: str, timeout_s: float):
        code = error.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return NodeUnavailableError(
                self.address, f"{method} timed out after {timeout_s:g} s"
            )
        if code in UNREACHABLE_CODES:
            return NodeUnavailableError(self.address, error.details() or code.name)
        return NodeRequestError(self.address, code, error.details() or "")

    def mark(self, healthy: bool, error: str = "") -> None:
        with self.lock:
            self.healthy = healthy
            self.last_error = error
            self.last_checked = time.time()

    def health(self, timeout_s: float) -> pipeline_pb2.HealthReply:
        return self.call("Health", pipeline_pb2.HealthRequest(), timeout_s)

    def close(self) -> None:
        self.channel.close()
