"""Decide when a generation ends, and which text is safe to emit so far."""

from mlx_lm.tokenizer_utils import TokenizerWrapper


def end_of_sequence_ids(tokenizer: TokenizerWrapper) -> frozenset[int]:
    """Token ids that end a generation.

    These are the tokenizer's end-of-sequence ids plus the token that closes
    an assistant turn in its chat template (for example `<|im_end|>`), found
    by rendering a short conversation and reading the token after the reply.
    """
    ids = set(tokenizer.eos_token_ids)
    if getattr(tokenizer, "has_chat_template", False):
        ids.update(_end_of_turn_ids(tokenizer))
    return frozenset(ids)


def _end_of_turn_ids(tokenizer: TokenizerWrapper) -> set[int]:
    marker = "STOPMARKER"
    try:
        rendered = tokenizer.apply_chat_template(
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": marker},
            ],
            tokenize=False,
        )
    except Exception:  # noqa: BLE001 - templates are user-provided Jinja
        return set()
    tail = rendered[rendered.rfind(marker) + len(marker) :]
    if not tail.strip():
        return set()
    tail_ids = tokenizer.encode(tail, add_special_tokens=False)
    if not tail_ids:
        return set()
    # Only a special token can end a turn; plain text such as a newline would
    # stop every reply that contains one.
    first = tail_ids[0]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special.update(token_id for token_id, token in added.items() if token.special)
    return {first} if first in special else set()


class StopText:
    """Tracks generated text against stop strings.

    `feed` returns the text that can be emitted now: text that might be the
    start of a stop string is held back until it is known not to be one.
    """

    def __init__(self, stop: list[str] | None):
        self.stop = [item for item in (stop or []) if item]
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def feed(self, text: str) -> str:
        """Set the full text so far; return the newly emittable part."""
        self.text = text
        for item in self.stop:
            index = text.find(item)
            if index != -1:
                self.text = text[:index]
                self.stopped = True
        safe_end = len(self.text)
        if not self.stopped:
            safe_end -= self._held_back(self.text)
        piece = self.text[self.emitted : safe_end]
        self.emitted = max(self.emitted, safe_end)
        return piece

    def flush(self) -> str:
        """Return any text held back, once no more tokens will come."""
        piece = self.text[self.emitted :]
        self.emitted = len(self.text)
        return piece

    def _held_back(self, text: str) -> int:
        longest = 0
        for item in self.stop:
            for size in range(min(len(item) - 1, len(text)), 0, -1):
                if text.endswith(item[:size]):
                    longest = max(longest, size)
                    break
        return longest
