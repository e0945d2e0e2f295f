"""Packed rows: each example attends only to itself, as if it were alone."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx_distributed_training.training.datasets.batching import collate
from mlx_distributed_training.training.datasets.encode import EncodedExample
from mlx_distributed_training.training.datasets.packing import join_row
from mlx_distributed_training.training.sft.loss import TokenLoss
from mlx_distributed_training.training.sft.packed_attention import (
    PackingUnsupportedError,
    check_packing_support,
    model_logits,
)
from mlx_lm.models import gpt2, llama
from mlx_lm.tuner.trainer import grad_checkpoint
from training_fixtures import TINY_LLAMA, tiny_model


def tiny_llama(**overrides):
    settings = {**TINY_LLAMA, "vocab_size": 50, "tie_word_embeddings": True}
    return tiny_model(llama, **{**settings, **overrides})


def example(tokens, location):
    tokens = np.array(tokens, np.int32)
    return EncodedExample(tokens, np.ones(len(tokens), bool), location)


FIRST = example([3, 9, 4, 17, 5], "line 1")
SECOND = example([8, 2, 30, 11], "line 2")


def packed_row():
    return join_row([FIRST, SECOND], [0, 1], 0)


def test_pack_records_example_of_each_token():
    row = packed_row()
    assert row.tokens.tolist() == FIRST.tokens.tolist() + SECOND.tokens.tolist()
    assert row.segments.tolist() == [0] * 5 + [1] * 4
    # The first token of each example is never a target.
    assert row.loss_mask.tolist() == [False] + [True] * 4 + [False] + [True] * 3


def test_collate_marks_padding_with_minus_one():
    batch = collate([packed_row()], np.array([0]))
    segments = batch.segments.tolist()[0]
    assert len(segments) == 15
    assert segments[9:] == [-1] * 6


def test_packed_logits_equal_each_example_alone():
    model = tiny_llama()
    row = packed_row()
    logits = model_logits(model, collate([row], np.array([0])))[0]
    start = 0
    for piece in np.split(row.tokens, np.flatnonzero(np.diff(row.segments)) + 1):
        alone = model(mx.array(piece[None, :-1]))[0]
        together = logits[start : start + len(piece) - 1]
        assert mx.allclose(together, alone, atol=1e-5).item()
        start += len(piece)


@pytest.mark.parametrize("head_at_targets", [False, True])
def test_packed_loss_equals_sum_of_separate_losses(head_at_targets):
    model = tiny_llama()
    row = packed_row()
    loss = TokenLoss(head_at_targets)
    packed = loss.summed(model, collate([row], np.array([0])))
    separate = sum(
        loss.summed(model, collate([e], np.array([0]))) for e in (FIRST, SECOND)
    )
    assert packed.item() == pytest.approx(separate.item(), rel=1e-5)


def test_sliding_window_model_keeps_window():
    model = tiny_llama(
        layer_types=["full_attention", "sliding_attention"], sliding_window=2
    )
    row = packed_row()
    logits = model_logits(model, collate([row], np.array([0])))[0]
    first_length = int((row.segments == 0).sum())
    alone = model(mx.array(row.tokens[None, : first_length - 1]))[0]
    assert mx.allclose(logits[: first_length - 1], alone, atol=1e-5).item()


def test_packing_with_gradient_checkpointing():
    model = tiny_llama()
    grad_checkpoint(model.layers[0])
    batch = collate([packed_row()], np.array([0]))
    loss, grads = nn.value_and_grad(model, TokenLoss().summed)(model, batch)
    mx.eval(loss, grads)
    assert np.isfinite(loss.item())


def test_check_accepts_llama():
    check_packing_support(tiny_llama(), "llama")


class IgnoresCache(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = tiny_llama()
        self.layers = self.inner.layers

    def __call__(self, inputs, cache=None):
        return self.inner(inputs)


class TakesNoCache(IgnoresCache):
    def __call__(self, inputs):
        return self.inner(inputs)


def test_check_rejects_model_ignoring_mask():
    with pytest.raises(PackingUnsupportedError) as raised:
        check_packing_support(IgnoresCache(), "wrapped")
    assert str(raised.value).startswith(
        "pack_sequences: model type 'wrapped' gives a packed example other "
        "logits than the example alone."
    )


def test_check_rejects_absolute_positions():
    # GPT-2 applies the mask, but its learned position embeddings number the
    # tokens from the start of the row, not of each example.
    mx.random.seed(0)
    settings = {
        "model_type": "gpt2",
        "n_ctx": 64,
        "n_embd": 32,
        "n_head": 4,
        "n_layer": 2,
        "n_positions": 64,
        "layer_norm_epsilon": 1e-5,
        "vocab_size": 50,
    }
    model = gpt2.Model(gpt2.ModelArgs.from_dict(settings))
    with pytest.raises(PackingUnsupportedError) as raised:
        check_packing_support(model, "gpt2")
    assert "position embeddings count from the start of the row" in str(raised.value)


def test_check_rejects_model_without_cache_argument():
    with pytest.raises(PackingUnsupportedError, match="does not accept a per-example"):
        check_packing_support(TakesNoCache(), "plain")
