"""Rank program: average a gradient tree of mixed dtypes and sizes.

Each rank saves its own gradients (``inputs-rank<R>``) and the averaged ones
(``averaged-rank<R>``) as safetensors in ``--out``.
"""

import argparse

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_distributed_training.training.distributed.group import init_group
from mlx_distributed_training.training.optimizers.distributed_adamw import (
    DistributedAdamW,
)

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--bucket-size-bytes", type=int, default=256)
args = parser.parse_args()

group = init_group("ring")
rank = group.rank()
mx.random.seed(100 + rank)
gradients = {
    "embed": {"weight": mx.random.normal((40, 8))},  # 1,280 bytes: own bucket
    "layers": [
        {"bias": mx.random.normal((7,)), "weight": mx.random.normal((3, 5))},
        {"bias": mx.random.normal((7,)).astype(mx.bfloat16)},
        {"weight": mx.random.normal((2, 3))},
    ],
    "scale": mx.random.normal((1,)),
}
optimizer = DistributedAdamW(
    1e-3, group=group, bucket_size_bytes=args.bucket_size_bytes
)
averaged = optimizer.average_gradients(gradients)
mx.eval(averaged)

mx.save_safetensors(f"{args.out}/inputs-rank{rank}", dict(tree_flatten(gradients)))
mx.save_safetensors(f"{args.out}/averaged-rank{rank}", dict(tree_flatten(averaged)))
