"""Learning-rate schedules: linear warmup, then constant, linear or cosine decay."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import mlx.optimizers as optim
from mlx_distributed_training.configs.training_config import DistributedTrainingConfig


def build_schedule(
    config: DistributedTrainingConfig, total_steps: int
) -> Callable[[mx.array], mx.array]:
    """Learning rate as a function of the optimizer's step count."""
    peak = config.learning_rate
    warmup = config.warmup_steps
    decay_steps = max(total_steps - warmup, 1)
    if config.lr_schedule == "constant":
        decay = optim.linear_schedule(peak, peak, 1)
    elif config.lr_schedule == "linear":
        decay = optim.linear_schedule(peak, config.min_learning_rate, decay_steps)
    else:
        decay = optim.cosine_decay(peak, decay_steps, config.min_learning_rate)
    if warmup == 0:
        return decay
    ramp = optim.linear_schedule(0.0, peak, warmup)
    return optim.join_schedules([ramp, decay], [warmup])
