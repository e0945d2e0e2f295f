"""The training adapter onto a real local gRPC cluster serving a trained adapter."""

import json

import pytest
from mlx_distributed_training.configs.training_config import config_from_mapping
from mlx_distributed_training.core.integration import TrainingInferenceAdapter
from mlx_distributed_training.training.datasets.loading import load_training_data
from mlx_distributed_training.training.sft.run import run_training
from mlx_lm import generate, load


@pytest.fixture(scope="module")
def trained_adapter(tiny_model_dir, tmp_path_factory):
    from training_fixtures import chat_record, write_jsonl

    data = tmp_path_factory.mktemp("data")
    write_jsonl(
        data / "train.jsonl",
        [chat_record(f"what is May {day}", f"2021-05-{day:02d}") for day in range(8)],
    )
    run_dir = tmp_path_factory.mktemp("run")
    config = config_from_mapping(
        {
            "model": str(tiny_model_dir),
            "data": str(data),
            "output_dir": str(run_dir),
            "max_steps": 3,
            "learning_rate": 5e-2,
            "lora_layers": -1,
            "exact_match_samples": 0,
        }
    )
    run_training(config)
    return run_dir / "adapter"


def test_served_adapter_generates_like_mlx_lm(tiny_model_dir, trained_adapter):
    model, tokenizer = load(str(tiny_model_dir), adapter_path=str(trained_adapter))
    expected = generate(model, tokenizer, "hello world", max_tokens=6)
    with TrainingInferenceAdapter.serve_adapter(trained_adapter) as adapter:
        got = adapter.generate_for_training(["hello world"], max_tokens=6)
    assert got == [expected]


def test_written_completions_load_as_training_data(
    tiny_model_dir, trained_adapter, tmp_path, tiny_tokenizer
):
    prompts = ["what is May 3", "hello"]
    with TrainingInferenceAdapter.serve_adapter(trained_adapter) as adapter:
        path = adapter.write_completions(
            prompts, tmp_path / "train.jsonl", max_tokens=4
        )
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [record["prompt"] for record in records] == prompts
    loaded = load_training_data(tmp_path, tiny_tokenizer, max_seq_length=64)
    assert loaded.train.data_format == "completions"


def test_serving_a_folder_without_config_fails(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        TrainingInferenceAdapter.serve_adapter(tmp_path)
    assert "expected a run's adapter/ folder" in str(caught.value)
