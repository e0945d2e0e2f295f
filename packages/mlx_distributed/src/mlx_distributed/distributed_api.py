"""OpenAI-compatible HTTP API over a cluster, and the `mlx-dist-serve` command."""

import argparse
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from mlx_distributed.api_schemas import ChatCompletionRequest, CompletionRequest
from mlx_distributed.blas import BLAS_CHOICES, ensure_fast_blas
from mlx_distributed.distributed_config import ClusterConfig, load_cluster_config
from mlx_distributed.grpc_client import DistributedInferenceClient, GenerationChunk
from mlx_distributed.node_connection import NodeRequestError, NodeUnavailableError

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8100


class ClusterUnavailable(Exception):
    """The cluster is still starting or failed to start."""


class ClusterHolder:
    """Starts the client in the background so the server replies at once.

    Starting loads every shard (and, for the default model, imports it on
    first use), which can take minutes; requests until then get 503.
    """

    def __init__(self, config: ClusterConfig | None, client=None):
        self.config = config
        self.client: DistributedInferenceClient | None = client
        self.error: str | None = None
        self.ready = threading.Event()
        if client is not None:
            self.ready.set()

    def start_in_background(self) -> None:
        if self.ready.is_set():
            return
        threading.Thread(target=self._start, name="cluster-start", daemon=True).start()

    def _start(self) -> None:
        try:
            self.client = DistributedInferenceClient(self.config)
        except Exception as error:  # noqa: BLE001 - reported through /health
            logger.exception("cluster failed to start")
            self.error = f"cluster failed to start: {error}"
        self.ready.set()

    def require_client(self) -> DistributedInferenceClient:
        if not self.ready.is_set():
            raise ClusterUnavailable("cluster is starting; retry shortly")
        if self.client is None:
            raise ClusterUnavailable(self.error or "cluster is not running")
        return self.client


def _error(status: int, message: str, kind: str, param: str | None = None):
    body = {"error": {"message": message, "type": kind, "param": param}}
    return JSONResponse(body, status_code=status)


def _sse(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n"


def create_app(
    config: ClusterConfig | None = None,
    client: DistributedInferenceClient | None = None,
) -> FastAPI:
    """Build the API for a cluster config, or around an already started client."""
    holder = ClusterHolder(config, client)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        holder.start_in_background()
        yield
        if client is None and holder.client is not None:
            holder.client.close()

    app = FastAPI(title="mlx-distributed inference", lifespan=lifespan)
    app.state.holder = holder

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, error: RequestValidationError):
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"] if part != "body")
        message = f"{field or 'body'}: {first['msg']}"
        return _error(400, message, "invalid_request_error", field or None)

    @app.exception_handler(ClusterUnavailable)
    async def _cluster_unavailable(_request: Request, error: ClusterUnavailable):
        return _error(503, str(error), "service_unavailable")

    @app.exception_handler(NodeUnavailableError)
    async def _node_unavailable(_request: Request, error: NodeUnavailableError):
        return _error(503, str(error), "service_unavailable")

    @app.exception_handler(NodeRequestError)
    async def _node_rejected(_request: Request, error: NodeRequestError):
        logger.error("node %s rejected a request: %s", error.address, error)
        return _error(502, str(error), "node_error")

    @app.exception_handler(ValueError)
    async def _bad_value(_request: Request, error: ValueError):
        return _error(400, str(error), "invalid_request_error")

    @app.get("/health")
    def read_health():
        """Cluster health: 200 when every node serves its shard, else 503."""
        if not holder.ready.is_set():
            return JSONResponse({"status": "starting"}, status_code=503)
        if holder.client is None:
            return JSONResponse(
                {"status": "failed", "error": holder.error}, status_code=503
            )
        cluster = holder.client.health()
        status = "ok" if cluster["healthy"] else "degraded"
        body = {"status": status, "nodes": cluster["nodes"]}
        return JSONResponse(body, status_code=200 if status == "ok" else 503)

    @app.get("/v1/cluster")
    def read_cluster():
        """Show the nodes, their layer ranges and health."""
        return holder.require_client().health()

    @app.get("/v1/models")
    def list_models():
        """List the one model this cluster serves."""
        model_id = _model_id(holder)
        return {
            "object": "list",
            "data": [
                {"id": model_id, "object": "model", "owned_by": "mlx-distributed"}
            ],
        }

    @app.post("/v1/completions")
    def create_completion(body: CompletionRequest):
        """Complete a prompt (text or token ids)."""
        client = holder.require_client()
        prompt_ids = client.encode(body.prompt)
        return _respond(holder, client, body, prompt_ids, chat=False)

    @app.post("/v1/chat/completions")
    def create_chat_completion(body: ChatCompletionRequest):
        """Reply to a conversation rendered with the model's chat template."""
        client = holder.require_client()
        messages = [message.model_dump() for message in body.messages]
        prompt_ids = client.encode_chat(messages)
        return _respond(holder, client, body, prompt_ids, chat=True)

    return app


def _model_id(holder: ClusterHolder) -> str:
    config = holder.client.config if holder.client else holder.config
    model = config.model if config else None
    return model or "default"


def _respond(holder, client, body, prompt_ids: list[int], chat: bool):
    kwargs = {
        "max_tokens": body.max_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "stop": body.stop,
        "seed": body.seed,
    }
    response_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    model_id = _model_id(holder)
    if body.stream:
        chunks = client.stream(prompt_ids, **kwargs)
        # Start the generation before sending headers, so a node that is down
        # becomes a 503 rather than an error inside a 200 stream.
        first = next(chunks)
        events = _stream_events(first, chunks, response_id, created, model_id, chat)
        return StreamingResponse(events, media_type="text/event-stream")

    result = client.generate(prompt_ids, **kwargs)
    usage = {
        "prompt_tokens": len(prompt_ids),
        "completion_tokens": len(result.token_ids),
        "total_tokens": len(prompt_ids) + len(result.token_ids),
    }
    if chat:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": result.text},
            "finish_reason": result.finish_reason,
        }
    else:
        choice = {
            "index": 0,
            "text": result.text,
            "finish_reason": result.finish_reason,
        }
    return {
        "id": response_id,
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": model_id,
        "choices": [choice],
        "usage": usage,
    }


def _stream_events(
    first: GenerationChunk,
    chunks: Iterator[GenerationChunk],
    response_id: str,
    created: int,
    model_id: str,
    chat: bool,
) -> Iterator[str]:
    kind = "chat.completion.chunk" if chat else "text_completion"

    def event(chunk: GenerationChunk, role: bool = False) -> dict:
        if chat:
            delta = {"content": chunk.text}
            if role:
                delta["role"] = "assistant"
            choice = {"index": 0, "delta": delta}
        else:
            choice = {"index": 0, "text": chunk.text}
        choice["finish_reason"] = chunk.finish_reason
        return {
            "id": response_id,
            "object": kind,
            "created": created,
            "model": model_id,
            "choices": [choice],
        }

    try:
        yield _sse(event(first, role=True))
        for chunk in chunks:
            yield _sse(event(chunk))
    except (NodeUnavailableError, NodeRequestError) as error:
        logger.warning("stream %s failed: %s", response_id, error)
        yield _sse({"error": {"message": str(error), "type": "service_unavailable"}})
    finally:
        chunks.close()
    yield _sse("[DONE]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlx-dist-serve",
        description="Serve a pipeline-parallel cluster through an OpenAI-compatible "
        "HTTP API. Without --config, the embedded default model runs on two "
        "local nodes.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("MLX_DIST_CONFIG"),
        help="cluster file, YAML or JSON (env MLX_DIST_CONFIG)",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("MLX_DIST_HOST", DEFAULT_HOST),
        help="address to bind (env MLX_DIST_HOST, default %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("MLX_DIST_PORT", DEFAULT_PORT)),
        help="port to bind (env MLX_DIST_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--blas",
        choices=BLAS_CHOICES,
        help="BLAS for MLX on Linux CPUs (default: $MLX_DISTRIBUTED_BLAS or openblas)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level")
    return parser


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # May restart this process with OpenBLAS preloaded, so it runs first.
    blas = ensure_fast_blas(args.blas)
    logger.info("BLAS: %s (%s)", blas.name, blas.detail)
    config = load_cluster_config(args.config) if args.config else None
    app = create_app(config)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower())


if __name__ == "__main__":
    main()
