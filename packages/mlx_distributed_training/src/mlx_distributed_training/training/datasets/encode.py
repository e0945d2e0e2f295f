"""Turn canonical examples into token ids with a loss mask.

`loss_mask[i]` is true when token `i` is a training target, i.e. the model is
scored on predicting it from the tokens before it. With prompt masking only
the content of assistant turns and the end-of-turn token that closes each of
them are targets; system, user and tool turns and the assistant header are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from mlx_distributed_training.training.datasets.errors import DataError
from mlx_distributed_training.training.datasets.formats import Example


@dataclass(frozen=True)
class EncodedExample:
    """Token ids of one example and which of them carry loss."""

    tokens: np.ndarray  # int32, shape (length,)
    loss_mask: np.ndarray  # bool, shape (length,)
    location: str
    # Packed rows only: which example of the row each token belongs to.
    segments: np.ndarray | None = None  # int32, shape (length,)

    @property
    def target_count(self) -> int:
        # Token 0 is never predicted, so it never counts as a target.
        return int(self.loss_mask[1:].sum())


@dataclass(frozen=True)
class Reference:
    """A prompt and the reply expected from it, for exact-match scoring.

    `target_tokens` is the reply as the chat template renders it, ending with
    the end-of-turn token that stops generation.
    """

    prompt_tokens: list[int]
    target_tokens: list[int]
    answer: str
    location: str


class ChatEncoder:
    """Render and tokenize examples with one tokenizer and its chat template."""

    def __init__(self, tokenizer: Any, mask_prompt: bool = True):
        # mlx-lm wraps the Hugging Face tokenizer; offsets need the inner one.
        self.tokenizer = getattr(tokenizer, "_tokenizer", tokenizer)
        self.mask_prompt = mask_prompt
        self.has_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        self.eos_text = self.tokenizer.eos_token
        self.eos_id = self.tokenizer.eos_token_id
        self._leading_ids = self._special_prefix_ids()

    def _special_prefix_ids(self) -> list[int]:
        """Tokens the tokenizer puts in front of every text (e.g. a BOS token)."""
        plain = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("a")["input_ids"]
        if len(full) > len(plain) and full[-len(plain) :] == plain:
            return list(full[: len(full) - len(plain)])
        return []

    def _render(self, example: Example, messages: Any, **kwargs: Any) -> str:
        return self.tokenizer.apply_chat_template(
            list(messages),
            tools=list(example.tools) if example.tools else None,
            tokenize=False,
            **kwargs,
        )

    def _tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        encoded = self.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True
        )
        ids = list(encoded["input_ids"])
        offsets = [tuple(span) for span in encoded["offset_mapping"]]
        if self._leading_ids and ids[: len(self._leading_ids)] != self._leading_ids:
            ids = self._leading_ids + ids
            offsets = [(0, 0)] * len(self._leading_ids) + offsets
        return ids, offsets

    def _assistant_spans(self, example: Example, full: str) -> list[tuple[int, int]]:
        """Character ranges of each assistant turn's content and end-of-turn token."""
        spans = []
        messages = example.messages
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = (
                self._render(example, messages[:index], add_generation_prompt=True)
                if index
                else ""
            )
            through = self._render(example, messages[: index + 1])
            if not (full.startswith(through) and through.startswith(before)):
                raise DataError(
                    example.location,
                    "the chat template does not render this conversation as a "
                    "sequence of growing prefixes, so the prompt cannot be masked; "
                    "set mask_prompt to false",
                )
            end = len(through)
            closing = through.rfind(self.eos_text, len(before)) if self.eos_text else -1
            if closing >= 0:
                end = closing + len(self.eos_text)
            else:
                end = len(through.rstrip())
            spans.append((len(before), end))
        return spans

    def encode(self, example: Example) -> EncodedExample:
        """Tokenize one example and mark its targets."""
        if example.text is not None:
            ids, _ = self._tokenize(example.text)
            ids.append(self.eos_id)
            mask = np.ones(len(ids), dtype=bool)
            return EncodedExample(np.array(ids, np.int32), mask, example.location)

        if not self.has_chat_template:
            return self._encode_plain_pair(example)
        full = self._render(example, example.messages)
        ids, offsets = self._tokenize(full)
        if not self.mask_prompt:
            mask = np.ones(len(ids), dtype=bool)
        else:
            spans = self._assistant_spans(example, full)
            starts = np.array([start for start, _ in offsets])
            ends = np.array([end for _, end in offsets])
            mask = np.zeros(len(ids), dtype=bool)
            for span_start, span_end in spans:
                # A token is a target when it starts inside the span.
                mask |= (starts >= span_start) & (starts < span_end) & (ends > starts)
        return EncodedExample(np.array(ids, np.int32), mask, example.location)

    def _encode_plain_pair(self, example: Example) -> EncodedExample:
        """Encode a prompt/answer pair for a model with no chat template."""
        messages = example.messages
        if len(messages) != 2 or messages[1]["role"] != "assistant":
            raise DataError(
                example.location,
                "chat data needs a model with a chat template, and this model's "
                "tokenizer has none",
            )
        prompt_ids, _ = self._tokenize(messages[0]["content"])
        answer_ids = self.tokenizer(messages[1]["content"], add_special_tokens=False)[
            "input_ids"
        ]
        ids = prompt_ids + list(answer_ids) + [self.eos_id]
        mask = np.zeros(len(ids), dtype=bool)
        mask[len(prompt_ids) if self.mask_prompt else 0 :] = True
        return EncodedExample(np.array(ids, np.int32), mask, example.location)

    def reference(self, example: Example) -> Reference | None:
        """Return the prompt and expected reply tokens of a reply-ending example."""
        messages = example.messages
        if not messages or len(messages) < 2 or messages[-1]["role"] != "assistant":
            return None
        answer = messages[-1]["content"]
        if not self.has_chat_template:
            if len(messages) != 2:
                return None
            prompt_ids, _ = self._tokenize(messages[0]["content"])
            answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
            targets = [*answer_ids, self.eos_id]
            return Reference(prompt_ids, targets, answer, example.location)

        full = self._render(example, messages)
        ids, offsets = self._tokenize(full)
        span_start, span_end = self._assistant_spans(example, full)[-1]
        inside = [
            index
            for index, (start, end) in enumerate(offsets)
            if span_start <= start < span_end and end > start
        ]
        first, last = inside[0], inside[-1] + 1
        return Reference(ids[:first], ids[first:last], answer, example.location)


def truncate(example: EncodedExample, max_length: int) -> tuple[EncodedExample, bool]:
    """Cut an example to `max_length` tokens; report whether anything was cut.

    Raises a `DataError` when the cut leaves no target to learn from.
    """
    if len(example.tokens) <= max_length:
        return example, False
    cut = EncodedExample(
        example.tokens[:max_length], example.loss_mask[:max_length], example.location
    )
    if cut.target_count == 0:
        raise DataError(
            example.location,
            f"example has {len(example.tokens)} tokens; truncated to max_seq_length "
            f"({max_length}) it keeps no loss-bearing token, so there is nothing to "
            "learn; raise max_seq_length or shorten the prompt",
        )
    return cut, True
