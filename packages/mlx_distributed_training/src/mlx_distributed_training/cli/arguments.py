"""Command-line flags of `mlx-train`, one per config field plus run controls."""

from __future__ import annotations

import argparse
import typing

from mlx_distributed_training.configs.training_config import CONFIG_FIELDS

DESCRIPTION = """\
Fine-tune an MLX language model, on one process or data-parallel across
several. With no arguments it runs the bundled quickstart: LoRA fine-tuning
of SmolLM2-135M-Instruct to write dates as YYYY-MM-DD, with exact-match
accuracy measured before and after.

Values come from the defaults, then --config FILE, then flags; flags win.
"""


def _field_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlx-train",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Other commands: `mlx-train export --help` fuses an adapter.",
    )
    run = parser.add_argument_group("run")
    run.add_argument("--config", metavar="FILE", help="YAML or JSON config file.")
    run.add_argument(
        "--resume",
        metavar="DIR",
        help="Continue from a checkpoint folder, or from a run folder's newest "
        "checkpoint; step numbering, optimizer state and data position continue.",
    )
    run.add_argument(
        "-n",
        type=int,
        default=1,
        metavar="N",
        dest="num_processes",
        help="Launch N local ranks through mlx.launch (default 1: this process).",
    )
    run.add_argument(
        "--hostfile",
        metavar="FILE",
        help="JSON hostfile for mlx.launch: run one rank per listed host.",
    )
    run.add_argument(
        "--blas",
        choices=("auto", "openblas", "reference"),
        default=None,
        help="Linux CPU only: BLAS behind MLX. auto (default, or "
        "$MLX_DISTRIBUTED_BLAS) and openblas restart the process with the bundled "
        "OpenBLAS preloaded (auto falls back with a warning, openblas fails); "
        "reference keeps the slow BLAS the MLX wheel links.",
    )
    run.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="Logging level on stderr (default WARNING).",
    )

    options = parser.add_argument_group("training options (also config keys)")
    for name, spec in CONFIG_FIELDS.items():
        help_text = spec.metadata["help"]
        default = spec.default
        if default is not None:
            help_text += f" (default: {default})"
        if str(spec.type).startswith("bool"):
            options.add_argument(
                _field_flag(name),
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            options.add_argument(
                _field_flag(name),
                dest=name,
                metavar=_metavar(spec.type),
                default=argparse.SUPPRESS,
                help=help_text,
            )
    return parser


def _metavar(annotation: typing.Any) -> str:
    text = str(annotation)
    for prefix, word in (("int", "N"), ("float", "X"), ("tuple", "A,B")):
        if text.startswith(prefix):
            return word
    return "TEXT"


def config_overrides(args: argparse.Namespace) -> dict[str, typing.Any]:
    """Collect the config fields given as flags, still as text (or bool)."""
    return {name: getattr(args, name) for name in CONFIG_FIELDS if hasattr(args, name)}
