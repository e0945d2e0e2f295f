"""Logits only at the positions that carry loss.

An mlx-lm model runs its body (``model.model``) over the tokens, then its
output head turns every position into logits over the whole vocabulary: the
``lm_head`` layer, or the embedding matrix when the two are tied. With prompt
masking most positions carry no loss (82% of the quickstart tokens), yet the
head and the cross-entropy over a 49,152-token vocabulary took 30% of a LoRA
step on SmolLM2-135M (CPU). The loss therefore runs the body over the whole
batch and the head only at the loss-bearing positions.

Models whose logits are more than the head applied to the body's output (a
scale, a bias, another attribute layout) fail the start-up check in
``splits_at_head`` and keep computing logits everywhere. A final logit soft
cap (``tanh(x / cap) * cap``) is close to the identity for the small logits of
that check, so a model that declares one is turned away by name.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_distributed_training.training.datasets.batching import MicroBatch
from mlx_distributed_training.training.sft.packed_attention import attention_caches


def hidden_states(model: nn.Module, batch: MicroBatch) -> mx.array:
    """Return the body's output at every position, (batch, length, hidden)."""
    return model.model(batch.inputs, cache=attention_caches(model, batch))


def head_logits(model: nn.Module, hidden: mx.array) -> mx.array:
    """Return the output head's logits for hidden states of any leading shape."""
    if "lm_head" in model:
        return model.lm_head(hidden)
    return model.model.embed_tokens.as_linear(hidden)


def target_logits(model: nn.Module, batch: MicroBatch) -> mx.array:
    """Return logits at the batch's loss-bearing positions only, (targets,
    vocab)."""
    hidden = hidden_states(model, batch)
    hidden = hidden.reshape(-1, hidden.shape[-1])[batch.target_positions]
    return head_logits(model, hidden)


def splits_at_head(model: nn.Module) -> bool:
    """Tell whether ``head_logits(hidden_states(...))`` gives the model's logits.

    Checked once on three tokens, in evaluation mode so that dropout does not
    make the two paths differ.
    """
    if _declares_logit_cap(model):
        return False
    was_training = model.training
    model.eval()
    try:
        tokens = mx.array([[1, 2, 3]], dtype=mx.int32)
        batch = MicroBatch(
            inputs=tokens,
            targets=tokens,
            mask=mx.ones(tokens.shape),
            target_count=3,
            target_positions=mx.arange(3),
        )
        try:
            split = target_logits(model, batch)
        except (AttributeError, TypeError, ValueError, KeyError):
            return False
        whole = model(tokens)[0]
        return split.shape == whole.shape and bool(
            mx.allclose(split, whole, rtol=1e-4, atol=1e-4).item()
        )
    finally:
        model.train(was_training)


def _declares_logit_cap(model: nn.Module) -> bool:
    args = getattr(model, "args", None)
    owners = (model, args, getattr(args, "text", None))
    return any(getattr(owner, "final_logit_softcapping", None) for owner in owners)
