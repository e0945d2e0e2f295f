"""Server settings from command-line flags, environment variables and defaults.

A flag wins over its environment variable, which wins over the default.
"""

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "MLX_TRAIN_SERVE_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True)
class ServerSettings:
    """Resolved settings of one `mlx-train-serve` process."""

    host: str = "127.0.0.1"
    port: int = 8200
    db: Path = Path("runs/serve/jobs.sqlite3")
    jobs_dir: Path = Path("runs/serve/jobs")
    max_concurrent_jobs: int = 1
    cancel_grace_seconds: float = 10.0
    log_level: str = "info"


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("must be an integer") from None


def _port(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be from 0 to 65535")
    return value


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if not 0 <= value < float("inf"):
        raise ValueError("must be 0 or more")
    return value


def _log_level(text: str) -> str:
    value = text.lower()
    if value not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return value


# flag name, settings field, parser, help text
_OPTIONS: list[tuple[str, str, Callable[[str], Any], str]] = [
    ("--host", "host", str, "Address to listen on."),
    ("--port", "port", _port, "TCP port to listen on, or 0 for any free port."),
    ("--db", "db", Path, "SQLite file that stores jobs and their events."),
    (
        "--jobs-dir",
        "jobs_dir",
        Path,
        "Folder that gets one subfolder per job (config, logs and, unless the "
        "config sets output_dir, the training output).",
    ),
    (
        "--max-concurrent-jobs",
        "max_concurrent_jobs",
        _positive_int,
        "Maximum number of jobs that train at the same time.",
    ),
    (
        "--cancel-grace-seconds",
        "cancel_grace_seconds",
        _non_negative_float,
        "Seconds between SIGTERM and SIGKILL when a running job is cancelled.",
    ),
    ("--log-level", "log_level", _log_level, f"One of {', '.join(LOG_LEVELS)}."),
]


def env_var_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlx-train-serve",
        description="Serve an HTTP API that queues and runs mlx-train jobs.",
    )
    defaults = ServerSettings()
    for flag, field, parse, help_text in _OPTIONS:
        parser.add_argument(
            flag,
            dest=field,
            type=_argparse_type(parse),
            default=None,
            help=f"{help_text} Environment: {env_var_name(field)}. "
            f"Default: {getattr(defaults, field)}.",
        )
    return parser


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}: {error}"
            ) from None

    return convert


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> ServerSettings:
    """Resolve settings from `argv` and `environ` (the process's by default).

    Exits with a usage error naming the flag or variable for an invalid value.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for flag, field, parse, _ in _OPTIONS:
        value = getattr(args, field)
        if value is None and env_var_name(field) in environ:
            text = environ[env_var_name(field)]
            try:
                value = parse(text)
            except ValueError as error:
                parser.error(
                    f"environment variable {env_var_name(field)} (for {flag}): "
                    f"invalid value {text!r}: {error}"
                )
        if value is not None:
            values[field] = value
    return ServerSettings(**values)
