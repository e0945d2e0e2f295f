"""The typed, validated configuration of one training run.

Every run ends in one frozen `DistributedTrainingConfig`. Values come from the
defaults below, then a YAML or JSON file, then command-line flags, each layer
overriding the one before. Every problem found on the way is collected and
raised once as a `ConfigError`, so a user fixes a whole file in one pass.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

FINE_TUNE_TYPES = ("lora", "dora", "full")
LR_SCHEDULES = ("constant", "linear", "cosine")
BACKENDS = ("any", "ring", "mpi", "nccl", "jaccl")
WANDB_MODES = ("offline", "online")


def _option(default: Any, help: str, **limits: Any) -> Any:
    """Declare a config field with its help text and value limits."""
    return field(default=default, metadata={"help": help, **limits})


@dataclass(frozen=True)
class DistributedTrainingConfig:
    """Everything that decides what one `mlx-train` run does."""

    # What to train on.
    model: str | None = _option(
        None,
        "Model to fine-tune: a local MLX or Hugging Face folder, a Hugging Face "
        "hub id, or empty for the embedded SmolLM2-135M-Instruct.",
    )
    data: str | None = _option(
        None,
        "Folder with train/valid/test files (.jsonl, .json or .parquet), or a "
        "Hugging Face dataset name; empty for the bundled quickstart task.",
    )
    output_dir: str | None = _option(
        None,
        "Folder for checkpoints, metrics and the final adapter; empty for "
        "runs/<UTC timestamp>.",
    )

    # How to adapt the model.
    fine_tune_type: str = _option(
        "lora", "Which weights train: lora, dora or full.", choices=FINE_TUNE_TYPES
    )
    lora_rank: int = _option(8, "Rank of each LoRA/DoRA update.", minimum=1)
    lora_scale: float = _option(
        20.0, "Multiplier applied to the LoRA/DoRA update.", positive=True
    )
    lora_dropout: float = _option(
        0.0, "Dropout probability on the LoRA/DoRA input.", minimum=0.0, below=1.0
    )
    lora_layers: int = _option(
        16,
        "How many of the last transformer layers get adapters; -1 for all.",
        minimum=-1,
    )
    lora_targets: tuple[str, ...] | None = _option(
        None,
        "Module paths inside a layer that get adapters, e.g. self_attn.q_proj; "
        "empty for every linear layer.",
    )

    # Batches and steps.
    micro_batch_size: int = _option(
        4, "Examples per forward/backward pass on one rank.", minimum=1
    )
    gradient_accumulation_steps: int = _option(
        1, "Micro-steps whose gradients are summed into one step.", minimum=1
    )
    max_seq_length: int = _option(
        2048, "Longest example in tokens; longer ones are truncated.", minimum=2
    )
    pack_sequences: bool = _option(
        False,
        "Join examples into rows of at most max_seq_length tokens, each example "
        "attending only to itself; micro_batch_size then counts rows.",
    )
    mask_prompt: bool = _option(
        True,
        "Compute the loss on assistant/completion tokens only, not on the prompt.",
    )
    max_steps: int | None = _option(
        None, "Stop after this many optimizer steps.", minimum=1
    )
    num_epochs: float | None = _option(
        None,
        "Stop after this many passes over the training split (fractions allowed). "
        "With no max_steps, num_epochs or max_tokens, one epoch.",
        positive=True,
    )
    max_tokens: int | None = _option(
        None, "Stop once this many loss-bearing tokens were trained.", minimum=1
    )

    # Optimizer and schedule.
    learning_rate: float = _option(1e-4, "Peak learning rate.", positive=True)
    lr_schedule: str = _option(
        "cosine",
        "Learning-rate decay after warmup: constant, linear or cosine.",
        choices=LR_SCHEDULES,
    )
    warmup_steps: int = _option(
        0, "Steps of linear warmup from 0 to learning_rate.", minimum=0
    )
    min_learning_rate: float = _option(
        0.0, "Learning rate at the end of linear or cosine decay.", minimum=0.0
    )
    weight_decay: float = _option(0.0, "AdamW decoupled weight decay.", minimum=0.0)
    max_grad_norm: float | None = _option(
        None,
        "Clip the global gradient norm to this value; empty for no clipping.",
        positive=True,
    )
    grad_checkpoint: bool = _option(
        False, "Recompute layer activations in the backward pass to save memory."
    )
    seed: int = _option(0, "Seed for data order, adapter init and dropout.", minimum=0)

    # Evaluation, reporting and checkpoints.
    report_interval_steps: int = _option(
        10, "Steps between progress lines and train metrics.", minimum=1
    )
    eval_interval_steps: int = _option(
        50, "Steps between validation runs; 0 evaluates only at the end.", minimum=0
    )
    eval_max_batches: int = _option(
        25, "Most validation micro-batches per evaluation; -1 for all.", minimum=-1
    )
    exact_match_samples: int = _option(
        64,
        "Held-out examples scored by greedy generation before and after training; "
        "0 turns exact-match scoring off.",
        minimum=0,
    )
    save_interval_steps: int = _option(
        100, "Steps between checkpoints; 0 saves only the final result.", minimum=0
    )
    keep_last: int = _option(
        3, "Checkpoints kept on disk; older ones are deleted.", minimum=1
    )
    wandb_project: str | None = _option(
        None, "Also report to this Weights & Biases project."
    )
    wandb_mode: str = _option(
        "offline", "Weights & Biases mode: offline or online.", choices=WANDB_MODES
    )

    # Distributed.
    backend: str = _option(
        "any",
        "MLX distributed backend: any, ring, mpi, nccl or jaccl.",
        choices=BACKENDS,
    )
    shard_optimizer_state: bool = _option(
        False,
        "Keep each rank's share of the AdamW state only, cutting optimizer memory "
        "per rank by about the world size.",
    )
    collective_timeout_s: float = _option(
        300.0,
        "Seconds a rank may wait in a collective before every rank stops with "
        "an error naming it. With shard_optimizer_state this includes the "
        "backward pass of a step's last micro-step.",
        positive=True,
    )

    def __post_init__(self) -> None:
        problems = _field_problems(self) + _cross_field_problems(self)
        if problems:
            raise ConfigError(problems)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain YAML-friendly values."""
        values = dataclasses.asdict(self)
        if values["lora_targets"] is not None:
            values["lora_targets"] = list(values["lora_targets"])
        return values


class ConfigError(ValueError):
    """One or more invalid config values, each described in `problems`."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        header = f"invalid training config{where}:"
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))


CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(DistributedTrainingConfig)}


def _field_problems(config: Any) -> list[str]:
    problems = []
    for name, spec in CONFIG_FIELDS.items():
        value = getattr(config, name)
        if value is None:
            continue
        meta = spec.metadata
        if "choices" in meta and value not in meta["choices"]:
            allowed = ", ".join(meta["choices"])
            problems.append(f"{name}: got {value!r}, expected one of {allowed}")
        if "minimum" in meta and value < meta["minimum"]:
            problems.append(f"{name}: got {value!r}, expected >= {meta['minimum']}")
        if meta.get("positive") and not value > 0:
            problems.append(f"{name}: got {value!r}, expected a number > 0")
        if "below" in meta and value >= meta["below"]:
            problems.append(f"{name}: got {value!r}, expected < {meta['below']}")
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{name}: got {value!r}, expected a finite number")
    return problems


def _cross_field_problems(config: Any) -> list[str]:
    problems = []
    if config.lora_layers == 0:
        problems.append("lora_layers: got 0, expected -1 (all) or a count >= 1")
    if config.min_learning_rate > config.learning_rate:
        problems.append(
            f"min_learning_rate: got {config.min_learning_rate!r}, expected at "
            f"most learning_rate ({config.learning_rate!r})"
        )
    if config.max_steps is not None and config.warmup_steps > config.max_steps:
        problems.append(
            f"warmup_steps: got {config.warmup_steps}, expected at most "
            f"max_steps ({config.max_steps})"
        )
    return problems


def _coerce(name: str, raw: Any, from_text: bool) -> tuple[Any, str | None]:
    """Convert one raw value to the field's type, or describe why it can't be."""
    annotation = str(CONFIG_FIELDS[name].type)
    optional = "None" in annotation
    if raw is None or (from_text and optional and raw in ("", "none", "null")):
        if optional:
            return None, None
        return None, f"{name}: got no value, expected {_type_word(annotation)}"

    if annotation.startswith("tuple"):
        items = raw.split(",") if from_text and isinstance(raw, str) else raw
        if not isinstance(items, list | tuple) or not all(
            isinstance(i, str) and i.strip() for i in items
        ):
            return None, f"{name}: got {raw!r}, expected a list of module paths"
        return tuple(i.strip() for i in items), None
    if annotation.startswith("bool"):
        if isinstance(raw, bool):
            return raw, None
        if from_text and str(raw).lower() in ("true", "false", "1", "0", "yes", "no"):
            return str(raw).lower() in ("true", "1", "yes"), None
        return None, f"{name}: got {raw!r}, expected true or false"
    if annotation.startswith("int"):
        if isinstance(raw, bool):
            return None, f"{name}: got {raw!r}, expected an integer"
        if isinstance(raw, int):
            return raw, None
        if from_text:
            try:
                return int(raw), None
            except ValueError:
                pass
        return None, f"{name}: got {raw!r}, expected an integer"
    if annotation.startswith("float"):
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw), None
        if from_text or isinstance(raw, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string, so accept numeric text.
            try:
                return float(raw), None
            except ValueError:
                pass
        return None, f"{name}: got {raw!r}, expected a number"
    if isinstance(raw, str):
        return raw, None
    return None, f"{name}: got {raw!r}, expected a string"


def _type_word(annotation: str) -> str:
    for prefix, word in (
        ("bool", "true or false"),
        ("int", "an integer"),
        ("float", "a number"),
        ("tuple", "a list of module paths"),
    ):
        if annotation.startswith(prefix):
            return word
    return "a string"


def _closest_key(unknown: str) -> str | None:
    import difflib

    matches = difflib.get_close_matches(unknown, CONFIG_FIELDS, n=1, cutoff=0.6)
    return matches[0] if matches else None


def collect_values(
    mapping: dict[str, Any], from_text: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Convert raw values to field types; return them and the problems found."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, raw in mapping.items():
        name = str(key).replace("-", "_")
        if name not in CONFIG_FIELDS:
            hint = _closest_key(name)
            suffix = f" (did you mean {hint}?)" if hint else ""
            problems.append(f"{key}: unknown key{suffix}")
            continue
        value, problem = _coerce(name, raw, from_text)
        if problem:
            problems.append(problem)
        else:
            values[name] = value
    return values, problems


def config_from_mapping(
    mapping: dict[str, Any],
    source: str | None = None,
    overrides: dict[str, Any] | None = None,
    overrides_are_text: bool = False,
) -> DistributedTrainingConfig:
    """Build a config from file values plus overrides, raising every problem once.

    `overrides` win over `mapping`. When `overrides_are_text` is set they are
    command-line strings and are parsed (e.g. "8" to 8, "true" to True).
    """
    if not isinstance(mapping, dict):
        raise ConfigError(
            [f"top level: got {type(mapping).__name__}, expected a mapping of keys"],
            source,
        )
    values, problems = collect_values(mapping)
    override_values, override_problems = collect_values(
        overrides or {}, from_text=overrides_are_text
    )
    problems += [f"{p} (from command line)" for p in override_problems]
    values.update(override_values)

    # Check limits on every value that parsed, so one error lists everything.
    merged = {name: spec.default for name, spec in CONFIG_FIELDS.items()}
    merged.update(values)
    candidate = SimpleNamespace(**merged)
    field_problems = _field_problems(candidate)
    problems += field_problems
    if not field_problems:
        problems += _cross_field_problems(candidate)
    if problems:
        raise ConfigError(problems, source)
    return DistributedTrainingConfig(**values)


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    overrides_are_text: bool = False,
) -> DistributedTrainingConfig:
    """Load defaults < file at `path` < `overrides` into one validated config."""
    from mlx_distributed_training.configs.config_file import read_config_file

    mapping = read_config_file(path) if path else {}
    source = str(path) if path else None
    return config_from_mapping(mapping, source, overrides, overrides_are_text)


def save_config(config: DistributedTrainingConfig, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    from mlx_distributed_training.training.utils.atomic import write_text_atomic

    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    write_text_atomic(Path(path), text)
