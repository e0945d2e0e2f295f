"""Pipeline-parallel MLX inference over gRPC, and model loading and import."""

from mlx_distributed.blas import (
    BlasStatus,
    active_blas,
    blas_environment,
    ensure_fast_blas,
)
from mlx_distributed.distributed_config import ClusterConfig, load_cluster_config
from mlx_distributed.gguf_import import GGUFImportError, import_gguf
from mlx_distributed.grpc_client import DistributedInferenceClient
from mlx_distributed.model_loading import (
    DEFAULT_MODEL,
    ModelNotFoundError,
    load_model,
    resolve_model_path,
)
from mlx_distributed.orchestrator import DistributedInferenceOrchestrator

__all__ = [
    "BlasStatus",
    "ClusterConfig",
    "DEFAULT_MODEL",
    "DistributedInferenceClient",
    "DistributedInferenceOrchestrator",
    "GGUFImportError",
    "ModelNotFoundError",
    "active_blas",
    "blas_environment",
    "ensure_fast_blas",
    "import_gguf",
    "load_cluster_config",
    "load_model",
    "resolve_model_path",
]
