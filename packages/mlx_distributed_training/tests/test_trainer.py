import json
import math

import mlx.core as mx
import pytest
from mlx_distributed_training.configs.training_config import config_from_mapping
from mlx_distributed_training.training.datasets.loading import load_training_data
from mlx_distributed_training.training.datasets.packing import pack_examples
from mlx_distributed_training.training.sft.checkpoints import list_checkpoints
from mlx_distributed_training.training.sft.run import run_training
from mlx_distributed_training.training.sft.trainer import TrainingDivergedError


def tiny_config(model_dir, data_dir, output_dir, **overrides):
    values = {
        "model": str(model_dir),
        "data": str(data_dir),
        "output_dir": str(output_dir),
        "micro_batch_size": 4,
        "learning_rate": 1e-2,
        "lora_layers": -1,
        "lora_rank": 4,
        "max_steps": 12,
        "report_interval_steps": 4,
        "eval_interval_steps": 6,
        "save_interval_steps": 4,
        "keep_last": 2,
        "exact_match_samples": 4,
        "lr_schedule": "constant",
    }
    values.update(overrides)
    return config_from_mapping(values)


def read_events(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_lora_run_lowers_loss_and_saves_adapter(
    tiny_model_dir, chat_data_dir, tmp_path
):
    run_dir = tmp_path / "run"
    result = run_training(tiny_config(tiny_model_dir, chat_data_dir, run_dir))
    events = read_events(run_dir)
    train = [e for e in events if e["event"] == "train"]
    assert [e["step"] for e in train] == [4, 8, 12]
    assert train[-1]["loss"] < train[0]["loss"]
    assert result.state.step == 12
    adapter = run_dir / "adapter"
    for name in ("adapters.safetensors", "adapter_config.json", "config.yaml"):
        assert (adapter / name).is_file()
    metrics = json.loads((adapter / "metrics.json").read_text())
    assert metrics["step"] == 12
    assert metrics["exact_match_examples"] == 4
    assert (run_dir / "tensorboard").is_dir()


def test_only_last_checkpoints_are_kept(tiny_model_dir, chat_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_training(tiny_config(tiny_model_dir, chat_data_dir, run_dir))
    names = [path.name for path in list_checkpoints(run_dir)]
    assert names == ["step-00000008", "step-00000012"]
    assert not [
        p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")
    ]


def test_resume_continues_step_numbering(tiny_model_dir, chat_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    first = tiny_config(tiny_model_dir, chat_data_dir, run_dir, max_steps=8)
    run_training(first)
    longer = tiny_config(tiny_model_dir, chat_data_dir, run_dir, max_steps=12)
    result = run_training(longer, resume_from=run_dir / "checkpoints/step-00000008")
    assert result.state.step == 12
    steps = [e["step"] for e in read_events(run_dir) if e["event"] == "train"]
    assert steps == [4, 8, 12]


def test_resumed_run_matches_uninterrupted_run(tiny_model_dir, chat_data_dir, tmp_path):
    straight = tmp_path / "straight"
    run_training(tiny_config(tiny_model_dir, chat_data_dir, straight))
    # Continue the same run from its step-8 checkpoint into another folder.
    resumed = tmp_path / "resumed"
    result = run_training(
        tiny_config(tiny_model_dir, chat_data_dir, resumed),
        resume_from=straight / "checkpoints/step-00000008",
    )
    assert result.state.step == 12
    expected = mx.load(str(straight / "adapter/adapters.safetensors"))
    got = mx.load(str(resumed / "adapter/adapters.safetensors"))
    for name, value in expected.items():
        assert mx.allclose(value, got[name], rtol=1e-6, atol=1e-7).item(), name


def test_non_finite_loss_stops_the_run(tiny_model_dir, chat_data_dir, tmp_path):
    config = tiny_config(
        tiny_model_dir, chat_data_dir, tmp_path / "run", learning_rate=1e30
    )
    with pytest.raises(TrainingDivergedError) as caught:
        run_training(config)
    assert "training diverged at step" in str(caught.value)
    assert not (tmp_path / "run" / "adapter").exists()


def test_full_fine_tune_trains_every_weight(tiny_model_dir, chat_data_dir, tmp_path):
    config = tiny_config(
        tiny_model_dir,
        chat_data_dir,
        tmp_path / "run",
        fine_tune_type="full",
        learning_rate=1e-3,
        max_steps=4,
    )
    result = run_training(config)
    saved = mx.load(str(tmp_path / "run/model/adapters.safetensors"))
    assert "model.embed_tokens.weight" in saved
    assert math.isfinite(result.state.train_loss)


def test_dora_run_saves_magnitudes(tiny_model_dir, chat_data_dir, tmp_path):
    config = tiny_config(
        tiny_model_dir,
        chat_data_dir,
        tmp_path / "run",
        fine_tune_type="dora",
        max_steps=4,
    )
    run_training(config)
    saved = mx.load(str(tmp_path / "run/adapter/adapters.safetensors"))
    assert any(name.endswith(".m") for name in saved)


def test_resume_past_max_steps_is_config_error(tiny_model_dir, chat_data_dir, tmp_path):
    from mlx_distributed_training.configs.training_config import ConfigError

    run_dir = tmp_path / "run"
    run_training(
        tiny_config(
            tiny_model_dir, chat_data_dir, run_dir, max_steps=4, exact_match_samples=0
        )
    )
    shorter = tiny_config(
        tiny_model_dir, chat_data_dir, tmp_path / "again", max_steps=2
    )
    with pytest.raises(ConfigError) as caught:
        run_training(shorter, resume_from=run_dir)
    assert caught.value.problems == [
        "max_steps: got 2, but the checkpoint is at step 4; expected at least 4"
    ]
    assert caught.value.source == str(run_dir / "checkpoints/step-00000004")
    assert not (tmp_path / "again").exists()


def train_to_checkpoint(model_dir, data_dir, run_dir):
    """Train 4 steps into `run_dir`; return the checkpoint's trainer_state.json."""
    config = tiny_config(
        model_dir, data_dir, run_dir, max_steps=4, exact_match_samples=0
    )
    run_training(config)
    return run_dir / "checkpoints/step-00000004/trainer_state.json"


@pytest.mark.parametrize(
    ("settings", "edit_data"),
    [({"max_seq_length": 30}, False), ({"pack_sequences": True}, False), ({}, True)],
)
def test_resume_other_data_rejected(
    tiny_model_dir, chat_data_dir, tmp_path, settings, edit_data
):
    from mlx_distributed_training.configs.training_config import ConfigError

    run_dir = tmp_path / "run"
    state_path = train_to_checkpoint(tiny_model_dir, chat_data_dir, run_dir)
    state = json.loads(state_path.read_text())
    assert len(state["train_data_digest"]) == 16
    if edit_data:
        train = chat_data_dir / "train.jsonl"
        train.write_text(train.read_text().replace("2021-01-01", "2021-01-02"))
    other = tiny_config(tiny_model_dir, chat_data_dir, run_dir, max_steps=8, **settings)
    with pytest.raises(ConfigError) as caught:
        run_training(other, resume_from=run_dir)
    assert caught.value.problems[0].startswith(
        "data: the training examples differ from those this checkpoint was "
        "trained on (digest "
    )
    assert caught.value.source == str(state_path.parent)


def test_packed_run_steps_over_rows(
    tiny_model_dir, tiny_tokenizer, chat_data_dir, tmp_path
):
    data = load_training_data(chat_data_dir, tiny_tokenizer, max_seq_length=128)
    rows = pack_examples(data.train.examples, 128, seed=0).rows
    assert len(rows) <= len(data.train.examples) // 3
    config = tiny_config(
        tiny_model_dir,
        chat_data_dir,
        tmp_path / "run",
        pack_sequences=True,
        max_seq_length=128,
        max_steps=None,
        num_epochs=1,
        micro_batch_size=2,
    )
    result = run_training(config)
    assert result.state.step == math.ceil(len(rows) / 2)
    # The first token of an example is a prompt token, so packing drops no target.
    assert result.state.trained_tokens == data.train.target_count


def test_resume_old_checkpoint_records_digest(tiny_model_dir, chat_data_dir, tmp_path):
    # Checkpoints written before train_data_digest existed lack the field. A
    # run resumed from one must record the digest in its own checkpoints.
    run_dir = tmp_path / "run"
    state_path = train_to_checkpoint(tiny_model_dir, chat_data_dir, run_dir)
    state = json.loads(state_path.read_text())
    digest = state.pop("train_data_digest")
    state_path.write_text(json.dumps(state))

    again = tiny_config(
        tiny_model_dir,
        chat_data_dir,
        run_dir,
        max_steps=8,
        exact_match_samples=0,
        learning_rate=5e-3,
    )
    result = run_training(again, resume_from=run_dir)
    assert result.state.step == 8
    resumed = json.loads(
        (run_dir / "checkpoints/step-00000008/trainer_state.json").read_text()
    )
    assert resumed["train_data_digest"] == digest


def test_resume_wrong_digest_type_rejected(tiny_model_dir, chat_data_dir, tmp_path):
    from mlx_distributed_training.training.sft.checkpoints import CheckpointError

    run_dir = tmp_path / "run"
    state_path = train_to_checkpoint(tiny_model_dir, chat_data_dir, run_dir)
    state = json.loads(state_path.read_text())
    state["train_data_digest"] = 12345
    state_path.write_text(json.dumps(state))
    again = tiny_config(tiny_model_dir, chat_data_dir, run_dir, max_steps=8)
    with pytest.raises(CheckpointError) as caught:
        run_training(again, resume_from=run_dir)
    assert "train_data_digest: got 12345, expected a string" in str(caught.value)
