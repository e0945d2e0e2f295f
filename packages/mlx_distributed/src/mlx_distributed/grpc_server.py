"""gRPC transport of an inference node, and the `mlx-dist-node` command."""

import argparse
import logging
import os
import signal
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc

from mlx_distributed._proto import pipeline_pb2, pipeline_pb2_grpc
from mlx_distributed.blas import BLAS_CHOICES, ensure_fast_blas
from mlx_distributed.sampling import SamplingSettings
from mlx_distributed.sessions import (
    SessionLimitError,
    SessionNotFoundError,
    SessionPositionError,
)
from mlx_distributed.shard_node import (
    ForwardInput,
    InvalidForwardError,
    NoShardError,
    ShardNode,
)
from mlx_distributed.shards import ShardLoadError, ShardSpec
from mlx_distributed.tensors import from_message, to_message

logger = logging.getLogger(__name__)

# Hidden states of a long prompt can be large: 8 x 4096 positions x 8192
# bfloat16 values is 512 MiB, so the limit is set well above the default 4 MiB.
MAX_MESSAGE_BYTES = 1024 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

# Exceptions from the node's work mapped onto gRPC status codes.
ERROR_CODES: list[tuple[type[Exception], grpc.StatusCode]] = [
    (NoShardError, grpc.StatusCode.FAILED_PRECONDITION),
    (SessionNotFoundError, grpc.StatusCode.NOT_FOUND),
    (SessionPositionError, grpc.StatusCode.FAILED_PRECONDITION),
    (SessionLimitError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (InvalidForwardError, grpc.StatusCode.INVALID_ARGUMENT),
    (ShardLoadError, grpc.StatusCode.INVALID_ARGUMENT),
    (FileNotFoundError, grpc.StatusCode.NOT_FOUND),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
]


def _status_for(error: Exception) -> grpc.StatusCode:
    for error_type, code in ERROR_CODES:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.INTERNAL


def _shard_message(node: ShardNode) -> pipeline_pb2.ShardInfo | None:
    if node.shard is None:
        return None
    return pipeline_pb2.ShardInfo(**node.shard.info)


class PipelineShardServicer(pipeline_pb2_grpc.PipelineShardServicer):
    """Maps protocol messages onto a `ShardNode` and its errors onto statuses."""

    def __init__(self, node: ShardNode):
        self.node = node

    def _abort(self, context: grpc.ServicerContext, rpc: str, error: Exception):
        code = _status_for(error)
        if code == grpc.StatusCode.INTERNAL:
            logger.exception("%s failed", rpc)
        else:
            logger.info("%s rejected: %s", rpc, error)
        context.abort(code, str(error))

    def LoadShard(self, request, context):
        spec = ShardSpec(
            model=request.model,
            layer_start=request.layer_start,
            layer_end=request.layer_end,
            dtype=request.dtype,
            adapter=request.adapter,
            dequantize=request.dequantize,
        )
        try:
            shard, seconds = self.node.load(spec)
        except Exception as error:  # noqa: BLE001 - every failure becomes a status
            self._abort(context, "LoadShard", error)
        return pipeline_pb2.LoadShardReply(
            shard=pipeline_pb2.ShardInfo(**shard.info), load_seconds=seconds
        )

    def Forward(self, request, context):
        try:
            forward_input = self._decode_forward(request)
            output = self.node.forward(forward_input)
        except Exception as error:  # noqa: BLE001 - every failure becomes a status
            self._abort(context, "Forward", error)
        if not context.is_active():
            # The client cancelled or timed out while this step ran, so the
            # cache now contains positions the client never received.
            self.node.end_session(request.session_id)
            logger.info("ended session %s after a cancelled call", request.session_id)
            return pipeline_pb2.ForwardReply()
        reply = pipeline_pb2.ForwardReply(compute_seconds=output.compute_seconds)
        if output.hidden is not None:
            reply.hidden.CopyFrom(to_message(output.hidden))
        if output.token_ids is not None:
            reply.token_ids.extend(output.token_ids)
            reply.logprobs.extend(output.logprobs)
        return reply

    def _decode_forward(self, request) -> ForwardInput:
        sampling = None
        if request.HasField("sampling"):
            params = request.sampling
            sampling = SamplingSettings(
                temperature=params.temperature,
                top_p=params.top_p or 1.0,
                seed=params.seed if params.has_seed else None,
            )
        return ForwardInput(
            session_id=request.session_id,
            batch=request.batch,
            length=request.length,
            position=request.position,
            token_ids=list(request.token_ids),
            hidden=from_message(request.hidden) if request.HasField("hidden") else None,
            left_padding=list(request.left_padding),
            keep_rows=list(request.keep_rows),
            sample=request.sample,
            sampling=sampling,
        )

    def EndSession(self, request, context):
        existed = self.node.end_session(request.session_id)
        return pipeline_pb2.EndSessionReply(existed=existed)

    def Health(self, request, context):
        self.node.sessions.expire_idle()
        shard = _shard_message(self.node)
        reply = pipeline_pb2.HealthReply(
            status="ok" if shard is not None else "empty",
            open_sessions=len(self.node.sessions),
            uptime_seconds=time.monotonic() - self.node.started,
            protocol=self.node.capabilities()["protocol"],
        )
        if shard is not None:
            reply.shard.CopyFrom(shard)
        return reply

    def Capabilities(self, request, context):
        return pipeline_pb2.CapabilitiesReply(**self.node.capabilities())


def serve(
    node: ShardNode, host: str = "127.0.0.1", port: int = 0, workers: int = 8
) -> tuple[grpc.Server, int]:
    """Start a gRPC server for `node`; return it and the bound port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers), options=GRPC_OPTIONS
    )
    pipeline_pb2_grpc.add_PipelineShardServicer_to_server(
        PipelineShardServicer(node), server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    server.start()
    return server, bound


def _write_port_file(path: Path, port: int) -> None:
    # Written atomically, so a poller never reads a partial number.
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as handle:
        handle.write(f"{port}\n")
    os.replace(handle.name, path)


def _expire_sessions_forever(node: ShardNode, stop: threading.Event) -> None:
    interval = min(30.0, node.sessions.idle_timeout_s / 4)
    while not stop.wait(interval):
        node.sessions.expire_idle()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlx-dist-node",
        description="Serve one pipeline shard of a model over gRPC.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=50051, help="port to bind; 0 picks a free one"
    )
    parser.add_argument(
        "--port-file",
        type=Path,
        help="write the bound port to this file once the server is ready",
    )
    parser.add_argument(
        "--max-sessions", type=int, default=64, help="open sessions allowed at once"
    )
    parser.add_argument(
        "--session-idle-timeout",
        type=float,
        default=300.0,
        help="seconds after which an unused session's cache is freed",
    )
    parser.add_argument("--workers", type=int, default=8, help="gRPC worker threads")
    parser.add_argument(
        "--blas",
        choices=BLAS_CHOICES,
        help="BLAS for MLX on Linux CPUs (default: $MLX_DISTRIBUTED_BLAS or openblas)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # May restart this process with OpenBLAS preloaded, so it runs first.
    blas = ensure_fast_blas(args.blas)
    logger.info("BLAS: %s (%s)", blas.name, blas.detail)
    node = ShardNode(args.max_sessions, args.session_idle_timeout)
    server, port = serve(node, args.host, args.port, args.workers)
    logger.info("node listening on %s:%s", args.host, port)
    if args.port_file:
        _write_port_file(args.port_file, port)

    stop = threading.Event()
    threading.Thread(
        target=_expire_sessions_forever, args=(node, stop), daemon=True
    ).start()

    def _handle_signal(signum, _frame):
        logger.info("received signal %s, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _handle_signal)
    signal.signal(signal.SIGINT, _handle_signal)
    stop.wait()
    server.stop(grace=2).wait()
    logger.info("node stopped")


if __name__ == "__main__":
    main()
