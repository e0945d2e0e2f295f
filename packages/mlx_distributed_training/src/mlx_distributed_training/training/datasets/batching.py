"""Deterministic global batches, and each rank's share of them.

Every rank has the whole training split and computes the same global batch
order from the seed and epoch, so no rank needs to ask another what to read.
Rank `r` takes examples `r, r + world_size, ...` of each global batch and splits
them into `gradient_accumulation_steps` micro-batches. The last global batch of
an epoch may be smaller; every rank still runs every micro-step (some with no
examples), so all ranks enter the same collectives in the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import numpy as np
from mlx_distributed_training.training.datasets.encode import EncodedExample

PAD_MULTIPLE = 8


@dataclass(frozen=True)
class BatchLayout:
    """Split of one global batch across ranks and micro-steps."""

    micro_batch_size: int
    gradient_accumulation_steps: int
    world_size: int
    rank: int

    @property
    def global_batch_size(self) -> int:
        return (
            self.micro_batch_size * self.gradient_accumulation_steps * self.world_size
        )

    def steps_per_epoch(self, example_count: int) -> int:
        return math.ceil(example_count / self.global_batch_size)


@dataclass(frozen=True)
class MicroBatch:
    """Padded inputs and targets of one micro-step on one rank."""

    inputs: mx.array  # int32, (batch, length - 1)
    targets: mx.array  # int32, (batch, length - 1)
    mask: mx.array  # float32, (batch, length - 1): 1 where a target carries loss
    target_count: int
    # int32, (target_count,): the loss-bearing positions of the flattened
    # (batch x (length - 1)) targets, in row order.
    target_positions: mx.array
    # Packed rows only: int32, (batch, length - 1), the example of each input
    # position. Padding is -1.
    segments: mx.array | None = None


def epoch_order(example_count: int, seed: int, epoch: int) -> np.ndarray:
    """Return the shuffled example order of one epoch, the same on every rank."""
    return np.random.default_rng([seed, epoch]).permutation(example_count)


def global_batch(
    order: np.ndarray, layout: BatchLayout, batch_index: int
) -> np.ndarray:
    start = batch_index * layout.global_batch_size
    return order[start : start + layout.global_batch_size]


def rank_micro_batches(indices: np.ndarray, layout: BatchLayout) -> list[np.ndarray]:
    """Split this rank's share of a global batch into its micro-batches."""
    share = indices[layout.rank :: layout.world_size]
    size = layout.micro_batch_size
    return [
        share[step * size : (step + 1) * size]
        for step in range(layout.gradient_accumulation_steps)
    ]


def count_targets(examples: list[EncodedExample], indices: np.ndarray) -> int:
    """Loss-bearing tokens in a set of examples (all ranks compute the same)."""
    return sum(examples[i].target_count for i in indices)


def collate(examples: list[EncodedExample], indices: np.ndarray) -> MicroBatch | None:
    """Pad the chosen examples into one micro-batch; None when there are none."""
    if len(indices) == 0:
        return None
    chosen = [examples[i] for i in indices]
    longest = max(len(example.tokens) for example in chosen)
    width = math.ceil(longest / PAD_MULTIPLE) * PAD_MULTIPLE
    tokens = np.zeros((len(chosen), width), np.int32)
    mask = np.zeros((len(chosen), width), np.float32)
    packed = any(example.segments is not None for example in chosen)
    segments = np.full((len(chosen), width), -1, np.int32) if packed else None
    for row, example in enumerate(chosen):
        tokens[row, : len(example.tokens)] = example.tokens
        mask[row, : len(example.tokens)] = example.loss_mask
        if segments is not None:
            if example.segments is None:
                segments[row, : len(example.tokens)] = 0
            else:
                segments[row, : len(example.tokens)] = example.segments
    positions = np.flatnonzero(mask[:, 1:]).astype(np.int32)
    return MicroBatch(
        inputs=mx.array(tokens[:, :-1]),
        targets=mx.array(tokens[:, 1:]),
        mask=mx.array(mask[:, 1:]),
        target_count=len(positions),
        target_positions=mx.array(positions),
        segments=None if segments is None else mx.array(segments[:, :-1]),
    )


def sequential_batches(
    examples: list[EncodedExample], batch_size: int, max_batches: int
) -> list[MicroBatch]:
    """Batches in file order, for evaluation; at most `max_batches` (-1: all)."""
    batches = []
    for start in range(0, len(examples), batch_size):
        if 0 <= max_batches <= len(batches):
            break
        indices = np.arange(start, min(start + batch_size, len(examples)))
        batches.append(collate(examples, indices))
    return batches
