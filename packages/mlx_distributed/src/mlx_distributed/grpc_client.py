"""`DistributedInferenceClient`: generate text through a cluster of shards."""

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx_distributed.distributed_config import ClusterConfig
from mlx_distributed.model_source import load_tokenizer
from mlx_distributed.orchestrator import DistributedInferenceOrchestrator
from mlx_distributed.pipeline import PipelineSession
from mlx_distributed.sampling import SamplingSettings
from mlx_distributed.stopping import StopText, end_of_sequence_ids

logger = logging.getLogger(__name__)


@dataclass
class GenerationChunk:
    """Text produced by one step of `stream`; the last chunk has a finish reason."""

    text: str
    token_id: int | None = None
    finish_reason: str | None = None


@dataclass
class GenerationResult:
    """A finished generation."""

    text: str
    token_ids: list[int]
    # "stop" (end-of-sequence token or stop string) or "length" (max_tokens).
    finish_reason: str
    prompt_tokens: int
    # Seconds from the request to the first generated token.
    time_to_first_token_s: float = 0.0
    # Seconds spent generating tokens after the first one.
    decode_seconds: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class _RowState:
    """Progress of one prompt inside a batch."""

    index: int
    stop: StopText
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None


class DistributedInferenceClient:
    """Generate text with a model split across the nodes of a cluster file.

    `config` is a cluster file path, a `ClusterConfig`, or None for the
    embedded default model on two local nodes. The client plans and loads
    the shards through a `DistributedInferenceOrchestrator`, which also
    monitors node health and reloads a restarted node's shard.
    """

    def __init__(
        self,
        config: str | Path | ClusterConfig | None = None,
        orchestrator: DistributedInferenceOrchestrator | None = None,
    ):
        self._owns_orchestrator = orchestrator is None
        if orchestrator is None:
            orchestrator = DistributedInferenceOrchestrator(config)
            orchestrator.start()
        self.orchestrator = orchestrator
        self.config = orchestrator.config
        self.tokenizer = load_tokenizer(self.config.model)
        self.stop_token_ids = end_of_sequence_ids(self.tokenizer)

    # Prompts

    def encode(self, prompt: str | list[int]) -> list[int]:
        """Token ids of a prompt; a string gets the BOS token unless it has one."""
        if isinstance(prompt, list):
            ids = [int(token) for token in prompt]
            vocab_size = len(self.tokenizer)
            bad = [token for token in ids if not 0 <= token < vocab_size]
            if bad:
                raise ValueError(
                    f"prompt token ids must be in [0, {vocab_size}), found {bad[:5]}"
                )
        else:
            bos = self.tokenizer.bos_token
            add_special = bos is None or not prompt.startswith(bos)
            ids = self.tokenizer.encode(prompt, add_special_tokens=add_special)
        if not ids:
            raise ValueError("prompt is empty")
        return ids

    def encode_chat(self, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids of a conversation rendered with the model's chat template."""
        if not getattr(self.tokenizer, "has_chat_template", False):
            raise ValueError("the model's tokenizer has no chat template")
        return list(
            self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        )

    # Generation

    def stream(
        self,
        prompt: str | list[int],
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> Iterator[GenerationChunk]:
        """Yield text as each token is produced; the last chunk names the reason.

        Closing the iterator early ends the session on every node.
        """
        ids = self.encode(prompt)
        _check_max_tokens(max_tokens)
        sampling = SamplingSettings(temperature, top_p, seed)
        self.orchestrator.require_healthy()
        session = self._open_session(sampling)
        try:
            result = self._process_prompt(session, [ids], left_padding=None)
            stop_text = StopText(stop)
            generated: list[int] = []
            finish_reason = "length"
            while True:
                token = result.token_ids[0]
                if token in self.stop_token_ids:
                    finish_reason = "stop"
                    break
                generated.append(token)
                piece = stop_text.feed(self._decode(generated))
                # One chunk per token, even when its text is held back (part
                # of a character or of a possible stop string).
                yield GenerationChunk(text=piece, token_id=token)
                if stop_text.stopped:
                    finish_reason = "stop"
                    break
                if len(generated) >= max_tokens:
                    break
                result = session.step(
                    [[token]], sample=True, timeout_s=self.config.step_timeout_s
                )
            yield GenerationChunk(text=stop_text.flush(), finish_reason=finish_reason)
        finally:
            session.end()

    def generate(
        self,
        prompt: str | list[int],
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> GenerationResult:
        """Generate a completion for one prompt; see `stream` for the arguments."""
        start = time.perf_counter()
        first_token_at = None
        pieces: list[str] = []
        token_ids: list[int] = []
        finish_reason = "length"
        chunks = self.stream(prompt, max_tokens, temperature, top_p, stop, seed)
        for chunk in chunks:
            if first_token_at is None:
                first_token_at = time.perf_counter()
            pieces.append(chunk.text)
            if chunk.token_id is not None:
                token_ids.append(chunk.token_id)
            if chunk.finish_reason is not None:
                finish_reason = chunk.finish_reason
        end = time.perf_counter()
        return GenerationResult(
            text="".join(pieces),
            token_ids=token_ids,
            finish_reason=finish_reason,
            prompt_tokens=len(self.encode(prompt)),
            time_to_first_token_s=(first_token_at or end) - start,
            decode_seconds=end - (first_token_at or end),
        )

    def generate_batch(
        self, prompts: list[str | list[int]], **kwargs: Any
    ) -> list[GenerationResult]:
        """Generate for several prompts at once, as one batch through the pipeline.

        Prompts are left-padded to one length and every step runs all
        unfinished rows together; finished rows are dropped from the batch.
        Takes the keyword arguments of `generate`; results keep prompt order.
        """
        if not prompts:
            return []
        unknown = set(kwargs) - {"max_tokens", "temperature", "top_p", "stop", "seed"}
        if unknown:
            raise TypeError(f"unexpected keyword arguments: {sorted(unknown)}")
        max_tokens = kwargs.get("max_tokens", 256)
        _check_max_tokens(max_tokens)
        sampling = SamplingSettings(
            kwargs.get("temperature", 0.0), kwargs.get("top_p", 1.0), kwargs.get("seed")
        )
        rows = [self.encode(prompt) for prompt in prompts]
        width = max(len(row) for row in rows)
        padding = [width - len(row) for row in rows]
        pad_id = self._pad_id()
        padded = [[pad_id] * pad + row for pad, row in zip(padding, rows, strict=True)]

        self.orchestrator.require_healthy()
        start = time.perf_counter()
        session = self._open_session(sampling)
        try:
            result = self._process_prompt(session, padded, left_padding=padding)
            first_token_at = time.perf_counter()
            states = self._decode_batch(session, result.token_ids, kwargs, max_tokens)
        finally:
            session.end()
        end = time.perf_counter()
        return [
            GenerationResult(
                text=state.stop.text,
                token_ids=state.token_ids,
                finish_reason=state.finish_reason or "length",
                prompt_tokens=len(rows[state.index]),
                time_to_first_token_s=first_token_at - start,
                decode_seconds=end - first_token_at,
            )
            for state in states
        ]

    def _decode_batch(self, session, first_tokens, kwargs, max_tokens):
        states = [
            _RowState(i, StopText(kwargs.get("stop"))) for i in range(len(first_tokens))
        ]
        active = list(states)
        tokens = first_tokens
        while True:
            # Record each active row's new token and see which rows finish.
            for state, token in zip(active, tokens, strict=True):
                if token in self.stop_token_ids:
                    state.finish_reason = "stop"
                    continue
                state.token_ids.append(token)
                state.stop.feed(self._decode(state.token_ids))
                if state.stop.stopped:
                    state.finish_reason = "stop"
                elif len(state.token_ids) >= max_tokens:
                    state.finish_reason = "length"
            keep = [i for i, state in enumerate(active) if state.finish_reason is None]
            if not keep:
                return states

            # Run the unfinished rows one step further.
            next_tokens = [[active[i].token_ids[-1]] for i in keep]
            result = session.step(
                next_tokens,
                sample=True,
                timeout_s=self.config.step_timeout_s,
                keep_rows=keep if len(keep) < len(active) else None,
            )
            active = [active[i] for i in keep]
            tokens = result.token_ids

    def _process_prompt(self, session, rows, left_padding):
        """Fill every shard's cache with the prompt and sample the first token.

        Like `mlx_lm.generate`, all but the last position are processed in
        `prefill_step_size` pieces and the last one alone, so the arithmetic,
        and therefore greedy output, matches it exactly.
        """
        step_size = self.config.prefill_step_size
        timeout = self.config.prefill_timeout_s
        width = len(rows[0])
        for begin in range(0, width - 1, step_size):
            end = min(begin + step_size, width - 1)
            session.step(
                [row[begin:end] for row in rows],
                sample=False,
                timeout_s=timeout,
                left_padding=left_padding if begin == 0 else None,
            )
        return session.step(
            [row[-1:] for row in rows],
            sample=True,
            timeout_s=timeout,
            left_padding=left_padding if width == 1 else None,
        )

    def _open_session(self, sampling: SamplingSettings) -> PipelineSession:
        return PipelineSession(
            self.orchestrator.nodes,
            sampling,
            on_unavailable=self.orchestrator.mark_down,
        )

    def _decode(self, token_ids: list[int]) -> str:
        text = self.tokenizer.decode(token_ids)
        # A multi-byte character split across tokens decodes to U+FFFD until
        # its last byte arrives; hold it back rather than emit a placeholder.
        return text[:-1] if text.endswith("\ufffd") else text

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = min(self.stop_token_ids) if self.stop_token_ids else 0
        return pad

    # Cluster

    def health(self) -> dict[str, Any]:
        """Return the cluster's nodes, layer ranges and health."""
        return self.orchestrator.describe()

    def close(self) -> None:
        """Close connections, and stop local nodes if this client started them."""
        if self._owns_orchestrator:
            self.orchestrator.close()

    def __enter__(self) -> "DistributedInferenceClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _check_max_tokens(max_tokens: int) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise ValueError(f"max_tokens must be an integer, found {max_tokens!r}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, found {max_tokens}")
