"""Pick the next token from the last shard's logits, per session."""

from dataclasses import dataclass

import mlx.core as mx
from mlx_lm.sample_utils import apply_top_p


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling settings of one session; temperature 0 selects greedy decoding."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, found {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], found {self.top_p}")


class TokenSampler:
    """Samples one token per row; a seeded sampler repeats its choices exactly."""

    def __init__(self, settings: SamplingSettings):
        self.settings = settings
        seed = settings.seed
        if seed is None:
            # Unseeded sessions draw their key from MLX's global generator.
            seed = int(mx.random.randint(0, 2**31 - 1, shape=()).item())
        self._key = mx.random.key(seed)

    @property
    def key(self) -> mx.array:
        """The random key the next sampled step will split."""
        return self._key

    def sample(self, logits: mx.array) -> tuple[mx.array, mx.array]:
        """Return (token ids [B], their log probabilities [B]) from logits [B, V].

        Log probabilities are formed the way `mlx_lm.generate` forms them, so
        greedy decoding breaks ties between equal values identically.
        """
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        if self.settings.temperature == 0:
            tokens = mx.argmax(logprobs, axis=-1)
        else:
            filtered = logprobs
            if self.settings.top_p < 1:
                filtered = apply_top_p(logprobs, self.settings.top_p)
            keys = mx.random.split(self._key)
            self._key, step_key = keys[0], keys[1]
            tokens = mx.random.categorical(
                filtered * (1 / self.settings.temperature), key=step_key
            )
        chosen = mx.take_along_axis(logprobs, tokens[:, None], axis=-1)[:, 0]
        return tokens, chosen
