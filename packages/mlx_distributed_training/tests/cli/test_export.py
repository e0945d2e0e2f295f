"""`mlx-train export` with wrong folders and damaged adapter files."""

import json

import pytest
from mlx_distributed_training.cli.export import ExportError, export_main, export_model


def write_adapter(folder, adapter_config="{}", config_yaml=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapters.safetensors").write_bytes(b"")
    (folder / "adapter_config.json").write_text(adapter_config)
    if config_yaml is not None:
        (folder / "config.yaml").write_text(config_yaml)
    return folder


def test_output_that_is_a_file_is_rejected(tmp_path):
    adapter = write_adapter(tmp_path / "adapter")
    output = tmp_path / "fused"
    output.write_text("")
    with pytest.raises(ExportError) as caught:
        export_model(adapter, output, None)
    assert str(caught.value) == f"output {output} exists and is not a folder"


def test_invalid_adapter_config_names_file(tmp_path):
    adapter = write_adapter(tmp_path / "adapter", adapter_config="{")
    with pytest.raises(ExportError) as caught:
        export_model(adapter, tmp_path / "fused", None)
    assert str(caught.value).startswith(
        f"{adapter / 'adapter_config.json'}: invalid JSON at line 1"
    )


def test_invalid_config_yaml_names_file(tmp_path):
    adapter = write_adapter(tmp_path / "adapter", config_yaml="model: [1,\n")
    with pytest.raises(ExportError) as caught:
        export_model(adapter, tmp_path / "fused", None)
    assert str(caught.value).startswith(f"{adapter / 'config.yaml'}: invalid YAML")


def test_export_main_exits_1_without_traceback(tmp_path, capsys):
    adapter = write_adapter(tmp_path / "adapter", adapter_config="[]")
    code = export_main(["--adapter", str(adapter), "--output", str(tmp_path / "o")])
    assert code == 1
    assert capsys.readouterr().err == (
        f"mlx-train: error: {adapter / 'adapter_config.json'}: expected a JSON object\n"
    )
    assert json.loads((adapter / "adapter_config.json").read_text()) == []


def test_failed_export_leaves_no_output(tiny_model_dir, tmp_path):
    import shutil

    import mlx.core as mx

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    # save() copies the base model's *.py files last, so a folder with such a
    # name makes it fail after the weights, config and tokenizer were written.
    (base / "extra.py").mkdir()
    adapter = write_adapter(tmp_path / "adapter", '{"fine_tune_type": "full"}')
    mx.save_safetensors(
        str(adapter / "adapters.safetensors"), {"model.norm.weight": mx.ones((32,))}
    )
    output = tmp_path / "fused"
    with pytest.raises(IsADirectoryError):
        export_model(adapter, output, str(base))
    assert not output.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["adapter", "base"]


def test_export_into_empty_folder(tiny_model_dir, tmp_path):
    import mlx.core as mx
    from mlx_lm import load

    adapter = write_adapter(tmp_path / "adapter", '{"fine_tune_type": "full"}')
    mx.save_safetensors(
        str(adapter / "adapters.safetensors"), {"model.norm.weight": mx.ones((32,))}
    )
    output = tmp_path / "fused"
    output.mkdir()
    assert export_model(adapter, output, str(tiny_model_dir)) == output
    model, _ = load(str(output))
    assert model.model.norm.weight.tolist() == [1.0] * 32


def test_truncated_adapter_weights_are_named(tiny_model_dir, tmp_path):
    import mlx.core as mx

    adapter = write_adapter(tmp_path / "adapter", '{"fine_tune_type": "full"}')
    weights = adapter / "adapters.safetensors"
    mx.save_safetensors(str(weights), {"model.norm.weight": mx.ones((32,))})
    with open(weights, "r+b") as handle:
        handle.truncate(20)
    with pytest.raises(ExportError) as caught:
        export_model(adapter, tmp_path / "fused", str(tiny_model_dir))
    assert str(caught.value).startswith(f"{weights}: cannot load: ")
    assert not (tmp_path / "fused").exists()
