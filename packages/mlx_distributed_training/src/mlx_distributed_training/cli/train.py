"""`mlx-train`: fine-tune a model, or `mlx-train export` to fuse an adapter."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from mlx_distributed import ensure_fast_blas
from mlx_distributed_training.cli.arguments import build_parser, config_overrides
from mlx_distributed_training.cli.render import ConsoleView, show_error, show_summary
from mlx_distributed_training.configs.training_config import (
    ConfigError,
    load_config,
)
from mlx_distributed_training.training.datasets.errors import DataError
from mlx_distributed_training.training.distributed.group import (
    DistributedBackendError,
    init_single_process_group,
)
from mlx_distributed_training.training.distributed.hostfile import HostfileError
from mlx_distributed_training.training.distributed.launch import (
    LaunchError,
    launch_training,
    split_launch_arguments,
)
from mlx_distributed_training.training.optimizers.distributed_adamw import (
    OptimizerStateError,
)
from mlx_distributed_training.training.sft.checkpoints import (
    CONFIG_FILE,
    CheckpointError,
    resolve_resume_path,
)
from mlx_distributed_training.training.sft.output_dir import default_output_dir
from mlx_distributed_training.training.sft.trainer import TrainingDivergedError

EXIT_FAILED = 1
EXIT_USAGE = 2


def resolve_config(args):
    """Defaults < --config file (or the resumed run's config) < flags."""
    overrides = config_overrides(args)
    config_path = args.config
    resume_from = None
    if args.resume:
        resume_from = resolve_resume_path(Path(args.resume))
        if config_path is None:
            config_path = resume_from / CONFIG_FILE
    return load_config(config_path, overrides, overrides_are_text=True), resume_from


def train_main(argv: list[str]) -> int:
    try:
        launch_request, rank_argv = split_launch_arguments(argv)
    except LaunchError as error:
        show_error(str(error))
        return EXIT_USAGE
    args = build_parser().parse_args(rank_argv)
    logging.basicConfig(
        level=args.log_level, format="%(levelname)s %(name)s: %(message)s"
    )
    # Restarts this process with OpenBLAS preloaded where that helps (Linux).
    # Launched ranks inherit the resulting environment.
    try:
        blas = ensure_fast_blas(args.blas)
    except (ValueError, RuntimeError) as error:
        show_error(str(error))
        return EXIT_USAGE
    try:
        config, resume_from = resolve_config(args)
    except (ConfigError, FileNotFoundError) as error:
        show_error(str(error))
        return EXIT_USAGE

    if launch_request is not None and not launch_request.in_process:
        if config.output_dir is None:
            # Every rank must agree on the folder, so fix it before launching.
            rank_argv = [*rank_argv, "--output-dir", default_output_dir()]
        try:
            return launch_training(rank_argv, launch_request, config.backend)
        except (LaunchError, HostfileError) as error:
            show_error(str(error))
            return EXIT_USAGE

    from mlx_distributed import GGUFImportError, ModelNotFoundError
    from mlx_distributed_training.training.sft.run import ModelLoadError, run_training
    from mlx_distributed_training.training.sft.run_folder_lock import (
        RunFolderInUseError,
    )

    is_rank_zero = os.environ.get("MLX_RANK", "0") == "0"
    view = ConsoleView() if is_rank_zero else None
    if view is not None:
        view.show_line(blas.summary())
    try:
        group = None
        if launch_request is not None:
            group = init_single_process_group()
        result = run_training(config, resume_from, view=view, group=group)
    except (
        ConfigError,
        DistributedBackendError,
        DataError,
        CheckpointError,
        OptimizerStateError,
        TrainingDivergedError,
        ModelNotFoundError,
        GGUFImportError,
        ModelLoadError,
        RunFolderInUseError,
    ) as error:
        show_error(str(error))
        return EXIT_FAILED
    if is_rank_zero:
        show_summary(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        from mlx_distributed_training.cli.export import export_main

        return export_main(argv[1:])
    return train_main(argv)


if __name__ == "__main__":
    sys.exit(main())
