"""Rank program: train a tiny Llama on fixed data with data parallelism.

Every step uses the same global batch of ``--global-batch-size`` sequences.
Rank R trains on rows ``[R * m, (R + 1) * m)``, where ``m`` is the micro-batch
size (global batch size / world size). Each step follows the trainer's order:
``reduce_gradients``, ``gradient_norm``, ``clip_gradients`` (``--max-grad-norm``),
then the update. Rank 0 saves the global loss of every step (``losses.json``)
and each rank its final weights (``weights-rank<R>``).
"""

import argparse
import json

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten
from mlx_distributed_training.training.distributed.group import init_group
from mlx_distributed_training.training.optimizers.distributed_adamw import (
    DistributedAdamW,
)
from mlx_lm.models import llama

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--steps", type=int, default=4)
parser.add_argument("--global-batch-size", type=int, default=8)
parser.add_argument("--sequence-length", type=int, default=16)
parser.add_argument("--shard-state", action="store_true")
parser.add_argument("--max-grad-norm", type=float, default=0.5)
args = parser.parse_args()

group = init_group("any")
rank, world_size = group.rank(), group.size()
micro_batch_size = args.global_batch_size // world_size

mx.random.seed(0)
model = llama.Model(
    llama.ModelArgs(
        model_type="llama",
        hidden_size=32,
        num_hidden_layers=2,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        vocab_size=64,
    )
)
optimizer = DistributedAdamW(
    optim.cosine_decay(3e-3, args.steps),
    weight_decay=0.01,
    group=group,
    shard_state=args.shard_state,
)

data = np.random.default_rng(1234).integers(
    0, 64, size=(args.steps, args.global_batch_size, args.sequence_length + 1)
)


def loss_fn(model, tokens):
    logits = model(tokens[:, :-1])
    return nn.losses.cross_entropy(logits, tokens[:, 1:], reduction="mean")


loss_and_grad = nn.value_and_grad(model, loss_fn)
losses = []
for step in range(args.steps):
    rows = slice(rank * micro_batch_size, (rank + 1) * micro_batch_size)
    tokens = mx.array(data[step, rows])
    loss, gradients = loss_and_grad(model, tokens)
    # Every rank has the same number of tokens, so the mean of the rank
    # means is the mean over the global batch.
    gradients = optimizer.reduce_gradients(dict(tree_flatten(gradients)))
    norm = optimizer.gradient_norm(gradients)
    gradients = optimizer.clip_gradients(gradients, norm, args.max_grad_norm)
    optimizer.apply_gradients(gradients, model)
    if world_size > 1:
        loss = mx.distributed.all_sum(loss, group=group) / world_size
    mx.eval(loss, model.parameters(), optimizer.state)
    losses.append(loss.item())

flat = dict(tree_flatten(model.parameters()))
mx.save_safetensors(f"{args.out}/weights-rank{rank}", flat)
if rank == 0:
    with open(f"{args.out}/losses.json", "w") as handle:
        json.dump(losses, handle)
