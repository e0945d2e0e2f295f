"""A shard: the contiguous range of transformer layers one node computes.

The shard reuses mlx-lm's model classes (decoder layers, embedding, norm, KV
caches) and only decides which of them this node runs: the embedding on the
first shard, the final norm and LM head on the last.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import create_attention_mask
from mlx_lm.models.cache import BatchKVCache, KVCache
from mlx_lm.utils import dequantize_model, load_adapters, load_model

from mlx_distributed.model_source import resolve_model_folder
from mlx_distributed.tensors import dtype_name, parse_dtype

logger = logging.getLogger(__name__)

# Decoder-only families whose layers are called as `layer(h, mask, cache)`
# on an unscaled token embedding, with a final norm, like mlx-lm's llama.
SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


class ShardLoadError(ValueError):
    """A shard request that cannot be served (bad range, unsupported model)."""


@dataclass(frozen=True)
class ShardSpec:
    """Model, layer range and options of a LoadShard request."""

    model: str
    layer_start: int
    layer_end: int
    dtype: str = ""
    adapter: str = ""
    dequantize: bool = False


class Shard:
    """Layers `[layer_start, layer_end)` of one model, ready to run."""

    def __init__(self, spec: ShardSpec, model: nn.Module, config: dict[str, Any]):
        model_type = config.get("model_type", "")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ShardLoadError(
                f"model type {model_type!r} is not supported for pipeline "
                f"shards; supported: {', '.join(sorted(SUPPORTED_MODEL_TYPES))}"
            )
        inner = model.model
        self.num_layers = len(inner.layers)
        if not 0 <= spec.layer_start < spec.layer_end <= self.num_layers:
            raise ShardLoadError(
                f"layer range [{spec.layer_start}, {spec.layer_end}) is invalid "
                f"for a model with {self.num_layers} layers"
            )
        self.spec = spec
        self.is_first = spec.layer_start == 0
        self.is_last = spec.layer_end == self.num_layers
        self.hidden_size = int(config["hidden_size"])
        self.layers = inner.layers[spec.layer_start : spec.layer_end]
        self.embed_tokens = inner.embed_tokens
        self.norm = inner.norm if self.is_last else None
        self.lm_head = getattr(model, "lm_head", None) if self.is_last else None
        self.tied_head = self.is_last and self.lm_head is None

        # Only this shard's weights are read from disk; the rest stay lazy.
        needs_embedding = self.is_first or self.tied_head
        owned: list[Any] = [layer.parameters() for layer in self.layers]
        if needs_embedding:
            owned.append(self.embed_tokens.parameters())
        else:
            self.embed_tokens = None
        if self.is_last:
            owned.append(self.norm.parameters())
            if self.lm_head is not None:
                owned.append(self.lm_head.parameters())
        mx.eval(owned)
        self.activation_dtype = self._find_activation_dtype()

    def _find_activation_dtype(self) -> mx.Dtype:
        # Hidden states take the dtype of the layer norms' weights, which are
        # never quantized.
        return self.layers[0].input_layernorm.weight.dtype

    @property
    def info(self) -> dict[str, Any]:
        """The shard's description as sent in health and load replies."""
        return {
            "model": self.spec.model,
            "layer_start": self.spec.layer_start,
            "layer_end": self.spec.layer_end,
            "num_layers": self.num_layers,
            "is_first": self.is_first,
            "is_last": self.is_last,
            "dtype": dtype_name(self.activation_dtype),
            "adapter": self.spec.adapter,
            "dequantized": self.spec.dequantize,
        }

    def make_cache(self, batch: int, left_padding: list[int]) -> list[Any]:
        """Create one empty KV cache per layer of this shard."""
        if batch == 1 and not any(left_padding):
            return [KVCache() for _ in self.layers]
        padding = left_padding or [0] * batch
        return [BatchKVCache(padding) for _ in self.layers]

    def run_layers(self, inputs: mx.array, cache: list[Any]) -> mx.array:
        """Run the shard over token ids [B, L] (first shard) or hidden [B, L, D].

        Returns hidden states [B, L, D]; the last shard applies the final norm.
        The computation is lazy: the caller evaluates it.
        """
        hidden = self.embed_tokens(inputs) if self.is_first else inputs
        mask = create_attention_mask(hidden, cache[0])
        for layer, layer_cache in zip(self.layers, cache, strict=True):
            hidden = layer(hidden, mask, cache=layer_cache)
        if self.is_last:
            hidden = self.norm(hidden)
        return hidden

    def logits(self, hidden: mx.array) -> mx.array:
        """Project normed hidden states onto the vocabulary (last shard only)."""
        if self.tied_head:
            return self.embed_tokens.as_linear(hidden)
        return self.lm_head(hidden)


def load_shard(spec: ShardSpec) -> Shard:
    """Read a model's config and this shard's weights, and return the shard."""
    start = time.perf_counter()
    folder = resolve_model_folder(spec.model)
    model, config = load_model(folder, lazy=True)
    if spec.adapter:
        model = load_adapters(model, spec.adapter)
    if spec.dequantize:
        # Lazy, like the load: only this shard's layers are ever expanded.
        model = dequantize_model(model)
    if spec.dtype or spec.dequantize:
        target = parse_dtype(spec.dtype or "float32")
        # Casts floating parameters only; quantized weights keep their packing.
        model.set_dtype(target)
    shard = Shard(spec, model, config)
    logger.info(
        "loaded layers [%s, %s) of %s from %s in %.2f s",
        spec.layer_start,
        spec.layer_end,
        shard.num_layers,
        folder,
        time.perf_counter() - start,
    )
    return shard
