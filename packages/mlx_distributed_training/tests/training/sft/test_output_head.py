"""The output head runs only at loss-bearing positions, with the same loss."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_distributed_training.training.datasets.batching import collate
from mlx_distributed_training.training.datasets.encode import EncodedExample
from mlx_distributed_training.training.datasets.packing import pack_examples
from mlx_distributed_training.training.sft.loss import TokenLoss
from mlx_distributed_training.training.sft.output_head import splits_at_head
from mlx_lm.models import cohere, gemma2, gpt2, llama
from mlx_lm.tuner.utils import linear_to_lora_layers
from training_fixtures import TINY_LLAMA, tiny_model


def tiny(module, **overrides):
    return tiny_model(module, **{**TINY_LLAMA, "vocab_size": 50, **overrides})


def prompt_and_reply(prompt, reply, location):
    tokens = np.array(prompt + reply, np.int32)
    mask = np.array([False] * len(prompt) + [True] * len(reply))
    return EncodedExample(tokens, mask, location)


EXAMPLES = [
    prompt_and_reply([3, 9, 4, 17, 5, 6], [21, 22, 23], "line 1"),
    prompt_and_reply([8, 2], [30, 11, 12, 13, 14], "line 2"),
    prompt_and_reply([40, 41, 42, 43], [7], "line 3"),
]


def loss_and_grads(model, batch, head_at_targets):
    loss = TokenLoss(head_at_targets)
    value, grads = nn.value_and_grad(model, loss.summed)(model, batch)
    mx.eval(value, grads)
    return value, dict(tree_flatten(grads))


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("packed", [False, True])
def test_head_at_targets_same_loss_and_gradients(tied, packed):
    model = tiny(llama, tie_word_embeddings=tied)
    model.freeze()
    linear_to_lora_layers(model, 1, {"rank": 4, "scale": 10.0, "dropout": 0.0})
    if not tied:
        model.lm_head.unfreeze()
    examples = pack_examples(EXAMPLES, 32, seed=0).rows if packed else EXAMPLES
    batch = collate(examples, np.arange(len(examples)))
    assert splits_at_head(model)
    everywhere, everywhere_grads = loss_and_grads(model, batch, False)
    at_targets, at_targets_grads = loss_and_grads(model, batch, True)
    assert at_targets.item() == pytest.approx(everywhere.item(), rel=1e-6)
    assert at_targets_grads.keys() == everywhere_grads.keys()
    for name, grad in everywhere_grads.items():
        assert mx.allclose(at_targets_grads[name], grad, atol=1e-6).item(), name


def test_collate_target_positions_row_order():
    batch = collate(EXAMPLES, np.arange(3))
    width = batch.targets.shape[1]
    rows, columns = np.divmod(np.array(batch.target_positions), width)
    assert batch.target_count == 9
    assert len(rows) == 9
    assert np.array(batch.mask)[rows, columns].all()
    assert rows.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 2]
    assert columns[:3].tolist() == [5, 6, 7]


def test_batch_without_targets_zero_loss():
    silent = EncodedExample(np.array([4, 5, 6], np.int32), np.zeros(3, bool), "x")
    batch = collate([silent], np.array([0]))
    model = tiny(llama, tie_word_embeddings=True)
    assert TokenLoss(True).summed(model, batch).item() == 0.0


@pytest.mark.parametrize(
    ("module", "settings"),
    [
        # A final logit soft cap.
        (gemma2, {"model_type": "gemma2", "head_dim": 8, "query_pre_attn_scalar": 8.0}),
        # Logits multiplied by a scale.
        (cohere, {"model_type": "cohere", "layer_norm_eps": 1e-5, "logit_scale": 0.5}),
    ],
)
def test_logit_transform_keeps_full_logits(module, settings):
    assert not splits_at_head(tiny(module, **settings))


def test_other_layout_keeps_full_logits():
    model = tiny_model(
        gpt2,
        model_type="gpt2",
        n_ctx=16,
        n_embd=32,
        n_head=4,
        n_layer=1,
        n_positions=16,
        layer_norm_epsilon=1e-5,
        vocab_size=50,
    )
    assert not splits_at_head(model)
