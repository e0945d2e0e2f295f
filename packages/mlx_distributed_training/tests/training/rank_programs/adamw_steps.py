"""Rank program: AdamW steps with and without sharded state, then a restore.

Every rank feeds its own random gradients, averaged across the group, to
three copies of one model: one optimizer keeps its whole state (full), one
shards it (sharded), and one shards it and keeps only this rank's gradient
slices from ``reduce_gradients`` (reduced).
After ``--steps`` steps each rank saves, in ``--out``:

- ``weights-<mode>-rank<R>``: the weights of each copy,
- ``norms-<mode>-rank<R>.json``: ``gradient_norm`` of every step,
- ``state-<mode>-rank<R>``: ``checkpoint_state()`` of each optimizer,
- ``resumed-rank<R>``: weights after two more steps taken by a new sharded
  optimizer restored from the sharded checkpoint,
- ``continued-rank<R>``: weights after the same two steps by the original
  sharded optimizer.
"""

import argparse
import json

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map
from mlx_distributed_training.training.distributed.group import init_group
from mlx_distributed_training.training.optimizers.distributed_adamw import (
    DistributedAdamW,
)

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--steps", type=int, default=4)
parser.add_argument("--bucket-size-bytes", type=int, default=512)
args = parser.parse_args()

group = init_group("ring")
rank = group.rank()


def make_model() -> nn.Module:
    mx.random.seed(0)
    return nn.Sequential(nn.Linear(6, 13), nn.GELU(), nn.Linear(13, 5))


def make_optimizer(shard_state: bool) -> DistributedAdamW:
    schedule = optim.join_schedules(
        [optim.linear_schedule(0.0, 1e-2, 2), optim.cosine_decay(1e-2, 10)], [2]
    )
    return DistributedAdamW(
        schedule,
        weight_decay=0.1,
        group=group,
        shard_state=shard_state,
        bucket_size_bytes=args.bucket_size_bytes,
    )


def random_gradients(model: nn.Module, step: int) -> dict:
    mx.random.seed(1000 * step + rank)
    return tree_map(lambda p: mx.random.normal(p.shape), model.trainable_parameters())


def take_steps(model, optimizer, first_step, count, reduce=False):
    norms = []
    for step in range(first_step, first_step + count):
        gradients = random_gradients(model, step)
        if reduce:
            gradients = optimizer.reduce_gradients(dict(tree_flatten(gradients)))
        else:
            gradients = optimizer.average_gradients(gradients)
        norms.append(optimizer.gradient_norm(gradients).item())
        optimizer.apply_gradients(gradients, model)
        mx.eval(model.parameters(), optimizer.state)
    return norms


def save(name, tree):
    mx.save_safetensors(f"{args.out}/{name}-rank{rank}", dict(tree_flatten(tree)))


modes = (("full", False, False), ("reduced", True, True), ("sharded", True, False))
for mode, shard_state, reduce in modes:
    model = make_model()
    optimizer = make_optimizer(shard_state)
    norms = take_steps(model, optimizer, 0, args.steps, reduce)
    with open(f"{args.out}/norms-{mode}-rank{rank}.json", "w") as handle:
        json.dump(norms, handle)
    save(f"weights-{mode}", model.parameters())
    state = optimizer.checkpoint_state()
    mx.save_safetensors(f"{args.out}/state-{mode}-rank{rank}", state)

# Restore the sharded checkpoint into a new optimizer and continue both.
restored_model = make_model()
restored_model.update(model.parameters())
restored = make_optimizer(shard_state=True)
restored.load_checkpoint_state(
    mx.load(f"{args.out}/state-sharded-rank{rank}.safetensors")
)
take_steps(restored_model, restored, args.steps, 2)
take_steps(model, optimizer, args.steps, 2)
save("resumed", restored_model.parameters())
save("continued", model.parameters())
