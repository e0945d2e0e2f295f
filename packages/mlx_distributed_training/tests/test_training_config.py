import pytest
from mlx_distributed_training.configs.training_config import (
    ConfigError,
    DistributedTrainingConfig,
    config_from_mapping,
    load_config,
    save_config,
)


def test_defaults_are_valid():
    config = load_config()
    assert config.fine_tune_type == "lora"
    assert config.backend == "any"


def test_file_overrides_defaults_and_flags_override_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: 3.0e-4\nmicro_batch_size: 2\n")
    config = load_config(path, {"micro-batch-size": "6"}, overrides_are_text=True)
    assert config.learning_rate == 3e-4
    assert config.micro_batch_size == 6


def test_every_problem_is_reported_together(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("lora_rnk: 4\nmicro_batch_size: two\nbackend: grpc\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"learning_rate": "-1"}, overrides_are_text=True)
    problems = caught.value.problems
    assert "lora_rnk: unknown key (did you mean lora_rank?)" in problems
    assert "micro_batch_size: got 'two', expected an integer" in problems
    assert "backend: got 'grpc', expected one of any, ring, mpi, nccl, jaccl" in (
        problems
    )
    assert "learning_rate: got -1.0, expected a number > 0" in problems
    assert str(path) in str(caught.value)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 1\nlearning_rate: [1,\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems[0].startswith("line 3: invalid YAML")


def test_booleans_are_not_integers():
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"seed": True})
    assert caught.value.problems == ["seed: got True, expected an integer"]


def test_cross_field_limits_are_checked():
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"max_steps": 5, "warmup_steps": 10})
    assert caught.value.problems == [
        "warmup_steps: got 10, expected at most max_steps (5)"
    ]


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError):
        DistributedTrainingConfig(micro_batch_size=0)


def test_saved_config_loads_back_identically(tmp_path):
    config = config_from_mapping(
        {"lora_targets": ["self_attn.q_proj", "self_attn.v_proj"], "seed": 7}
    )
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_lora_targets_flag_takes_comma_list():
    config = load_config(
        overrides={"lora_targets": "self_attn.q_proj, mlp.up_proj"},
        overrides_are_text=True,
    )
    assert config.lora_targets == ("self_attn.q_proj", "mlp.up_proj")


def test_non_utf8_file_is_config_error(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"seed: 1\n\xff\xfe\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        "cannot read file: invalid UTF-8 at byte 8, expected UTF-8 text"
    ]
    assert str(path) in str(caught.value)


def test_duplicate_yaml_key_names_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("max_steps: 10\nseed: 1\nmax_steps: 20\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        "line 3: invalid YAML: duplicate key 'max_steps' (first set on line 1)"
    ]


def test_duplicate_json_key_is_named(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"max_steps": 10, "max_steps": 20}')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == ["invalid JSON: duplicate key 'max_steps'"]


def test_flag_error_without_file_names_no_file():
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"micro_batch_size": "0"}, overrides_are_text=True)
    assert str(caught.value).splitlines() == [
        "invalid training config:",
        "  - micro_batch_size: got 0, expected >= 1",
    ]
