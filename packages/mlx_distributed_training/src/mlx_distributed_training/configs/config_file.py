"""Reading a YAML or JSON training config file into a plain mapping.

Syntax errors, repeated keys and unreadable files become a `ConfigError`
naming the file, and the line when the parser reports one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from mlx_distributed_training.configs.training_config import ConfigError


class _DuplicateJsonKey(ValueError):
    pass


def _unique_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise _DuplicateJsonKey(f"duplicate key {key!r}")
        mapping[key] = value
    return mapping


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects a key repeated in one mapping.

    PyYAML keeps the last value of a repeated key, so an edit to the first
    one would have no effect.
    """

    def construct_mapping(self, node, deep=False):
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            # Keys that are lists or mappings are not config keys; skip them.
            if not isinstance(key, str | int | float | bool):
                continue
            if key in first_lines:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {key!r} (first set on line "
                    f"{first_lines[key]})",
                    problem_mark=key_node.start_mark,
                )
            first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a mapping, with errors naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"cannot read file: {error.strerror}"], str(path)) from None
    except UnicodeDecodeError as error:
        problem = f"cannot read file: invalid UTF-8 at byte {error.start}"
        raise ConfigError([f"{problem}, expected UTF-8 text"], str(path)) from None
    try:
        if path.suffix == ".json":
            loaded = json.loads(text, object_pairs_hook=_unique_json_keys)
        else:
            loaded = yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateJsonKey as error:
        raise ConfigError([f"invalid JSON: {error}"], str(path)) from None
    except json.JSONDecodeError as error:
        raise ConfigError(
            [f"line {error.lineno}: invalid JSON: {error.msg}"], str(path)
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        reason = getattr(error, "problem", None) or str(error)
        raise ConfigError([f"{where}invalid YAML: {reason}"], str(path)) from None
    return {} if loaded is None else loaded
