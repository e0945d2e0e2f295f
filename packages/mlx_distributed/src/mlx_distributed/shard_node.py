"""The work of one inference node: hold a shard and run sessions through it.

Transport-free; `grpc_server` maps protocol messages onto this class.
"""

import logging
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import mlx.core as mx

from mlx_distributed.sampling import SamplingSettings, TokenSampler
from mlx_distributed.sessions import Session, SessionStore
from mlx_distributed.shards import Shard, ShardSpec, load_shard

logger = logging.getLogger(__name__)

PROTOCOL = "mlx_distributed.pipeline.v1"


class NoShardError(Exception):
    """A forward request reached a node that has no shard loaded."""


class InvalidForwardError(ValueError):
    """A forward request whose inputs do not fit the shard."""


@dataclass
class ForwardInput:
    """One forward request, decoded from the wire."""

    session_id: str
    batch: int
    length: int
    position: int
    token_ids: list[int] | None = None
    hidden: mx.array | None = None
    left_padding: list[int] | None = None
    keep_rows: list[int] | None = None
    sample: bool = False
    sampling: SamplingSettings | None = None


@dataclass
class ForwardOutput:
    hidden: mx.array | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    compute_seconds: float = 0.0


def available_memory_bytes() -> int:
    """Memory this node can give to weights and caches, in bytes."""
    if mx.metal.is_available():
        info = mx.device_info()
        return int(info.get("max_recommended_working_set_size", 0)) or int(
            info.get("memory_size", 0)
        )
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        return 0


class ShardNode:
    """A node's shard and its open sessions."""

    def __init__(self, max_sessions: int = 64, idle_timeout_s: float = 300.0):
        self.sessions = SessionStore(max_sessions, idle_timeout_s)
        self.shard: Shard | None = None
        self.started = time.monotonic()
        # All MLX work runs on this one thread: MLX streams belong to the
        # thread that created them, and a lazy array built on one gRPC worker
        # thread cannot be evaluated on another. One forward runs at a time,
        # so sessions interleave between requests.
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlx")

    def load(self, spec: ShardSpec) -> tuple[Shard, float]:
        """Load a shard in place of the current one; return it and the seconds."""
        start = time.perf_counter()
        shard = self._compute.submit(self._swap_shard, spec).result()
        return shard, time.perf_counter() - start

    def _swap_shard(self, spec: ShardSpec) -> Shard:
        shard = load_shard(spec)
        self.shard = shard
        dropped = self.sessions.clear()
        if dropped:
            logger.info("ended %s sessions of the previous shard", dropped)
        return shard

    def capabilities(self) -> dict:
        """Describe this node for shard planning."""
        return {
            "protocol": PROTOCOL,
            "mlx_version": mx.__version__,
            "device": str(mx.default_device()),
            "memory_bytes": available_memory_bytes(),
            "hostname": platform.node(),
            "max_sessions": self.sessions.max_sessions,
        }

    def forward(self, request: ForwardInput) -> ForwardOutput:
        """Run new positions of one session through the shard.

        Any error ends the session, so a half-updated cache is never reused.
        """
        shard = self.shard
        if shard is None:
            raise NoShardError("no shard is loaded on this node; call LoadShard")
        return self._compute.submit(self._forward, shard, request).result()

    def _forward(self, shard: Shard, request: ForwardInput) -> ForwardOutput:
        inputs = self._check_inputs(shard, request)
        if request.position == 0:
            session = self._open_session(shard, request)
        else:
            session = self.sessions.get(request.session_id, request.position)
        try:
            with session.lock:
                return self._run(shard, session, inputs, request)
        except Exception:
            self.sessions.end(request.session_id)
            raise

    def end_session(self, session_id: str) -> bool:
        return self.sessions.end(session_id)

    def _open_session(self, shard: Shard, request: ForwardInput) -> Session:
        padding = list(request.left_padding or [])
        if padding and len(padding) != request.batch:
            raise InvalidForwardError(
                f"left_padding has {len(padding)} entries for a batch of "
                f"{request.batch}"
            )
        if any(pad < 0 for pad in padding):
            raise InvalidForwardError(
                f"left_padding values must be >= 0, found {padding}"
            )
        sampler = None
        if shard.is_last:
            sampler = TokenSampler(request.sampling or SamplingSettings())
        session = Session(
            session_id=request.session_id,
            cache=shard.make_cache(request.batch, padding),
            batch=request.batch,
            sampler=sampler,
        )
        return self.sessions.open(session)

    def _check_inputs(self, shard: Shard, request: ForwardInput) -> mx.array:
        if not request.session_id:
            raise InvalidForwardError("session_id is empty")
        if request.batch < 1 or request.length < 1:
            raise InvalidForwardError(
                f"batch and length must be >= 1, found batch={request.batch} "
                f"length={request.length}"
            )
        if shard.is_first:
            ids = request.token_ids or []
            if len(ids) != request.batch * request.length:
                raise InvalidForwardError(
                    f"token_ids has {len(ids)} entries, expected batch x length "
                    f"= {request.batch * request.length}"
                )
            return mx.array(ids, dtype=mx.int32).reshape(request.batch, request.length)
        hidden = request.hidden
        if hidden is None:
            raise InvalidForwardError(
                f"layers [{shard.spec.layer_start}, {shard.spec.layer_end}) need "
                "hidden states from the previous shard, found none"
            )
        expected = (request.batch, request.length, shard.hidden_size)
        if tuple(hidden.shape) != expected:
            raise InvalidForwardError(
                f"hidden has shape {list(hidden.shape)}, expected {list(expected)}"
            )
        if hidden.dtype != shard.activation_dtype:
            raise InvalidForwardError(
                f"hidden has dtype {hidden.dtype}, the shard computes in "
                f"{shard.activation_dtype}"
            )
        return hidden

    def _run(
        self, shard: Shard, session: Session, inputs: mx.array, request: ForwardInput
    ) -> ForwardOutput:
        start = time.perf_counter()
        if request.keep_rows:
            self._keep_rows(session, request.keep_rows)
        if inputs.shape[0] != session.batch:
            raise InvalidForwardError(
                f"request has {inputs.shape[0]} rows, session {session.session_id} "
                f"has {session.batch}"
            )

        hidden = shard.run_layers(inputs, session.cache)
        output = ForwardOutput()
        # The caches are evaluated with every step, so no lazy graph is
        # carried from one request to the next.
        cache_state = [layer_cache.state for layer_cache in session.cache]
        if not shard.is_last:
            output.hidden = hidden
            # Waits for the device: the reply needs the bytes.
            mx.eval(hidden, cache_state)
        elif request.sample:
            logits = shard.logits(hidden[:, -1, :])
            tokens, logprobs = session.sampler.sample(logits)
            mx.eval(tokens, logprobs, cache_state, session.sampler.key)
            output.token_ids = tokens.tolist()
            output.logprobs = logprobs.astype(mx.float32).tolist()
        else:
            # Prompt processing without sampling: only the caches are needed.
            mx.eval(cache_state)

        session.position += request.length
        output.compute_seconds = time.perf_counter() - start
        return output

    def _keep_rows(self, session: Session, rows: list[int]) -> None:
        if any(row < 0 or row >= session.batch for row in rows):
            raise InvalidForwardError(
                f"keep_rows {rows} out of range for a batch of {session.batch}"
            )
        if len(rows) == session.batch:
            return
        if not hasattr(session.cache[0], "filter"):
            raise InvalidForwardError("keep_rows needs a session opened as a batch")
        indices = mx.array(rows, dtype=mx.int32)
        for layer_cache in session.cache:
            layer_cache.filter(indices)
        session.batch = len(rows)
