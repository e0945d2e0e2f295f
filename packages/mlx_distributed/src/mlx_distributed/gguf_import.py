"""Import a GGUF llama-family file into an MLX model folder.

The folder contains what `mlx_lm.load` reads: `config.json` (model_type `llama`),
`model.safetensors` with float weights in Hugging Face names and layout, and
the tokenizer files written by `gguf_tokenizer`. Quantized GGUF tensors are
dequantized because MLX's quantized matmul is far too slow to train with on a
Linux CPU. The default dtype is float32 because MLX hands only float32
matmuls to the CPU BLAS, while bfloat16 and float16 run its own much slower
kernels there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from mlx_distributed.gguf_tokenizer import write_tokenizer_files

# Bumped whenever the conversion changes, so that cached imports get redone.
IMPORT_FORMAT_VERSION = 1
IMPORT_RECORD_NAME = "gguf_import.json"

SUPPORTED_ARCHITECTURES = ("llama",)

# MLX reads Q4_0, Q4_1 and Q8_0 GGUF tensors as MLX affine-quantized arrays
# (weight, scales, biases). All three formats quantize blocks of 32 values.
GGUF_QUANT_GROUP_SIZE = 32

_GLOBAL_TENSOR_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_LAYER_TENSOR_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


class GGUFImportError(ValueError):
    """A GGUF file that cannot be converted, with the file and the reason."""


def import_gguf(
    gguf_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    dtype: mx.Dtype = mx.float32,
) -> Path:
    """Convert `gguf_path` into an MLX model folder at `output_dir`.

    The folder is built under a temporary name beside `output_dir` and renamed
    into place, so a reader never sees a half-written model. Raises
    GGUFImportError for an unsupported or malformed file and FileExistsError
    when `output_dir` already exists.
    """
    source = Path(gguf_path)
    destination = Path(output_dir)
    if not source.is_file():
        raise FileNotFoundError(f"GGUF file not found: {source}")
    if destination.exists():
        raise FileExistsError(f"output folder already exists: {destination}")

    try:
        weights, metadata = mx.load(str(source), return_metadata=True)
    except (RuntimeError, ValueError) as error:
        raise GGUFImportError(f"{source}: cannot be read as GGUF: {error}") from error
    config = build_model_config(metadata, weights, source)
    dtype_name = str(dtype).removeprefix("mlx.core.")
    config["torch_dtype"] = dtype_name
    tensors = convert_weights(weights, config, dtype, source)

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent)
    )
    try:
        # mkdtemp makes the folder private (0700); a model folder is not secret.
        staging.chmod(0o755)
        mx.save_safetensors(
            str(staging / "model.safetensors"), tensors, metadata={"format": "mlx"}
        )
        _write_json(staging / "config.json", config)
        write_tokenizer_files(metadata, staging, source)
        record = {
            "format_version": IMPORT_FORMAT_VERSION,
            "source": str(source.resolve()),
            "source_name": source.name,
            "source_size": source.stat().st_size,
            "dtype": dtype_name,
        }
        _write_json(staging / IMPORT_RECORD_NAME, record)
        os.rename(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def build_model_config(
    metadata: dict[str, Any], weights: dict[str, mx.array], source: Path
) -> dict[str, Any]:
    """Build an mlx-lm / Hugging Face llama `config.json` from GGUF metadata."""
    reader = _MetadataReader(metadata, source)
    architecture = reader.text("general.architecture")
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise GGUFImportError(
            f"{source}: general.architecture is {architecture!r}; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    if "rope_freqs.weight" in weights:
        # Llama 3.1-style frequency scaling stores per-dimension factors as a
        # tensor; mlx-lm needs them as rope_scaling parameters instead.
        raise GGUFImportError(
            f"{source}: tensor rope_freqs.weight (llama3 rope scaling) is not supported"
        )

    hidden_size = reader.integer(f"{architecture}.embedding_length")
    num_heads = reader.integer(f"{architecture}.attention.head_count")
    num_kv_heads = reader.integer(
        f"{architecture}.attention.head_count_kv", default=num_heads
    )
    head_dim = reader.integer(
        f"{architecture}.attention.key_length", default=hidden_size // num_heads
    )
    if "token_embd.weight" not in weights:
        raise GGUFImportError(f"{source}: tensor token_embd.weight is missing")
    embedding_rows = weights["token_embd.weight"].shape[0]
    vocab_size = reader.integer(f"{architecture}.vocab_size", default=embedding_rows)

    config: dict[str, Any] = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden_size,
        "num_hidden_layers": reader.integer(f"{architecture}.block_count"),
        "intermediate_size": reader.integer(f"{architecture}.feed_forward_length"),
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": reader.number(
            f"{architecture}.attention.layer_norm_rms_epsilon"
        ),
        "vocab_size": vocab_size,
        "max_position_embeddings": reader.integer(
            f"{architecture}.context_length", default=2048
        ),
        "rope_theta": reader.number(f"{architecture}.rope.freq_base", default=10000.0),
        # The q/k rows are put back into the Hugging Face order on import.
        "rope_traditional": False,
        "tie_word_embeddings": "output.weight" not in weights,
        "attention_bias": "blk.0.attn_q.bias" in weights,
        "mlp_bias": False,
        "bos_token_id": reader.integer("tokenizer.ggml.bos_token_id", default=None),
        "eos_token_id": reader.integer("tokenizer.ggml.eos_token_id", default=None),
    }
    rope_scaling = _rope_scaling(reader, architecture, source)
    if rope_scaling is not None:
        config["rope_scaling"] = rope_scaling
    return config


def convert_weights(
    weights: dict[str, mx.array],
    config: dict[str, Any],
    dtype: mx.Dtype,
    source: Path,
) -> dict[str, mx.array]:
    """Dequantize, rename and reorder GGUF tensors into mlx-lm llama weights."""
    converted: dict[str, mx.array] = {}
    for gguf_name in sorted(weights):
        base, _, suffix = gguf_name.rpartition(".")
        if suffix in ("scales", "biases"):
            continue  # Consumed together with their quantized weight.
        tensor = _dequantized(weights, base, suffix, source)
        name = f"{_hf_module_name(base, source)}.{suffix}"

        # GGUF stores each q/k head's rows interleaved for the traditional
        # (pairwise) rotary layout; mlx-lm's llama uses the split-half layout.
        if base.endswith(".attn_q"):
            tensor = undo_rotary_interleave(tensor, config["num_attention_heads"])
        elif base.endswith(".attn_k"):
            tensor = undo_rotary_interleave(tensor, config["num_key_value_heads"])
        converted[name] = tensor.astype(dtype)
    mx.eval(converted)
    return converted


def undo_rotary_interleave(tensor: mx.array, num_heads: int) -> mx.array:
    """Reorder q/k projection rows from interleaved to split-half rotary order.

    Within each head, GGUF row `2 * i + j` (pair i, member j) is the
    Hugging Face row `j * head_dim / 2 + i`. Works for weights (2-D) and
    biases (1-D).
    """
    rows = tensor.shape[0]
    head_dim = rows // num_heads
    pairs = tensor.reshape(num_heads, head_dim // 2, 2, *tensor.shape[1:])
    return mx.swapaxes(pairs, 1, 2).reshape(tensor.shape)


def _dequantized(
    weights: dict[str, mx.array], base: str, suffix: str, source: Path
) -> mx.array:
    tensor = weights[f"{base}.{suffix}"]
    scales = weights.get(f"{base}.scales")
    if suffix != "weight" or scales is None:
        return tensor
    biases = weights.get(f"{base}.biases")
    if biases is None:
        raise GGUFImportError(f"{source}: tensor {base}.biases is missing")
    in_features = scales.shape[-1] * GGUF_QUANT_GROUP_SIZE
    bits = tensor.shape[-1] * 32 // in_features
    if bits not in (2, 3, 4, 5, 6, 8) or tensor.shape[-1] * 32 != bits * in_features:
        raise GGUFImportError(
            f"{source}: tensor {base}.weight has packed shape {tensor.shape} "
            f"and scales {scales.shape}, which match no supported quantization"
        )
    return mx.dequantize(
        tensor, scales, biases, group_size=GGUF_QUANT_GROUP_SIZE, bits=bits
    ).astype(mx.float32)


def _hf_module_name(base: str, source: Path) -> str:
    if base in _GLOBAL_TENSOR_NAMES:
        return _GLOBAL_TENSOR_NAMES[base]
    parts = base.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit():
        module = _LAYER_TENSOR_NAMES.get(parts[2])
        if module is not None:
            return f"model.layers.{parts[1]}.{module}"
    raise GGUFImportError(f"{source}: tensor {base} has no llama equivalent")


def _rope_scaling(
    reader: _MetadataReader, architecture: str, source: Path
) -> dict[str, Any] | None:
    kind = reader.text(f"{architecture}.rope.scaling.type", default="none")
    if kind == "none":
        return None
    if kind == "linear":
        factor = reader.number(f"{architecture}.rope.scaling.factor")
        return {"type": "linear", "factor": factor}
    raise GGUFImportError(
        f"{source}: {architecture}.rope.scaling.type is {kind!r}; "
        "supported: none, linear"
    )


class _MetadataReader:
    """Typed access to GGUF metadata with errors that name the file and key."""

    _REQUIRED = object()

    def __init__(self, metadata: dict[str, Any], source: Path) -> None:
        self._metadata = metadata
        self._source = source

    def _value(self, key: str, default: Any) -> Any:
        if key in self._metadata:
            return self._metadata[key]
        if default is self._REQUIRED:
            raise GGUFImportError(f"{self._source}: metadata key {key} is missing")
        return default

    def text(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._value(key, default)
        if value is not default and not isinstance(value, str):
            raise GGUFImportError(
                f"{self._source}: metadata key {key} should be a string, got {value!r}"
            )
        return value

    def integer(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._value(key, default)
        if value is default:
            return value
        if isinstance(value, mx.array) and value.size == 1:
            if not mx.issubdtype(value.dtype, mx.integer):
                raise GGUFImportError(
                    f"{self._source}: metadata key {key} should be an integer, "
                    f"got {value.dtype}"
                )
            return int(value.item())
        raise GGUFImportError(
            f"{self._source}: metadata key {key} should be an integer, got {value!r}"
        )

    def number(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._value(key, default)
        if value is default:
            return value
        if isinstance(value, mx.array) and value.size == 1:
            if value.dtype == mx.float32:
                # The shortest text that reads back as the same float32, so
                # config.json shows 1e-05 rather than 9.999999747378752e-06.
                return float(str(np.float32(value.item())))
            return float(value.item())
        raise GGUFImportError(
            f"{self._source}: metadata key {key} should be a number, got {value!r}"
        )


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
