"""Prepare a loaded model for training: adapters, frozen weights, checkpointing."""

from __future__ import annotations

import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_distributed_training.configs.training_config import (
    ConfigError,
    DistributedTrainingConfig,
)
from mlx_lm.tuner.trainer import grad_checkpoint
from mlx_lm.tuner.utils import linear_to_lora_layers


def adapter_settings(config: DistributedTrainingConfig, layer_count: int) -> dict:
    """Build the adapter description mlx-lm reads from `adapter_config.json`."""
    num_layers = layer_count if config.lora_layers == -1 else config.lora_layers
    settings = {
        "fine_tune_type": config.fine_tune_type,
        "num_layers": num_layers,
    }
    if config.fine_tune_type != "full":
        settings["lora_parameters"] = {
            "rank": config.lora_rank,
            "scale": config.lora_scale,
            "dropout": config.lora_dropout,
            "keys": list(config.lora_targets) if config.lora_targets else None,
        }
    return settings


def prepare_model(model: nn.Module, config: DistributedTrainingConfig) -> dict:
    """Freeze the model and add trainable adapters (or unfreeze it all).

    Returns the adapter settings to save beside the trained weights.
    """
    layer_count = len(model.layers)
    if config.lora_layers > layer_count:
        raise ConfigError(
            [
                f"lora_layers: got {config.lora_layers}, but the model has "
                f"{layer_count} layers; use at most {layer_count} or -1 for all"
            ]
        )
    settings = adapter_settings(config, layer_count)
    if config.fine_tune_type == "full":
        model.unfreeze()
    else:
        model.freeze()
        _check_targets(model, config)
        linear_to_lora_layers(
            model,
            settings["num_layers"],
            settings["lora_parameters"],
            use_dora=config.fine_tune_type == "dora",
        )
    if config.grad_checkpoint:
        grad_checkpoint(model.layers[0])
    return settings


def _check_targets(model: nn.Module, config: DistributedTrainingConfig) -> None:
    if not config.lora_targets:
        return
    available = {name for name, _ in model.layers[0].named_modules() if name}
    missing = [target for target in config.lora_targets if target not in available]
    if missing:
        linear = sorted(
            name
            for name, module in model.layers[0].named_modules()
            if isinstance(module, nn.Linear | nn.QuantizedLinear)
        )
        raise ConfigError(
            [
                f"lora_targets: {', '.join(missing)} not found in a model layer; "
                f"linear modules are {', '.join(linear)}"
            ]
        )


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(value.size for _, value in tree_flatten(model.trainable_parameters()))


def total_parameter_count(model: nn.Module) -> int:
    return sum(value.size for _, value in tree_flatten(model.parameters()))
