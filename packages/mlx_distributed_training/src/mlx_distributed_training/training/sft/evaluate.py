"""Validation loss and exact-match accuracy of greedy replies.

Both split their work across ranks and combine the counts with one `all_sum`
each, so every rank must call them at the same point of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_distributed_training.training.datasets.batching import sequential_batches
from mlx_distributed_training.training.datasets.encode import (
    EncodedExample,
    Reference,
)
from mlx_distributed_training.training.sft.loss import TokenLoss

EXACT_MATCH_BATCH_SIZE = 16


@dataclass(frozen=True)
class ExactMatchResult:
    """Exact-match accuracy and a few samples from this rank.

    Each sample is (location, expected reply, greedy reply up to and including
    its first wrong token, whether it matched).
    """

    accuracy: float
    correct: int
    total: int
    samples: list[tuple[str, str, str, bool]]


def validation_loss(
    model: nn.Module,
    token_loss: TokenLoss,
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
        loss = token_loss.summed(model, batch)
        totals = totals + mx.stack([loss, mx.array(batch.target_count, mx.float32)])
        # Wait for this batch before building the next one's graph.
        mx.eval(totals)
    # Every rank enters this all_sum, even one that had no batch.
    totals = mx.distributed.all_sum(totals, group=group)
    loss_sum, count = totals.tolist()
    return loss_sum / max(count, 1.0)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def exact_match(
    model: nn.Module,
    tokenizer,
    references: list[Reference],
    group: mx.distributed.Group,
    sample_count: int = 3,
) -> ExactMatchResult:
    """Count references that greedy decoding would reproduce exactly.

    Greedy decoding reproduces a reply exactly when, fed the prompt and the
    reply's first k tokens, the model's most likely next token is the reply's
    token k+1, for every k, through the end-of-turn token that stops it. So one
    forward pass over prompt + reply scores a reference with the same result
    as generating token by token, at a fraction of the cost.
    NOTE: a reply that greedy decoding spells with other tokens (same text,
    another tokenization) counts as a miss here.
    """
    mine = references[group.rank() :: group.size()]
    correct = 0
    samples = []
    was_training = model.training
    model.eval()
    for start in range(0, len(mine), EXACT_MATCH_BATCH_SIZE):
        chunk = mine[start : start + EXACT_MATCH_BATCH_SIZE]
        sequences = [ref.prompt_tokens + ref.target_tokens[:-1] for ref in chunk]
        width = max(len(sequence) for sequence in sequences)
        padded = np.zeros((len(chunk), width), np.int32)
        for row, sequence in enumerate(sequences):
            padded[row, : len(sequence)] = sequence
        # Host waits for the predictions of the whole chunk.
        predictions = np.array(mx.argmax(model(mx.array(padded)), axis=-1))
        for row, ref in enumerate(chunk):
            first = len(ref.prompt_tokens) - 1
            predicted = predictions[row, first : first + len(ref.target_tokens)]
            wrong = np.flatnonzero(predicted != np.array(ref.target_tokens))
            correct += wrong.size == 0
            if len(samples) < sample_count:
                # Greedy output matches the predictions up to the first miss.
                stop = wrong[0] + 1 if wrong.size else len(predicted) - 1
                shown = tokenizer.decode(predicted[:stop].tolist())
                samples.append((ref.location, ref.answer, shown, wrong.size == 0))
    model.train(was_training)
    # Every rank enters this all_sum, even one with no references.
    total = mx.distributed.all_sum(mx.array(correct), group=group).item()
    return ExactMatchResult(
        accuracy=total / max(len(references), 1),
        correct=int(total),
        total=len(references),
        samples=samples,
    )
