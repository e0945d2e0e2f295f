"""Checkpoint folders: everything needed to continue a run exactly.

A checkpoint is `<output_dir>/checkpoints/step-00000100/` holding the trainable
weights (`adapters.safetensors`, with the `adapter_config.json` mlx-lm reads),
the optimizer state, the trainer state (step, data cursor, token count, RNG
key, losses) and the resolved config. It is filled in a temporary folder and
renamed into place, so a folder named `step-*` is always complete.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_distributed_training.configs.training_config import (
    DistributedTrainingConfig,
    save_config,
)
from mlx_distributed_training.training.utils.atomic import (
    TEMP_PREFIX,
    remove_folder,
    write_folder_atomic,
    write_json_atomic,
)

CHECKPOINT_PATTERN = re.compile(r"^step-(\d{8})$")
WEIGHTS_FILE = "adapters.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
CONFIG_FILE = "config.yaml"
ADAPTER_CONFIG_FILE = "adapter_config.json"


@dataclass
class TrainerState:
    """Progress of a run: the position to continue from and what it has done."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    trained_tokens: int = 0
    elapsed_seconds: float = 0.0
    train_loss: float | None = None
    valid_loss: float | None = None
    baseline_exact_match: float | None = None
    # SplitData.digest() of the training examples (None in older checkpoints).
    train_data_digest: str | None = None


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [
        path
        for path in folder.iterdir()
        if CHECKPOINT_PATTERN.match(path.name) and (path / STATE_FILE).is_file()
    ]
    return sorted(found, key=lambda path: path.name)


def trainable_weights(model: nn.Module) -> dict[str, mx.array]:
    return dict(tree_flatten(model.trainable_parameters()))


def write_result_folder(
    folder: Path,
    model: nn.Module,
    adapter_settings: dict,
    config: DistributedTrainingConfig,
    extra_json: dict[str, object],
) -> None:
    """Write trained weights with their adapter config, config and JSON files."""
    mx.save_safetensors(str(folder / WEIGHTS_FILE), trainable_weights(model))
    (folder / ADAPTER_CONFIG_FILE).write_text(
        json.dumps(adapter_settings, indent=2) + "\n"
    )
    save_config(config, folder / CONFIG_FILE)
    for name, value in extra_json.items():
        write_json_atomic(folder / name, value)


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer_state: dict[str, mx.array],
    state: TrainerState,
    adapter_settings: dict,
    config: DistributedTrainingConfig,
) -> Path:
    """Write one checkpoint atomically and return its folder."""
    path = run_dir / "checkpoints" / checkpoint_name(state.step)

    def fill(folder: Path) -> None:
        write_result_folder(folder, model, adapter_settings, config, {})
        mx.save_safetensors(str(folder / OPTIMIZER_FILE), optimizer_state)
        # The state file goes last: list_checkpoints only trusts folders with it.
        write_json_atomic(folder / STATE_FILE, asdict(state))

    write_folder_atomic(path, fill)
    return path


def prune_checkpoints(run_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints; return the deleted."""
    existing = list_checkpoints(run_dir)
    doomed = existing[: max(len(existing) - keep_last, 0)]
    for path in doomed:
        remove_folder(path)
    return doomed


def resolve_resume_path(path: Path) -> Path:
    """Accept a checkpoint folder or a run folder (its newest checkpoint)."""
    if path.name.startswith(TEMP_PREFIX):
        raise FileNotFoundError(
            f"{path} is the temporary folder of an unfinished save, not a "
            "checkpoint; resume from its run folder instead"
        )
    if (path / STATE_FILE).is_file():
        return path
    checkpoints = list_checkpoints(path)
    if not checkpoints:
        raise FileNotFoundError(
            f"no checkpoint found in {path}: expected a step-NNNNNNNN folder with "
            f"{STATE_FILE}, or a run folder whose checkpoints/ holds one"
        )
    return checkpoints[-1]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the run."""

    def __init__(self, path: Path, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


def read_trainer_state(checkpoint: Path) -> TrainerState:
    path = checkpoint / STATE_FILE
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(path, f"cannot read file: {error}") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(
            path, f"invalid JSON at line {error.lineno}: {error.msg}"
        ) from None
    if not isinstance(values, dict):
        raise CheckpointError(path, "expected a JSON object")
    kinds = {field.name: field.type for field in fields(TrainerState)}
    for key, value in values.items():
        if key not in kinds:
            raise CheckpointError(path, f"{key}: unknown key")
        kind = kinds[key]
        if value is None and "None" in kind:
            continue
        if "str" in kind:
            right_type, expected = isinstance(value, str), "a string"
        else:
            number_types = (int, float) if "float" in kind else (int,)
            right_type = isinstance(value, number_types) and not isinstance(value, bool)
            expected = "a number" if "float" in kind else "an integer"
        if not right_type:
            raise CheckpointError(path, f"{key}: got {value!r}, expected {expected}")
    return TrainerState(**values)


def _load_safetensors(path: Path) -> dict[str, mx.array]:
    try:
        return mx.load(str(path))
    except (RuntimeError, ValueError, OSError) as error:
        raise CheckpointError(path, f"cannot load: {error}") from None


def load_checkpoint_weights(checkpoint: Path, model: nn.Module) -> dict[str, mx.array]:
    """Load trainable weights into `model`; return the saved optimizer state.

    Raises `CheckpointError` when a file is unreadable, or when the saved
    weights differ in names or shapes from the model's trainable parameters
    (for example a checkpoint resumed with another lora_rank).
    """
    path = checkpoint / WEIGHTS_FILE
    weights = _load_safetensors(path)
    expected = trainable_weights(model)
    problems = []
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing:
        problems.append(f"missing {_name_list(missing)}")
    if unexpected:
        problems.append(f"unexpected {_name_list(unexpected)}")
    for name, value in weights.items():
        if name in expected and value.shape != expected[name].shape:
            problems.append(
                f"'{name}' has shape {tuple(value.shape)}, "
                f"expected {tuple(expected[name].shape)}"
            )
    if problems:
        raise CheckpointError(
            path,
            "does not match the model being trained: "
            + "; ".join(problems)
            + "; resume with the config the checkpoint was saved with",
        )
    optimizer_state = _load_safetensors(checkpoint / OPTIMIZER_FILE)
    model.load_weights(list(weights.items()), strict=False)
    return optimizer_state


def _name_list(names: list[str], limit: int = 3) -> str:
    listed = ", ".join(f"'{name}'" for name in names[:limit])
    if len(names) > limit:
        listed += f" and {len(names) - limit} more"
    return listed
