"""The masked next-token cross-entropy used for training and evaluation."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_distributed_training.training.datasets.batching import MicroBatch
from mlx_distributed_training.training.sft.packed_attention import model_logits


def summed_token_loss(model: nn.Module, batch: MicroBatch) -> mx.array:
    """Sum of cross-entropy over the batch's loss-bearing target tokens."""
    logits = model_logits(model, batch).astype(mx.float32)
    losses = nn.losses.cross_entropy(logits, batch.targets, reduction="none")
    return (losses * batch.mask).sum()


def scaled_loss(model: nn.Module, batch: MicroBatch, scale: float) -> mx.array:
    """Summed loss times `scale`, the factor that turns it into this rank's part
    of the global per-token mean (see the trainer's step)."""
    return summed_token_loss(model, batch) * scale
