"""The masked next-token cross-entropy used for training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
from mlx_distributed_training.training.datasets.batching import MicroBatch
from mlx_distributed_training.training.sft.output_head import (
    splits_at_head,
    target_logits,
)
from mlx_distributed_training.training.sft.packed_attention import model_logits


@dataclass(frozen=True)
class TokenLoss:
    """Cross-entropy summed over a batch's loss-bearing target tokens.

    With ``head_at_targets`` the output head runs only at those positions
    (see ``training.sft.output_head``); the loss is the same either way.
    """

    head_at_targets: bool = False

    @classmethod
    def for_model(cls, model: nn.Module) -> TokenLoss:
        """Return the loss for ``model``, with the head at targets only where
        the start-up check allows it."""
        return cls(head_at_targets=splits_at_head(model))

    def summed(self, model: nn.Module, batch: MicroBatch) -> mx.array:
        """Return the cross-entropy summed over ``batch``'s targets."""
        # mlx's cross-entropy rejects an empty selection; the full path gives 0.
        if self.head_at_targets and batch.target_count:
            logits = target_logits(model, batch).astype(mx.float32)
            targets = batch.targets.reshape(-1)[batch.target_positions]
            return nn.losses.cross_entropy(logits, targets, reduction="sum")
        logits = model_logits(model, batch).astype(mx.float32)
        losses = nn.losses.cross_entropy(logits, batch.targets, reduction="none")
        return (losses * batch.mask).sum()

    def scaled(self, model: nn.Module, batch: MicroBatch, scale: float) -> mx.array:
        """Summed loss times `scale`, the factor that turns it into this rank's
        part of the global per-token mean (see the trainer's step)."""
        return self.summed(model, batch) * scale
