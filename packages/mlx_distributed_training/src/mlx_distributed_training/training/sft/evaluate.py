"""Validation loss and exact-match accuracy by greedy generation.

Both split their work across ranks and combine the counts with one `all_sum`
each, so every rank must call them at the same point of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
from mlx_distributed_training.training.datasets.batching import sequential_batches
from mlx_distributed_training.training.datasets.encode import (
    EncodedExample,
    Reference,
)
from mlx_distributed_training.training.sft.loss import summed_token_loss
from mlx_lm.generate import batch_generate

GENERATION_MARGIN_TOKENS = 8
GENERATION_BATCH_SIZE = 16


@dataclass(frozen=True)
class ExactMatchResult:
    """Exact-match accuracy and a few (expected, generated) samples from rank 0."""

    accuracy: float
    correct: int
    total: int
    samples: list[tuple[str, str, str]]  # (location, expected, generated)


def validation_loss(
    model: nn.Module,
    examples: list[EncodedExample],
    batch_size: int,
    max_batches: int,
    group: mx.distributed.Group,
) -> float:
    """Mean per-token loss over (up to `max_batches` of) the validation split."""
    batches = sequential_batches(examples, batch_size, max_batches)
    mine = batches[group.rank() :: group.size()]
    totals = mx.zeros((2,), mx.float32)
    for batch in mine:
        loss = summed_token_loss(model, batch)
        totals = totals + mx.stack([loss, mx.array(batch.target_count, mx.float32)])
        # Wait for this batch before building the next one's graph.
        mx.eval(totals)
    # Every rank enters this all_sum, even one that had no batch.
    totals = mx.distributed.all_sum(totals, group=group)
    loss_sum, count = totals.tolist()
    return loss_sum / max(count, 1.0)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def answers_match(expected: str, generated: str) -> bool:
    return expected.strip() == generated.strip()


def exact_match(
    model: nn.Module,
    tokenizer,
    references: list[Reference],
    group: mx.distributed.Group,
    sample_count: int = 3,
) -> ExactMatchResult:
    """Greedy-generate an answer for each reference and count exact matches."""
    mine = references[group.rank() :: group.size()]
    correct = 0
    samples = []
    was_training = model.training
    model.eval()
    for start in range(0, len(mine), GENERATION_BATCH_SIZE):
        chunk = mine[start : start + GENERATION_BATCH_SIZE]
        limits = [
            len(tokenizer.encode(ref.answer, add_special_tokens=False))
            + GENERATION_MARGIN_TOKENS
            for ref in chunk
        ]
        response = batch_generate(
            model, tokenizer, [ref.prompt_tokens for ref in chunk], max_tokens=limits
        )
        for ref, text in zip(chunk, response.texts, strict=True):
            correct += answers_match(ref.answer, text)
            if len(samples) < sample_count:
                samples.append((ref.location, ref.answer, text.strip()))
    model.train(was_training)
    total = mx.distributed.all_sum(mx.array(correct), group=group).item()
    return ExactMatchResult(
        accuracy=total / max(len(references), 1),
        correct=int(total),
        total=len(references),
        samples=samples,
    )
