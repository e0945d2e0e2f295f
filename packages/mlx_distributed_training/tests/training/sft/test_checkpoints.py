"""Reading a checkpoint back for --resume: damaged or mismatched folders."""

import json

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx_distributed_training.training.sft.checkpoints import (
    OPTIMIZER_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    TrainerState,
    load_checkpoint_weights,
    read_trainer_state,
    trainable_weights,
)


def write_checkpoint(folder, weights, state=None):
    folder.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(folder / WEIGHTS_FILE), weights)
    mx.save_safetensors(str(folder / OPTIMIZER_FILE), {"step": mx.array(3)})
    (folder / STATE_FILE).write_text(json.dumps(state or {"step": 3}))
    return folder


def linear_model():
    return nn.Sequential(nn.Linear(4, 3))


def test_state_invalid_json_names_file(tmp_path):
    (tmp_path / STATE_FILE).write_text('{"step": 3')
    with pytest.raises(CheckpointError) as caught:
        read_trainer_state(tmp_path)
    assert str(caught.value).startswith(
        f"{tmp_path / STATE_FILE}: invalid JSON at line 1"
    )


def test_state_wrong_type_names_key(tmp_path):
    (tmp_path / STATE_FILE).write_text('{"step": "x", "train_loss": null}')
    with pytest.raises(CheckpointError) as caught:
        read_trainer_state(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / STATE_FILE}: step: got 'x', expected an integer"
    )


def test_state_unknown_key_is_named(tmp_path):
    (tmp_path / STATE_FILE).write_text('{"step": 3, "stepz": 4}')
    with pytest.raises(CheckpointError) as caught:
        read_trainer_state(tmp_path)
    assert str(caught.value) == f"{tmp_path / STATE_FILE}: stepz: unknown key"


def test_state_reads_back(tmp_path):
    (tmp_path / STATE_FILE).write_text('{"step": 3, "elapsed_seconds": 2}')
    assert read_trainer_state(tmp_path) == TrainerState(step=3, elapsed_seconds=2.0)


def test_missing_optimizer_file_is_named(tmp_path):
    model = linear_model()
    folder = write_checkpoint(tmp_path / "step-00000003", trainable_weights(model))
    (folder / OPTIMIZER_FILE).unlink()
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint_weights(folder, model)
    assert str(caught.value).startswith(f"{folder / OPTIMIZER_FILE}: cannot load")


def test_truncated_weights_file_is_named(tmp_path):
    model = linear_model()
    folder = write_checkpoint(tmp_path / "step-00000003", trainable_weights(model))
    with open(folder / WEIGHTS_FILE, "r+b") as handle:
        handle.truncate(40)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint_weights(folder, model)
    assert str(caught.value).startswith(f"{folder / WEIGHTS_FILE}: cannot load")


def test_weight_shape_mismatch_is_named(tmp_path):
    saved = {"layers.0.weight": mx.zeros((3, 8)), "layers.0.bias": mx.zeros((3,))}
    folder = write_checkpoint(tmp_path / "step-00000003", saved)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint_weights(folder, linear_model())
    assert str(caught.value) == (
        f"{folder / WEIGHTS_FILE}: does not match the model being trained: "
        "'layers.0.weight' has shape (3, 8), expected (3, 4); resume with the "
        "config the checkpoint was saved with"
    )


def test_weight_names_mismatch_is_named(tmp_path):
    saved = {"layers.0.weight": mx.zeros((3, 4)), "layers.0.scale": mx.zeros((3,))}
    folder = write_checkpoint(tmp_path / "step-00000003", saved)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint_weights(folder, linear_model())
    message = str(caught.value)
    assert "missing 'layers.0.bias'" in message
    assert "unexpected 'layers.0.scale'" in message
