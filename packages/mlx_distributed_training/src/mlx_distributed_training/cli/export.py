"""`mlx-train export`: fuse a trained adapter into a standalone model folder.

The folder loads with `mlx_lm.load` and with the inference package's
`load_model`, like any MLX model folder.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import yaml
from mlx_distributed_training.cli.render import show_error, show_message
from mlx_distributed_training.training.sft.checkpoints import (
    ADAPTER_CONFIG_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
)
from mlx_distributed_training.training.utils.atomic import write_folder_atomic

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlx-train export",
        description="Fuse an adapter (or fully fine-tuned weights) into a model "
        "folder that mlx_lm.load and mlx_distributed.load_model can load.",
    )
    parser.add_argument(
        "--adapter",
        required=True,
        metavar="DIR",
        help="A run's adapter/ or model/ folder, or one of its checkpoints.",
    )
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="Folder to write the model to."
    )
    parser.add_argument(
        "--model",
        metavar="REF",
        help="Base model; default: the model named in the adapter's config.yaml.",
    )
    return parser


class ExportError(ValueError):
    """An adapter or output folder that export cannot use."""


def base_model_of(adapter_dir: Path) -> str | None:
    config_path = adapter_dir / CONFIG_FILE
    if not config_path.is_file():
        return None
    try:
        values = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        reason = getattr(error, "problem", None) or str(error)
        raise ExportError(f"{config_path}: invalid YAML: {reason}") from None
    if not isinstance(values, dict | None):
        raise ExportError(f"{config_path}: expected a mapping of config keys")
    return (values or {}).get("model")


def read_adapter_settings(adapter_dir: Path) -> dict:
    path = adapter_dir / ADAPTER_CONFIG_FILE
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ExportError(
            f"{path}: invalid JSON at line {error.lineno}: {error.msg}"
        ) from None
    except UnicodeDecodeError:
        raise ExportError(f"{path}: invalid UTF-8; expected a JSON file") from None
    if not isinstance(settings, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return settings


def export_model(adapter_dir: Path, output_dir: Path, model_ref: str | None) -> Path:
    """Load the base model, apply and fuse the adapter, save to `output_dir`."""
    from mlx.utils import tree_unflatten
    from mlx_distributed import load_model, resolve_model_path
    from mlx_lm.tuner.utils import load_adapters
    from mlx_lm.utils import load_config, save

    for name in (ADAPTER_CONFIG_FILE, WEIGHTS_FILE):
        if not (adapter_dir / name).is_file():
            raise FileNotFoundError(
                f"{adapter_dir / name} not found; is it an adapter?"
            )
    if output_dir.exists() and not output_dir.is_dir():
        raise ExportError(f"output {output_dir} exists and is not a folder")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"output folder {output_dir} exists and is not empty")
    settings = read_adapter_settings(adapter_dir)

    reference = model_ref if model_ref is not None else base_model_of(adapter_dir)
    model_path = resolve_model_path(reference)
    model, tokenizer = load_model(str(model_path))
    try:
        load_adapters(model, str(adapter_dir))
    except RuntimeError as error:
        # mx.load raises RuntimeError for a truncated or corrupt safetensors file.
        raise ExportError(
            f"{adapter_dir / WEIGHTS_FILE}: cannot load: {error}"
        ) from None
    fused = [
        (name, m.fuse()) for name, m in model.named_modules() if hasattr(m, "fuse")
    ]
    if fused:
        model.update_modules(tree_unflatten(fused))
    config = load_config(model_path)
    # Fill a temporary folder and rename it, so a failed or killed export
    # leaves no model folder that looks complete.
    write_folder_atomic(
        output_dir,
        lambda folder: save(folder, model_path, model, tokenizer, config),
    )
    logger.info("fused %s adapter into %s", settings.get("fine_tune_type"), output_dir)
    return output_dir


def export_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = export_model(Path(args.adapter), Path(args.output), args.model)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        show_error(str(error))
        return 1
    show_message(f"exported model to {path}")
    return 0
