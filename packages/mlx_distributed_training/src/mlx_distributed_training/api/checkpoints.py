"""Listing of the checkpoints a training run has written."""

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# The trainer names each checkpoint folder after its step, zero-padded to 8
# digits. Temporary folders of a save still in progress do not match.
CHECKPOINT_DIR_PATTERN = re.compile(r"step-(\d{8,})")


@dataclass(frozen=True)
class CheckpointInfo:
    """One saved checkpoint: its step, the losses at that step and its folder."""

    step: int
    train_loss: float | None
    valid_loss: float | None
    path: Path


def _optional_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def list_checkpoints(output_dir: Path) -> list[CheckpointInfo]:
    """Return the complete checkpoints under `output_dir/checkpoints`, by step.

    A folder whose trainer_state.json is missing or unreadable is logged and
    skipped.
    """
    root = output_dir / "checkpoints"
    if not root.is_dir():
        return []
    found: list[CheckpointInfo] = []
    for folder in root.iterdir():
        match = CHECKPOINT_DIR_PATTERN.fullmatch(folder.name)
        if match is None or not folder.is_dir():
            continue
        state_path = folder / "trainer_state.json"
        try:
            state = json.loads(state_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            logger.warning("Skipping checkpoint %s: %s", folder, error)
            continue
        if not isinstance(state, dict):
            logger.warning("Skipping checkpoint %s: state is not an object", folder)
            continue
        step = state.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            step = int(match.group(1))
        found.append(
            CheckpointInfo(
                step=step,
                train_loss=_optional_float(state.get("train_loss")),
                valid_loss=_optional_float(state.get("valid_loss")),
                path=folder,
            )
        )
    return sorted(found, key=lambda checkpoint: checkpoint.step)
