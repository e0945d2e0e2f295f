"""Fixtures: a tiny llama model written as a GGUF file the way llama.cpp does."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten
from mlx_lm.models import llama

# tiny_models (random llama folders for the pipeline tests) sits beside this file.
sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import write_tiny_llama  # noqa: E402

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_GLOBAL_NAMES = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
}
_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


@dataclass
class TinyGGUF:
    path: Path
    model: llama.Model
    args: llama.ModelArgs
    tokens: list[str]


def byte_level_alphabet() -> list[str]:
    """Return the 256 characters GPT-2 byte-level BPE uses for bytes 0-255."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    characters = {}
    extra = 0
    for byte in range(256):
        if byte in printable:
            characters[byte] = chr(byte)
        else:
            characters[byte] = chr(256 + extra)
            extra += 1
    return [characters[byte] for byte in range(256)]


def interleave_rotary_rows(weight: mx.array, num_heads: int) -> mx.array:
    """Reorder q/k rows as llama.cpp's converter does when writing GGUF.

    Written row by row, independently of the importer's reshape: within each
    head, the split-half row `j * half + i` moves to row `2 * i + j`.
    """
    rows = weight.shape[0]
    head_dim = rows // num_heads
    half = head_dim // 2
    order = []
    for head in range(num_heads):
        for i in range(half):
            for j in range(2):
                order.append(head * head_dim + j * half + i)
    return weight[mx.array(order)]


def gguf_tensors(model: llama.Model, args: llama.ModelArgs) -> dict[str, mx.array]:
    """Return the model's weights under GGUF names and q/k row order."""
    tensors = {}
    for name, value in tree_flatten(model.parameters()):
        module, _, suffix = name.rpartition(".")
        if module in _GLOBAL_NAMES:
            gguf = _GLOBAL_NAMES[module]
        else:
            _, _, layer, local = module.split(".", 3)
            gguf = f"blk.{layer}.{_LAYER_NAMES[local]}"
        if gguf.endswith("attn_q"):
            value = interleave_rotary_rows(value, args.num_attention_heads)
        elif gguf.endswith("attn_k"):
            value = interleave_rotary_rows(value, args.num_key_value_heads)
        tensors[f"{gguf}.{suffix}"] = value
    return tensors


def gguf_metadata(args: llama.ModelArgs, tokens: list[str]) -> dict:
    def u32(value: int) -> mx.array:
        return mx.array(value, dtype=mx.uint32)

    token_types = [3 if t in SPECIAL_TOKENS else 1 for t in tokens]
    return {
        "general.architecture": "llama",
        "general.name": "tiny test llama",
        "llama.embedding_length": u32(args.hidden_size),
        "llama.block_count": u32(args.num_hidden_layers),
        "llama.feed_forward_length": u32(args.intermediate_size),
        "llama.attention.head_count": u32(args.num_attention_heads),
        "llama.attention.head_count_kv": u32(args.num_key_value_heads),
        "llama.attention.layer_norm_rms_epsilon": mx.array(1e-5, dtype=mx.float32),
        "llama.rope.freq_base": mx.array(args.rope_theta, dtype=mx.float32),
        "llama.context_length": u32(512),
        "llama.vocab_size": u32(len(tokens)),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.merges": MERGES,
        "tokenizer.ggml.token_type": mx.array(token_types, dtype=mx.int32),
        "tokenizer.ggml.bos_token_id": u32(1),
        "tokenizer.ggml.eos_token_id": u32(2),
        "tokenizer.ggml.padding_token_id": u32(2),
        "tokenizer.ggml.add_bos_token": mx.array(False),
        "tokenizer.chat_template": CHAT_TEMPLATE,
    }


def write_tiny_gguf(path: Path, tie_word_embeddings: bool = True) -> TinyGGUF:
    """Write a random 2-layer llama with a byte-level BPE vocabulary to `path`."""
    tokens = SPECIAL_TOKENS + byte_level_alphabet()
    tokens += ["".join(merge.split(" ")) for merge in MERGES]
    args = llama.ModelArgs(
        model_type="llama",
        hidden_size=64,
        num_hidden_layers=2,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        vocab_size=len(tokens),
        rope_theta=10000.0,
        tie_word_embeddings=tie_word_embeddings,
    )
    mx.random.seed(0)
    model = llama.Model(args)
    # Norm weights start at 1; random ones make the check see their names.
    for layer in model.layers:
        layer.input_layernorm.weight = mx.random.uniform(0.5, 1.5, (64,))
        layer.post_attention_layernorm.weight = mx.random.uniform(0.5, 1.5, (64,))
    mx.eval(model.parameters())
    mx.save_gguf(str(path), gguf_tensors(model, args), gguf_metadata(args, tokens))
    return TinyGGUF(path=path, model=model, args=args, tokens=tokens)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> TinyGGUF:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture
def write_gguf():
    """Return `write_tiny_gguf`, for tests that need a fresh or untied file."""
    return write_tiny_gguf


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 4-layer float32 llama folder with tied embeddings."""
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_model_untied(tmp_path_factory) -> Path:
    """A 3-layer bfloat16 llama folder with a separate LM head."""
    return write_tiny_llama(
        tmp_path_factory.mktemp("tiny_untied") / "model",
        num_layers=3,
        tie_word_embeddings=False,
        dtype=mx.bfloat16,
        seed=1,
    )


@pytest.fixture
def node_servers():
    """Start in-process nodes on free loopback ports; stop them afterwards."""
    from mlx_distributed.grpc_server import serve
    from mlx_distributed.shard_node import ShardNode

    started = []

    def start(count: int, **node_options):
        addresses = []
        for _ in range(count):
            node = ShardNode(**node_options)
            server, port = serve(node, "127.0.0.1", 0)
            started.append(server)
            addresses.append((node, f"127.0.0.1:{port}"))
        return addresses

    yield start
    for server in started:
        server.stop(grace=None)
