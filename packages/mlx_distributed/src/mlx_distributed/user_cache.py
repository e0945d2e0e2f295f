"""The per-user cache folder for imported models and BLAS loader links."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV_VAR = "MLX_DISTRIBUTED_CACHE"


def cache_root() -> Path:
    """Return `$MLX_DISTRIBUTED_CACHE`, or `~/.cache/mlx-distributed` if unset."""
    root = os.environ.get(CACHE_ENV_VAR)
    if root:
        return Path(root).expanduser()
    return Path.home() / ".cache" / "mlx-distributed"
