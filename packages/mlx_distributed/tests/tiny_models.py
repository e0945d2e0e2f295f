"""Write tiny random llama models with a character tokenizer, for tests."""

import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm.models import llama
from tokenizers import Tokenizer, decoders, models

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Printable ASCII and a newline, one token each; the special tokens come last
# so no end-of-sequence id is a small constant.
CHARACTERS = [chr(code) for code in range(32, 127)] + ["\n"]
SPECIAL_TOKENS = ["<unk>", "<|im_start|>", "<|im_end|>"]


def write_tokenizer(folder: Path, eos_token: str = "<|im_end|>") -> int:
    """Write tokenizer.json and tokenizer_config.json; return the vocab size."""
    vocab = {token: index for index, token in enumerate(CHARACTERS + SPECIAL_TOKENS)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.decoder = decoders.Fuse()
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": eos_token,
        "unk_token": "<unk>",
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": 4096,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return len(vocab)


def write_tiny_llama(
    folder: Path,
    num_layers: int = 4,
    hidden_size: int = 64,
    tie_word_embeddings: bool = True,
    dtype: mx.Dtype = mx.float32,
    seed: int = 0,
) -> Path:
    """Write a random llama model folder that `mlx_lm.load` can read."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = write_tokenizer(folder)
    config = {
        "model_type": "llama",
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "intermediate_size": hidden_size * 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "vocab_size": vocab_size,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tie_word_embeddings,
    }
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    # Larger than default init, so logits are far from ties and generations vary.
    scaled = [
        (name, (value * 3).astype(dtype))
        for name, value in tree_flatten(model.parameters())
    ]
    mx.save_safetensors(str(folder / "model.safetensors"), dict(scaled))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder
