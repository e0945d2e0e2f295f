"""Turn a model reference from a cluster file or a request into a local folder."""

from pathlib import Path

from mlx_lm.tokenizer_utils import TokenizerWrapper

from mlx_distributed.model_loading import resolve_model_path


def resolve_model_folder(model: str | None) -> Path:
    """Return the local MLX/Hugging Face folder for a model reference.

    `None` or "" selects the embedded default model (imported from GGUF on
    first use); other references resolve as `resolve_model_path` documents.
    """
    return resolve_model_path(model or None)


def load_tokenizer(model: str | None) -> TokenizerWrapper:
    """Load only the tokenizer of a model reference."""
    from mlx_lm.utils import load_tokenizer as mlx_load_tokenizer

    return mlx_load_tokenizer(resolve_model_folder(model))
