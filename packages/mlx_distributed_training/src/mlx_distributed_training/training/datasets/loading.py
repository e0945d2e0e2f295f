"""Load the train, valid and test splits of a run, encoded and checked."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mlx_distributed_training.training.datasets.encode import (
    ChatEncoder,
    EncodedExample,
    Reference,
    truncate,
)
from mlx_distributed_training.training.datasets.errors import DataError
from mlx_distributed_training.training.datasets.formats import parse_split
from mlx_distributed_training.training.datasets.records import read_splits

logger = logging.getLogger(__name__)


@dataclass
class SplitData:
    """One encoded split and the exact-match references found in it."""

    name: str
    data_format: str
    examples: list[EncodedExample]
    references: list[Reference] = field(default_factory=list)
    truncated: int = 0

    @property
    def target_count(self) -> int:
        return sum(example.target_count for example in self.examples)

    def digest(self) -> str:
        """Return a short hash of the examples in order: their tokens, loss
        masks and packing segments. A resumed run must train on the same."""
        hasher = hashlib.sha256()
        for example in self.examples:
            hasher.update(len(example.tokens).to_bytes(8, "little"))
            hasher.update(example.tokens.astype(np.int32).tobytes())
            hasher.update(np.packbits(example.loss_mask).tobytes())
            if example.segments is not None:
                hasher.update(example.segments.astype(np.int32).tobytes())
        return hasher.hexdigest()[:16]


@dataclass
class TrainingData:
    """All splits of a run; `valid` and `test` may be missing."""

    train: SplitData
    valid: SplitData | None
    test: SplitData | None

    def held_out_references(self) -> list[Reference]:
        """References for exact-match scoring: test if it has any, else valid."""
        for split in (self.test, self.valid):
            if split is not None and split.references:
                return split.references
        return []


def encode_split(
    name: str,
    records: list[Any],
    encoder: ChatEncoder,
    max_seq_length: int,
) -> SplitData:
    data_format, examples = parse_split(records)
    # Completions and alpaca pairs fall back to plain text without a template.
    needs_template = data_format not in ("text", "completions", "alpaca")
    if needs_template and not encoder.has_chat_template:
        raise DataError(
            examples[0].location,
            f"{data_format} data needs a model with a chat template, and this "
            "model's tokenizer has none",
        )
    split = SplitData(name, data_format, [])
    for example in examples:
        encoded = encoder.encode(example)
        if encoded.target_count == 0:
            raise DataError(
                example.location,
                "example has no loss-bearing token (no assistant turn to learn "
                "from); add an assistant reply or set mask_prompt to false",
            )
        encoded, was_cut = truncate(encoded, max_seq_length)
        split.truncated += was_cut
        split.examples.append(encoded)
        if example.messages is not None:
            reference = encoder.reference(example)
            if reference is not None:
                split.references.append(reference)
    if split.truncated:
        logger.warning(
            "%s split: %d of %d examples were longer than max_seq_length (%d) "
            "and were truncated",
            name,
            split.truncated,
            len(split.examples),
            max_seq_length,
        )
    return split


def load_training_data(
    data: str | Path,
    tokenizer: Any,
    *,
    max_seq_length: int,
    mask_prompt: bool = True,
) -> TrainingData:
    """Read, validate, encode and truncate every split found at `data`."""
    raw = read_splits(data)
    encoder = ChatEncoder(tokenizer, mask_prompt=mask_prompt)
    splits = {
        name: encode_split(name, records, encoder, max_seq_length)
        for name, records in raw.items()
    }
    return TrainingData(splits["train"], splits.get("valid"), splits.get("test"))
