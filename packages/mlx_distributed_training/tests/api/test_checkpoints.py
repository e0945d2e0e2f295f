"""Tests of the checkpoint listing."""

import json

from mlx_distributed_training.api.checkpoints import list_checkpoints


def _save(root, name, state):
    folder = root / "checkpoints" / name
    folder.mkdir(parents=True)
    if state is not None:
        (folder / "trainer_state.json").write_text(json.dumps(state))
    return folder


def test_checkpoints_are_listed_by_step_with_losses(tmp_path):
    late = _save(
        tmp_path,
        "step-00000010",
        {"step": 10, "train_loss": 1.5, "valid_loss": 1.75},
    )
    early = _save(tmp_path, "step-00000002", {"step": 2, "train_loss": 3.0})

    checkpoints = list_checkpoints(tmp_path)

    assert [c.step for c in checkpoints] == [2, 10]
    assert [c.path for c in checkpoints] == [early, late]
    assert checkpoints[0].train_loss == 3.0
    assert checkpoints[0].valid_loss is None
    assert checkpoints[1].valid_loss == 1.75


def test_incomplete_and_foreign_folders_are_skipped(tmp_path):
    _save(tmp_path, "step-00000004", {"step": 4, "train_loss": 2.0})
    _save(tmp_path, "step-00000008", None)
    _save(tmp_path, ".step-00000012.tmp", {"step": 12})
    _save(tmp_path, "notes", {"step": 1})
    broken = _save(tmp_path, "step-00000016", None)
    (broken / "trainer_state.json").write_text("{")

    assert [c.step for c in list_checkpoints(tmp_path)] == [4]


def test_no_checkpoint_folder_gives_empty_list(tmp_path):
    assert list_checkpoints(tmp_path) == []
