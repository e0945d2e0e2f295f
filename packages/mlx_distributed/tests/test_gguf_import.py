import json
from pathlib import Path

import mlx.core as mx
import mlx_lm
import pytest
from mlx_distributed.gguf_import import (
    GGUFImportError,
    build_model_config,
    convert_weights,
    import_gguf,
    undo_rotary_interleave,
)
from mlx_distributed.gguf_tokenizer import GGUFTokenizerError, build_tokenizer


@pytest.fixture(scope="module")
def imported(tiny_gguf, tmp_path_factory) -> Path:
    return import_gguf(tiny_gguf.path, tmp_path_factory.mktemp("out") / "tiny")


def test_import_writes_model_folder(imported):
    names = sorted(p.name for p in imported.iterdir())
    assert names == [
        "config.json",
        "gguf_import.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]


def test_import_config_matches_source_model(imported, tiny_gguf):
    config = json.loads((imported / "config.json").read_text())
    args = tiny_gguf.args
    assert config["model_type"] == "llama"
    assert config["hidden_size"] == args.hidden_size
    assert config["num_hidden_layers"] == args.num_hidden_layers
    assert config["intermediate_size"] == args.intermediate_size
    assert config["num_attention_heads"] == args.num_attention_heads
    assert config["num_key_value_heads"] == args.num_key_value_heads
    assert config["head_dim"] == 16
    assert config["vocab_size"] == args.vocab_size
    assert config["rms_norm_eps"] == 1e-5
    assert config["rope_theta"] == 10000.0
    assert config["tie_word_embeddings"] is True
    assert config["eos_token_id"] == 2


def test_imported_model_logits_match_source(imported, tiny_gguf):
    model, _ = mlx_lm.load(str(imported))
    tokens = mx.array([[5, 70, 81, 12, 200, 3, 99, 260]])
    expected = tiny_gguf.model(tokens)
    actual = model(tokens)
    assert mx.allclose(actual, expected, atol=1e-4, rtol=1e-4).item()


def test_untied_output_weight_becomes_lm_head(write_gguf, tmp_path):
    tiny = write_gguf(tmp_path / "untied.gguf", tie_word_embeddings=False)
    folder = import_gguf(tiny.path, tmp_path / "untied")
    config = json.loads((folder / "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    model, _ = mlx_lm.load(str(folder))
    tokens = mx.array([[7, 8, 9, 10]])
    assert mx.allclose(model(tokens), tiny.model(tokens), atol=1e-4).item()


def test_undo_rotary_interleave_restores_split_half_order():
    # One head of dim 4: GGUF rows are (x0, x2, x1, x3) of the HF rows.
    gguf_rows = mx.array([[0.0], [2.0], [1.0], [3.0]])
    restored = undo_rotary_interleave(gguf_rows, num_heads=1)
    assert restored.reshape(-1).tolist() == [0.0, 1.0, 2.0, 3.0]


def test_quantized_tensors_are_dequantized():
    original = mx.random.normal((8, 64), key=mx.random.key(1))
    packed, scales, biases = mx.quantize(original, group_size=32, bits=4)
    weights = {
        "token_embd.weight": packed,
        "token_embd.scales": scales,
        "token_embd.biases": biases,
    }
    config = {"num_attention_heads": 1, "num_key_value_heads": 1}
    converted = convert_weights(weights, config, mx.float32, Path("q.gguf"))
    assert list(converted) == ["model.embed_tokens.weight"]
    embedding = converted["model.embed_tokens.weight"]
    assert embedding.shape == (8, 64)
    assert embedding.dtype == mx.float32
    expected = mx.dequantize(packed, scales, biases, group_size=32, bits=4)
    assert mx.array_equal(embedding, expected).item()


def test_non_gguf_file_is_rejected(tmp_path):
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("plain text, not a GGUF file")
    with pytest.raises(GGUFImportError) as error:
        import_gguf(not_gguf, tmp_path / "model")
    assert str(error.value).startswith(f"{not_gguf}: cannot be read as GGUF: ")


def test_bfloat16_import_records_dtype(tiny_gguf, tmp_path):
    folder = import_gguf(tiny_gguf.path, tmp_path / "bf16", dtype=mx.bfloat16)
    config = json.loads((folder / "config.json").read_text())
    assert config["torch_dtype"] == "bfloat16"
    model, _ = mlx_lm.load(str(folder))
    assert model.model.embed_tokens.weight.dtype == mx.bfloat16


def test_import_into_existing_folder_raises(tiny_gguf, tmp_path):
    with pytest.raises(FileExistsError, match="output folder already exists"):
        import_gguf(tiny_gguf.path, tmp_path)


def test_failed_import_leaves_no_folder(tiny_gguf, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mx, "save_safetensors", fail)
    with pytest.raises(OSError, match="disk full"):
        import_gguf(tiny_gguf.path, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_unsupported_architecture_is_named():
    metadata = {"general.architecture": "mamba"}
    with pytest.raises(GGUFImportError) as error:
        build_model_config(metadata, {}, Path("m.gguf"))
    assert str(error.value) == (
        "m.gguf: general.architecture is 'mamba'; supported: llama"
    )


def test_missing_metadata_key_is_named(tiny_gguf):
    _, metadata = mx.load(str(tiny_gguf.path), return_metadata=True)
    del metadata["llama.block_count"]
    weights = {"token_embd.weight": mx.zeros((4, 4))}
    with pytest.raises(GGUFImportError) as error:
        build_model_config(metadata, weights, Path("m.gguf"))
    assert str(error.value) == "m.gguf: metadata key llama.block_count is missing"


def test_unknown_tensor_is_named():
    weights = {"blk.0.attn_qkv.weight": mx.zeros((4, 4))}
    config = {"num_attention_heads": 1, "num_key_value_heads": 1}
    with pytest.raises(GGUFImportError) as error:
        convert_weights(weights, config, mx.float32, Path("m.gguf"))
    assert str(error.value) == "m.gguf: tensor blk.0.attn_qkv has no llama equivalent"


def test_tokenizer_round_trips_text(imported):
    _, tokenizer = mlx_lm.load(str(imported))
    text = "the theory in a hat: 42 apples"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_tokenizer_applies_merges(imported, tiny_gguf):
    _, tokenizer = mlx_lm.load(str(imported))
    assert tokenizer.encode(" the") == [tiny_gguf.tokens.index("Ġthe")]


def test_tokenizer_splits_digits(imported, tiny_gguf):
    _, tokenizer = mlx_lm.load(str(imported))
    digits = [tiny_gguf.tokens.index(d) for d in "2024"]
    assert tokenizer.encode("2024") == digits


def test_tokenizer_keeps_special_tokens_whole(imported):
    _, tokenizer = mlx_lm.load(str(imported))
    assert tokenizer.encode("<|im_start|>hi<|im_end|>")[0] == 1
    assert tokenizer.encode("<|im_start|>hi<|im_end|>")[-1] == 2
    assert tokenizer.eos_token_id == 2
    assert tokenizer.bos_token == "<|im_start|>"


def test_tokenizer_applies_chat_template(imported):
    _, tokenizer = mlx_lm.load(str(imported))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_sentencepiece_tokenizer_is_rejected():
    metadata = {"tokenizer.ggml.model": "llama"}
    with pytest.raises(GGUFTokenizerError) as error:
        build_tokenizer(metadata, Path("m.gguf"))
    assert str(error.value) == (
        "m.gguf: tokenizer.ggml.model is 'llama'; only 'gpt2' (byte-level BPE) "
        "is supported"
    )


def test_malformed_merge_is_named():
    metadata = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": ["a", "b", "ab"],
        "tokenizer.ggml.merges": ["a b", "ab"],
    }
    with pytest.raises(GGUFTokenizerError) as error:
        build_tokenizer(metadata, Path("m.gguf"))
    assert str(error.value) == (
        "m.gguf: tokenizer.ggml.merges[1] is 'ab'; expected two tokens "
        "separated by one space"
    )
