"""Attention that stays inside each example of a packed row.

mlx-lm models build their attention mask with ``create_attention_mask(h,
cache)``, which takes the mask from the layer's cache object when that object
has a ``make_mask`` method. For a packed row the forward pass gives every
layer a ``SegmentAttention`` in place of a KV cache: it keeps no keys or
values, and its mask lets a token attend only to earlier tokens of its own
example. RoPE scores depend only on the distance between two tokens, so an
example gets the same attention at any offset in the row.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_distributed_training.training.datasets.batching import MicroBatch


class PackingUnsupportedError(ValueError):
    """A model whose attention does not take the per-example mask."""


class SegmentAttention:
    """Stand-in for a layer's KV cache that supplies a per-example mask."""

    offset = 0

    def __init__(self, segments: mx.array):
        self.segments = segments  # int32, (batch, length)

    def make_mask(
        self, length: int, return_array: bool = False, window_size: int | None = None
    ) -> mx.array:
        """Return a boolean (batch, 1, length, length) mask: causal, within
        ``window_size`` when given, and within one example."""
        # NOTE: unlike the fused causal mask of unpacked rows, this mask is
        # materialized: batch x length^2 bytes, 64 MiB for 4 rows of 4,096.
        positions = mx.arange(length)
        allowed = positions[:, None] >= positions[None, :]
        if window_size is not None:
            allowed = allowed & (positions[:, None] < positions[None, :] + window_size)
        same = self.segments[:, :, None] == self.segments[:, None, :]
        return (same & allowed)[:, None]

    def update_and_fetch(self, keys: mx.array, values: mx.array):
        """Return the keys and values unchanged: nothing is cached."""
        return keys, values


def attention_caches(model: nn.Module, batch: MicroBatch) -> list | None:
    """Return the per-layer ``cache`` argument for ``batch``: None for
    unpacked rows, a ``SegmentAttention`` for every layer for packed rows."""
    if batch.segments is None:
        return None
    return [SegmentAttention(batch.segments)] * len(model.layers)


def model_logits(model: nn.Module, batch: MicroBatch) -> mx.array:
    """Return the model's logits for ``batch``, with per-example attention
    when its rows are packed."""
    return model(batch.inputs, cache=attention_caches(model, batch))


def check_packing_support(model: nn.Module, model_type: str) -> None:
    """Raise PackingUnsupportedError unless ``model`` applies the mask.

    Two tokens from two different examples: with the mask applied, the
    second token attends only to itself and gets the logits it gets alone.
    A model with absolute position embeddings fails too, because the second
    token gets position 1 instead of 0.
    """
    was_training = model.training
    model.eval()
    try:
        tokens = mx.array([[1, 2]], dtype=mx.int32)
        packed = MicroBatch(
            inputs=tokens,
            targets=tokens,
            mask=mx.ones(tokens.shape),
            target_count=0,
            target_positions=mx.array([], dtype=mx.int32),
            segments=mx.array([[0, 1]], dtype=mx.int32),
        )
        try:
            together = model_logits(model, packed)[0, 1]
        except (AttributeError, TypeError, ValueError) as error:
            raise PackingUnsupportedError(
                f"pack_sequences: model type {model_type!r} does not accept a "
                f"per-example attention mask ({error}). Set pack_sequences to "
                "false"
            ) from error
        alone = model(tokens[:, 1:])[0, 0]
        if not mx.allclose(together, alone, rtol=1e-3, atol=1e-3).item():
            raise PackingUnsupportedError(
                f"pack_sequences: model type {model_type!r} gives a packed "
                "example other logits than the example alone. Its attention "
                "ignores the per-example mask, or its position embeddings "
                "count from the start of the row. Set pack_sequences to false"
            )
    finally:
        model.train(was_training)
