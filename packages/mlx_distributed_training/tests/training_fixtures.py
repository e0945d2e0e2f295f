"""Builders for test inputs: a tiny random llama model with a real tokenizer,
and JSONL data files."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

# A 2-layer llama small enough to train in tests; add vocab_size.
TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5,
}

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "user assistant system tool the date is 2021-03-05 convert this date",
    "January February March April May June July August September October",
    "November December 0123456789 - , . ? ! : hello world what is",
]


def build_tokenizer(folder: Path, with_chat_template: bool = True) -> None:
    """Train a small byte-level BPE tokenizer and save it in Hugging Face form."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    settings = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": 4096,
    }
    if with_chat_template:
        settings["chat_template"] = CHAT_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))


def build_tiny_model(folder: Path, seed: int = 0, with_chat_template=True) -> Path:
    """Write a 2-layer random llama model folder that mlx_lm.load can read."""
    from mlx_lm.models import llama

    folder.mkdir(parents=True, exist_ok=True)
    build_tokenizer(folder, with_chat_template)
    vocab_size = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    config = {
        **TINY_LLAMA,
        "vocab_size": len(vocab_size),
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "eos_token_id": 2,
    }
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    mx.save_safetensors(
        str(folder / "model.safetensors"), dict(tree_flatten(model.parameters()))
    )
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def tiny_model(module, **settings):
    """Build `module.Model` (an mlx_lm.models module) with seed 0 weights."""
    mx.random.seed(0)
    model = module.Model(module.ModelArgs.from_dict(settings))
    mx.eval(model.parameters())
    return model


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def chat_record(question: str, answer: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }
