"""Pipeline-parallel MLX inference over gRPC, and model loading and import."""

from mlx_distributed.gguf_import import GGUFImportError, import_gguf
from mlx_distributed.model_loading import (
    DEFAULT_MODEL,
    ModelNotFoundError,
    load_model,
    resolve_model_path,
)

__all__ = [
    "DEFAULT_MODEL",
    "GGUFImportError",
    "ModelNotFoundError",
    "import_gguf",
    "load_model",
    "resolve_model_path",
]
