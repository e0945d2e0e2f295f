"""Turn a model reference from a cluster file or a request into a local folder."""

from pathlib import Path

from mlx_lm.tokenizer_utils import TokenizerWrapper


def resolve_model_folder(model: str | None) -> Path:
    """Return the local MLX/Hugging Face folder for a model reference.

    `None` or "" selects the embedded default model; an existing folder is used
    as is; anything else is treated as a Hugging Face hub id and downloaded.
    """
    try:
        from mlx_distributed.model_loading import resolve_model_path
    except ImportError:
        resolve_model_path = None

    if resolve_model_path is not None:
        return Path(resolve_model_path(model or None))

    # NOTE: fallback for checkouts without `model_loading`, which provides the
    # embedded default model; only folders and hub ids resolve here.
    if not model:
        raise ValueError(
            "the embedded default model needs mlx_distributed.model_loading, "
            "which this installation lacks; pass a model folder instead"
        )
    folder = Path(model).expanduser()
    if folder.is_dir():
        return folder
    from mlx_lm.utils import _download

    return Path(_download(model))


def load_tokenizer(model: str | None) -> TokenizerWrapper:
    """Load only the tokenizer of a model reference."""
    from mlx_lm.utils import load_tokenizer as mlx_load_tokenizer

    return mlx_load_tokenizer(resolve_model_folder(model))
