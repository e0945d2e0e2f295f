"""Drive one forward step of a session through every shard in order."""

import uuid
from dataclasses import dataclass

from mlx_distributed._proto import pipeline_pb2
from mlx_distributed.node_connection import (
    NodeConnection,
    NodeRequestError,
    NodeUnavailableError,
)
from mlx_distributed.sampling import SamplingSettings

# Ending a session is cleanup; a slow node must not hold up the caller.
END_SESSION_TIMEOUT_S = 2.0


@dataclass
class StepResult:
    token_ids: list[int]
    logprobs: list[float]


class PipelineSession:
    """One session's position, shared by every node in the pipeline.

    Only the new positions' hidden states travel between shards; each node
    keeps its own KV cache. The caller ends the session (`end`) when done,
    including on errors.
    """

    def __init__(
        self,
        nodes: list[NodeConnection],
        sampling: SamplingSettings,
        on_unavailable=None,
    ):
        self.nodes = nodes
        self.session_id = uuid.uuid4().hex
        self.sampling = sampling
        self.position = 0
        self.on_unavailable = on_unavailable

    def step(
        self,
        token_ids: list[list[int]],
        sample: bool,
        timeout_s: float,
        left_padding: list[int] | None = None,
        keep_rows: list[int] | None = None,
    ) -> StepResult:
        """Run rows of new tokens (all the same length) through every shard."""
        batch = len(token_ids)
        length = len(token_ids[0])
        params = pipeline_pb2.SamplingParams(
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            seed=self.sampling.seed or 0,
            has_seed=self.sampling.seed is not None,
        )
        hidden = None
        reply = None
        for index, node in enumerate(self.nodes):
            request = pipeline_pb2.ForwardRequest(
                session_id=self.session_id,
                batch=batch,
                length=length,
                position=self.position,
                left_padding=left_padding or [],
                keep_rows=keep_rows or [],
                sample=sample,
            )
            if index == 0:
                request.token_ids.extend(row_id for row in token_ids for row_id in row)
            else:
                # The previous reply's bytes are forwarded as they are.
                request.hidden.CopyFrom(hidden)
            if index == len(self.nodes) - 1 and self.position == 0:
                request.sampling.CopyFrom(params)
            try:
                reply = node.call("Forward", request, timeout_s)
            except NodeUnavailableError as error:
                if self.on_unavailable is not None:
                    self.on_unavailable(error.address, error.reason)
                raise
            hidden = reply.hidden
        self.position += length
        return StepResult(list(reply.token_ids), list(reply.logprobs))

    def end(self) -> None:
        """Free the session's caches on every node, ignoring nodes that are down."""
        request = pipeline_pb2.EndSessionRequest(session_id=self.session_id)
        for node in self.nodes:
            try:
                node.call("EndSession", request, END_SESSION_TIMEOUT_S)
            except (NodeUnavailableError, NodeRequestError):
                pass
            except ValueError:
                # The channel was closed with the client; nothing to free.
                return
