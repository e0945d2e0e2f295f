"""Write Hugging Face tokenizer files from a GGUF file's BPE vocabulary.

GGUF files of the `gpt2` tokenizer model carry the byte-level BPE vocabulary,
merges, token types, special token ids and chat template in their metadata.
This module rebuilds `tokenizer.json` with the `tokenizers` library and
writes `tokenizer_config.json` and `special_tokens_map.json` beside it, so
that `transformers.AutoTokenizer` and `mlx_lm.load` read the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlx.core as mx
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

# GGUF token types (llama.cpp's llama_token_type).
TOKEN_TYPE_NORMAL = 1
TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4

# Pre-tokenizers by `tokenizer.ggml.pre`. "smollm" splits every digit into
# its own piece before the GPT-2 byte-level split, as SmolLM's tokenizer does.
SUPPORTED_PRE_TOKENIZERS = ("gpt2", "smollm")


class GGUFTokenizerError(ValueError):
    """GGUF tokenizer metadata that cannot be converted."""


def build_tokenizer(metadata: dict[str, Any], source: Path) -> Tokenizer:
    """Build a byte-level BPE `tokenizers.Tokenizer` from GGUF metadata."""
    model = metadata.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise GGUFTokenizerError(
            f"{source}: tokenizer.ggml.model is {model!r}; only 'gpt2' "
            "(byte-level BPE) is supported"
        )
    tokens = _string_list(metadata, "tokenizer.ggml.tokens", source)
    merge_lines = _string_list(metadata, "tokenizer.ggml.merges", source)
    token_types = _token_types(metadata, len(tokens), source)

    vocab: dict[str, int] = {}
    for token_id, token in enumerate(tokens):
        if token in vocab:
            raise GGUFTokenizerError(
                f"{source}: tokenizer.ggml.tokens[{token_id}] {token!r} repeats "
                f"tokenizer.ggml.tokens[{vocab[token]}]"
            )
        vocab[token] = token_id
    merges = []
    for index, line in enumerate(merge_lines):
        pair = line.split(" ")
        if len(pair) != 2 or not all(pair):
            raise GGUFTokenizerError(
                f"{source}: tokenizer.ggml.merges[{index}] is {line!r}; "
                "expected two tokens separated by one space"
            )
        merges.append((pair[0], pair[1]))

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = _pre_tokenizer(metadata, source)
    tokenizer.decoder = decoders.ByteLevel()

    added = []
    for token_id, token_type in enumerate(token_types):
        if token_type in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED):
            added.append(
                AddedToken(
                    tokens[token_id],
                    special=token_type == TOKEN_TYPE_CONTROL,
                    normalized=False,
                )
            )
    tokenizer.add_tokens(added)
    return tokenizer


def write_tokenizer_files(metadata: dict[str, Any], folder: Path, source: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    tokenizer = build_tokenizer(metadata, source)
    tokens = metadata["tokenizer.ggml.tokens"]

    def token_text(key: str) -> str | None:
        value = metadata.get(key)
        if value is None:
            return None
        token_id = int(value.item())
        if not 0 <= token_id < len(tokens):
            raise GGUFTokenizerError(
                f"{source}: {key} is {token_id}, outside the vocabulary "
                f"of {len(tokens)} tokens"
            )
        return tokens[token_id]

    special = {
        "bos_token": token_text("tokenizer.ggml.bos_token_id"),
        "eos_token": token_text("tokenizer.ggml.eos_token_id"),
        "unk_token": token_text("tokenizer.ggml.unknown_token_id"),
        "pad_token": token_text("tokenizer.ggml.padding_token_id"),
    }
    special = {name: text for name, text in special.items() if text is not None}
    add_bos = metadata.get("tokenizer.ggml.add_bos_token")

    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": _context_length(metadata),
        "add_bos_token": bool(add_bos.item()) if add_bos is not None else False,
        "clean_up_tokenization_spaces": False,
        **special,
    }
    chat_template = metadata.get("tokenizer.chat_template")
    if isinstance(chat_template, str):
        config["chat_template"] = chat_template

    tokenizer.save(str(folder / "tokenizer.json"))
    _write_json(folder / "tokenizer_config.json", config)
    _write_json(folder / "special_tokens_map.json", special)


def _pre_tokenizer(metadata: dict[str, Any], source: Path) -> Any:
    name = metadata.get("tokenizer.ggml.pre", "gpt2")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if name == "gpt2":
        return byte_level
    if name == "smollm":
        digits = pre_tokenizers.Digits(individual_digits=True)
        return pre_tokenizers.Sequence([digits, byte_level])
    raise GGUFTokenizerError(
        f"{source}: tokenizer.ggml.pre is {name!r}; supported: "
        f"{', '.join(SUPPORTED_PRE_TOKENIZERS)}"
    )


def _string_list(metadata: dict[str, Any], key: str, source: Path) -> list[str]:
    value = metadata.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GGUFTokenizerError(
            f"{source}: metadata key {key} is missing or not a list of strings"
        )
    return value


def _token_types(metadata: dict[str, Any], count: int, source: Path) -> list[int]:
    value = metadata.get("tokenizer.ggml.token_type")
    if value is None:
        return [TOKEN_TYPE_NORMAL] * count
    if not isinstance(value, mx.array) or value.shape != (count,):
        raise GGUFTokenizerError(
            f"{source}: tokenizer.ggml.token_type should hold {count} entries, "
            "one per token"
        )
    return value.tolist()


def _context_length(metadata: dict[str, Any]) -> int:
    architecture = metadata.get("general.architecture", "llama")
    value = metadata.get(f"{architecture}.context_length")
    return int(value.item()) if value is not None else 2048


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
